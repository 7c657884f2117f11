"""A planned study on disk: its plan, its manifest, its settings, and what each job wrote.

``Study`` opens ``jobs/<study>/`` (plan.json, manifest.json); ``order_jobs`` puts bases before
the jobs that copy them; ``finished`` reads a job's outcome from its own files (result.json,
error.json), which is all the status of a job needs once its executor has let it go.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferbench.errors import UserError
from transferbench.fileio import atomic_write_text
from transferbench.schema.config import SlurmSettings, StudySettings
from transferbench.schema.health import HealthSettings
from transferbench.schema.loader import build
from transferbench.schema.plan import ManifestEntry, PlanFile, PlannedJob
from transferbench.schema.record import ResultRecord


MANIFEST_WAIT_S = 300  # how long a running executor waits for the lock to record a job it starts


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
        """Write the whole manifest (the caller holds the study's lock: plan and submit)."""
        body = {key: entry.to_dict() for key, entry in manifest.items()}
        atomic_write_text(self.manifest_path, json.dumps(body, indent=1, sort_keys=True) + "\n")

    def update_manifest(self, entries: dict[str, ManifestEntry | None]) -> None:
        """Record ``entries`` (None: forget the job's entry) from a running executor, which does not
        hold the study's lock: take it, read the manifest again (another submit may have recorded its
        own jobs) and merge."""
        from transferbench.study.lock import study_lock

        with study_lock(self.directory, "submit", MANIFEST_WAIT_S, echo=lambda _line: None):
            manifest = self.manifest()
            manifest.update({key: entry for key, entry in entries.items() if entry is not None})
            for key in [key for key, entry in entries.items() if entry is None]:
                manifest.pop(key, None)
            self.save_manifest(manifest)


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


def read_json(path: Path) -> Any:
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
    error = read_json(job.out_dir / "error.json")
    if isinstance(error, dict) and error.get("config_hash") == job.config_hash:
        return "failed", error.get("reason"), None
    return None


def outcome(job: PlannedJob) -> tuple[str, str | None] | None:
    """('done'|'failed', reason) from the files the job wrote, or None if it wrote none yet."""
    result = finished(job)
    return result[:2] if result is not None else None


def resumable(job: PlannedJob) -> str:
    checkpoint = job.out_dir / "checkpoint.pt"
    return "; its checkpoint is kept: `transferbench submit --retry-failed` resumes it" if checkpoint.is_file() else ""
