"""Running a planned study: executors, the manifest, and where every job stands.

transferbench keeps its own manifest (``jobs/<study>/manifest.json``: job key -> executor,
Slurm id, log, attempt) and reads outcomes from the files the worker writes
(``result.json``, or ``error.json`` when the job raised), with ``squeue`` as the live view
of what is queued or running. It never needs ``sacct``, so it works with accounting off.

Slurm arrays and dependencies: all tasks of one array share one dependency string, so jobs
are grouped by *what they wait for*. Jobs with nothing to wait for form one array; every
transfer job that copies from the same base network forms one array whose dependency is
``afterok`` on exactly that base's array task (``afterok:<array>_<task>``). The paper's
grid of 170 networks is 11 sbatch calls, and no job waits for a base it does not use.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferbench.errors import UserError
from transferbench.fileio import atomic_write_text
from transferbench.plan import read_plan

EXECUTORS = ("slurm", "local", "debug")
LIVE_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}
# States of a job that has ended for good (squeue -t all lists them until MinJobAge passes).
# Every other state is queued: PENDING, REQUEUED, REQUEUE_HOLD, REQUEUE_FED, SUSPENDED,
# RESV_DEL_HOLD, CONFIGURING, ... (a job that will still run).
SLURM_ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
               "TIMEOUT", "REVOKED"}


class TaskFailed(Exception):
    """A job ended without a usable result; its reason is in error.json or result.json."""


# ---------------------------------------------------------------------------- the study on disk

@dataclass
class Study:
    directory: Path
    plan: dict[str, Any]

    @staticmethod
    def open(directory: Path) -> Study:
        directory = Path(directory).resolve()
        return Study(directory, read_plan(directory))

    @functools.cached_property
    def jobs(self) -> dict[str, dict[str, Any]]:
        return {job["key"]: job for job in self.plan["jobs"]}

    @property
    def slurm_config(self) -> dict[str, Any]:
        return dict(self.plan["config"].get("slurm", {}))

    @property
    def manifest_path(self) -> Path:
        return self.directory / "manifest.json"

    def manifest(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{self.manifest_path} does not parse ({exc}); restore it or delete it to forget submissions") from exc

    def save_manifest(self, manifest: dict[str, dict[str, Any]]) -> None:
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def order_jobs(jobs: dict[str, dict[str, Any]]) -> list[str]:
    """Keys in dependency order (bases before the jobs that copy them), stable within a level."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(key: str) -> None:
        if key in seen:
            return
        seen.add(key)
        for dep in jobs[key]["depends"]:
            visit(dep)
        done.append(key)

    for key in jobs:
        visit(key)
    return done


# ---------------------------------------------------------------------------- one job

def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def outcome(job: dict[str, Any]) -> tuple[str, str | None] | None:
    """('done'|'failed', reason) from the files the job wrote, or None if it wrote none yet."""
    out_dir = Path(job["out_dir"])
    result = _read_json(out_dir / "result.json")
    if result is not None and result.get("config_hash") == job["config_hash"]:
        return ("done", None) if result.get("status") == "done" else ("failed", result.get("reason"))
    error = _read_json(out_dir / "error.json")
    if error is not None and error.get("config_hash") == job["config_hash"]:
        return "failed", error.get("reason")
    return None


def run_task(study_dir: str, key: str, device: str | None = None) -> str:
    """Run one planned job: what a Slurm array task, a local worker or the debug executor calls.

    Writes error.json (atomically) when the job raises, so the failure and its reason are on
    disk even where Slurm accounting is off. A timeout warning (SIGUSR2) or a preemption or
    requeue (SIGTERM) checkpoints the job; after a timeout warning the job requeues itself.
    """
    from transferbench.train import JobSpec, StopRequested, run_job

    study = Study.open(Path(study_dir))
    job = study.jobs.get(key)
    if job is None:
        raise UserError(f"{key} is not a job of {study_dir}")
    spec = JobSpec.from_dict(job["spec"], f"{study_dir}/plan.json")
    if device is None:
        import torch

        device = study.slurm_config.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    out_dir = Path(spec.out_dir)
    (out_dir / "error.json").unlink(missing_ok=True)
    try:
        record = run_job(spec, device, progress=sys.stderr.isatty())
    except StopRequested as stop:
        if stop.signum == signal.SIGUSR2 and os.environ.get("SLURM_JOB_ID"):
            task = os.environ.get("SLURM_ARRAY_TASK_ID")
            slurm_id = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{task}" if task else os.environ["SLURM_JOB_ID"]
            subprocess.run(["scontrol", "requeue", slurm_id], check=False)
        raise
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        atomic_write_text(out_dir / "error.json", json.dumps({
            "key": key, "config_hash": job["config_hash"], "reason": reason,
            "traceback": traceback.format_exc()[-4000:], "host": os.uname().nodename,
            "slurm_job": os.environ.get("SLURM_JOB_ID"), "time": time.time()}, indent=1) + "\n")
        raise
    if record["status"] != "done":
        raise TaskFailed(f"{key}: {record['reason']}")
    return key


