"""Where every job of a planned study stands, read from files: no Slurm accounting needed.

transferbench keeps its own manifest (``jobs/<study>/manifest.json``: job key ->
ManifestEntry) and reads outcomes from the files the worker writes (``result.json``, or
``error.json`` when the job raised). The executor that ran a job gives the live view of
what is queued or running (``squeue`` for Slurm, the process for local jobs).
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from transferbench.errors import UserError
from transferbench.fileio import atomic_write_text
from transferbench.schema.plan import ManifestEntry, PlanFile, PlannedJob
from transferbench.schema.config import SlurmSettings, StudySettings
from transferbench.schema.health import EXCLUDED, HEALTH_STATES, Health, HealthSettings, judge_record
from transferbench.schema.loader import build
from transferbench.schema.record import ResultRecord

STATES = ("done", "running", "queued", "planned", "blocked", "failed", "unknown")


@dataclass
class Study:
    """A planned study on disk: its plan, its manifest, its settings."""

    directory: Path
    plan: PlanFile

    @staticmethod
    def open(directory: Path) -> "Study":
        directory = Path(directory).resolve()
        return Study(directory, PlanFile.read(directory))

    @property
    def name(self) -> str:
        return self.plan.study

    @property
    def jobs(self) -> dict[str, PlannedJob]:
        return self.plan.jobs

    @functools.cached_property
    def slurm(self) -> SlurmSettings:
        return build(SlurmSettings, self.plan.config.get("slurm", {}), "slurm", str(self.directory / "plan.json"))

    @functools.cached_property
    def settings(self) -> StudySettings:
        """The study's [study] table, as planned."""
        return build(StudySettings, self.plan.config["study"], "study", str(self.directory / "plan.json"))

    @functools.cached_property
    def health(self) -> HealthSettings:
        """The study's health thresholds (its config's [health] table)."""
        return build(HealthSettings, self.plan.config.get("health", {}), "health", str(self.directory / "plan.json"))

    @property
    def manifest_path(self) -> Path:
        return self.directory / "manifest.json"

    def manifest(self) -> dict[str, ManifestEntry]:
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{self.manifest_path} does not parse ({exc}); restore it or delete it to forget submissions") from exc
        if not isinstance(data, dict):
            raise UserError(f"{self.manifest_path} is not a table of jobs; restore it or delete it to forget submissions")
        return {key: ManifestEntry.from_dict(entry, str(self.manifest_path)) for key, entry in data.items()}

    def save_manifest(self, manifest: dict[str, ManifestEntry]) -> None:
        body = {key: entry.to_dict() for key, entry in manifest.items()}
        atomic_write_text(self.manifest_path, json.dumps(body, indent=1, sort_keys=True) + "\n")


def order_jobs(jobs: dict[str, PlannedJob]) -> list[str]:
    """Keys in dependency order (bases before the jobs that copy them), stable within a level."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(key: str) -> None:
        if key in seen:
            return
        seen.add(key)
        for dep in jobs[key].depends:
            visit(dep)
        done.append(key)

    for key in jobs:
        visit(key)
    return done


# ---------------------------------------------------------------------------- one job

def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def read_record(job: PlannedJob) -> ResultRecord | None:
    """The job's record if it wrote one for its current spec; a UserError if the file is corrupt."""
    return ResultRecord.read(job.out_dir / "result.json", job.config_hash)


def finished(job: PlannedJob) -> tuple[str, str | None, ResultRecord | None] | None:
    """('done'|'failed', reason, the record if one was read) from the files the job wrote, or
    None if it wrote none yet."""
    try:
        record = read_record(job)
    except UserError as exc:
        return "failed", f"corrupt result record: {exc}", None
    if record is not None:
        return ("done", None, record) if record.status == "done" else ("failed", record.reason, record)
    error = _read_json(job.out_dir / "error.json")
    if isinstance(error, dict) and error.get("config_hash") == job.config_hash:
        return "failed", error.get("reason"), None
    return None


def outcome(job: PlannedJob) -> tuple[str, str | None] | None:
    """('done'|'failed', reason) from the files the job wrote, or None if it wrote none yet."""
    result = finished(job)
    return result[:2] if result is not None else None


def judge_study(study: Study, records: dict[str, ResultRecord]) -> dict[str, Health]:
    """The health of every finished network (``records``: job key -> its done record), judged
    with the study's thresholds; a network that copies from an excluded one is source_unhealthy."""
    verdicts: dict[str, Health] = {}
    for key in order_jobs(study.jobs):
        record = records.get(key)
        if record is None or record.status != "done":
            continue
        health = judge_record(record, study.health)
        bad = [dep for dep in study.jobs[key].depends if dep in verdicts and verdicts[dep].excluded]
        if bad and not health.excluded:
            health = Health("source_unhealthy", f"copies its layers from {bad[0]}, which is {verdicts[bad[0]].state.replace('_', ' ')}")
        unusable = source_unusable(study.jobs[key])  # another study's network, judged since
        if unusable and not health.excluded:
            health = Health("source_unhealthy", unusable)
        verdicts[key] = health
    return verdicts


