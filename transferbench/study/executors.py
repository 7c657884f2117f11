"""Where jobs run: one Executor interface, three executors (debug, local, Slurm), each owning the
whole life of the jobs it runs.

| what                  | debug                  | local                        | slurm                          |
|-----------------------|------------------------|------------------------------|--------------------------------|
| ``launch``            | in this process        | worker processes here        | sbatch arrays (submitit)       |
| ``live_view``/``state`` | the process         | the processes                | squeue                         |
| ``cancel``            | SIGTERM                | SIGTERM to the worker        | scancel                        |
| after a stop signal   | run again to resume    | run again to resume          | requeued (``requeue_on_warning``) |

A manifest entry names its executor; ``executor_class`` gives the class that reads its state
and cancels it, so no caller branches on an executor's name. Foreground executors (debug,
local) train after ``submit`` has chosen and recorded their jobs and let the study's lock go
(``claim``): the lock covers deciding and recording, never training. This is the only module
that imports submitit.

Slurm arrays and dependencies: all tasks of one array share one dependency string, so jobs
are grouped by *what they wait for*. Jobs with nothing to wait for form one array; every
transfer job that copies from the same base network forms one array whose dependency is
``afterok`` on exactly that base's array task (``afterok:<array>_<task>``). The paper's
grid of 170 networks is 11 sbatch calls, and no job waits for a base it does not use.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar

from transferbench.errors import UserError
from transferbench.schema.config import SlurmSettings
from transferbench.schema.plan import ManifestEntry, PlannedJob
from transferbench.study.fuse import Unit
from transferbench.study.run import STOPPED, TaskFailed, build_packs, mark_unfinished_stopped, packs_needed, run_task, run_unit
from transferbench.study.study import Study, outcome, resumable

Groups = list[tuple[tuple[str, ...], list[Unit]]]  # (the bases an array waits for, its units: one process each)
State = tuple[str, str]  # (state, detail)


def flatten(groups: Groups) -> list[str]:
    """The keys of all groups in dependency order (a group comes after the groups of its bases)."""
    return [key for _, units in groups for unit in units for key in unit]


def attempts(manifest: dict[str, ManifestEntry], key: str) -> int:
    """How many times the job was submitted so far (0 if never)."""
    return manifest[key].attempt if key in manifest else 0


@dataclass
class Executor:
    """Runs the chosen jobs of a study, records each in the manifest, and knows their state.

    ``launch`` gets the jobs grouped by the bases they wait for, in dependency order; a
    foreground executor (debug, local) returns when they have run, a queueing one (Slurm) when
    they are queued.
    """

    name: ClassVar[str] = ""
    foreground: ClassVar[bool] = True  # trains the jobs itself (outside the study's lock)
    echo: Callable[[str], Any] = print

    def check(self, study: Study) -> None:
        """Fail before anything is launched if this executor cannot run here."""

    def claim(self, study: Study, keys: list[str], manifest: dict[str, ManifestEntry]) -> dict[str, ManifestEntry | None]:
        """Record ``keys`` as this executor's (under the study's lock, before a foreground run lets it
        go), so that another submit leaves them alone; returns their entries before."""
        before = {key: manifest.get(key) for key in keys}
        for key in keys:
            manifest[key] = ManifestEntry(self.name, attempts(manifest, key) + 1, pid=os.getpid(), submitted_at=time.time())
        study.save_manifest(manifest)
        return before

    def release(self, study: Study, before: dict[str, ManifestEntry | None]) -> None:
        """After a foreground run: the claimed jobs it never started (their base failed, or the run
        was interrupted) go back to the entries they had."""
        current = study.manifest()
        unstarted = {key: entry for key, entry in before.items()
                     if key in current and current[key].pid == os.getpid() and current[key].log is None}
        if unstarted:
            study.update_manifest(unstarted)

    def launch(self, study: Study, groups: Groups, manifest: dict[str, ManifestEntry]) -> int:
        """Run or queue the groups; returns the number of sbatch calls made (0 in the foreground)."""
        raise NotImplementedError

    @classmethod
    def live_view(cls) -> tuple[Any, str | None]:
        """What this executor knows of its jobs now (read once per status), and why it could not be read."""
        return None, None

    @classmethod
    def state(cls, job: PlannedJob, entry: ManifestEntry, live: Any, live_error: str | None) -> State:
        """The state of a job it ran that has not written a result: a foreground executor's job is
        running (or waiting for its turn) while its process lives, and was interrupted otherwise."""
        if entry.pid and _alive(entry.pid):
            if entry.log is None:
                return "queued", f"waits for its turn in {entry.executor} submit process {entry.pid}"
            return "running", f"{entry.executor} process {entry.pid}"
        return "failed", f"interrupted before it wrote a result (its executor stopped){resumable(job)}"

    @classmethod
    def cancel(cls, entries: list[ManifestEntry]) -> None:
        """Stop the jobs of ``entries`` (they checkpoint first where they can)."""
        for pid in {entry.pid for entry in entries if entry.pid}:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


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


# ---------------------------------------------------------------------------- debug

@dataclass
class DebugExecutor(Executor):
    """In this process, one after another, in dependency order: for tests and debugging."""

    name: ClassVar[str] = "debug"

    def launch(self, study: Study, groups: Groups, manifest: dict[str, ManifestEntry]) -> int:
        failed: set[str] = set()
        for _, units in groups:
            for unit in units:
                failed |= {key for key in unit if any(dep in failed for dep in study.jobs[key].depends)}
                runnable = [key for key in unit if key not in failed]
                if not runnable:
                    continue
                started = {key: ManifestEntry("debug", attempts(manifest, key), pid=os.getpid(), log="(this process)",
                                              submitted_at=time.time()) for key in runnable}
                study.update_manifest(started)
                try:
                    run_unit(str(study.directory), runnable, device="cpu")
                except (TaskFailed, UserError) as exc:
                    self.echo(f"{', '.join(runnable)} failed: {exc}")
                finally:  # this process lives on: the entries must not read as running once the unit is over
                    study.update_manifest({key: replace(entry, pid=None) for key, entry in started.items()})
                failed |= {key for key in runnable if outcome(study.jobs[key]) != ("done", None)}
        return 0


# ---------------------------------------------------------------------------- local

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
                            self.echo(f"{key}: not run, its base did not finish")
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
                            if state is None and (jobs[key].out_dir / STOPPED).is_file():
                                self.echo(f"{key} stopped by a signal after writing its checkpoint; the same command "
                                          "resumes it")
                            else:
                                self.echo(f"{key} failed: {state[1] if state else 'exit code ' + str(process.returncode)} "
                                          f"(log: {manifest[key].log})")
                time.sleep(0.2)
        except KeyboardInterrupt:
            for process, _ in running.values():
                process.send_signal(signal.SIGTERM)  # they checkpoint and stop; submit again to resume
            for process, _ in running.values():
                process.wait()
            # a worker stopped before it could say so (still importing, say): stopped all the same
            mark_unfinished_stopped([jobs[key] for unit in running for key in unit],
                                    "SIGINT (Ctrl-C) before its worker began training")
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
        updates = {key: ManifestEntry("local", attempts(manifest, key), pid=process.pid, log=str(log_path),
                                      submitted_at=time.time()) for key in unit}
        manifest.update(updates)
        study.update_manifest(updates)
        return process


# ---------------------------------------------------------------------------- Slurm

LIVE_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}
# States of a job that has ended for good (squeue -t all lists them until MinJobAge passes).
# Every other state is queued: PENDING, REQUEUED, REQUEUE_HOLD, REQUEUE_FED, SUSPENDED,
# RESV_DEL_HOLD, CONFIGURING, ... (a job that will still run).
SLURM_ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
               "TIMEOUT", "REVOKED"}


def squeue_states() -> dict[str, tuple[str, str]]:
    """Slurm id (``123`` or ``123_4``) -> (state, reason) for every job of this user that slurmctld knows,
    and job name -> its array id (key ``name:<job name>``).

    ``-t all`` lists every state, including the transitional ones (REQUEUED, REQUEUE_HOLD,
    SUSPENDED, ...) that squeue's default filter leaves out and ended jobs until MinJobAge.
    """
    if shutil.which("squeue") is None:
        raise UserError("squeue is not on PATH: Slurm's client tools are missing; install slurm-client or use --executor local")
    user = os.environ.get("USER") or getpass.getuser()
    try:
        result = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-u", user, "-o", "%i|%T|%r|%j|%F"], capture_output=True,
                                text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise UserError("squeue did not answer in 60 s: is slurmctld up? (scontrol ping)") from None
    if result.returncode:
        raise UserError(f"Slurm is unreachable: squeue said {result.stderr.strip() or result.returncode}; "
                        "start slurmctld or check `scontrol ping`")
    states = {}
    for line in result.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3:
            states[parts[0]] = (parts[1], parts[2])
        if len(parts) == 5 and parts[3].startswith("transferbench-"):
            states[f"name:{parts[3]}"] = (parts[4], "")  # the array's id, to find a submission by its name
    return states


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


@dataclass
class SlurmExecutor(Executor):
    """sbatch through submitit: one array per group, ``afterok`` on the base tasks it waits for."""

    name: ClassVar[str] = "slurm"
    foreground: ClassVar[bool] = False
    overrides: dict[str, Any] = field(default_factory=dict)  # [slurm] values from the command line

    def check(self, study: Study) -> None:
        for tool in ("sbatch", "squeue", "scontrol"):
            if shutil.which(tool) is None:
                raise UserError(f"{tool} is not on PATH; install Slurm's client tools or use --executor local")

    def claim(self, study: Study, keys: list[str], manifest: dict[str, ManifestEntry]) -> dict[str, ManifestEntry | None]:
        """Nothing before the sbatch calls: each array's entries are recorded as it is queued."""
        return {}

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
            # Recorded before sbatch: if the job ids cannot be saved afterwards, status finds the array by its name.
            token, before = uuid.uuid4().hex[:12], {key: manifest.get(key) for unit in units for key in unit}
            for task, unit in enumerate(units):
                for key in unit:
                    manifest[key] = ManifestEntry("slurm", attempts(manifest, key) + 1, token=token, task=task,
                                                  submitted_at=time.time())
            study.save_manifest(manifest)
            executor.update_parameters(**{**params, "time": time_limit, "job_name": f"transferbench-{token}"},
                                       dependency=f"afterok:{dependency}" if dependency else None)
            try:
                with executor.batch():
                    handles = [executor.submit(run_task, str(study.directory), unit[0], None, requeue_on_warning)
                               if len(unit) == 1 else
                               executor.submit(run_unit, str(study.directory), unit, None, requeue_on_warning)
                               for unit in units]
            except Exception as exc:  # submitit raises plain exceptions for sbatch errors: nothing was queued
                for key, entry in before.items():
                    if entry is None:
                        manifest.pop(key, None)
                    else:
                        manifest[key] = entry
                study.save_manifest(manifest)
                raise UserError(f"sbatch failed: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}; "
                                "check the [slurm] settings (partition, account, qos) and `sinfo`") from exc
            calls += 1
            for task, (unit, handle) in enumerate(zip(units, handles)):
                for key in unit:
                    manifest[key] = replace(manifest[key], job_id=str(handle.job_id), log=str(handle.paths.stdout))
            try:
                study.save_manifest(manifest)  # after every sbatch: an interrupted submit forgets nothing it submitted
            except OSError as exc:
                raise UserError(f"{len(units)} tasks were queued as transferbench-{token} (Slurm job "
                                f"{str(handles[0].job_id).split('_')[0]}), but their ids could not be saved in "
                                f"{study.manifest_path} ({exc.strerror}); free the space: `transferbench status` finds them "
                                "by name meanwhile, and no submit queues them again") from exc
        return calls

    @classmethod
    def live_view(cls) -> tuple[Any, str | None]:
        try:
            return squeue_states(), None
        except UserError as exc:
            return None, str(exc)

    @classmethod
    def state(cls, job: PlannedJob, entry: ManifestEntry, live: Any, live_error: str | None) -> State:
        """The state of a Slurm job that has not written a result, from squeue's view."""
        if live is None:
            return "unknown", f"Slurm job {entry.job_id or entry.token}: {live_error}"
        if entry.job_id is None:  # queued, but its id was not saved: found by the array's name
            array = live.get(f"name:transferbench-{entry.token}")
            if array is None:
                return "failed", (f"submitted as transferbench-{entry.token}, but its Slurm id was not saved and squeue "
                                  "does not list it: it ended without a result, or the submit stopped before sbatch"
                                  f"{resumable(job)}; `transferbench submit --retry-failed` runs it again")
            entry = replace(entry, job_id=f"{array[0]}_{entry.task}")
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

    @classmethod
    def cancel(cls, entries: list[ManifestEntry]) -> None:
        ids = sorted({entry.job_id for entry in entries if entry.job_id})
        if ids:
            subprocess.run(["scancel", *ids], check=False, capture_output=True)


