"""Running a planned study: one Executor interface, three executors (debug, local, Slurm).

Every executor takes the same call, ``launch(study, groups, manifest, echo)``, for the jobs
``submit`` chose, and records a ManifestEntry per job; status is read the same way for all
of them (``transferbench.study.status``). ``run_task`` is what every job runs, wherever it
runs: it opens the plan, trains the network with the worker and writes error.json if the
job raises. This is the only module that imports submitit.

Slurm arrays and dependencies: all tasks of one array share one dependency string, so jobs
are grouped by *what they wait for*. Jobs with nothing to wait for form one array; every
transfer job that copies from the same base network forms one array whose dependency is
``afterok`` on exactly that base's array task (``afterok:<array>_<task>``). The paper's
grid of 170 networks is 11 sbatch calls, and no job waits for a base it does not use.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from transferbench.errors import UserError
from transferbench.fileio import atomic_write_text
from transferbench.provenance import git_commit
from transferbench.schema.config import SlurmSettings
from transferbench.schema.plan import ManifestEntry
from transferbench.schema.health import Health
from transferbench.schema.record import ATTEMPTS_FILE, JobIdentity, ResultRecord, read_attempts
from transferbench.study.fuse import Unit, units_of
from transferbench.study.lock import study_lock
from transferbench.study.status import Study, judge_study, order_jobs, outcome, source_waiting, states

Groups = list[tuple[tuple[str, ...], list[Unit]]]  # (the bases an array waits for, its units: one process each)


class TaskFailed(Exception):
    """A job ended without a usable result; its reason is in error.json or result.json."""


# ---------------------------------------------------------------------------- one job

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


def run_task(study_dir: str, key: str, device: str | None = None) -> str:
    """Run one planned job: what a Slurm array task, a local worker or the debug executor calls.

    Writes error.json (atomically) when the job raises, so the failure and its reason are on
    disk even where Slurm accounting is off. A timeout warning (SIGUSR2) or a preemption or
    requeue (SIGTERM) checkpoints the job; after a timeout warning the job requeues itself.
    """
    from transferbench.worker.train import StopRequested

    study = Study.open(Path(study_dir))
    job = study.jobs.get(key)
    if job is None:
        raise UserError(f"{key} is not a job of {study_dir}")
    if outcome(job) == ("done", None):
        return key  # a finished job run again (a requeue after it ended): its result stands, nothing to train
    (job.out_dir / "error.json").unlink(missing_ok=True)
    try:
        record = _trainer(study, job, device).run()
    except StopRequested as stop:
        _requeue_after_warning(stop)
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


def _requeue_after_warning(stop) -> None:
    """After Slurm's warning before the time limit (SIGUSR2) the job requeues itself."""
    if stop.signum == signal.SIGUSR2 and os.environ.get("SLURM_JOB_ID"):
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        slurm_id = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{task}" if task else os.environ["SLURM_JOB_ID"]
        subprocess.run(["scontrol", "requeue", slurm_id], check=False)


def _write_error(job, exc: BaseException) -> None:
    """error.json (atomically): the failure and its reason on disk even where Slurm accounting is off."""
    reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
    atomic_write_text(job.out_dir / "error.json", json.dumps({
        "key": job.key, "config_hash": job.config_hash, "reason": reason,
        "traceback": traceback.format_exc()[-4000:], "host": os.uname().nodename,
        "slurm_job": os.environ.get("SLURM_JOB_ID"), "time": time.time()}, indent=1) + "\n")


def run_unit(study_dir: str, keys: Unit | list[str], device: str | None = None) -> Unit:
    """Run one unit: a single job (``run_task``), or a fused group (``study/fuse.py``) trained in
    this process from one data stream (``worker.train.train_together``). Members already done
    are left alone; a member that cannot start (its base missing, say) gets its error.json and
    the others train. Every member writes its own record. Raises TaskFailed when no member
    finished, so that a Slurm task fails only when nothing of it can be used."""
    from transferbench.worker.train import StopRequested, Trainer, train_together

    keys = tuple(keys)
    if len(keys) == 1:
        return (run_task(study_dir, keys[0], device),)
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
        (job.out_dir / "error.json").unlink(missing_ok=True)
        try:
            trainers.append(_trainer(study, job, device,
                                     shared=next((t for t in trainers if t.spec.stream() == job.spec.stream()), None)))
        except Exception as exc:  # noqa: BLE001 - this member cannot start; the others can
            _write_error(job, exc)
            failed.append(f"{key}: {exc}")
    by_config: dict[Any, list[Trainer]] = {}  # a retried stalled member trains with another seed: its own stream
    for trainer in trainers:
        by_config.setdefault(trainer.config, []).append(trainer)
    done = 0
    for group in by_config.values():
        try:
            records = train_together(group)
        except StopRequested as stop:
            _requeue_after_warning(stop)
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