def _other_study_source(job: PlannedJob) -> dict[str, Any] | None:
    """The result record of the network of another study that a cross-dataset job copies from
    (None: the job has no such source, or it has written no record yet)."""
    ref = job.spec.source_ref
    if ref is None or ref.name.startswith("source:"):
        return None
    record = _read_json(Path(job.spec.source_checkpoint).with_name("result.json"))
    return record if isinstance(record, dict) else None


def source_unusable(job: PlannedJob) -> str | None:
    """Why the network of another study that a cross-dataset job copies from must not be built on
    (it finished stalled or diverged, as its study judged it), or None."""
    record = _other_study_source(job)
    state = ((record or {}).get("health") or {}).get("state")
    if state in EXCLUDED:
        return (f"its source {job.spec.source_ref.name} is {state.replace('_', ' ')} (train it again in its study: "
                "submit --retry-stalled)")
    return None


def source_waiting(job: PlannedJob) -> str | None:
    """Why a cross-dataset job cannot start because of the network it copies from outside its plan
    (imported weights that are gone; another study's job not trained yet, or unusable), or None
    when that source is ready or the job has none."""
    ref = job.spec.source_ref
    if ref is None:
        return None
    weights = Path(job.spec.source_checkpoint)
    if ref.name.startswith("source:"):
        return None if weights.is_file() else f"its source weights {weights} are missing: plan again to import them"
    record = _other_study_source(job)
    if record is None or record.get("status") != "done" or not weights.is_file():
        return f"waits for its source {ref.name}, which is not trained yet (submit that study first)"
    return source_unusable(job)


def resumable(job: PlannedJob) -> str:
    checkpoint = job.out_dir / "checkpoint.pt"
    return "; its checkpoint is kept: `transferbench submit --retry-failed` resumes it" if checkpoint.is_file() else ""


LIVE_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}
# States of a job that has ended for good (squeue -t all lists them until MinJobAge passes).
# Every other state is queued: PENDING, REQUEUED, REQUEUE_HOLD, REQUEUE_FED, SUSPENDED,
# RESV_DEL_HOLD, CONFIGURING, ... (a job that will still run).
SLURM_ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
               "TIMEOUT", "REVOKED"}


def squeue_states() -> dict[str, tuple[str, str]]:
    """Slurm id (``123`` or ``123_4``) -> (state, reason) for every job of this user that slurmctld knows.

    ``-t all`` lists every state, including the transitional ones (REQUEUED, REQUEUE_HOLD,
    SUSPENDED, ...) that squeue's default filter leaves out and ended jobs until MinJobAge.
    """
    if shutil.which("squeue") is None:
        raise UserError("squeue is not on PATH: Slurm's client tools are missing; install slurm-client or use --executor local")
    user = os.environ.get("USER") or getpass.getuser()
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


def slurm_view() -> tuple[dict[str, tuple[str, str]] | None, str | None]:
    """(squeue's states, None), or (None, why Slurm could not be read)."""
    try:
        return squeue_states(), None
    except UserError as exc:
        return None, str(exc)


def slurm_state(job: PlannedJob, entry: ManifestEntry, live: dict[str, tuple[str, str]] | None,
                live_error: str | None) -> tuple[str, str]:
    """The state of a Slurm job that has not written a result, from squeue's view."""
    if live is None:
        return "unknown", f"Slurm job {entry.job_id}: {live_error}"
    slurm = live.get(entry.job_id)  # squeue -r lists every array task as <array>_<task>
    if slurm is None or slurm[0] in SLURM_ENDED:
        how = f"ended {slurm[0]}" if slurm else "ended"
        why = "" if slurm and slurm[0] in ("CANCELLED", "TIMEOUT", "OUT_OF_MEMORY") else " (killed, out of memory or time?)"
        return "failed", f"Slurm job {entry.job_id} {how} without a result{why}{resumable(job)}"
    state, reason = slurm
    bases = ", ".join(job.depends) or "its base"
    if reason == "DependencyNeverSatisfied":
        return "blocked", f"its base {bases} failed (Slurm job {entry.job_id} waits forever)"
    if state in LIVE_RUNNING:
        return "running", f"Slurm job {entry.job_id}"
    if reason == "Dependency":
        return "queued", f"Slurm job {entry.job_id} pending: waits for {bases}"
    return "queued", f"Slurm job {entry.job_id} {state.lower()} ({reason})"


def process_state(job: PlannedJob, entry: ManifestEntry, live: None = None, live_error: str | None = None) -> tuple[str, str]:
    """Local and debug executors run in the foreground: a started job without a result is
    running while its process lives, and was interrupted otherwise."""
    if entry.pid and _alive(entry.pid):
        return "running", f"local process {entry.pid}"
    return "failed", f"interrupted before it wrote a result (its executor stopped){resumable(job)}"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, ended but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): the signal test is all there is
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


