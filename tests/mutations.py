"""Hand mutations that once survived the whole suite, each now caught by a named test.

    python tests/mutations.py            # applies each mutation alone, runs its test, restores the file

Each entry: the file, a line as it is, the line broken, and the test that must fail on it.
Exit status 0 when every mutation is caught.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MUTATIONS = [
    ("frozen units whose BatchNorm statistics still move",
     "transferbench/worker/transfer.py",
     "    model.freeze_units(frozen_units)",
     "    pass",
     "tests/test_gradients.py::test_every_condition_trains_exactly_its_unfrozen_layers"),
    ("a grown network whose frozen units' BatchNorm statistics still move",
     "transferbench/worker/grow.py",
     "    model.freeze_units(frozen_units)",
     "    pass",
     "tests/test_gradients.py::test_every_growth_variant_and_scope_trains_exactly_what_it_says"),
    ("a tie among replicates called certain",
     "transferbench/analysis/stats.py",
     "    if sd == 0.0:",
     "    if False:",
     "tests/test_stats.py::test_replicates_that_tie_give_no_interval_and_show_nothing"),
    ("BVLC's AlexNet run in CaffeNet's order",
     "transferbench/worker/models.py",
     '                if arch == "bvlc_alexnet":  # BVLC\'s AlexNet normalises, then pools',
     "                if False:",
     "tests/test_sources.py::test_bvlc_alexnet_imports_with_its_own_order_normalising_before_it_pools"),
    ("a re-plan that no longer marks a job whose base changed",
     "transferbench/study/plan.py",
     "        if key in old_hashes and key not in stale and any(dep in stale for dep in plan.jobs[key].depends):",
     "        if key in old_hashes and key not in stale and False:",
     "tests/test_plan.py::test_a_job_whose_base_changed_is_changed_too"),
    ("crop and mirror draws identical every iteration",
     "transferbench/worker/inputs.py",
     '    return streams.generator(seed, "augment", iteration, retry)',
     '    return streams.generator(seed, "augment", 0, retry)',
     "tests/test_worker.py::test_random_streams_differ_by_purpose_epoch_and_iteration"),
    ("a worker that accepts a retrained base without checking its attempt",
     "transferbench/worker/transfer.py",
     '    if found_hash != expected["config_hash"] or found_attempt != expected["attempt"]:',
     '    if found_hash != expected["config_hash"]:',
     "tests/test_faults.py::test_a_worker_refuses_a_base_other_than_the_one_its_plan_names"),
    ("an atomic write turned into a plain write",
     "transferbench/fileio.py",
     "    fd, tmp_name = tempfile.mkstemp(prefix=f\".{path.name}.\", suffix=\".tmp\", dir=path.parent)",
     "    fd, tmp_name = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), str(path)",
     "tests/test_fileio.py::test_a_write_that_fails_midway_leaves_the_old_file_whole"),
    ("the chain split drawn with another seed",
     "transferbench/tasks/splits.py",
     "    order = np.random.RandomState([seed]).permutation(len(classes))",
     "    order = np.random.RandomState(seed).permutation(len(classes))",
     "tests/test_splits.py::test_chain_splits_are_the_legacy_generators_permutation_cut_in_parts"),
    ("the stall threshold at 2 instead of 3 standard errors",
     "transferbench/schema/health.py",
     "    chance_sigmas: float = 3.0",
     "    chance_sigmas: float = 2.0",
     "tests/test_health.py::test_the_chance_line_is_three_standard_errors_above_chance"),
]


def main() -> int:
    missed = []
    for what, file, line, broken, test in MUTATIONS:
        path = REPO / file
        original = path.read_text(encoding="utf-8")
        if original.count(line) != 1:
            print(f"SKIPPED  {what}: the line is no longer in {file} exactly once; update this list")
            missed.append(what)
            continue
        path.write_text(original.replace(line, broken), encoding="utf-8")
        try:
            run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", test], cwd=REPO,
                                 capture_output=True, text=True, check=False)
        finally:
            path.write_text(original, encoding="utf-8")
        caught = run.returncode == 1
        print(f"{'caught ' if caught else 'MISSED '} {what}: {test} {'failed' if caught else f'exit {run.returncode}'}")
        if not caught:
            missed.append(what)
    print(f"{len(MUTATIONS) - len(missed)} of {len(MUTATIONS)} mutations caught")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
