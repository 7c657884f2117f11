"""What every job runs, wherever it runs: ``run_task`` (one job) and ``run_unit`` (one job or a
fused group), called by a Slurm array task, a local worker process or the debug executor. They
open the plan, train with the worker, and write ``error.json`` when a job raises, so a failure
and its reason are on disk even where Slurm accounting is off. ``build_packs`` is the ImageNet
pack job.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from transferbench.errors import UserError
from transferbench.fileio import atomic_write_text
from transferbench.schema.record import JobIdentity, read_attempts
from transferbench.study.fuse import Unit
from transferbench.study.study import Study, outcome


class TaskFailed(Exception):
    """A job ended without a usable result; its reason is in error.json or result.json."""


def source_identity(study: Study, job) -> dict[str, Any] | None:
    """The base a job copies from, as the plan names it now: its key, spec hash and attempt (a
    cross-dataset job's source: as its spec names it, an imported file's hash or another study's job)."""
    if job.spec.source_ref is not None:
        return job.spec.source_ref.expected()
    for dep in job.depends:
        base = study.jobs[dep]
        if job.spec.source_checkpoint and Path(job.spec.source_checkpoint) == base.out_dir / "model.pt":
            return {"key": dep, "config_hash": base.config_hash, "attempt": len(read_attempts(base.out_dir)) + 1}
    return None


def run_task(study_dir: str, key: str, device: str | None = None, on_stop: Callable[[Any], Any] | None = None) -> str:
    """Run one planned job: what a Slurm array task, a local worker or the debug executor calls.

    Writes error.json (atomically) when the job raises, so the failure and its reason are on
    disk even where Slurm accounting is off. A stop signal (a timeout warning, a preemption, a
    requeue, Ctrl-C) checkpoints the job; ``on_stop`` (the executor's: Slurm requeues the task
    after its timeout warning) is called before StopRequested is raised on.
    """
    from transferbench.worker.running import StopRequested

    study = Study.open(Path(study_dir))
    job = study.jobs.get(key)
    if job is None:
        raise UserError(f"{key} is not a job of {study_dir}")
    if outcome(job) == ("done", None):
        return key  # a finished job run again (a requeue after it ended): its result stands, nothing to train
    _starting(job)
    try:
        record = _trainer(study, job, device).run()
    except StopRequested as stop:
        _write_stopped(job, stop)
        if on_stop is not None:
            on_stop(stop)
        raise
    except KeyboardInterrupt:  # Ctrl-C before the loop caught its signals (loading data, say): a stop, not a failure
        mark_stopped(job, signal.SIGINT, BEFORE_TRAINING)
        raise
    except BaseException as exc:
        _write_error(job, exc)
        raise
    if record.status != "done":
        raise TaskFailed(f"{key}: {record.reason}")
    return key


def _trainer(study: Study, job, device: str | None, shared=None):
    """The worker's Trainer for a planned job: on the study's device (default: CUDA when
    visible), with its identity, health thresholds and the base its plan names; a progress
    bar on a terminal, else a log line per evaluation. ``shared``: see ``Trainer``."""
    from transferbench.worker.train import Trainer

    if device is None:
        import torch

        device = study.slurm.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tty = sys.stderr.isatty()
    return Trainer(job.spec, device, progress=tty, identity=_identity(study, job), health=study.health,
                   source=source_identity(study, job), shared=shared,
                   log=None if tty else lambda line: print(line, file=sys.stderr, flush=True))


def _identity(study: Study, job) -> JobIdentity:
    source_side = study.jobs[job.depends[0]].side if job.depends else "A" if job.spec.source_ref is not None else None
    return JobIdentity(study.name, job.split, job.network, job.seed, source_side, job.side if job.side not in (None, "all") else None)


STOPPED = "stopped.json"  # in a job's out_dir: a stop signal made it checkpoint; it resumes when run again


def _starting(job) -> None:
    """A job starting (again) leaves no earlier failure or stop behind."""
    for name in ("error.json", STOPPED):
        (job.out_dir / name).unlink(missing_ok=True)


def _write_stopped(job, stop) -> None:
    """stopped.json (atomically): the job stopped on a signal (Ctrl-C, preemption, a time limit)
    after writing its checkpoint; it is not a failure, and the next submit resumes it."""
    mark_stopped(job, stop.signum, str(stop))


def mark_stopped(job, signum: int, reason: str) -> None:
    """Record that ``job`` stopped on signal ``signum`` without a result (it resumes from its
    checkpoint, or starts again without one): not a failure, so the same command runs it again."""
    job.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(job.out_dir / STOPPED, json.dumps({
        "key": job.key, "config_hash": job.config_hash, "signal": signum, "reason": reason, "time": time.time(),
        "checkpoint": (job.out_dir / "checkpoint.pt").is_file()}, indent=1) + "\n")


def mark_unfinished_stopped(jobs, reason: str) -> None:
    """Ctrl-C reached ``jobs`` before their loop caught it: each that wrote neither a result nor a
    stop of its own is marked stopped by SIGINT, so the same command runs it again."""
    for job in jobs:
        if outcome(job) is None and not (job.out_dir / STOPPED).is_file():
            mark_stopped(job, signal.SIGINT, reason)


BEFORE_TRAINING = "SIGINT (Ctrl-C) before training began"


def _write_error(job, exc: BaseException) -> None:
    """error.json (atomically): the failure and its reason on disk even where Slurm accounting is off."""
    from transferbench.errors import file_error

    reason = (str(exc) if isinstance(exc, UserError) else str(file_error(exc)) if isinstance(exc, OSError)
              else f"{type(exc).__name__}: {exc}")
    atomic_write_text(job.out_dir / "error.json", json.dumps({
        "key": job.key, "config_hash": job.config_hash, "reason": reason,
        "traceback": traceback.format_exc()[-4000:], "host": os.uname().nodename,
        "slurm_job": os.environ.get("SLURM_JOB_ID"), "time": time.time()}, indent=1) + "\n")


def run_unit(study_dir: str, keys: Unit | list[str], device: str | None = None,
             on_stop: Callable[[Any], Any] | None = None) -> Unit:
    """Run one unit: a single job (``run_task``), or a fused group (``study/fuse.py``) trained in
    this process from one data stream (``worker.train.train_together``). Members already done
    are left alone; a member that cannot start (its base missing, say) gets its error.json and
    the others train. Every member writes its own record. Raises TaskFailed when no member
    finished, so that a Slurm task fails only when nothing of it can be used."""
    keys = tuple(keys)
    if len(keys) == 1:
        return (run_task(study_dir, keys[0], device, on_stop),)
    try:
        return _run_group(study_dir, keys, device, on_stop)
    except KeyboardInterrupt:  # Ctrl-C before the loop caught its signals: the unfinished members stopped
        study = Study.open(Path(study_dir))
        mark_unfinished_stopped([study.jobs[key] for key in keys], BEFORE_TRAINING)
        raise


def _run_group(study_dir: str, keys: Unit, device: str | None, on_stop: Callable[[Any], Any] | None) -> Unit:
    """``run_unit`` for a fused group of two or more jobs."""
    from transferbench.worker.fused import train_together
    from transferbench.worker.running import StopRequested
    from transferbench.worker.train import Trainer

    study = Study.open(Path(study_dir))
    unknown = [key for key in keys if key not in study.jobs]
    if unknown:
        raise UserError(f"{unknown[0]} is not a job of {study_dir}")
    trainers: list[Trainer] = []
    failed: list[str] = []
    for key in keys:
        job = study.jobs[key]
        if outcome(job) == ("done", None):
            continue
        _starting(job)
        try:
            trainers.append(_trainer(study, job, device,
                                     shared=next((t for t in trainers if t.spec.stream() == job.spec.stream()), None)))
        except Exception as exc:  # noqa: BLE001 - this member cannot start; the others can
            _write_error(job, exc)
            failed.append(f"{key}: {exc}")
    by_config: dict[Any, list[Trainer]] = {}  # a retried stalled member draws other random streams: its own stream
    for trainer in trainers:
        by_config.setdefault((trainer.config, trainer.retry), []).append(trainer)
    done = 0
    for group in by_config.values():
        try:
            records = train_together(group)
        except StopRequested as stop:
            for trainer in trainers:
                _write_stopped(study.jobs[trainer.spec.key], stop)
            if on_stop is not None:
                on_stop(stop)
            raise
        except BaseException as exc:
            for trainer in group:
                _write_error(study.jobs[trainer.spec.key], exc)
            raise
        done += sum(record.status == "done" for record in records)
        failed += [f"{record.key}: {record.reason}" for record in records if record.status != "done"]
    if failed and not done:
        raise TaskFailed("; ".join(failed))
    for line in failed:
        print(f"transferbench: {line} (the rest of the fused group finished)", file=sys.stderr)
    return keys


def packs_needed(study: Study, keys: list[str]) -> list[tuple[str, str | None, str, int, bool]]:
    """(data_root, val_list, pack_dir, size, strict) of every ImageNet pack the jobs ``keys`` read."""
    found = {(job.spec.data_root, job.spec.val_list, job.spec.pack_dir, job.spec.train.resize, job.spec.strict)
             for job in (study.jobs[key] for key in keys)
             if job.spec.dataset == "imagenet1k" and job.spec.pack_dir and job.spec.data_root}
    return sorted(found, key=str)


def build_packs(study_dir: str, keys: list[str] | None = None, progress: bool | None = None) -> int:
    """Build the ImageNet packs of a study (train and val), each once: what `transferbench pack`
    runs, and the first Slurm job of a study with a pack_dir. Returns how many packs it checked."""
    from transferbench.tasks.classes import load_table
    from transferbench.worker.data import imagenet_items, pack_images

    study = Study.open(Path(study_dir))
    progress = sys.stderr.isatty() if progress is None else progress
    wnids = [c.wnid for c in load_table("imagenet1k").classes]
    needed = packs_needed(study, list(study.jobs) if keys is None else keys)
    for root, val_list, pack_dir, size, strict in needed:
        for train in (True, False):
            items = imagenet_items(Path(root), train, wnids, Path(val_list) if val_list and not train else None)
            pack_images(items, Path(pack_dir), "train" if train else "val", strict, progress=progress, size=size)
    return 2 * len(needed)