def requeue_on_warning(stop) -> None:
    """What a Slurm task does once a stop signal made it checkpoint: after Slurm's warning before the
    time limit (SIGUSR2) it requeues itself; after a preemption or requeue (SIGTERM) Slurm does."""
    if stop.signum == signal.SIGUSR2 and os.environ.get("SLURM_JOB_ID"):
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        slurm_id = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{task}" if task else os.environ["SLURM_JOB_ID"]
        subprocess.run(["scontrol", "requeue", slurm_id], check=False)


EXECUTORS: dict[str, type[Executor]] = {cls.name: cls for cls in (SlurmExecutor, LocalExecutor, DebugExecutor)}


def executor_class(name: str, where: str = "") -> type[Executor]:
    """The executor class a manifest entry or a command line names."""
    if name not in EXECUTORS:
        raise UserError(f"{where}{': ' if where else ''}unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[name]


def make_executor(name: str, echo: Callable[[str], Any] = print, workers: int | None = None,
                  overrides: dict[str, Any] | None = None) -> Executor:
    cls = executor_class(name)
    if workers is not None and workers < 1:
        raise UserError(f"workers must be at least 1, got {workers}")
    if cls is LocalExecutor:
        return LocalExecutor(echo, workers)
    if cls is SlurmExecutor:
        return SlurmExecutor(echo, dict(overrides or {}))
    return cls(echo)
