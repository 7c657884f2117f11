"""`transferbench submit`: which jobs of a planned study run now, and handing them to an executor.

``select_jobs`` takes every job that is planned (or failed, with --retry-failed) and whose bases
are done or run with it, in dependency order; ``group_arrays`` groups them by the bases they wait
for (one Slurm array each); ``--retry-stalled`` archives stalled networks and what copies from
them and runs them again from other random streams.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferbench.errors import UserError
from transferbench.fileio import atomic_write_text
from transferbench.provenance import git_commit
from transferbench.schema.health import Health
from transferbench.schema.plan import ManifestEntry
from transferbench.schema.record import ATTEMPTS_FILE, ResultRecord, read_attempts
from transferbench.study.executors import Executor, Groups, attempts, executor_class, make_executor
from transferbench.study.fuse import Unit, units_of
from transferbench.study.lock import study_lock
from transferbench.study.run import packs_needed
from transferbench.study.status import WEIGHTS_GONE, judge_study, source_waiting, states
from transferbench.study.study import Study, order_jobs, read_record


@dataclass
class Submission:
    """What one submit did or would do."""

    arrays: list[tuple[str, list[str]]]  # (dependency description, keys) per sbatch call
    skipped: dict[str, str]  # key -> why it is not submitted
    sbatch_calls: int = 0
    units: int = 0  # processes (array tasks) the jobs run in: fewer than the jobs when fused
    tasks: list[int] = field(default_factory=list)  # array tasks per sbatch call
    pack: bool = False  # the jobs read an ImageNet pack: one job builds it first (one more sbatch call on Slurm)


def select_jobs(study: Study, current: dict[str, tuple[str, str]], retry_failed: bool) -> tuple[list[str], dict[str, str]]:
    """Which jobs to submit, in dependency order, and why the others are left alone."""
    jobs = study.jobs
    chosen: list[str] = []
    skipped: dict[str, str] = {}
    for key in order_jobs(jobs):
        state, detail = current[key]
        if state in ("planned", "stopped"):  # a stopped job resumes from its checkpoint: not a failure to retry
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
            if dep not in chosen_set and dep_state in ("failed", "blocked", "unknown", "planned", "stopped"):
                chosen.remove(key)
                chosen_set.discard(key)
                skipped[key] = (f"waits for {dep}, which is {dep_state} (use --retry-failed)" if dep_state != "planned" else
                                f"waits for {dep}, which is held back ({skipped.get(dep, 'not submitted')})")
                break
    return chosen, skipped


NO_IMAGENET = ("trains on ImageNet, whose folder the plan does not name: plan again with --data-root DIR ([study] "
               "data_root), or [source.NAME] data_root for a cross-dataset block's source")


def _clear_failure(study: Study, key: str, attempt: int) -> None:
    out_dir = study.jobs[key].out_dir
    for name in ("result.json", "error.json"):
        path = out_dir / name
        if path.is_file():
            path.rename(out_dir / f"{path.stem}.attempt{attempt}.json")


def stalled_retrains(study: Study, health: dict[str, Health]) -> dict[str, str]:
    """Job key -> why it trains again under --retry-stalled: "stalled" for a stalled network (it
    draws other random streams), "source retrained" for a finished network that copies from one (directly
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
    entry = {"attempt": number, "seed": record.spec["train"]["seed"], "retry": record.retry, "why": why,
             "health": health.state, "reason": health.reason, "top1_mean_best10": record.top1_mean_best10,
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


def _warn_if_code_changes() -> None:
    commit = git_commit()
    if commit and commit.endswith("+dirty"):
        warnings.warn("the transferbench checkout has uncommitted changes: queued jobs import the code as it is when they "
                      "start, so commit first (each result records the commit it ran)", stacklevel=2)


def submit(study_dir: Path, executor: str = "slurm", retry_failed: bool = False, dry_run: bool = False,
           overrides: dict[str, Any] | None = None, workers: int | None = None, echo=print,
           retry_stalled: bool = False) -> Submission:
    """Run (or queue) the jobs of a planned study that are not done, queued or running.
    ``retry_stalled``: stalled networks train again from other random streams (their earlier
    attempts kept in ``attempt<k>/`` and listed in the new record), and so do the finished
    networks that copy from them.

    Choosing the jobs and recording them in the manifest happen under the study's lock (one
    submit at a time: no job is submitted twice); a foreground executor trains them after the
    lock is let go, so another submit or a status is never held up by training."""
    runner = make_executor(executor, echo, workers, overrides)
    study = Study.open(study_dir)
    with study_lock(study.directory, "submit", SUBMIT_WAIT_S, echo):
        submission, study, groups, manifest, claimed = _submit(study, runner, retry_failed, dry_run, echo, retry_stalled)
        if groups and not runner.foreground:
            submission.sbatch_calls = runner.launch(study, groups, manifest)
    if groups and runner.foreground:
        try:
            runner.launch(study, groups, manifest)
        finally:
            runner.release(study, claimed)
    if groups:
        _describe(submission, runner, echo, dry_run)
    return submission


SUBMIT_WAIT_S = 30  # how long a submit waits for another one of the same study before it gives up


def _submit(study: Study, runner: Executor, retry_failed: bool, dry_run: bool, echo,
            retry_stalled: bool) -> tuple[Submission, Study, Groups, dict[str, ManifestEntry], dict[str, Any]]:
    """Choose the jobs to run and record them (under the study's lock); the groups to launch (none
    on a dry run or when nothing is left to run), and the claimed jobs' entries before."""
    study = Study.open(study.directory)  # read again under the lock: another submit may have changed the manifest
    manifest = study.manifest()
    records: dict[str, ResultRecord] = {}
    current = states(study, records=records)
    if retry_stalled:
        current = _retry_stalled(study, current, records, dry_run, echo)
    unknown = [detail for state, detail in current.values() if state == "unknown"]
    if unknown and not runner.foreground and not dry_run:
        raise UserError(unknown[0].split(": ", 1)[-1])
    if unknown and dry_run:
        echo(f"warning: {len(unknown)} submitted jobs cannot be checked ({unknown[0].split(': ', 1)[-1]}); "
             "they are skipped below, and a real submit would stop")
    chosen, skipped = select_jobs(study, current, retry_failed)
    if not chosen and NO_IMAGENET in skipped.values():  # nothing else to run (a dry run too): the one thing to fix
        from transferbench.tasks.layout import check_imagenet

        check_imagenet(None, [], set(), None, str(study.directory / "plan.json"))
    units = units_of(study.jobs, chosen, study.settings.fuse, study.settings.fuse_memory_gb)
    groups = group_arrays(study, units, current)
    submission = Submission([(", ".join(w) or "nothing", [key for unit in array for key in unit]) for w, array in groups],
                            skipped, units=len(units), tasks=[len(array) for _, array in groups],
                            pack=bool(packs_needed(study, chosen)))
    if dry_run or not chosen:
        _describe(submission, runner, echo, dry_run)
        return submission, study, [], manifest, {}
    runner.check(study)
    if any(study.jobs[key].spec.dataset == "imagenet1k" for key in chosen):  # the data may have moved since plan
        from transferbench.study.plan import check_imagenet_data

        check_imagenet_data({key: study.jobs[key] for key in chosen}, str(study.directory / "plan.json"))
    _warn_if_code_changes()
    for key in chosen:
        if current[key][0] == "blocked":  # waits forever in its executor's queue: cancelled before it is queued again
            executor_class(manifest[key].executor).cancel([manifest[key]])
        if current[key][0] not in ("failed", "blocked"):
            continue
        record = _readable_record(study, key)
        if current[key] == ("failed", WEIGHTS_GONE):  # a finished network trained again: its record is an attempt
            archive_attempt(study, key, "weights gone", record, Health(**record.health) if record.health else Health("healthy"))
        elif record is not None and (record.health or {}).get("state") == "diverged":  # from other random streams
            archive_attempt(study, key, "diverged", record, Health(**record.health))
        else:
            _clear_failure(study, key, max(1, attempts(manifest, key)))
    claimed = runner.claim(study, chosen, manifest)
    return submission, study, groups, manifest, claimed


def _readable_record(study: Study, key: str) -> ResultRecord | None:
    try:
        return read_record(study.jobs[key])
    except UserError:
        return None


def _retry_stalled(study: Study, current: dict[str, tuple[str, str]], records: dict[str, ResultRecord], dry_run: bool,
                   echo) -> dict[str, tuple[str, str]]:
    """Archive the stalled networks and what copies from them (unless ``dry_run``); the states with
    them planned afresh."""
    health = judge_study(study, records)
    retrain = stalled_retrains(study, health)
    stalled = [key for key, why in retrain.items() if why == "stalled"]
    if not retrain:
        echo("no stalled network to train again")
        return current
    echo(f"{'would train' if dry_run else 'training'} {len(stalled)} stalled networks again from other random streams"
         f" ({', '.join(stalled[:4])}{' ...' if len(stalled) > 4 else ''})"
         + (f", and {len(retrain) - len(stalled)} finished networks that copy from them" if len(retrain) > len(stalled) else ""))
    if dry_run:
        return current
    for key, why in retrain.items():
        archive_attempt(study, key, why, records[key], health[key])
    return {**states(study), **dict.fromkeys(retrain, ("planned", ""))}  # to run afresh, not a failure to retry


def _describe(submission: Submission, runner: Executor, echo, dry_run: bool) -> None:
    count = sum(len(keys) for _, keys in submission.arrays)
    if not count:
        reasons: dict[str, int] = {}
        for why in submission.skipped.values():
            reasons[why.split(":")[0].split(" (")[0]] = reasons.get(why.split(":")[0].split(" (")[0], 0) + 1
        summary = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        echo(f"nothing to submit ({summary or 'no jobs'})")
        return
    verb = "would submit" if dry_run else ("ran" if runner.foreground else "submitted")
    fused = f" as {submission.units} fused groups and lone jobs" if submission.units and submission.units < count else ""
    if not runner.foreground:
        calls = len(submission.arrays) + submission.pack
        pack = " and one job that builds the ImageNet pack first (every array waits for it)" if submission.pack else ""
        echo(f"{verb} {count} jobs{fused} in {len(submission.arrays)} Slurm arrays{pack} ({calls} sbatch calls):")
        for (waits, keys), tasks in zip(submission.arrays, submission.tasks):
            size = (f"{len(keys)} jobs in {tasks} task{'s' if tasks > 1 else ''}" if tasks < len(keys) else
                    f"{len(keys)} tasks")
            shown = ", ".join(keys[:3]) + (f", ... ({size})" if len(keys) > 3 else f" ({size})" if tasks < len(keys) else "")
            echo(f"  after {waits}: {shown}")
    else:
        echo(f"{verb} {count} jobs{fused} with the {runner.name} executor")
    if dry_run:
        for key, why in list(submission.skipped.items())[:20]:
            echo(f"  skip {key}: {why}")
        if len(submission.skipped) > 20:
            echo(f"  ... and {len(submission.skipped) - 20} more skipped")