# ---------------------------------------------------------------------------- Slurm's live view

def squeue_states() -> dict[str, tuple[str, str]]:
    """Slurm id (``123`` or ``123_4``) -> (state, reason) for every job of this user that slurmctld knows.

    ``-t all`` lists every state, including the transitional ones (REQUEUED, REQUEUE_HOLD,
    SUSPENDED, ...) that squeue's default filter leaves out and ended jobs until MinJobAge.
    """
    if shutil.which("squeue") is None:
        raise UserError("squeue is not on PATH: Slurm's client tools are missing; install slurm-client or use --executor local")
    user = os.environ.get("USER") or __import__("getpass").getuser()
    try:
        result = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-u", user, "-o", "%i|%T|%r"], capture_output=True, text=True,
                                timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise UserError("squeue did not answer in 60 s: is slurmctld up? (scontrol ping)") from None
    if result.returncode:
        raise UserError(f"Slurm is unreachable: squeue said {result.stderr.strip() or result.returncode}; "
                        "start slurmctld or check `scontrol ping`")
    states = {}
    for line in result.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states


def job_state(job: dict[str, Any], entry: dict[str, Any] | None, live: dict[str, tuple[str, str]] | None,
              live_error: str | None = None) -> tuple[str, str]:
    """(state, detail): planned, queued, running, blocked, done, failed, or unknown."""
    finished = outcome(job)
    if finished is not None:
        state, reason = finished
        return state, reason or ""
    if entry is None:
        return "planned", ""
    if entry["executor"] == "slurm":
        if live is None:
            return "unknown", f"Slurm job {entry['job_id']}: {live_error}"
        slurm = live.get(entry["job_id"])  # squeue -r lists every array task as <array>_<task>
        if slurm is None or slurm[0] in SLURM_ENDED:
            if outcome(job) is not None:  # it finished between the two reads
                return job_state(job, entry, live)
            how = f"ended {slurm[0]}" if slurm else "ended"
            why = "" if slurm and slurm[0] in ("CANCELLED", "TIMEOUT", "OUT_OF_MEMORY") else " (killed, out of memory or time?)"
            return "failed", f"Slurm job {entry['job_id']} {how} without a result{why}{_resumable(job)}"
        state, reason = slurm
        if reason == "DependencyNeverSatisfied":
            return "blocked", f"its base failed (Slurm job {entry['job_id']} waits forever)"
        if state in LIVE_RUNNING:
            return "running", f"Slurm job {entry['job_id']}"
        return "queued", f"Slurm job {entry['job_id']} {state.lower()} ({reason})"
    # local and debug executors run in the foreground: a started job without a result is running
    # while its process lives, and was interrupted otherwise
    pid = entry.get("pid")
    if pid and _alive(pid):
        return "running", f"local process {pid}"
    return "failed", f"interrupted before it wrote a result (its executor stopped){_resumable(job)}"


def _resumable(job: dict[str, Any]) -> str:
    checkpoint = Path(job["out_dir"]) / "checkpoint.pt"
    return "; its checkpoint is kept: submit again to resume" if checkpoint.is_file() else ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def states(study: Study, need_live: bool = True) -> dict[str, tuple[str, str]]:
    manifest = study.manifest()
    live, live_error = None, None
    if need_live and any(e.get("executor") == "slurm" for e in manifest.values()):
        try:
            live = squeue_states()
        except UserError as exc:
            live_error = str(exc)
    return {key: job_state(job, manifest.get(key), live, live_error) for key, job in study.jobs.items()}


