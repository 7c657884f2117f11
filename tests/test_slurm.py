"""plan, submit and status on a real one-node Slurm cluster (scripts/slurm-local.sh), accounting off.

The tests use the cluster that ``$SLURM_CONF`` names when it answers (``scontrol ping``); they
never start daemons themselves. CI starts one before the tests (``.ci/run``); by hand:

    scripts/slurm-local.sh start /tmp/tb-slurm && export SLURM_CONF=/tmp/tb-slurm/slurm.conf

Without a reachable cluster the tests skip; CI (TRANSFERBENCH_REQUIRE_EXTERNALS=1) fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, _missing, make_fashion_mnist, record_text, tiny_study
from transferbench.schema.plan import ManifestEntry, PlannedJob
from transferbench.study.submit import submit
from transferbench.study.study import Study
from transferbench.study.status import job_state, log_path, states, status_table
from transferbench.schema.spec import JobSpec, ModelConfig
from transferbench.worker.train import run_job

pytestmark = pytest.mark.slurm

@pytest.fixture(scope="module")
def cluster() -> Path:
    """The folder of the running cluster that $SLURM_CONF names (its logs are in log/)."""
    conf = os.environ.get("SLURM_CONF")
    if not conf or shutil.which("scontrol") is None:
        _missing("a running Slurm cluster ($SLURM_CONF; start one with scripts/slurm-local.sh start DIR)")
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False, timeout=60)
    if ping.returncode or "UP" not in ping.stdout:
        _missing(f"a reachable Slurm cluster at {conf} (scontrol ping: {(ping.stdout + ping.stderr).strip()})")
    return Path(conf).parent


def make_study(tmp_path: Path, name: str, networks: list[str], iterations: int = 12, every: int = 4,
               data: Path | None = None) -> Path:
    return tiny_study(tmp_path, name, networks, [1, 3], iterations=iterations, every=every, data=data)


def wait_until(study_dir: Path, finished, timeout: float = 240) -> dict[str, tuple[str, str]]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        current = states(Study.open(study_dir))
        if finished(current):
            return current
        time.sleep(0.5)
    raise AssertionError(f"timed out; states: {states(Study.open(study_dir))}\n"
                         f"{subprocess.run(['squeue'], capture_output=True, text=True, check=False).stdout}")


def diagnosis(study_dir: Path, key: str, cluster: Path) -> str:
    """The job's own log and the Slurm daemons' logs, for a failure message that says what happened."""
    study = Study.open(study_dir)
    entry = study.manifest().get(key)
    parts = []
    if entry:
        parts.append(f"manifest: {entry}")
    log = Path(log_path(study, key, entry).split(" (traceback")[0])
    for path in sorted({log, log.with_suffix(".err")} | {Path(study.jobs[key].spec.out_dir) / "error.json"}):
        if path.is_file():
            parts.append(f"--- {path}\n{path.read_text(errors='replace')[-3000:]}")
    for name in ("slurmctld.log", "slurmd.log"):
        path = cluster / "log" / name
        if path.is_file():
            parts.append(f"--- {path}\n" + "".join(path.read_text(errors="replace").splitlines(keepends=True)[-40:]))
    return "\n".join(parts)


def settled(current) -> bool:
    return all(state not in ("queued", "running", "planned") for state, _ in current.values())


def result(study_dir: Path, key: str) -> dict:
    job = Study.open(study_dir).jobs[key]
    return json.loads((Path(job.spec.out_dir) / "result.json").read_text())


def test_study_on_slurm_waits_for_bases_and_resubmits_nothing(cluster, tmp_path):
    study_dir = make_study(tmp_path, "tiny", ["AnB", "BnA"])
    done = submit(study_dir, "slurm", echo=lambda *_: None)
    assert done.sbatch_calls == 3  # the two bases in one array, then one array per base
    current = wait_until(study_dir, settled)
    assert {state for state, _ in current.values()} == {"done"}, current
    study = Study.open(study_dir)
    for key, job in study.jobs.items():
        for dep in job.depends:
            assert result(study_dir, key)["started_at"] >= result(study_dir, dep)["finished_at"], (key, dep)
    # The results are those of the same job run in this process.
    spec = JobSpec.from_dict(study.jobs["random0/A3B/seed0"].spec.to_dict())
    again = run_job(JobSpec.from_dict({**spec.to_dict(), "out_dir": str(tmp_path / "again")}), progress=False)
    assert again.evaluations == result(study_dir, "random0/A3B/seed0")["evaluations"]
    # Resubmitting a finished study submits nothing.
    messages = []
    repeat = submit(study_dir, "slurm", echo=messages.append)
    assert repeat.sbatch_calls == 0 and repeat.arrays == [] and messages[0].startswith("nothing to submit (6 done")
    table, totals = status_table(study_dir)
    assert totals["done"] == 6 and "totals: done 6" in table


def test_status_reads_every_slurm_state(tmp_path):
    """squeue -t all: transitional states are live, ended ones are named in the failure."""
    spec = JobSpec(key="random0/baseA/seed0", dataset="synthetic", split=None, side=None, out_dir=str(tmp_path),
                   model=ModelConfig.small(12))
    job = PlannedJob(spec.key, "b", "random0", "baseA", "baseX", None, 0, (), spec)
    entry = ManifestEntry("slurm", job_id="5_1")
    assert job_state(job, entry, {"5_1": ("REQUEUED", "None")})[0] == "queued"
    assert job_state(job, entry, {"5_1": ("REQUEUE_HOLD", "JobHeldAdmin")})[0] == "queued"
    assert job_state(job, entry, {"5_1": ("COMPLETING", "None")})[0] == "running"
    assert job_state(job, entry, {"5_1": ("PENDING", "DependencyNeverSatisfied")})[0] == "blocked"
    state, detail = job_state(job, entry, {"5_1": ("OUT_OF_MEMORY", "OutOfMemory"), "5_2": ("RUNNING", "None")})
    assert state == "failed" and detail == "Slurm job 5_1 ended OUT_OF_MEMORY without a result"
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    state, detail = job_state(job, entry, {})
    assert state == "failed" and detail.startswith("Slurm job 5_1 ended without a result (killed")
    assert detail.endswith("its checkpoint is kept: `transferbench submit --retry-failed` resumes it")
    (tmp_path / "result.json").write_text(record_text(spec))
    assert job_state(job, entry, {"5_1": ("COMPLETED", "None")}) == ("done", "")


def test_requeued_job_resumes_from_its_checkpoint(cluster, tmp_path):
    study_dir = make_study(tmp_path, "requeue", ["baseA"], iterations=400, every=20)
    submit(study_dir, "slurm", echo=lambda *_: None)
    study = Study.open(study_dir)
    key = "random0/baseA/seed0"
    out_dir = Path(study.jobs[key].spec.out_dir)
    deadline = time.time() + 120
    while not (out_dir / "checkpoint.pt").exists():
        assert time.time() < deadline, "the job never wrote a checkpoint"
        time.sleep(0.2)
    assert states(study)[key][0] == "running"
    slurm_id = study.manifest()[key].job_id
    subprocess.run(["scontrol", "requeue", slurm_id], check=True)
    # Slurm holds a requeued job back for two minutes (reason BeginTime); once it is pending
    # again, release it so the test is quick.
    deadline = time.time() + 60
    while "PENDING" not in subprocess.run(["squeue", "-h", "-j", slurm_id, "-o", "%T"], capture_output=True, text=True,
                                          check=False).stdout:
        assert time.time() < deadline, "the requeued job never went back to pending"
        time.sleep(0.2)
    subprocess.run(["scontrol", "update", f"JobId={slurm_id}", "StartTime=now"], check=True, capture_output=True)
    current = wait_until(study_dir, settled)
    assert current[key][0] == "done", f"{current}\n{diagnosis(study_dir, key, cluster)}"
    record = result(study_dir, key)
    assert record["resumed_at"] and 0 < record["resumed_at"][0] < 400  # it resumed mid-run, not from scratch
    spec = JobSpec.from_dict(study.jobs[key].spec.to_dict())
    whole = run_job(JobSpec.from_dict({**spec.to_dict(), "out_dir": str(tmp_path / "whole")}), progress=False)
    assert record["evaluations"] == whole.evaluations and record["train_loss"] == whole.train_loss


def test_failed_job_is_reported_and_retried(cluster, tmp_path):
    data = tmp_path / "data-arrives-later"
    data.mkdir()
    study_dir = make_study(tmp_path, "failing", ["AnB"], data=data)
    submit(study_dir, "slurm", echo=lambda *_: None)
    key = "random0/baseA/seed0"
    current = wait_until(study_dir, lambda s: s[key][0] == "failed" and s["random0/A1B/seed0"][0] == "blocked")
    assert "no Fashion-MNIST IDX files" in current[key][1]
    table, totals = status_table(study_dir)
    assert totals["failed"] == 1 and totals["blocked"] == 2  # baseA fails; A1B and A3B would wait forever
    assert f"failed   {key}" in table and "log: " in table and "its base random0/baseA/seed0 failed" in table
    # Plain resubmission leaves them alone; --retry-failed cancels the blocked ones and re-runs all three.
    assert submit(study_dir, "slurm", echo=lambda *_: None).sbatch_calls == 0
    make_fashion_mnist(data)
    retry = submit(study_dir, "slurm", retry_failed=True, echo=lambda *_: None)
    assert sum(len(keys) for _, keys in retry.arrays) == 3
    current = wait_until(study_dir, settled)
    assert {state for state, _ in current.values()} == {"done"}, current
    assert (Path(Study.open(study_dir).jobs[key].spec.out_dir) / "error.attempt1.json").is_file()


def test_replanning_under_a_running_base_refuses_then_cancels_and_nothing_stale_is_collected(cluster, tmp_path):
    from transferbench.analysis.results import collect_rows
    from transferbench.errors import UserError
    from transferbench.study.plan import build_plan, write_plan

    study_dir = make_study(tmp_path, "replan", ["AnB"], iterations=3000, every=500)
    submit(study_dir, "slurm", echo=lambda *_: None)
    base = "random0/baseA/seed0"
    wait_until(study_dir, lambda s: s[base][0] == "running")
    config = tmp_path / "replan.toml"
    config.write_text(config.read_text().replace("lr = 0.05", "lr = 0.02").replace("iterations = 3000", "iterations = 12")
                      .replace("eval_every = 500", "eval_every = 4").replace("checkpoint_every = 500", "checkpoint_every = 4"))
    with pytest.raises(UserError, match="still queued or running under the old plan"):
        write_plan(build_plan(config, tmp_path / "jobs"), echo=lambda *_: None)
    changes = write_plan(build_plan(config, tmp_path / "jobs"), echo=lambda *_: None, cancel_changed=True)
    assert len(changes["changed"]) == 3  # the base and both jobs that copy from it
    assert {state for state, _ in states(Study.open(study_dir)).values()} == {"planned"}
    submit(study_dir, "slurm", echo=lambda *_: None)
    current = wait_until(study_dir, settled)
    assert {state for state, _ in current.values()} == {"done"}, current
    study = Study.open(study_dir)
    rows, _ = collect_rows(study_dir)
    assert {r.key: r.config_hash for r in rows} == {key: job.config_hash for key, job in study.jobs.items()}
    for key in ("random0/A1B/seed0", "random0/A3B/seed0"):
        assert result(study_dir, key)["source"]["config_hash"] == study.jobs[base].config_hash


def _slurm_submit_at_once(study_dir, slurm_conf, barrier, queue):
    os.environ["SLURM_CONF"] = slurm_conf
    barrier.wait()
    queue.put(submit(study_dir, "slurm", echo=lambda *_: None).sbatch_calls)


def test_two_submits_at_the_same_instant_queue_every_job_once(cluster, tmp_path):
    import multiprocessing

    study_dir = make_study(tmp_path, "twice", ["AnB"])
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_slurm_submit_at_once, args=(study_dir, os.environ["SLURM_CONF"], barrier, queue))
                 for _ in range(2)]
    for process in processes:
        process.start()
    calls = sorted(queue.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    assert calls == [0, 2]  # one submit made the two sbatch calls (bases, then the array after them); the other none
    current = wait_until(study_dir, settled)
    assert {state for state, _ in current.values()} == {"done"}, current
    logs = list((study_dir / "slurm").glob("*_log.out"))
    assert len(logs) == 3, logs  # each job ran once


def test_the_imagenet_pack_is_the_first_job_of_the_graph(cluster, tmp_path):
    """A study with a pack_dir: submit queues one pack job and the networks wait for it (afterok),
    so no network decodes ImageNet itself."""
    from PIL import Image

    from transferbench.study.plan import build_plan, write_plan
    from transferbench.tasks.classes import load_table

    root = tmp_path / "ILSVRC2012"
    for part in ("train", "val"):
        for index, wnid in enumerate(c.wnid for c in load_table("imagenet1k").classes):
            (root / part / wnid).mkdir(parents=True)
            Image.new("RGB", (40, 30), (index % 256, 80, 160)).save(root / part / wnid / f"{wnid}_0.JPEG")
    config = tmp_path / "inet.toml"
    config.write_text(f"""
