"""Plans of the legacy format: their job identities covered paths. Re-planning one keeps every job
that computes the same thing, and gives its files their new identity once.

A legacy job and a newly planned one are the same job when their specs agree in everything but
placement (where it runs, reads and writes) and the content fields the legacy format lacked (the
split's content hash, the data's fingerprint, the base's identity, an import's settings). The
legacy plan named its split by path only: its content then is taken to be the content now.
A base that differs makes every job that copies from it differ too (``write_plan`` follows the
dependencies).

The files a migrated job wrote carry the legacy hash: ``result.json``, ``error.json``,
``model.pt``, ``checkpoint.pt`` and ``checkpoint.prev.pt`` are rewritten (atomically) with the
new one, and the plan lists the legacy hash of each migrated job (``migrated``), so that a study
whose source is one of its jobs finds it again.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from transferbench.fileio import atomic_write_bytes, atomic_write_text
from transferbench.schema.plan import PATH_FIELDS, PlannedJob
from transferbench.schema.spec import TRAIN_PLACEMENT

# Fields the legacy format did not have: (part of the spec or None, field)
NEW_FIELDS = ((None, "split_hash"), (None, "data_id"), (None, "source_id"), ("source_ref", "settings"),
              ("forgetting_data", "split_hash"), ("forgetting_data", "data_id"))


def _comparable(spec: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    """``spec`` (a JobSpec dict) without placement and without the fields the legacy format lacked;
    another study's legacy hashes replaced by their new ones (``aliases``)."""
    spec = json.loads(json.dumps(spec))
    spec.pop("key", None)
    for part, name in (*PATH_FIELDS, *NEW_FIELDS):
        holder = spec if part is None else spec.get(part)
        if isinstance(holder, dict):
            holder.pop(name, None)
    for name in TRAIN_PLACEMENT:
        spec.get("train", {}).pop(name, None)
    ref = spec.get("source_ref")
    if isinstance(ref, dict) and ref.get("config_hash") in aliases:
        ref["config_hash"] = aliases[ref["config_hash"]]
    adapter = spec.get("input")
    if isinstance(adapter, dict) and isinstance(adapter.get("mean_of"), str):
        found, _, attempt = adapter["mean_of"].partition("#")
        adapter["mean_of"] = f"{aliases.get(found, found)}#{attempt}"
    return spec


def same_job(old: PlannedJob, new: PlannedJob, aliases: dict[str, str]) -> bool:
    """Whether a job of a legacy plan and a newly planned one compute the same thing."""
    return _comparable(old.spec.to_dict(), aliases) == _comparable(new.spec.to_dict(), aliases)


def _rewrite_json(path: Path, changes: dict[str, str]) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError, OSError):
        return
    if not isinstance(data, dict) or data.get("config_hash") not in changes:
        return
    data["config_hash"] = changes[data["config_hash"]]
    source = data.get("source")
    if isinstance(source, dict) and source.get("config_hash") in changes:
        source["config_hash"] = changes[source["config_hash"]]
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def _rewrite_torch(path: Path, changes: dict[str, str]) -> None:
    if not path.is_file():
        return
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is the worker's to report and set aside
        return
    if not isinstance(saved, dict) or saved.get("config_hash") not in changes:
        return
    saved["config_hash"] = changes[saved["config_hash"]]
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def migrate_files(job: PlannedJob, changes: dict[str, str]) -> None:
    """Give the files ``job`` wrote their new identity (``changes``: legacy hash -> new hash, of this
    job and of the bases its record names)."""
    out_dir = job.out_dir
    if not out_dir.is_dir():
        return
    for name in ("result.json", "error.json"):
        _rewrite_json(out_dir / name, changes)
    for name in ("model.pt", "checkpoint.pt", "checkpoint.prev.pt"):
        _rewrite_torch(out_dir / name, changes)