def log_path(study: Study, key: str, entry: dict[str, Any] | None) -> str:
    if entry and entry.get("log"):
        return entry["log"]
    return str(Path(study.jobs[key]["out_dir"]) / "log.txt")


# ---------------------------------------------------------------------------- submit

@dataclass
class Submission:
    """What one submit did or would do."""

    arrays: list[tuple[str, list[str]]]  # (dependency description, keys) per sbatch call
    skipped: dict[str, str]  # key -> why it is not submitted
    sbatch_calls: int = 0


def select_jobs(study: Study, current: dict[str, tuple[str, str]], retry_failed: bool) -> tuple[list[str], dict[str, str]]:
    """Which jobs to submit, in dependency order, and why the others are left alone."""
    jobs = study.jobs
    chosen: list[str] = []
    skipped: dict[str, str] = {}
    for key in order_jobs(jobs):
        state, detail = current[key]
        if state == "planned":
            chosen.append(key)
        elif state in ("failed", "blocked") and retry_failed:
            chosen.append(key)
        elif state in ("failed", "blocked"):
            skipped[key] = f"{state}: {detail} (use --retry-failed to run it again)"
        elif state == "unknown":
            skipped[key] = detail
        else:
            skipped[key] = state + (f": {detail}" if detail else "")
    chosen_set = set(chosen)
    for key in list(chosen):
        for dep in jobs[key]["depends"]:
            dep_state = current[dep][0]
            if dep not in chosen_set and dep_state in ("failed", "blocked", "unknown"):
                chosen.remove(key)
                chosen_set.discard(key)
                skipped[key] = f"waits for {dep}, which is {dep_state} (use --retry-failed)"
                break
    return chosen, skipped


def _clear_failure(job: dict[str, Any], attempt: int) -> None:
    out_dir = Path(job["out_dir"])
    for name in ("result.json", "error.json"):
        path = out_dir / name
        if path.is_file():
            path.rename(out_dir / f"{path.stem}.attempt{attempt}.json")


def group_arrays(study: Study, chosen: list[str],
                 current: dict[str, tuple[str, str]]) -> list[tuple[tuple[str, ...], list[str]]]:
    """Group jobs by the base jobs they must wait for (those not done yet); one array per group."""
    jobs = study.jobs
    groups: dict[tuple[str, ...], list[str]] = {}
    for key in chosen:
        waits = tuple(dep for dep in jobs[key]["depends"] if current[dep][0] != "done")
        groups.setdefault(waits, []).append(key)
    # arrays without waits first, then in the order of their bases
    return sorted(groups.items(), key=lambda item: (len(item[0]) > 0, chosen.index(item[1][0])))