# ---------------------------------------------------------------------------- choosing what to run

@dataclass
class Submission:
    """What one submit did or would do."""

    arrays: list[tuple[str, list[str]]]  # (dependency description, keys) per sbatch call
    skipped: dict[str, str]  # key -> why it is not submitted
    sbatch_calls: int = 0
    units: int = 0  # processes (array tasks) the jobs run in: fewer than the jobs when fused
    tasks: list[int] = field(default_factory=list)  # array tasks per sbatch call


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
        spec = jobs[key].spec
        # a cross-dataset job's source outside the plan, or ImageNet without its folder
        waiting = source_waiting(jobs[key]) or (NO_IMAGENET if spec.dataset == "imagenet1k" and not spec.data_root else None)
        if waiting:
            chosen.remove(key)
            chosen_set.discard(key)
            skipped[key] = waiting
            continue
        for dep in jobs[key].depends:
            dep_state = current[dep][0]
            if dep not in chosen_set and dep_state in ("failed", "blocked", "unknown", "planned"):
                chosen.remove(key)
                chosen_set.discard(key)
                skipped[key] = (f"waits for {dep}, which is {dep_state} (use --retry-failed)" if dep_state != "planned" else
                                f"waits for {dep}, which is held back ({skipped.get(dep, 'not submitted')})")
                break
    return chosen, skipped


NO_IMAGENET = ("trains on ImageNet, whose folder the plan does not name: plan again with --data-root DIR ([study] "
               "data_root), or [source.NAME] data_root for a cross-dataset block's source")


def attempts(manifest: dict[str, ManifestEntry], key: str) -> int:
    """How many times the job was submitted so far (0 if never)."""
    return manifest[key].attempt if key in manifest else 0


def _clear_failure(study: Study, key: str, attempt: int) -> None:
    out_dir = study.jobs[key].out_dir
    for name in ("result.json", "error.json"):
        path = out_dir / name
        if path.is_file():
            path.rename(out_dir / f"{path.stem}.attempt{attempt}.json")


def stalled_retrains(study: Study, health: dict[str, Health]) -> dict[str, str]:
    """Job key -> why it trains again under --retry-stalled: "stalled" for a stalled network (it
    gets another seed), "source retrained" for a finished network that copies from one (directly
    or through another)."""
    retrain = {key: "stalled" for key, verdict in health.items() if verdict.state == "stalled"}
    for key in order_jobs(study.jobs):  # bases first: a dependent sees its source's verdict
        if key not in retrain and key in health and any(dep in retrain for dep in study.jobs[key].depends):
            retrain[key] = "source retrained"
    return retrain


def archive_attempt(study: Study, key: str, why: str, record: ResultRecord, health: Health) -> Path:
    """Move a finished attempt's files into ``out_dir/attempt<k>/`` and add it to attempts.json,
    so the next run trains afresh (re-seeded if ``why`` is "stalled") and its record lists this one."""
    out_dir = study.jobs[key].out_dir
    previous = read_attempts(out_dir)
    number = len(previous) + 1
    folder = out_dir / f"attempt{number}"
    folder.mkdir(exist_ok=True)
    for name in ("result.json", "model.pt", "checkpoint.pt", "checkpoint.prev.pt", "error.json", "log.txt"):
        if (out_dir / name).exists():
            (out_dir / name).rename(folder / name)
    entry = {"attempt": number, "seed": record.seed_used if record.seed_used is not None else record.spec["train"]["seed"],
             "why": why, "health": health.state, "reason": health.reason, "top1_mean_best10": record.top1_mean_best10,
             "top1_final": record.top1_final, "archived": folder.name}
    atomic_write_text(out_dir / ATTEMPTS_FILE, json.dumps([*previous, entry], indent=1) + "\n")
    return folder


