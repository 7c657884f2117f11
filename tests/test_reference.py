"""Reference files that catch accidental changes to what the pipeline writes.

* tests/reference/yosinski2014-plan.json: the paper grid's plan (paths replaced by <repo>
  and <jobs>), saved before the package was restructured: job keys, order, specs, hashes.
* tests/reference/yosinski2014-sbatch.sh: the script of the grid's first array as submitit
  writes it (it depends on submitit's version: after an upgrade, read the diff, then
  regenerate with TRANSFERBENCH_UPDATE_REFERENCE=1).
* tests/reference/results-header.csv: the results CSV's columns.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tests.conftest import REPO
from transferbench.analysis.results import to_csv
from transferbench.study.executors import group_arrays, sbatch_script
from transferbench.study.plan import build_plan, write_plan
from transferbench.study.status import Study, order_jobs, states

REFERENCE = REPO / "tests" / "reference"


def compare(name: str, text: str) -> None:
    path = REFERENCE / name
    if os.environ.get("TRANSFERBENCH_UPDATE_REFERENCE") == "1" and name != "yosinski2014-plan.json":
        path.write_text(text, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from the reference; if the change is intended, regenerate it"


def portable_plan(text: str, jobs: Path, repo: Path) -> str:
    """plan.json with the checkout and jobs folders named <repo> and <jobs>. The hashes cover
    absolute paths, so each job's hash is recomputed the planner's way over its portable spec."""
    text = text.replace(str(jobs), "<jobs>").replace(str(repo), "<repo>")
    plan = json.loads(text)
    for job in plan["jobs"]:
        spec = json.dumps(job["spec"], sort_keys=True, separators=(",", ":"))
        job["config_hash"] = hashlib.sha256(spec.encode()).hexdigest()[:16]
    return json.dumps(plan, indent=1, sort_keys=False) + "\n"


def test_paper_grid_plan_is_the_reference(tmp_path):
    plan = build_plan(REPO / "configs" / "yosinski2014.toml", tmp_path / "jobs")
    write_plan(plan, echo=lambda *_: None)
    text = (plan.study_dir / "plan.json").read_text(encoding="utf-8")
    assert json.dumps(json.loads(text), indent=1) + "\n" == text  # the file is what portable_plan re-dumps
    compare("yosinski2014-plan.json", portable_plan(text, tmp_path / "jobs", REPO))


def test_generated_sbatch_script_is_the_reference(tmp_path):
    plan = build_plan(REPO / "configs" / "yosinski2014.toml", tmp_path / "jobs")
    write_plan(plan, echo=lambda *_: None)
    study = Study.open(plan.study_dir)
    current = states(study, need_live=False)
    # every job, as submit would choose them once the plan names ImageNet's folder (without it, submit holds them)
    waits, keys = group_arrays(study, [(key,) for key in order_jobs(study.jobs)], current)[1]
    folder = tmp_path / "jobs" / "yosinski2014" / "slurm"
    script = sbatch_script(study, len(keys), "afterok:7_0", folder, f"python -u -m submitit.core._submit {folder}")
    assert waits == ("random0/baseA/seed0",) and len(keys) == 28
    compare("yosinski2014-sbatch.sh", script.replace(str(tmp_path / "jobs"), "<jobs>"))


def test_results_csv_header_is_the_reference():
    compare("results-header.csv", to_csv([]))
