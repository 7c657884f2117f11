"""The plan (``jobs/<study>/plan.json``) and the manifest (``jobs/<study>/manifest.json``).

plan.json: ``{"format", "study", "config" (the TOML as read), "jobs": [PlannedJob...]}``.
A PlannedJob is a job key, where it comes from (block, split, network, pattern, side, seed),
what it waits for (``depends``: the job keys of the networks it copies from) and its
JobSpec. ``condition``, ``n``, ``out_dir`` and ``config_hash`` are derived from the spec and
written for readers of the file; reading checks that they agree with it.

Paths inside the study folder (run folders, the bases' weights, generated splits, imported
sources) are written relative to it and resolved against the folder the plan is read from, so a
study folder can be moved or copied as a whole. ``config_hash`` is the job's identity
(``JobSpec.config_hash``): what it computes, never where.

Plans of format 1 (identity by paths) are read by ``read_legacy`` only, so that re-planning them
keeps every finished network (``transferbench.study.migrate``).

manifest.json: job key -> ManifestEntry, what transferbench submitted and where.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transferbench.errors import UserError
from transferbench.schema.loader import build
from transferbench.schema.spec import JobSpec

PLAN_FORMAT = "transferbench-plan/2"
LEGACY_FORMAT = "transferbench-plan/1"  # the job hash covered absolute paths

# Spec fields that hold paths: (part of the spec or None for the spec itself, field)
PATH_FIELDS = ((None, "out_dir"), (None, "source_checkpoint"), (None, "split"), (None, "pack_dir"), (None, "data_root"),
               (None, "val_list"), ("input", "mean_file"), ("forgetting_data", "split"),
               ("forgetting_data", "data_root"), ("forgetting_data", "val_list"))


def place_paths(spec: dict[str, Any], directory: Path, relative: bool) -> dict[str, Any]:
    """``spec`` (a JobSpec dict) with its paths inside ``directory`` made relative to it
    (``relative``), or its relative paths resolved against it."""
    spec = {key: dict(value) if isinstance(value, dict) else value for key, value in spec.items()}
    for part, name in PATH_FIELDS:
        holder = spec if part is None else spec.get(part)
        value = holder.get(name) if isinstance(holder, dict) else None
        if not isinstance(value, str):
            continue
        path = Path(value)
        if relative:
            try:
                holder[name] = path.relative_to(directory).as_posix()
            except ValueError:
                pass  # outside the study: kept as it is
        elif not path.is_absolute():
            holder[name] = str(directory / path)
    return spec


@dataclass(frozen=True)
class PlannedJob:
    key: str
    block: str
    split: str  # split short name ("random0", "natman", "all", "reduced0010")
    network: str  # the paper's notation with n filled in, e.g. A3B+
    pattern: str  # the block's pattern, e.g. AnB+
    side: str | None
    seed: int
    depends: tuple[str, ...]
    spec: JobSpec

    @property
    def out_dir(self) -> Path:
        return Path(self.spec.out_dir)

    @property
    def config_hash(self) -> str:
        return self.spec.config_hash()

    def to_dict(self, directory: Path) -> dict[str, Any]:
        """As plan.json holds it: paths inside the study ``directory`` relative to it."""
        spec = place_paths(self.spec.to_dict(), directory, relative=True)
        return {"key": self.key, "block": self.block, "split": self.split, "network": self.network,
                "pattern": self.pattern, "side": self.side, "seed": self.seed, "condition": self.spec.condition.label(),
                "n": self.spec.condition.n_transferred, "depends": list(self.depends), "out_dir": spec["out_dir"],
                "config_hash": self.spec.config_hash(), "spec": spec}

    @staticmethod
    def from_dict(data: Any, source: str, directory: Path, check_hash: bool = True) -> "PlannedJob":
        """A job of plan.json, its paths resolved against the study ``directory`` (``check_hash``: that
        its derived fields agree with its spec; off for a legacy plan)."""
        if not isinstance(data, dict):
            raise UserError(f"{source}: a job must be a table, got {type(data).__name__}; re-run `transferbench plan`")
        derived = {k: data.get(k) for k in ("condition", "n", "out_dir", "config_hash")}
        where = f"job {data.get('key', '?')}"
        fields = {k: v for k, v in data.items() if k not in derived}
        if isinstance(fields.get("spec"), dict):
            fields["spec"] = place_paths(fields["spec"], directory, relative=False)
        job = build(PlannedJob, fields, where, source)
        expected = {"condition": job.spec.condition.label(), "n": job.spec.condition.n_transferred}
        if check_hash:  # (a legacy plan's hashes and absolute folders follow its own rules)
            expected["out_dir"] = place_paths({"out_dir": job.spec.out_dir}, directory, relative=True)["out_dir"]
            expected["config_hash"] = job.spec.config_hash()
        for name, value in expected.items():
            if derived[name] != value:
                raise UserError(f"{source}: [{where}] {name} is {derived[name]!r} but its spec gives {value!r}; "
                                "the plan was edited by hand: re-run `transferbench plan`")
        return job


@dataclass(frozen=True)
class PlanFile:
    study: str
    config: dict[str, Any]
    jobs: dict[str, PlannedJob]
    migrated: dict[str, str] = field(default_factory=dict)  # job key -> its hash in the legacy format it was planned in

    def to_text(self, directory: Path) -> str:
        """plan.json's text for the study folder ``directory``."""
        body: dict[str, Any] = {"format": PLAN_FORMAT, "study": self.study, "config": self.config,
                                "jobs": [job.to_dict(Path(directory)) for job in self.jobs.values()]}
        if self.migrated:
            body["migrated"] = dict(sorted(self.migrated.items()))
        return json.dumps(body, indent=1, sort_keys=False) + "\n"

    @staticmethod
    def from_dict(data: Any, source: str, directory: Path) -> "PlanFile":
        if isinstance(data, dict) and data.get("format") == LEGACY_FORMAT:
            raise UserError(f"{source} was written by an older transferbench, whose job identities covered paths; run "
                            "`transferbench plan` on its config again to bring it up to date (nothing finished is re-run)")
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise UserError(f"{source} is not a transferbench plan (format {found!r}); re-run `transferbench plan`")
        return PlanFile._jobs(data, source, Path(directory), check_hash=True)

    @staticmethod
    def _jobs(data: dict[str, Any], source: str, directory: Path, check_hash: bool) -> "PlanFile":
        if not isinstance(data.get("study"), str) or not isinstance(data.get("config"), dict) \
                or not isinstance(data.get("jobs"), list):
            raise UserError(f"{source} lacks its study name, config or job list; re-run `transferbench plan`")
        jobs = [PlannedJob.from_dict(job, source, directory, check_hash) for job in data["jobs"]]
        by_key = {job.key: job for job in jobs}
        for job in jobs:
            for dep in job.depends:
                if dep not in by_key:
                    raise UserError(f"{source}: {job.key} depends on {dep}, which is not in the plan; re-run `transferbench plan`")
        migrated = data.get("migrated", {})
        if not isinstance(migrated, dict) or not all(isinstance(v, str) for v in migrated.values()):
            raise UserError(f"{source}: 'migrated' must map job keys to hashes; re-run `transferbench plan`")
        return PlanFile(data["study"], data["config"], by_key, migrated)

    @staticmethod
    def read(study_dir: Path) -> "PlanFile":
        path = Path(study_dir) / "plan.json"
        return PlanFile.from_dict(_read_json(path), str(path), Path(study_dir).resolve())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; run `transferbench plan CONFIG.toml` first") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} does not parse ({exc}); re-run `transferbench plan`") from exc


