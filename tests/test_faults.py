"""Faults: a re-plan under a running job, two submits at once, a base that is not the one the plan
names, corrupt records, damaged checkpoints, file permissions, broken pipes. (The same races on
real Slurm: tests/test_slurm.py.)"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from tests import conftest
from transferbench.analysis.results import collect_rows
from transferbench.errors import UserError
from transferbench.schema.plan import ManifestEntry
from transferbench.study.submit import submit
from transferbench.study.lock import study_lock
from transferbench.study.plan import build_plan, write_plan
from transferbench.study.study import Study
from transferbench.study.status import states, status_table
from transferbench.worker.train import Trainer


def test_replanning_refuses_changed_jobs_that_still_run_and_cancels_them_when_asked(tmp_path):
    study_dir = conftest.tiny_study(tmp_path, "race", ["AnB"], [2])
    study = Study.open(study_dir)
    key = "random0/baseA/seed0"
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # stands in for its worker
    try:
        study.save_manifest({key: ManifestEntry("local", pid=worker.pid, log=str(tmp_path / "log.txt"))})
        assert states(study)[key][0] == "running"
        config = tmp_path / "race.toml"
        config.write_text(config.read_text().replace("lr = 0.05", "lr = 0.02"))
        before = (study_dir / "plan.json").read_text()
        with pytest.raises(UserError, match=r"changed jobs are still queued or running under the old plan "
                                             r"\(random0/baseA/seed0: running.*--cancel-changed"):
            write_plan(build_plan(config, tmp_path / "jobs"), echo=lambda *_: None)
        assert (study_dir / "plan.json").read_text() == before  # nothing written
        messages = []
        changes = write_plan(build_plan(config, tmp_path / "jobs"), echo=messages.append, cancel_changed=True)
        assert worker.wait(timeout=30) != 0  # SIGTERM
        assert "cancelled 1 changed jobs" in messages[0] and changes["changed"] == ["random0/A2B/seed0", "random0/baseA/seed0"]
        assert (study_dir / "plan.json").read_text() != before
    finally:
        worker.kill()


def _submit_at_once(study_dir, barrier, queue):
    barrier.wait()
    messages = []
    submit(study_dir, "debug", echo=messages.append)
    queue.put(messages)


def test_two_submits_at_the_same_instant_run_every_job_once(tmp_path):
    study_dir = conftest.tiny_study(tmp_path, "twice", ["AnB"], [2])
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_submit_at_once, args=(study_dir, barrier, queue)) for _ in range(2)]
    for process in processes:
        process.start()
    outputs = [queue.get(timeout=240) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    manifest = Study.open(study_dir).manifest()
    assert {entry.attempt for entry in manifest.values()} == {1}  # nobody submitted a job a second time
    texts = ["\n".join(m) for m in outputs]
    # one ran both; the other found them claimed (waiting or running in the first) or done, whatever the timing
    assert sum("ran 2 jobs" in t for t in texts) == 1 and sum("nothing to submit" in t for t in texts) == 1


def test_the_lock_names_its_holder_and_is_released_when_the_holder_dies(tmp_path):
    with study_lock(tmp_path, "submit"):
        with pytest.raises(UserError, match=r"transferbench submit \(pid \d+ on .*\) is changing .*; wait for it to end"):
            with study_lock(tmp_path, "plan"):
                pass
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from transferbench.study.lock import study_lock\n"
                               f"with study_lock({str(tmp_path)!r}, 'submit'):\n    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # kill -9: no clean-up ran, and the kernel released the lock
    holder.wait()
    with study_lock(tmp_path, "plan"):
        assert "pid" in (tmp_path / ".lock").read_text()


def test_a_worker_refuses_a_base_other_than_the_one_its_plan_names(tmp_path):
    study_dir = conftest.tiny_study(tmp_path, "source", ["AnB"], [2])
    submit(study_dir, "debug", echo=lambda *_: None)
    study = Study.open(study_dir)
    job = study.jobs["random0/A2B/seed0"]
    record = json.loads((job.out_dir / "result.json").read_text())
    base_hash = study.jobs["random0/baseA/seed0"].config_hash
    assert record["source"] == {"key": "random0/baseA/seed0", "config_hash": base_hash, "attempt": 1}
    (job.out_dir / "result.json").unlink()
    with pytest.raises(UserError, match=r"is not the base random0/baseA/seed0 this job's plan names .*re-planned or retrained"):
        Trainer(job.spec, progress=False, source={"key": "random0/baseA/seed0", "config_hash": "0" * 16, "attempt": 1})
    # the same spec retrained (submit --retry-stalled): another network, even with the same hash
    with pytest.raises(UserError, match=r"found spec \w+, attempt 1; the plan's: \w+, attempt 2"):
        Trainer(job.spec, progress=False, source={"key": "random0/baseA/seed0", "config_hash": base_hash, "attempt": 2})


@pytest.mark.parametrize("content", [b"[]", b"\x80\x81\xff\x00binary", b'{"key": "x", "status": "done"}', b'{"key": "x", "sta'])
def test_a_corrupt_record_is_shown_as_corrupt_and_the_rest_goes_on(tmp_path, content):
    study_dir = conftest.tiny_study(tmp_path, "corrupt", ["AnB"], [2])
    submit(study_dir, "debug", echo=lambda *_: None)
    bad = Study.open(study_dir).jobs["random0/A2B/seed0"].out_dir / "result.json"
    bad.write_bytes(content)
    table, totals = status_table(study_dir)
    assert totals["done"] == 1 and totals["failed"] == 1
    assert "random0/A2B/seed0" in table and f"corrupt result record: {bad}" in table and "out of memory" not in table
    rows, missing = collect_rows(study_dir)
    assert len(rows) == 1 and len(missing) == 1 and missing[0].startswith("random0/A2B/seed0 (corrupt result record")


def test_a_damaged_checkpoint_costs_one_interval_not_the_run(tmp_path, capsys):
    study_dir = conftest.tiny_study(tmp_path, "ckpt", ["baseA"], [1], iterations=12, every=4,
                                    extra="train = {keep_checkpoint = true}")
    submit(study_dir, "debug", echo=lambda *_: None)
    job = Study.open(study_dir).jobs["random0/baseA/seed0"]
    whole = json.loads((job.out_dir / "result.json").read_text())
    assert (job.out_dir / "checkpoint.prev.pt").is_file()  # the one before the last is kept
    for name in ("result.json", "model.pt"):
        (job.out_dir / name).unlink()
    checkpoint = job.out_dir / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # truncated
    record = Trainer(job.spec, progress=False).run()
    err = capsys.readouterr().err
    assert f"checkpoint {checkpoint} is unreadable" in err and "resumed from the previous checkpoint checkpoint.prev.pt" in err
    assert record.resumed_at == [8] and record.evaluations == whole["evaluations"]  # the same run, resumed at 8
    # Both damaged: named, moved aside, and the job trains from the start instead of failing on every retry.
    for name in ("result.json", "model.pt"):
        (job.out_dir / name).unlink()
    for path in (checkpoint, job.out_dir / "checkpoint.prev.pt"):
        path.write_bytes(b"not a checkpoint")
    record = Trainer(job.spec, progress=False).run()
    assert "training random0/baseA/seed0 from the start" in capsys.readouterr().err
    assert record.resumed_at == [] and record.evaluations == whole["evaluations"]
    assert (job.out_dir / "checkpoint.pt.corrupt").is_file()


def test_cli_rough_edges(tmp_path):
    top = subprocess.run([sys.executable, "-m", "transferbench", "--help"], capture_output=True, text=True, check=True)
    assert "SUPPRESS" not in top.stdout and "task" not in top.stdout.split("positional arguments")[1].split()[1::2]
    plot = subprocess.run([sys.executable, "-m", "transferbench", "plot", "--help"], capture_output=True, text=True, check=True)
    assert "%%" not in plot.stdout
    config = conftest.REPO / "configs" / "yosinski2014-full.toml"
    piped = subprocess.run(f"{sys.executable} -m transferbench plan {config} --jobs-dir {tmp_path} | head -1", shell=True,
                           capture_output=True, text=True, check=False)
    assert piped.stdout.startswith("planned ") and "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr
    study_dir = conftest.tiny_study(tmp_path, "rough", ["AnB"], [2])
    Study.open(study_dir).save_manifest({"random0/baseA/seed0": ManifestEntry("slurm", job_id="99")})
    status = subprocess.run([sys.executable, "-m", "transferbench", "status", str(study_dir), "--all"], capture_output=True,
                            text=True, env={**os.environ, "PATH": "/nonexistent"}, check=False)
    assert status.returncode == 3 and status.stdout.count("squeue is not on PATH") == 1  # said once, not per job
    assert "planned  random0/A2B/seed0" in status.stdout  # --all lists every job


def test_a_cut_results_csv_is_named_with_its_line_and_cell_count(tmp_path):
    from transferbench.analysis.results import read_csv

    whole = (conftest.REPO / "results" / "yosinski2014.csv").read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.csv"
    cut.write_text("".join(whole[:3]) + whole[3][:60])  # the fourth line ends mid-row
    with pytest.raises(UserError, match=r"cut.csv line 4: 5 cells where the header has 34; the file is cut or edited"):
        read_csv(cut)


def test_a_finished_job_keeps_no_checkpoint_unless_asked_and_plan_says_the_disk_it_needs(tmp_path):
    from transferbench.study.run import run_task

    study_dir = conftest.tiny_study(tmp_path, "disk", ["AnB"], [2])
    assert "disk: about 20.3 KB of final weights (model.pt, up to 10.2 KB each)" in (study_dir / "summary.txt").read_text()
    submit(study_dir, "debug", echo=lambda *_: None)
    job = Study.open(study_dir).jobs["random0/baseA/seed0"]
    assert sorted(p.name for p in job.out_dir.iterdir()) == ["model.pt", "result.json"]  # the checkpoints are spent
    size = job.spec.weights_bytes()
    assert size == 4 * (job.spec.model.parameter_count() + 28 * 28)  # the weights and the 28 x 28 mean image
    assert size < (job.out_dir / "model.pt").stat().st_size < size + 8000  # plus torch's zip wrapping
    from transferbench.worker.models import TransferNet

    assert job.spec.model.parameter_count() == sum(p.numel() for p in TransferNet(job.spec.model).parameters())
    # Run again (a requeue after the end): the result stands and nothing is trained.
    before = (job.out_dir / "result.json").stat().st_mtime_ns
    run_task(str(study_dir), job.key, device="cpu")
    assert (job.out_dir / "result.json").stat().st_mtime_ns == before
    kept = conftest.tiny_study(tmp_path / "kept", "kept", ["baseA"], [1], extra="train = {keep_checkpoint = true}")
    submit(kept, "debug", echo=lambda *_: None)
    assert (Study.open(kept).jobs["random0/baseA/seed0"].out_dir / "checkpoint.pt").is_file()


def test_more_local_workers_than_gpus_share_them_and_every_worker_gets_its_share_of_cores(tmp_path, monkeypatch):
    from transferbench.study import executors

    study = Study.open(conftest.tiny_study(tmp_path, "share", ["baseA"], [1]))
    key = next(iter(study.jobs))
    started = []

    class Recorded:
        pid = 1

        def __init__(self, command, stdout, stderr, env):
            started.append(env)

    monkeypatch.setattr(executors.subprocess, "Popen", Recorded)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(executors.os, "cpu_count", lambda: 16)
    manifest = {}
    for slot in range(3):
        executors.LocalExecutor._start(study, (key,), slot, 2, 4, manifest)
    assert [env["CUDA_VISIBLE_DEVICES"] for env in started] == ["0", "1", "0"]
    assert {env["OMP_NUM_THREADS"] for env in started} == {"4"}


def test_a_local_submit_does_not_hold_the_lock_while_it_trains(tmp_path):
    """submit decides and records under the study's lock, then trains without it: a status, a
    second submit or a plan is never held up by training."""
    import time

    study_dir = conftest.tiny_study(tmp_path, "unlocked", ["baseA"], [1], iterations=400, every=100)
    process = subprocess.Popen([sys.executable, "-m", "transferbench", "submit", str(study_dir), "--executor", "local"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and states(Study.open(study_dir))["random0/baseA/seed0"][0] != "running":
            time.sleep(0.2)
        assert states(Study.open(study_dir))["random0/baseA/seed0"][0] == "running"
        with study_lock(study_dir, "plan"):  # no wait: nobody holds it while the network trains
            pass
        messages = []
        submit(study_dir, "debug", echo=messages.append)
        assert messages == ["nothing to submit (1 running)"]
    finally:
        process.terminate()
        process.wait(timeout=120)


def test_ctrl_c_as_a_worker_starts_leaves_its_job_stopped_and_the_same_command_runs_it(tmp_path):
    """Ctrl-C reaches the whole foreground process group: a worker still importing dies before it
    can checkpoint or say why. Its job is stopped (not failed), and the same submit runs it."""
    import signal
    import time

    study_dir = conftest.tiny_study(tmp_path, "ctrlc", ["baseA"], [1], iterations=400, every=100)
    key = "random0/baseA/seed0"
    command = [sys.executable, "-m", "transferbench", "submit", str(study_dir), "--executor", "local"]
    # As in a terminal: SIGINT at its default (a shell starts background jobs, and so maybe this
    # test run, with SIGINT ignored, which every child would inherit).
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and Study.open(study_dir).manifest().get(key, ManifestEntry("local")).log is None:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)  # the worker has just been started
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    state, detail = states(Study.open(study_dir))[key]
    assert state == "stopped" and detail.startswith("stopped by SIGINT (Ctrl-C)"), (state, detail)
    messages = []
    submit(study_dir, "debug", echo=messages.append)
    assert states(Study.open(study_dir))[key][0] == "done"


def test_a_base_whose_weights_were_purged_is_failed_and_retrained(tmp_path):
    """A scratch purge deletes a finished base's model.pt: it is not done for its dependents, and
    --retry-failed trains it again, keeping the earlier record as an attempt."""
    from transferbench.study.status import WEIGHTS_GONE

    study_dir = conftest.tiny_study(tmp_path, "purged", ["AnB"], [2])
    submit(study_dir, "debug", echo=lambda *_: None)
    study = Study.open(study_dir)
    base = study.jobs["random0/baseA/seed0"]
    (base.out_dir / "model.pt").unlink()
    assert states(study)["random0/baseA/seed0"] == ("failed", WEIGHTS_GONE)
    assert "random0/baseA/seed0" in submit(study_dir, "debug", dry_run=True, echo=lambda *_: None).skipped
    submit(study_dir, "debug", retry_failed=True, echo=lambda *_: None)
    assert states(Study.open(study_dir))["random0/baseA/seed0"][0] == "done" and (base.out_dir / "model.pt").is_file()
    from transferbench.schema.record import read_attempts

    assert len(read_attempts(base.out_dir)) == 1  # the first training's record, kept