def group_arrays(study: Study, units: list[Unit], current: dict[str, tuple[str, str]]) -> Groups:
    """Group units (jobs, or fused groups) by the base jobs they must wait for (those not done
    yet); one array per group."""
    groups: dict[tuple[str, ...], list[Unit]] = {}
    for unit in units:
        waits = tuple(dict.fromkeys(dep for key in unit for dep in study.jobs[key].depends if current[dep][0] != "done"))
        groups.setdefault(waits, []).append(unit)
    # arrays without waits first, then in the order of their units
    return sorted(groups.items(), key=lambda item: (len(item[0]) > 0, units.index(item[1][0])))


def slurm_parameters(settings: SlurmSettings, overrides: dict[str, Any]) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters from the study's [slurm] table and the submit flags."""
    import dataclasses

    merged = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    params: dict[str, Any] = {"job_name": "transferbench", "time": merged.time_min, "cpus_per_task": merged.cpus,
                              "ntasks_per_node": 1, "array_parallelism": merged.array_parallelism,
                              "signal_delay_s": merged.signal_delay_s, "additional_parameters": {"requeue": True},
                              "wckey": ""}
    if merged.gpus:
        params["gpus_per_node"] = merged.gpus
    if merged.mem_gb:
        params["mem"] = f"{merged.mem_gb}G"
    for name in ("partition", "account", "qos"):
        if getattr(merged, name):
            params[name] = getattr(merged, name)
    return params


def sbatch_script(study: Study, tasks: int, dependency: str | None = None, folder: Path | None = None,
                  command: str | None = None) -> str:
    """The sbatch script submitit writes for an array of ``tasks`` jobs of this study (nothing is submitted)."""
    from submitit.slurm.slurm import _make_sbatch_string

    folder = Path(folder or study.slurm.folder or study.directory / "slurm")
    command = command or f"{sys.executable} -u -m submitit.core._submit {folder}"
    return _make_sbatch_string(command=command, folder=folder, map_count=tasks, dependency=dependency,
                               **slurm_parameters(study.slurm, {}))


# ---------------------------------------------------------------------------- the executors

def flatten(groups: Groups) -> list[str]:
    """The keys of all groups in dependency order (a group comes after the groups of its bases)."""
    return [key for _, units in groups for unit in units for key in unit]


@dataclass
class Executor:
    """Runs the chosen jobs of a study and records each in the manifest.

    ``launch`` gets the jobs grouped by the bases they wait for, in dependency order; an
    executor that runs in the foreground (debug, local) returns when they have run.
    """

    name: ClassVar[str] = ""
    echo: Callable[[str], Any] = print

    def check(self, study: Study) -> None:
        """Fail before anything is launched if this executor cannot run here."""

    def launch(self, study: Study, groups: Groups, manifest: dict[str, ManifestEntry]) -> int:
        """Run or queue the groups; returns the number of sbatch calls made (0 in the foreground)."""
        raise NotImplementedError


@dataclass
class DebugExecutor(Executor):
    """In this process, one after another, in dependency order: for tests and debugging."""

    name: ClassVar[str] = "debug"

    def launch(self, study: Study, groups: Groups, manifest: dict[str, ManifestEntry]) -> int:
        failed: set[str] = set()
        for _, units in groups:
            for unit in units:
                for key in unit:
                    manifest[key] = ManifestEntry("debug", attempts(manifest, key) + 1)
                study.save_manifest(manifest)
                failed |= {key for key in unit if any(dep in failed for dep in study.jobs[key].depends)}
                runnable = [key for key in unit if key not in failed]
                if not runnable:
                    continue
                try:
                    run_unit(str(study.directory), runnable, device="cpu")
                except (TaskFailed, UserError) as exc:
                    self.echo(f"{', '.join(runnable)} failed: {exc}")
                failed |= {key for key in runnable if outcome(study.jobs[key]) != ("done", None)}
        return 0


