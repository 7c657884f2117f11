"""Where every job of a planned study stands, read from files: no Slurm accounting needed.

transferbench keeps its own manifest (``jobs/<study>/manifest.json``: job key ->
ManifestEntry) and reads outcomes from the files the worker writes (``result.json``, or
``error.json`` when the job raised). The executor that ran a job gives the live view of what
is queued or running (``Executor.live_view`` and ``state``: squeue for Slurm, the process for
local jobs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transferbench.errors import UserError
from transferbench.schema.health import EXCLUDED, HEALTH_STATES, Health, judge_record
from transferbench.schema.plan import ManifestEntry, PlannedJob
from transferbench.schema.record import ResultRecord
from transferbench.study.executors import EXECUTORS
from transferbench.study.study import Study, finished, order_jobs, outcome, read_json

STATES = ("done", "running", "queued", "stopped", "planned", "blocked", "failed", "unknown")


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
    record = read_json(Path(job.spec.source_checkpoint).with_name("result.json"))
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


def job_state(job: PlannedJob, entry: ManifestEntry | None, live: Any = None, live_error: str | None = None,
              records: dict[str, ResultRecord] | None = None) -> tuple[str, str]:
    """(state, detail): planned, queued, running, blocked, done, failed, or unknown. ``live`` is
    the live view of the executor that ran the job (``Executor.live_view``); the record read, if
    any, goes into ``records``."""
    result = finished(job)
    if result is not None:
        state, reason, record = result
        if records is not None and record is not None:
            records[job.key] = record
        return state, reason or ""
    if entry is None:
        return "planned", source_waiting(job) or ""
    state = EXECUTORS[entry.executor].state(job, entry, live, live_error)
    if state[0] == "failed" and (stopped := stopped_by_signal(job)) is not None:
        return "stopped", stopped
    if state[0] == "failed" and outcome(job) is not None:  # it finished between the two reads
        return job_state(job, entry, live, live_error, records)
    return state


def states(study: Study, need_live: bool = True, records: dict[str, ResultRecord] | None = None) -> dict[str, tuple[str, str]]:
    """Every job's (state, detail); each executor's live view is read once. The records read
    (each once) go into ``records`` when given."""
    manifest = study.manifest()
    unknown = sorted({entry.executor for entry in manifest.values()} - set(EXECUTORS))
    if unknown:
        raise UserError(f"{study.manifest_path} names executor {unknown[0]!r}; valid: {', '.join(EXECUTORS)}")
    views = {name: EXECUTORS[name].live_view() if need_live else (None, "not read")
             for name in {entry.executor for entry in manifest.values()}}
    current = {}
    bases = {dep for job in study.jobs.values() for dep in job.depends}
    for key, job in study.jobs.items():
        entry = manifest.get(key)
        live, error = views[entry.executor] if entry else (None, None)
        current[key] = job_state(job, entry, live, error, records)
        if key in bases and current[key][0] == "done" and not (job.out_dir / "model.pt").is_file():
            current[key] = ("failed", WEIGHTS_GONE)
    return current


# A finished base whose weights were deleted (a scratch purge): the networks that copy from it cannot start.
WEIGHTS_GONE = ("done, but its weights model.pt are gone (deleted or purged), and networks copy from it; "
                "`transferbench submit --retry-failed` trains it again (its record is kept as an earlier attempt)")


def stopped_by_signal(job: PlannedJob) -> str | None:
    """Why a job that is no longer running stopped without a result, if a stop signal did it (it
    checkpointed: a plain submit resumes it), else None."""
    from transferbench.study.run import STOPPED

    stopped = read_json(job.out_dir / STOPPED)
    if not isinstance(stopped, dict) or stopped.get("config_hash") != job.config_hash:
        return None
    where = "resumes from its checkpoint" if stopped.get("checkpoint") else "starts again (it had no checkpoint yet)"
    return f"stopped by {stopped.get('reason')}; `transferbench submit` {where}"


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
        elif state in ("failed", "blocked", "running", "queued", "stopped") or (every and state == "planned"):
            extra = f"  log: {log_path(study, key, manifest.get(key))}" if state == "failed" else ""
            lines.append(f"  {state:8s} {key:32s} {detail}{extra}")
    rank = {state: i for i, state in enumerate(STATES)}
    lines.sort(key=lambda line: rank[line.split()[0]])
    header = f"study {study.name} ({study.directory}): {len(current)} jobs"
    counts = "  ".join(f"{state} {count}" for state, count in totals.items() if count)
    if any(flagged.values()):
        counts += " (" + ", ".join(f"{count} {state.replace('_', ' ')}" for state, count in flagged.items() if count) + ")"
        if flagged["stalled"]:
            counts += "; `transferbench submit --retry-stalled` trains stalled networks again from other random streams"
    footer = [f"totals: {counts}"] + ([f"the state of {totals['unknown']} jobs is unknown: {unreachable}"] if unreachable else [])
    totals.update({f"health:{state}": count for state, count in flagged.items()})
    return "\n".join([header, *lines, *footer]) + "\n", totals
