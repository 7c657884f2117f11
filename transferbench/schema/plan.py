"""The plan (``jobs/<study>/plan.json``) and the manifest (``jobs/<study>/manifest.json``).

plan.json: ``{"format", "study", "config" (the TOML as read), "jobs": [PlannedJob...]}``.
A PlannedJob is a job key, where it comes from (block, split, network, pattern, side, seed),
what it waits for (``depends``: the job keys of the networks it copies from) and its
JobSpec. ``condition``, ``n``, ``out_dir`` and ``config_hash`` are derived from the spec and
written for readers of the file; reading checks that they agree with it.

manifest.json: job key -> ManifestEntry, what transferbench submitted and where.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transferbench.errors import UserError
from transferbench.schema.loader import build
from transferbench.schema.spec import JobSpec

PLAN_FORMAT = "transferbench-plan/1"


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

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "block": self.block, "split": self.split, "network": self.network,
                "pattern": self.pattern, "side": self.side, "seed": self.seed, "condition": self.spec.condition.label(),
                "n": self.spec.condition.n_transferred, "depends": list(self.depends), "out_dir": self.spec.out_dir,
                "config_hash": self.spec.config_hash(), "spec": self.spec.to_dict()}

    @staticmethod
    def from_dict(data: Any, source: str) -> "PlannedJob":
        if not isinstance(data, dict):
            raise UserError(f"{source}: a job must be a table, got {type(data).__name__}; re-run `transferbench plan`")
        derived = {k: data.get(k) for k in ("condition", "n", "out_dir", "config_hash")}
        where = f"job {data.get('key', '?')}"
        job = build(PlannedJob, {k: v for k, v in data.items() if k not in derived}, where, source)
        expected = {"condition": job.spec.condition.label(), "n": job.spec.condition.n_transferred,
                    "out_dir": job.spec.out_dir, "config_hash": job.spec.config_hash()}
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

    def to_text(self) -> str:
        body = {"format": PLAN_FORMAT, "study": self.study, "config": self.config,
                "jobs": [job.to_dict() for job in self.jobs.values()]}
        return json.dumps(body, indent=1, sort_keys=False) + "\n"

    @staticmethod
    def from_dict(data: Any, source: str) -> "PlanFile":
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise UserError(f"{source} is not a transferbench plan (format {found!r}); re-run `transferbench plan`")
        if not isinstance(data.get("study"), str) or not isinstance(data.get("config"), dict) \
                or not isinstance(data.get("jobs"), list):
            raise UserError(f"{source} lacks its study name, config or job list; re-run `transferbench plan`")
        jobs = [PlannedJob.from_dict(job, source) for job in data["jobs"]]
        by_key = {job.key: job for job in jobs}
        for job in jobs:
            for dep in job.depends:
                if dep not in by_key:
                    raise UserError(f"{source}: {job.key} depends on {dep}, which is not in the plan; re-run `transferbench plan`")
        return PlanFile(data["study"], data["config"], by_key)

    @staticmethod
    def read(study_dir: Path) -> "PlanFile":
        path = Path(study_dir) / "plan.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path} does not exist; run `transferbench plan CONFIG.toml` first") from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path} does not parse ({exc}); re-run `transferbench plan`") from exc
        return PlanFile.from_dict(data, str(path))


@dataclass(frozen=True)
class ManifestEntry:
    """One submission of one job: which executor, its Slurm id or process id, its log."""

    executor: str  # slurm | local | debug
    attempt: int = 1  # 1 for the first submission, counting up with every retry
    job_id: str | None = None  # Slurm: 123 or 123_4 (array task)
    pid: int | None = None  # local: the worker process
    log: str | None = None  # where the job's output goes
    submitted_at: float | None = None  # epoch seconds

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @staticmethod
    def from_dict(data: Any, source: str) -> "ManifestEntry":
        return build(ManifestEntry, data, "manifest entry", source)
