"""Fused groups: which planned jobs one process trains together from one data stream.

Jobs fuse when they read the same stream (``JobSpec.stream``: dataset, split, side, seed,
recipe and model) and sit at the same depth of the dependency graph, so that no member copies
from another (a group waits for every base its members copy from). Within a stream, members
are ordered by their source and frozen prefix, so that the networks that share frozen layers
stay together when a group is split: a group's estimated device memory (the sum of its
members' ``JobSpec.memory_estimate``) stays under ``[study] fuse_memory_gb``. A grown or
compiled network trains alone.
"""

from __future__ import annotations

from transferbench.schema.plan import PlannedJob
from transferbench.study.study import order_jobs

Unit = tuple[str, ...]  # the job keys one process trains: one job, or a fused group


def depths(jobs: dict[str, PlannedJob]) -> dict[str, int]:
    """0 for a job that copies from nothing, else one more than its deepest base."""
    depth: dict[str, int] = {}
    for key in order_jobs(jobs):
        depth[key] = 1 + max((depth[dep] for dep in jobs[key].depends), default=-1)
    return depth


def fuse_jobs(jobs: dict[str, PlannedJob], keys: list[str], memory_gb: float) -> list[Unit]:
    """The units of ``keys``: fused groups and lone jobs, each after the units of its bases."""
    depth = depths(jobs)
    streams: dict[tuple[str, int], list[str]] = {}
    units: list[Unit] = []
    for key in keys:
        stream = jobs[key].spec.stream()
        if stream is None:
            units.append((key,))
        else:
            streams.setdefault((stream, depth[key]), []).append(key)
    limit = memory_gb * 1e9
    for members in streams.values():
        members.sort(key=lambda k: (jobs[k].spec.source_checkpoint or "", jobs[k].spec.condition.frozen_prefix, k))
        chunk: list[str] = []
        used = 0
        for key in members:
            need = jobs[key].spec.memory_estimate()
            if chunk and used + need > limit:
                units.append(tuple(chunk))
                chunk, used = [], 0
            chunk.append(key)
            used += need
        units.append(tuple(chunk))
    position = {key: i for i, key in enumerate(keys)}
    # by depth, then as given: every unit comes after the units of the bases its members copy from
    return sorted(units, key=lambda unit: (depth[unit[0]], min(position[key] for key in unit)))


def units_of(jobs: dict[str, PlannedJob], keys: list[str], fuse: bool, memory_gb: float) -> list[Unit]:
    """What one process each trains: fused groups when ``fuse``, else one job each."""
    return fuse_jobs(jobs, keys, memory_gb) if fuse else [(key,) for key in keys]