[study]
name = "inet"
dataset = "imagenet1k"
data_root = "{root}"
pack_dir = "{tmp_path / 'pack'}"

[model]
arch = "small"
num_classes = 1000
conv_widths = [4, 4, 4, 4, 4]
fc_width = 8
init = "kaiming"

[train]
batch_size = 8
iterations = 2
eval_every = 2
checkpoint_every = 2
resize = 32
crop = 28

[slurm]
cpus = 1
time_min = 10
device = "cpu"

[[block]]
splits = ["all"]
networks = ["base"]
""")
    plan = build_plan(config, tmp_path / "jobs")
    write_plan(plan, echo=lambda *_: None)
    messages = []
    submitted = submit(plan.study_dir, "slurm", echo=messages.append)
    assert submitted.sbatch_calls == 2 and any("builds the ImageNet pack first" in m for m in messages)
    current = wait_until(plan.study_dir, settled)
    assert {state for state, _ in current.values()} == {"done"}, current
    packs = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "pack").glob("*.npy") if ".mean" not in p.name)
    assert packs == ["train", "val"]  # built once each, by the pack job
    record = json.loads((plan.study_dir / "runs" / "all" / "base" / "seed0" / "result.json").read_text())
    built = max(p.stat().st_mtime for p in (tmp_path / "pack").glob("*.npy"))
    assert record["status"] == "done" and record["started_at"] >= built - 1  # it started after the pack was whole


def test_a_fused_study_runs_its_groups_as_array_tasks(cluster, tmp_path):
    study_dir = tiny_study(tmp_path, "fused", ["AnB", "BnB"], [1, 3])
    plan = json.loads((study_dir / "plan.json").read_text())
    plan["config"]["study"]["fuse"] = True  # as `plan --fuse` writes it
    (study_dir / "plan.json").write_text(json.dumps(plan))
    done = submit(study_dir, "slurm", echo=lambda *_: None)
    # the two bases (one stream each), then the four networks trained on side B in one task
    assert done.sbatch_calls == 2 and done.units == 3 and done.tasks == [2, 1]
    current = wait_until(study_dir, settled)
    assert {state for state, _ in current.values()} == {"done"}, current
    manifest = Study.open(study_dir).manifest()
    group = {manifest[f"random0/{net}/seed0"].job_id for net in ("A1B", "A3B", "B1B", "B3B")}
    assert len(group) == 1  # one array task for the group; status still shows one line per network
    assert status_table(study_dir)[1]["done"] == 6
    spec = JobSpec.from_dict(Study.open(study_dir).jobs["random0/A3B/seed0"].spec.to_dict())
    again = run_job(JobSpec.from_dict({**spec.to_dict(), "out_dir": str(tmp_path / "again")}), progress=False)
    assert again.evaluations == result(study_dir, "random0/A3B/seed0")["evaluations"]