# executor name -> (how to read its live view once per status, the state of one of its jobs)
LIVE_VIEWS: dict[str, tuple[Callable[[], tuple[Any, str | None]], Callable[..., tuple[str, str]]]] = {
    "slurm": (slurm_view, slurm_state),
    "local": (lambda: (None, None), process_state),
    "debug": (lambda: (None, None), process_state),
}


def job_state(job: PlannedJob, entry: ManifestEntry | None, live: Any = None, live_error: str | None = None,
              records: dict[str, ResultRecord] | None = None) -> tuple[str, str]:
    """(state, detail): planned, queued, running, blocked, done, failed, or unknown. ``live`` is
    the live view of the executor that ran the job (``LIVE_VIEWS``); the record read, if any,
    goes into ``records``."""
    result = finished(job)
    if result is not None:
        state, reason, record = result
        if records is not None and record is not None:
            records[job.key] = record
        return state, reason or ""
    if entry is None:
        return "planned", source_waiting(job) or ""
    state = LIVE_VIEWS[entry.executor][1](job, entry, live, live_error)
    if state[0] == "failed" and outcome(job) is not None:  # it finished between the two reads
        return job_state(job, entry, live, live_error, records)
    return state


def states(study: Study, need_live: bool = True, records: dict[str, ResultRecord] | None = None) -> dict[str, tuple[str, str]]:
    """Every job's (state, detail); each executor's live view is read once. The records read
    (each once) go into ``records`` when given."""
    manifest = study.manifest()
    unknown = sorted({entry.executor for entry in manifest.values()} - set(LIVE_VIEWS))
    if unknown:
        raise UserError(f"{study.manifest_path} names executor {unknown[0]!r}; valid: {', '.join(LIVE_VIEWS)}")
    views = {name: LIVE_VIEWS[name][0]() if need_live else (None, "not read")
             for name in {entry.executor for entry in manifest.values()}}
    current = {}
    for key, job in study.jobs.items():
        entry = manifest.get(key)
        live, error = views[entry.executor] if entry else (None, None)
        current[key] = job_state(job, entry, live, error, records)
    return current


def log_path(study: Study, key: str, entry: ManifestEntry | None) -> str:
    """Where a job's output went: submitit's stdout, with the traceback in its stderr twin."""
    if entry and entry.log:
        return f"{entry.log} (traceback: {entry.log[:-4]}.err)" if entry.log.endswith(".out") else entry.log
    return str(study.jobs[key].out_dir / "log.txt")


def status_table(study_dir: Path, every: bool = False) -> tuple[str, dict[str, int]]:
    """The status report: a line per job that is not done and healthy (``every``: per job), and
    the totals. Slurm being unreachable is said once, not on every line."""
    study = Study.open(study_dir)
    manifest = study.manifest()
    records: dict[str, ResultRecord] = {}
    current = states(study, records=records)
    health = judge_study(study, records)
    totals = {state: 0 for state in STATES}
    flagged = {state: 0 for state in HEALTH_STATES}
    lines, unreachable = [], None
    for key, (state, detail) in current.items():
        totals[state] += 1
        verdict = health.get(key)
        if verdict is not None and verdict.state != "healthy":
            flagged[verdict.state] += 1
            use = "left out of means" if verdict.excluded else "kept in means"
            lines.append(f"  {state:8s} {key:32s} {verdict.state} ({use}): {verdict.reason}")
        elif state == "done" and every:
            lines.append(f"  {state:8s} {key:32s} {verdict.state if verdict else ''}")
        if state == "unknown":
            where, _, unreachable = detail.partition(": ")
            lines.append(f"  {state:8s} {key:32s} {where}")
        elif state in ("failed", "blocked", "running", "queued") or (every and state == "planned"):
            extra = f"  log: {log_path(study, key, manifest.get(key))}" if state == "failed" else ""
            lines.append(f"  {state:8s} {key:32s} {detail}{extra}")
    rank = {state: i for i, state in enumerate(STATES)}
    lines.sort(key=lambda line: rank[line.split()[0]])
    header = f"study {study.name} ({study.directory}): {len(current)} jobs"
    counts = "  ".join(f"{state} {count}" for state, count in totals.items() if count)
    if any(flagged.values()):
        counts += " (" + ", ".join(f"{count} {state.replace('_', ' ')}" for state, count in flagged.items() if count) + ")"
        if flagged["stalled"]:
            counts += "; `transferbench submit --retry-stalled` trains stalled networks again with another seed"
    footer = [f"totals: {counts}"] + ([f"the state of {totals['unknown']} jobs is unknown: {unreachable}"] if unreachable else [])
    totals.update({f"health:{state}": count for state, count in flagged.items()})
    return "\n".join([header, *lines, *footer]) + "\n", totals