@dataclass
class LocalExecutor(Executor):
    """This machine: the dependency graph with ``workers`` processes (default: one per GPU). With
    more workers than GPUs, worker i uses GPU i mod GPUs: small networks (the demo's) leave a
    GPU mostly idle, and several of them share one well. Each worker gets an equal share of
    the CPU cores for its threads."""

    name: ClassVar[str] = "local"
    workers: int | None = None

    def launch(self, study: Study, groups: Groups, manifest: dict[str, ManifestEntry]) -> int:
        from tqdm import tqdm

        try:
            import torch

            gpus = torch.cuda.device_count()
        except Exception:  # noqa: BLE001 - a broken CUDA install means CPU
            gpus = 0
        workers = self.workers or max(1, gpus)
        jobs = study.jobs
        chosen = flatten(groups)
        if packs_needed(study, chosen):  # once, here, rather than in the first workers at the same time
            self.echo("building the ImageNet pack (once; every job then reads it) ...")
            build_packs(str(study.directory), chosen)
        waiting = [unit for _, units in groups for unit in units]
        running: dict[Unit, tuple[subprocess.Popen, int]] = {}
        free_slots = list(range(workers))
        failed: set[str] = set()
        bar = tqdm(total=len(chosen), desc=study.name, unit="job")
        try:
            while waiting or running:
                still_waiting = []
                for unit in waiting:
                    for key in unit:
                        if any(dep in failed for dep in jobs[key].depends):
                            failed.add(key)
                            self.echo(f"{key}: not run, its base failed")
                            bar.update(1)
                    unit = tuple(key for key in unit if key not in failed)  # the rest of a fused group still runs
                    if not unit:
                        continue
                    if free_slots and all(outcome(jobs[dep]) == ("done", None) for key in unit for dep in jobs[key].depends):
                        slot = free_slots.pop(0)
                        running[unit] = (self._start(study, unit, slot, gpus, workers, manifest), slot)
                    else:
                        still_waiting.append(unit)
                waiting = still_waiting
                for unit, (process, slot) in list(running.items()):
                    if process.poll() is None:
                        continue
                    del running[unit]
                    free_slots.append(slot)
                    bar.update(len(unit))
                    for key in unit:
                        state = outcome(jobs[key])
                        if state != ("done", None):
                            failed.add(key)
                            self.echo(f"{key} failed: {state[1] if state else 'exit code ' + str(process.returncode)} "
                                      f"(log: {manifest[key].log})")
                time.sleep(0.2)
        except KeyboardInterrupt:
            for process, _ in running.values():
                process.send_signal(signal.SIGTERM)  # they checkpoint and stop; submit again to resume
            for process, _ in running.values():
                process.wait()
            raise
        finally:
            bar.close()
        return 0

    @staticmethod
    def _start(study: Study, unit: Unit, slot: int, gpus: int, workers: int,
               manifest: dict[str, ManifestEntry]) -> subprocess.Popen:
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
        # share the cores instead of every worker using all of them (on a GPU too: idle threads spin)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
        for key in unit:
            study.jobs[key].out_dir.mkdir(parents=True, exist_ok=True)
        log_path = study.jobs[unit[0]].out_dir / "log.txt"  # a fused group's log is its first member's
        log = open(log_path, "ab")  # noqa: SIM115 - closed when the process ends
        process = subprocess.Popen([sys.executable, "-m", "transferbench", "task", str(study.directory), *unit],
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        for key in unit:
            manifest[key] = ManifestEntry("local", attempts(manifest, key) + 1, pid=process.pid, log=str(log_path),
                                          submitted_at=time.time())
        study.save_manifest(manifest)
        return process


@dataclass
class SlurmExecutor(Executor):
    """sbatch through submitit: one array per group, ``afterok`` on the base tasks it waits for."""

    name: ClassVar[str] = "slurm"
    overrides: dict[str, Any] = field(default_factory=dict)  # [slurm] values from the command line

    def check(self, study: Study) -> None:
        for tool in ("sbatch", "squeue", "scontrol"):
            if shutil.which(tool) is None:
                raise UserError(f"{tool} is not on PATH; install Slurm's client tools or use --executor local")

    def launch(self, study: Study, groups: Groups, manifest: dict[str, ManifestEntry]) -> int:
        import submitit

        overrides = dict(self.overrides)
        folder = Path(overrides.pop("folder", None) or study.slurm.folder or study.directory / "slurm")
        if str(folder.resolve()).startswith("/tmp/"):
            warnings.warn(f"the Slurm log folder {folder} is under /tmp: on a real cluster it must be on a filesystem that "
                          "every node shares", stacklevel=2)
        params = slurm_parameters(study.slurm, overrides)
        calls = 0
        pack_job = None
        chosen = flatten(groups)
        if packs_needed(study, chosen):  # the pack is a step of the graph: built once, before any base starts
            executor = submitit.SlurmExecutor(folder=folder)
            executor.update_parameters(**{**params, "job_name": "transferbench-pack"})
            pack_job = str(executor.submit(build_packs, str(study.directory), chosen, False).job_id)
            calls += 1
            self.echo(f"Slurm job {pack_job} builds the ImageNet pack first (or finds it built); every job waits for it")
        for waits, units in groups:
            executor = submitit.SlurmExecutor(folder=folder)
            dependency = ":".join([*dict.fromkeys(manifest[dep].job_id for dep in waits), *([pack_job] if pack_job else [])])
            # a fused group trains its members in one task: its time limit is the per-network one times the largest group
            time_limit = params["time"] * max(len(unit) for unit in units)
            executor.update_parameters(**{**params, "time": time_limit}, dependency=f"afterok:{dependency}" if dependency else None)
            try:
                with executor.batch():
                    handles = [executor.submit(run_task, str(study.directory), unit[0]) if len(unit) == 1 else
                               executor.submit(run_unit, str(study.directory), unit) for unit in units]
            except Exception as exc:  # submitit raises plain exceptions for sbatch errors
                study.save_manifest(manifest)
                raise UserError(f"sbatch failed: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}; "
                                "check the [slurm] settings (partition, account, qos) and `sinfo`") from exc
            calls += 1
            for unit, handle in zip(units, handles):
                for key in unit:
                    manifest[key] = ManifestEntry("slurm", attempts(manifest, key) + 1, job_id=str(handle.job_id),
                                                  log=str(handle.paths.stdout), submitted_at=time.time())
            study.save_manifest(manifest)  # after every sbatch: an interrupted submit forgets nothing it submitted
        return calls


EXECUTORS: dict[str, type[Executor]] = {cls.name: cls for cls in (SlurmExecutor, LocalExecutor, DebugExecutor)}


def make_executor(name: str, echo: Callable[[str], Any] = print, workers: int | None = None,
                  overrides: dict[str, Any] | None = None) -> Executor:
    if name not in EXECUTORS:
        raise UserError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    if name == "local":
        return LocalExecutor(echo, workers)
    if name == "slurm":
        return SlurmExecutor(echo, dict(overrides or {}))
    return DebugExecutor(echo)


# ---------------------------------------------------------------------------- submit

def _warn_if_code_changes() -> None:
    commit = git_commit()
    if commit and commit.endswith("+dirty"):
        warnings.warn("the transferbench checkout has uncommitted changes: queued jobs import the code as it is when they "
                      "start, so commit first (each result records the commit it ran)", stacklevel=2)


def submit(study_dir: Path, executor: str = "slurm", retry_failed: bool = False, dry_run: bool = False,
           overrides: dict[str, Any] | None = None, workers: int | None = None, echo=print,
           retry_stalled: bool = False) -> Submission:
    """Run (or queue) the jobs of a planned study that are not done, queued or running.
    ``retry_stalled``: stalled networks train again with another seed (their earlier attempts
    kept in ``attempt<k>/`` and listed in the new record), and so do the finished networks
    that copy from them."""
    runner = make_executor(executor, echo, workers, overrides)
    study = Study.open(study_dir)
    with study_lock(study.directory, "submit", SUBMIT_WAIT_S, echo):  # one submit at a time: no job submitted twice
        return _submit(study, runner, executor, retry_failed, dry_run, echo, retry_stalled)


SUBMIT_WAIT_S = 30  # how long a submit waits for another one of the same study before it gives up


def _submit(study: Study, runner: Executor, executor: str, retry_failed: bool, dry_run: bool, echo,
            retry_stalled: bool) -> Submission:
    study = Study.open(study.directory)  # read again under the lock: another submit may have changed the manifest
    manifest = study.manifest()
    records: dict[str, ResultRecord] = {}
    current = states(study, records=records)
    if retry_stalled:
        health = judge_study(study, records)
        retrain = stalled_retrains(study, health)
        stalled = [key for key, why in retrain.items() if why == "stalled"]
        if not retrain:
            echo("no stalled network to train again")
        else:
            echo(f"{'would train' if dry_run else 'training'} {len(stalled)} stalled networks again with another seed"
                 f" ({', '.join(stalled[:4])}{' ...' if len(stalled) > 4 else ''})"
                 + (f", and {len(retrain) - len(stalled)} finished networks that copy from them" if len(retrain) > len(stalled) else ""))
        if not dry_run and retrain:
            for key, why in retrain.items():
                archive_attempt(study, key, why, records[key], health[key])
            current = {**states(study), **dict.fromkeys(retrain, ("planned", ""))}  # to run afresh, not a failure to retry
    unknown = [detail for state, detail in current.values() if state == "unknown"]
    if unknown and executor == "slurm" and not dry_run:
        raise UserError(unknown[0].split(": ", 1)[-1])
    if unknown and dry_run:
        echo(f"warning: {len(unknown)} submitted jobs cannot be checked ({unknown[0].split(': ', 1)[-1]}); "
             "they are skipped below, and a real submit would stop")
    chosen, skipped = select_jobs(study, current, retry_failed)
    if not chosen and NO_IMAGENET in skipped.values() and not dry_run:  # nothing else to run: the one thing to fix
        from transferbench.tasks.layout import check_imagenet

        check_imagenet(None, [], set(), None, str(study.directory / "plan.json"))
    units = units_of(study.jobs, chosen, study.settings.fuse, study.settings.fuse_memory_gb)
    groups = group_arrays(study, units, current)
    submission = Submission([(", ".join(w) or "nothing", [key for unit in array for key in unit]) for w, array in groups],
                            skipped, units=len(units), tasks=[len(array) for _, array in groups])
    if dry_run or not chosen:
        _describe(submission, executor, echo, dry_run)
        return submission
    runner.check(study)
    if any(study.jobs[key].spec.dataset == "imagenet1k" for key in chosen):  # the data may have moved since plan
        from transferbench.study.plan import check_imagenet_data

        check_imagenet_data({key: study.jobs[key] for key in chosen}, str(study.directory / "plan.json"))
    _warn_if_code_changes()
    blocked = [key for key in chosen if current[key][0] == "blocked"]
    if blocked:
        subprocess.run(["scancel", *[manifest[k].job_id for k in blocked]], check=False, capture_output=True)
    for key in chosen:
        if current[key][0] in ("failed", "blocked"):
            _clear_failure(study, key, max(1, attempts(manifest, key)))
    submission.sbatch_calls = runner.launch(study, groups, manifest)
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
    fused = f" as {submission.units} fused groups and lone jobs" if submission.units and submission.units < count else ""
    if executor == "slurm":
        echo(f"{verb} {count} jobs{fused} in {len(submission.arrays)} Slurm arrays ({len(submission.arrays)} sbatch calls):")
        for (waits, keys), tasks in zip(submission.arrays, submission.tasks):
            size = (f"{len(keys)} jobs in {tasks} task{'s' if tasks > 1 else ''}" if tasks < len(keys) else
                    f"{len(keys)} tasks")
            shown = ", ".join(keys[:3]) + (f", ... ({size})" if len(keys) > 3 else f" ({size})" if tasks < len(keys) else "")
            echo(f"  after {waits}: {shown}")
    else:
        echo(f"{verb} {count} jobs{fused} with the {executor} executor")
    if dry_run:
        for key, why in list(submission.skipped.items())[:20]:
            echo(f"  skip {key}: {why}")
        if len(submission.skipped) > 20:
            echo(f"  ... and {len(submission.skipped) - 20} more skipped")
