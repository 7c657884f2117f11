"""The study config (``configs/*.toml``) as typed tables, checked by the strict loader.

    [study]      name, dataset, seeds, data location          -> StudySettings
    [model]      defaults for every job's ModelConfig         (a partial ModelConfig)
    [train]      defaults for every job's TrainConfig         (a partial TrainConfig)
    [growth]     defaults for grown networks                  -> GrowthSettings
    [slurm]      resources of every job                       -> SlurmSettings
    [health]     thresholds of the network health judgment    -> HealthSettings
    [[block]]    one group of networks                        -> Block

Every table is checked when the config is read (by ``plan``), so a mistyped value fails
there, in one line naming the file and the key, not hours later on the cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferbench.errors import UserError
from transferbench.schema.health import HealthSettings
from transferbench.schema.loader import apply_overrides, build, check_values, read_toml
from transferbench.schema.spec import ModelConfig, TrainConfig

DATASET_CLASSES = {"fashion-mnist": 10, "cifar100": 100, "imagenet1k": 1000, "synthetic": 12}
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class StudySettings:
    name: str  # the folder under jobs/
    dataset: str  # fashion-mnist | cifar100 | imagenet1k | synthetic
    seeds: tuple[int, ...] = (0,)  # training seeds: every network is trained once per seed
    data_root: str | None = None  # dataset folder (relative to the config file)
    val_list: str | None = None  # ImageNet: Caffe-style label list of a flat validation folder
    pack_dir: str | None = None  # ImageNet: folder of the uint8 pack every job shares
    strict: bool = False  # corrupt images are fatal instead of skipped
    split_dir: str | None = None  # folder of split files (default: ./splits, then the checkout's)
    jobs_dir: str | None = None  # where jobs/<name> goes (default: ./jobs)
    description: str | None = None  # free text
    fuse: bool = False  # train the networks that share a data stream together, one process per group (study/fuse.py)
    fuse_memory_gb: float = 40.0  # a fused group's estimated device memory stays under this; larger groups are split

    def __post_init__(self) -> None:
        if self.fuse_memory_gb <= 0:
            raise UserError(f"fuse_memory_gb must be > 0, got {self.fuse_memory_gb}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise UserError(f"name must be a folder name (letters, digits, - _ .), got {self.name!r}")
        if self.dataset not in DATASET_CLASSES:
            raise UserError(f"dataset {self.dataset!r} is not one of {', '.join(DATASET_CLASSES)}")
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise UserError(f"seeds must be a non-empty list of integers >= 0, got {list(self.seeds)!r}")


@dataclass(frozen=True)
class SlurmSettings:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus: int | None = None  # GPUs per job
    cpus: int = 1  # CPUs per job
    mem_gb: int | None = None  # memory per job
    time_min: int = 60  # time limit per job in minutes
    array_parallelism: int = 256  # most tasks of one array running at once
    signal_delay_s: int = 120  # seconds of warning before the time limit (the job checkpoints and requeues)
    folder: str | None = None  # submitit log folder (default: jobs/<study>/slurm)
    device: str | None = None  # cpu | cuda (default: cuda if visible)

    def __post_init__(self) -> None:
        for name in ("cpus", "time_min", "array_parallelism"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("gpus", "mem_gb"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.signal_delay_s < 0:
            raise UserError(f"signal_delay_s must be >= 0, got {self.signal_delay_s}")
        if self.device is not None and self.device.split(":")[0] not in DEVICES:
            raise UserError(f"device {self.device!r} is not one of {', '.join(DEVICES)}")


@dataclass(frozen=True)
class GrowthSettings:
    scale_init: float | None = None  # initial γ of the normalised blocks
    new_lr_mult: float | None = None  # learning-rate multiplier of new units

    def values(self) -> dict[str, float]:
        return {k: v for k, v in (("scale_init", self.scale_init), ("new_lr_mult", self.new_lr_mult)) if v is not None}


@dataclass(frozen=True)
class Block:
    networks: tuple[str, ...]  # the paper's notation (transferbench.schema.notation)
    name: str | None = None  # a label for the summary (default: block<number>)
    splits: tuple[str, ...] = ("all",)  # split names (splits/<dataset>-<name>.json), "all", or reducedK
    n: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7)  # layers copied, for the XnY patterns
    k: tuple[int, ...] = ()  # preserved layers above n, for XnY^k
    units: tuple[int, ...] = ()  # S, for grown networks
    forgetting: bool | None = None  # measure the source's accuracy after transfer (default: for developmental blocks)
    model: dict[str, Any] = field(default_factory=dict)  # this block's ModelConfig values
    train: dict[str, Any] = field(default_factory=dict)  # this block's TrainConfig values
    growth: dict[str, Any] = field(default_factory=dict)  # this block's GrowthSettings values

    def __post_init__(self) -> None:
        if not self.networks:
            raise UserError("networks is empty; list at least one network pattern, e.g. networks = [\"baseA\", \"AnB\"]")
        if not self.splits:
            raise UserError("splits is empty; list at least one split, e.g. splits = [\"random0\"]")
        if not all(1 <= n <= 7 for n in self.n):
            raise UserError(f"n must list layers 1..7, got {list(self.n)!r}")
        if not all(1 <= k <= 6 for k in self.k):
            raise UserError(f"k must list layer counts 1..6, got {list(self.k)!r}")
        if not all(u > 0 for u in self.units):
            raise UserError(f"units must list positive unit counts S, got {list(self.units)!r}")


@dataclass(frozen=True)
class StudyConfig:
    """A study config, checked. ``raw`` is the TOML as read (overrides applied): plan.json keeps it."""

    study: StudySettings
    model: dict[str, Any]
    train: dict[str, Any]
    growth: GrowthSettings
    slurm: SlurmSettings
    health: HealthSettings
    blocks: tuple[Block, ...]
    raw: dict[str, Any]
    source: str
    directory: Path  # the config's folder: relative data paths start here

    def block_values(self, block: Block) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """This block's model, train and growth values over the study's defaults."""
        return ({**self.model, **block.model}, {**self.train, **block.train}, {**self.growth.values(), **block.growth})


TOP_LEVEL = ("study", "model", "train", "growth", "slurm", "health", "block")


def parse_config(raw: dict[str, Any], source: str, directory: Path, study_overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Check every table of a study config (see the module docstring)."""
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise UserError(f"{source}: unknown key {unknown[0]!r} in [top level]; valid keys: {', '.join(sorted(TOP_LEVEL))}")
    study_table = raw.get("study", {})
    if not isinstance(study_table, dict):
        raise UserError(f"{source}: [study] must be a table")
    study = build(StudySettings, {**study_table, **(study_overrides or {})}, "study", source)
    model = check_values(ModelConfig, raw.get("model", {}), "model", source)
    train = check_values(TrainConfig, raw.get("train", {}), "train", source)
    growth = build(GrowthSettings, raw.get("growth", {}), "growth", source)
    slurm = build(SlurmSettings, raw.get("slurm", {}), "slurm", source)
    health = build(HealthSettings, raw.get("health", {}), "health", source)
    tables = raw.get("block", [])
    if not isinstance(tables, list) or not tables:
        raise UserError(f"{source}: no [[block]] of networks; add at least one (see configs/ for examples)")
    blocks = []
    for number, table in enumerate(tables, 1):
        where = f"block {number}"
        block = build(Block, table, where, source)
        check_values(ModelConfig, block.model, f"{where}.model", source)
        check_values(TrainConfig, block.train, f"{where}.train", source)
        check_values(GrowthSettings, block.growth, f"{where}.growth", source)
        blocks.append(block)
    config = StudyConfig(study, model, train, growth, slurm, health, tuple(blocks), raw, source, directory)
    build(ModelConfig, model, "model", source)  # the defaults must make whole configs, and so must each block's
    build(TrainConfig, train, "train", source)
    for number, block in enumerate(config.blocks, 1):
        model_values, train_values, _ = config.block_values(block)
        if block.model:
            build(ModelConfig, model_values, f"block {number}.model", source)
        if block.train:
            build(TrainConfig, train_values, f"block {number}.train", source)
    return config


def load_config(path: Path, overrides: list[str] | None = None, study_overrides: dict[str, Any] | None = None,
                presets: Path | None = None) -> StudyConfig:
    """Read and check a study config; ``overrides`` are ``--set TABLE.KEY=VALUE`` strings."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        choices = ", ".join(sorted(p.stem for p in presets.glob("*.toml"))) if presets and presets.is_dir() else ""
        raise UserError(f"study config {path} does not exist" + (f"; presets (give the name): {choices}" if choices else "")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read study config {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    raw = apply_overrides(read_toml(text, str(path)), overrides or [], str(path))
    return parse_config(raw, str(path), path.resolve().parent, study_overrides)