def slurm_parameters(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = {**config, **{k: v for k, v in overrides.items() if v is not None}}
    params: dict[str, Any] = {"job_name": "transferbench", "time": int(merged.get("time_min", 60)),
                              "cpus_per_task": int(merged.get("cpus", 1)), "ntasks_per_node": 1,
                              "array_parallelism": int(merged.get("array_parallelism", 256)),
                              "signal_delay_s": int(merged.get("signal_delay_s", 120)),
                              "additional_parameters": {"requeue": True}, "wckey": ""}
    if merged.get("gpus"):
        params["gpus_per_node"] = int(merged["gpus"])
    if merged.get("mem_gb"):
        params["mem"] = f"{int(merged['mem_gb'])}G"
    for name in ("partition", "account", "qos"):
        if merged.get(name):
            params[name] = str(merged[name])
    return params


def _warn_if_code_changes(study: Study) -> None:
    from transferbench.train import _git_commit

    commit = _git_commit()
    if commit and commit.endswith("+dirty"):
        warnings.warn("the transferbench checkout has uncommitted changes: queued jobs import the code as it is when they "
                      "start, so commit first (each result records the commit it ran)", stacklevel=2)


def submit(study_dir: Path, executor: str = "slurm", retry_failed: bool = False, dry_run: bool = False,
           overrides: dict[str, Any] | None = None, workers: int | None = None, echo=print) -> Submission:
    if executor not in EXECUTORS:
        raise UserError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    study = Study.open(study_dir)
    manifest = study.manifest()
    current = states(study)
    unknown = [detail for state, detail in current.values() if state == "unknown"]
    if unknown and executor == "slurm" and not dry_run:
        raise UserError(unknown[0].split(": ", 1)[-1])
    chosen, skipped = select_jobs(study, current, retry_failed)
    groups = group_arrays(study, chosen, current)
    submission = Submission([(", ".join(w) or "nothing", keys) for w, keys in groups], skipped)
    if dry_run or not chosen:
        _describe(submission, executor, echo, dry_run)
        return submission
    _warn_if_code_changes(study)
    blocked = [key for key in chosen if current[key][0] == "blocked"]
    if blocked:
        subprocess.run(["scancel", *[manifest[k]["job_id"] for k in blocked]], check=False, capture_output=True)
    for key in chosen:
        if current[key][0] in ("failed", "blocked"):
            _clear_failure(study.jobs[key], manifest.get(key, {}).get("attempt", 1))
    if executor == "slurm":
        _submit_slurm(study, groups, manifest, overrides or {}, submission)
    elif executor == "local":
        _run_local(study, chosen, manifest, workers, echo)
    else:
        _run_debug(study, chosen, manifest, echo)
    _describe(submission, executor, echo, dry_run)
    return submission


def _describe(submission: Submission, executor: str, echo, dry_run: bool) -> None:
    count = sum(len(keys) for _, keys in submission.arrays)
    if not count:
        reasons: dict[str, int] = {}
        for why in submission.skipped.values():
            reasons[why.split(":")[0].split(" (")[0]] = reasons.get(why.split(":")[0].split(" (")[0], 0) + 1
        summary = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        echo(f"nothing to submit ({summary or 'no jobs'})")
        return
    verb = "would submit" if dry_run else ("submitted" if executor == "slurm" else "ran")
    if executor == "slurm":
        echo(f"{verb} {count} jobs in {len(submission.arrays)} Slurm arrays ({len(submission.arrays)} sbatch calls):")
        for waits, keys in submission.arrays:
            shown = ", ".join(keys[:3]) + (f", ... ({len(keys)} tasks)" if len(keys) > 3 else "")
            echo(f"  after {waits}: {shown}")
    else:
        echo(f"{verb} {count} jobs with the {executor} executor")
    if dry_run:
        for key, why in list(submission.skipped.items())[:20]:
            echo(f"  skip {key}: {why}")
        if len(submission.skipped) > 20:
            echo(f"  ... and {len(submission.skipped) - 20} more skipped")


def _submit_slurm(study: Study, groups, manifest: dict[str, dict[str, Any]], overrides: dict[str, Any],
                  submission: Submission) -> None:
    import submitit

    for tool in ("sbatch", "squeue", "scontrol"):
        if shutil.which(tool) is None:
            raise UserError(f"{tool} is not on PATH; install Slurm's client tools or use --executor local")
    config = study.slurm_config
    folder = Path(overrides.pop("folder", None) or config.get("folder") or study.directory / "slurm")
    if str(folder.resolve()).startswith("/tmp/"):
        warnings.warn(f"the Slurm log folder {folder} is under /tmp: on a real cluster it must be on a filesystem that "
                      "every node shares", stacklevel=2)
    params = slurm_parameters(config, overrides)
    for waits, keys in groups:
        executor = submitit.SlurmExecutor(folder=folder)
        dependency = ":".join(manifest[dep]["job_id"] for dep in waits)
        executor.update_parameters(**params, dependency=f"afterok:{dependency}" if dependency else None)
        try:
            with executor.batch():
                handles = [executor.submit(run_task, str(study.directory), key) for key in keys]
        except Exception as exc:  # submitit raises plain exceptions for sbatch errors
            study.save_manifest(manifest)
            raise UserError(f"sbatch failed: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}; "
                            "check the [slurm] settings (partition, account, qos) and `sinfo`") from exc
        submission.sbatch_calls += 1
        for key, handle in zip(keys, handles):
            manifest[key] = {"executor": "slurm", "job_id": str(handle.job_id), "log": str(handle.paths.stdout),
                             "attempt": manifest.get(key, {}).get("attempt", 0) + 1, "submitted_at": time.time()}
        study.save_manifest(manifest)  # after every sbatch: an interrupted submit forgets nothing it submitted


def _run_debug(study: Study, chosen: list[str], manifest: dict[str, dict[str, Any]], echo) -> None:
    """In process, one after another, in dependency order: for tests and debugging."""
    failed: set[str] = set()
    for key in chosen:
        manifest[key] = {"executor": "debug", "attempt": manifest.get(key, {}).get("attempt", 0) + 1}
        study.save_manifest(manifest)
        if any(dep in failed for dep in study.jobs[key]["depends"]):
            failed.add(key)
            continue
        try:
            run_task(str(study.directory), key, device="cpu")
        except (TaskFailed, UserError) as exc:
            echo(f"{key} failed: {exc}")
            failed.add(key)


def _run_local(study: Study, chosen: list[str], manifest: dict[str, dict[str, Any]], workers: int | None, echo) -> None:
    """Run the graph on this machine with N worker processes, one GPU each when there are GPUs."""
    from tqdm import tqdm

    try:
        import torch

        gpus = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - a broken CUDA install means CPU
        gpus = 0
    workers = workers or max(1, gpus)
    if gpus and workers > gpus:
        raise UserError(f"--workers {workers} but this machine has {gpus} GPUs; each worker gets one GPU")
    jobs = study.jobs
    waiting = list(chosen)
    running: dict[str, tuple[subprocess.Popen, int]] = {}
    free_slots = list(range(workers))
    failed: set[str] = set()
    bar = tqdm(total=len(chosen), desc=f"{study.plan['study']}", unit="job")
    try:
        while waiting or running:
            for key in list(waiting):
                deps = jobs[key]["depends"]
                if any(dep in failed for dep in deps):
                    waiting.remove(key)
                    failed.add(key)
                    echo(f"{key}: not run, its base failed")
                    bar.update(1)
                elif free_slots and all(outcome(jobs[dep]) == ("done", None) for dep in deps):
                    slot = free_slots.pop(0)
                    waiting.remove(key)
                    env = dict(os.environ)
                    if gpus:
                        env["CUDA_VISIBLE_DEVICES"] = str(slot)
                    else:  # share the cores instead of every worker using all of them
                        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
                    out_dir = Path(jobs[key]["out_dir"])
                    out_dir.mkdir(parents=True, exist_ok=True)
                    log = open(out_dir / "log.txt", "ab")  # noqa: SIM115 - closed when the process ends
                    process = subprocess.Popen([sys.executable, "-m", "transferbench", "task", str(study.directory), key],
                                               stdout=log, stderr=subprocess.STDOUT, env=env)
                    log.close()
                    running[key] = (process, slot)
                    manifest[key] = {"executor": "local", "pid": process.pid, "log": str(out_dir / "log.txt"),
                                     "attempt": manifest.get(key, {}).get("attempt", 0) + 1, "submitted_at": time.time()}
                    study.save_manifest(manifest)
            for key, (process, slot) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[key]
                free_slots.append(slot)
                bar.update(1)
                state = outcome(jobs[key])
                if state != ("done", None):
                    failed.add(key)
                    echo(f"{key} failed: {state[1] if state else 'exit code ' + str(process.returncode)} "
                         f"(log: {manifest[key]['log']})")
            time.sleep(0.2)
    except KeyboardInterrupt:
        for process, _ in running.values():
            process.send_signal(signal.SIGTERM)  # they checkpoint and stop; submit again to resume
        for process, _ in running.values():
            process.wait()
        raise
    finally:
        bar.close()


# ---------------------------------------------------------------------------- status

def status_table(study_dir: Path) -> tuple[str, dict[str, int]]:
    study = Study.open(study_dir)
    manifest = study.manifest()
    current = states(study)
    order = ("done", "running", "queued", "planned", "blocked", "failed", "unknown")
    totals = {state: 0 for state in order}
    lines = []
    for key, (state, detail) in current.items():
        totals[state] += 1
        if state in ("failed", "blocked", "unknown", "running", "queued"):
            extra = f"  log: {log_path(study, key, manifest.get(key))}" if state in ("failed", "blocked") else ""
            lines.append(f"  {state:8s} {key:32s} {detail}{extra}")
    rank = {state: i for i, state in enumerate(order)}
    lines.sort(key=lambda line: rank[line.split()[0]])
    header = f"study {study.plan['study']} ({study.directory}): {len(current)} jobs"
    counts = "  ".join(f"{state} {count}" for state, count in totals.items() if count)
    return "\n".join([header, *lines, f"totals: {counts}"]) + "\n", totals