def read_legacy(study_dir: Path) -> tuple[PlanFile, dict[str, str]] | None:
    """A plan of the legacy format (identity by paths) and each job's hash as that format computed
    it, or None when the study's plan is of the current format."""
    path = Path(study_dir) / "plan.json"
    data = _read_json(path)
    if not isinstance(data, dict) or data.get("format") != LEGACY_FORMAT:
        return None
    plan = PlanFile._jobs(data, str(path), Path(study_dir).resolve(), check_hash=False)
    return plan, {job["key"]: job.get("config_hash") for job in data["jobs"]}


@dataclass(frozen=True)
class ManifestEntry:
    """One submission of one job: which executor, its Slurm id or process id, its log."""

    executor: str  # slurm | local | debug
    attempt: int = 1  # 1 for the first submission, counting up with every retry
    job_id: str | None = None  # Slurm: 123 or 123_4 (array task)
    pid: int | None = None  # local: the worker process
    log: str | None = None  # where the job's output goes
    submitted_at: float | None = None  # epoch seconds
    # Slurm: recorded before the sbatch call, so that a submission whose job id could not be saved
    # (a full disk, a kill) is found again in the queue by its name, transferbench-<token>, and task.
    token: str | None = None
    task: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @staticmethod
    def from_dict(data: Any, source: str) -> "ManifestEntry":
        return build(ManifestEntry, data, "manifest entry", source)
