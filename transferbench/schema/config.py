"""The study config (``configs/*.toml``) as typed tables, checked by the strict loader.

    [study]      name, dataset, seeds, data location          -> StudySettings
    [model]      defaults for every job's ModelConfig         (a partial ModelConfig)
    [train]      defaults for every job's TrainConfig         (a partial TrainConfig)
    [scratch]    the recipe of networks trained from scratch (bases, wide bases): TrainConfig
                 values over [train] and the block's train (a partial TrainConfig)
    [retrain]    the recipe of the networks that retrain a classifier on the source's task
                 (retrain_source): TrainConfig values over [train]
    [growth]     defaults for grown networks                  -> GrowthSettings
    [slurm]      resources of every job                       -> SlurmSettings
    [health]     thresholds of the network health judgment    -> HealthSettings
    [source.X]   a pretrained network cross-dataset blocks transfer from -> SourceSettings
    [target.X]   a dataset cross-dataset blocks transfer to    -> TargetSettings
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
from transferbench.schema.spec import IMAGE_SIZES, LAYOUTS, DataOptions, ModelConfig, TrainConfig

DATASET_CLASSES = {"fashion-mnist": 10, "cifar100": 100, "imagenet1k": 1000, "synthetic": 12}
DATASETS = (*DATASET_CLASSES, *LAYOUTS)  # built in (shipped class tables), and read from their layouts on disk
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
    data_options: DataOptions | None = None  # a dataset read from its layout: SUN-397's partition, Caltech-101's draw

    def __post_init__(self) -> None:
        if self.fuse_memory_gb <= 0:
            raise UserError(f"fuse_memory_gb must be > 0, got {self.fuse_memory_gb}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise UserError(f"name must be a folder name (letters, digits, - _ .), got {self.name!r}")
        if self.dataset not in DATASETS:
            raise UserError(f"dataset {self.dataset!r} is not one of {', '.join(DATASETS)}")
        if self.data_options is not None and self.dataset not in LAYOUTS:
            raise UserError(f"data_options are for datasets read from their layout ({', '.join(LAYOUTS)}), not {self.dataset}")
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


_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.]*")  # source and target names: parts of job keys and folders (no '-')


@dataclass(frozen=True)
class SourceSettings:
    """A pretrained network that cross-dataset blocks transfer from: a weights file imported at
    `plan` (transferbench.worker.sources), or a network of another study."""

    weights: str | None = None  # a .caffemodel or a torch state dict (relative to the config file)
    job: str | None = None  # or another study's network: "<study>:<job key>", e.g. "yosinski2014:all/base/seed0"
    format: str | None = None  # caffe | torchvision-alexnet, -vgg16, -resnet50, -vit_b16 | state-dict (default: from the file)
    mean: str | tuple[float, ...] | None = None  # the mean to subtract: a .binaryproto or .npy image, or [R, G, B]
    std: tuple[float, ...] | None = None  # a state dict's input std per channel, in 0-255 units (e.g. 255 x 0.229 = 58.395)
    channel_order: str | None = None  # a state dict's conv1: RGB (default) or BGR (converted from Caffe as it was)
    size: int | None = None  # images are resized to size x size before the crop (default 256)
    resize: str | None = None  # "warp" to size x size (Caffe's; the default) or "shorter" side + centre crop (torchvision's default)
    # Its own data, where known (an imported file's: ImageNet for the BVLC models). Forgetting is
    # measured on its validation set, and a wide network is trained from scratch on it (-wide).
    dataset: str | None = None
    data_root: str | None = None
    val_list: str | None = None
    split: str | None = None  # a split name, with side: the network was trained on one side of it
    side: str | None = None
    data_options: DataOptions | None = None  # its dataset read from a layout: SUN-397's partition, Caltech-101's draw

    def __post_init__(self) -> None:
        if (self.weights is None) == (self.job is None):
            raise UserError("a source names either weights (a file to import) or job (\"<study>:<job key>\"), one of them")
        if self.job is not None:
            study, colon, key = self.job.rpartition(":")
            if not colon or not study or not key:
                raise UserError(f"job {self.job!r} must read \"<study>:<job key>\", e.g. \"yosinski2014:all/base/seed0\"")
            extra = [name for name in ("format", "mean", "std", "channel_order", "size", "resize", "dataset", "data_root", "val_list",
                                       "split", "side", "data_options") if getattr(self, name) is not None]
            if extra:
                raise UserError(f"{extra[0]} is for imported weights; a study's job brings its own (from its plan)")
        if self.dataset is not None and self.dataset not in DATASETS:
            raise UserError(f"dataset {self.dataset!r} is not one of {', '.join(DATASETS)}")
        if (self.split is None) != (self.side is None):
            raise UserError("split and side go together: the side of the split the source network was trained on")
        if self.size is not None and self.size < 1:
            raise UserError(f"size must be at least 1, got {self.size}")


@dataclass(frozen=True)
class TargetSettings:
    """A dataset that cross-dataset blocks transfer to: all its classes, or one side of a split of it."""

    dataset: str  # cub200 | mit67 | sun397 | caltech101 | folder | fashion-mnist | cifar100 | imagenet1k | synthetic
    data_root: str | None = None  # its folder (relative to the config file)
    val_list: str | None = None  # ImageNet: Caffe-style list of a flat validation folder
    data_options: DataOptions | None = None  # SUN-397's partition, Caltech-101's draw
    split: str | None = None  # a split name (splits/<dataset>-<name>.json), with side: one side of it
    side: str | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise UserError(f"dataset {self.dataset!r} is not one of {', '.join(DATASETS)}")
        if self.data_options is not None and self.dataset not in LAYOUTS:
            raise UserError(f"data_options are for datasets read from their layout ({', '.join(LAYOUTS)}), not {self.dataset}")
        if (self.split is None) != (self.side is None):
            raise UserError("split and side go together: the target is one side of the split")


@dataclass(frozen=True)
class Block:
    networks: tuple[str, ...]  # the paper's notation (transferbench.schema.notation)
    name: str | None = None  # a label for the summary (default: block<number>)
    splits: tuple[str, ...] = ("all",)  # split names (splits/<dataset>-<name>.json), "all", or reducedK
    n: tuple[int, ...] = ()  # blocks copied, for the XnY patterns (default: every n, 1..L: 1..7 for the 8-layer networks)
    k: tuple[int, ...] = ()  # preserved layers above n, for XnY^k
    units: tuple[int, ...] = ()  # S, for grown networks
    forgetting: bool | None = None  # measure the source's accuracy after transfer (default: for developmental blocks)
    # Forgetting as Growing a Brain measures it (Table 4): every network of the block that fine-tunes
    # layers 1..7 (A7B+, A7B+WA64, A7B+-fc7, chains) is also frozen whole and given a new classifier
    # trained on the source's task (A7B+WA64-onA), with the [retrain] recipe.
    retrain_source: bool = False
    paper: str = ""  # which tables or figures of a paper this block fills, row by row (shown by plan)
    model: dict[str, Any] = field(default_factory=dict)  # this block's ModelConfig values
    train: dict[str, Any] = field(default_factory=dict)  # this block's TrainConfig values
    scratch: dict[str, Any] = field(default_factory=dict)  # this block's recipe of networks trained from scratch
    growth: dict[str, Any] = field(default_factory=dict)  # this block's GrowthSettings values
    source: str | None = None  # cross-dataset: the [source.<name>] it transfers from (side A of its networks)
    targets: tuple[str, ...] = ()  # cross-dataset: the [target.<name>]s it transfers to, in order: sides B, C, ...

    def __post_init__(self) -> None:
        if (self.source is None) != (not self.targets):
            raise UserError("a cross-dataset block names its source and its targets, both: source = \"caffenet\", "
                            "targets = [\"sun397\"] (B), or [\"sun397\", \"mit67\"] for a chain (B, C)")
        if self.source is not None and self.splits != ("all",):
            raise UserError("a cross-dataset block takes its classes from its targets; drop splits (a [target] table "
                            "can name a split and side)")
        if len(self.targets) > 25 or len(set(self.targets)) < len(self.targets):
            raise UserError(f"targets must name different [target] tables, at most 25, got {list(self.targets)!r}")
        if not self.networks:
            raise UserError("networks is empty; list at least one network pattern, e.g. networks = [\"baseA\", \"AnB\"]")
        if not self.splits:
            raise UserError("splits is empty; list at least one split, e.g. splits = [\"random0\"]")
        if not all(1 <= n <= 99 for n in self.n):
            raise UserError(f"n must list blocks 1..L (1..7 for the 8-layer networks), got {list(self.n)!r}")
        if not all(1 <= k <= 98 for k in self.k):
            raise UserError(f"k must list block counts of at least 1, got {list(self.k)!r}")
        if not all(u > 0 for u in self.units):
            raise UserError(f"units must list positive unit counts S, got {list(self.units)!r}")


@dataclass(frozen=True)
class StudyConfig:
    """A study config, checked. ``raw`` is the TOML as read (overrides applied): plan.json keeps it."""

    study: StudySettings
    model: dict[str, Any]
    train: dict[str, Any]
    scratch: dict[str, Any]
    retrain: dict[str, Any]
    growth: GrowthSettings
    slurm: SlurmSettings
    health: HealthSettings
    blocks: tuple[Block, ...]
    sources: dict[str, SourceSettings]
    targets: dict[str, TargetSettings]
    raw: dict[str, Any]
    source: str
    directory: Path  # the config's folder: relative data paths start here

    def block_values(self, block: Block) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """This block's model, train and growth values over the study's defaults."""
        return ({**self.model, **block.model}, {**self.train, **block.train}, {**self.growth.values(), **block.growth})

    def scratch_values(self, block: Block) -> dict[str, Any]:
        """The recipe of this block's networks trained from scratch: [train], the block's train,
        then [scratch] and the block's scratch over them."""
        return {**self.train, **block.train, **self.scratch, **block.scratch}

    def retrain_values(self, block: Block) -> dict[str, Any]:
        """The recipe of this block's classifiers retrained on the source's task: [train], the
        block's train, then [retrain]."""
        return {**self.train, **block.train, **self.retrain}


TOP_LEVEL = ("study", "model", "train", "scratch", "retrain", "growth", "slurm", "health", "source", "target", "block")


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
    scratch = check_values(TrainConfig, raw.get("scratch", {}), "scratch", source)
    retrain = check_values(TrainConfig, raw.get("retrain", {}), "retrain", source)
    growth = build(GrowthSettings, raw.get("growth", {}), "growth", source)
    slurm = build(SlurmSettings, raw.get("slurm", {}), "slurm", source)
    health = build(HealthSettings, raw.get("health", {}), "health", source)
    named: dict[str, dict[str, Any]] = {}
    for kind, cls in (("source", SourceSettings), ("target", TargetSettings)):
        tables = raw.get(kind, {})
        if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
            raise UserError(f"{source}: [{kind}] holds one table per name, e.g. [{kind}.caffenet]")
        for name in tables:
            if not _LABEL.fullmatch(name):
                raise UserError(f"{source}: [{kind}.{name}]: a {kind} name is part of job keys and folders: letters, "
                                "digits, _ and . (no -)")
        named[kind] = {name: build(cls, table, f"{kind}.{name}", source) for name, table in tables.items()}
    tables = raw.get("block", [])
    if not isinstance(tables, list) or not tables:
        raise UserError(f"{source}: no [[block]] of networks; add at least one (see configs/ for examples)")
    blocks = []
    for number, table in enumerate(tables, 1):
        where = f"block {number}"
        block = build(Block, table, where, source)
        check_values(ModelConfig, block.model, f"{where}.model", source)
        check_values(TrainConfig, block.train, f"{where}.train", source)
        check_values(TrainConfig, block.scratch, f"{where}.scratch", source)
        check_values(GrowthSettings, block.growth, f"{where}.growth", source)
        for kind, names in (("source", [block.source] if block.source else []), ("target", block.targets)):
            unknown = [name for name in names if name not in named[kind]]
            if unknown:
                valid = ", ".join(named[kind]) or f"none: add a [{kind}.{unknown[0]}] table"
                raise UserError(f"{source}: [{where}] {kind} {unknown[0]!r} is not a [{kind}] of this config; valid: {valid}")
        blocks.append(block)
    config = StudyConfig(study, model, train, scratch, retrain, growth, slurm, health, tuple(blocks), named["source"], named["target"],
                         raw, source, directory)
    build(ModelConfig, model, "model", source)  # the defaults must make whole configs, and so must each block's
    build(TrainConfig, train, "train", source)
    for number, block in enumerate(config.blocks, 1):
        model_values, train_values, _ = config.block_values(block)
        if block.model:
            build(ModelConfig, model_values, f"block {number}.model", source)
        if block.train:
            build(TrainConfig, train_values, f"block {number}.train", source)
        if scratch or block.scratch:
            build(TrainConfig, config.scratch_values(block), f"block {number}.scratch", source)
        if retrain and block.retrain_source:
            build(TrainConfig, config.retrain_values(block), f"block {number} with [retrain]", source)
    return config


def load_config(path: Path, overrides: list[str] | None = None, study_overrides: dict[str, Any] | None = None,
                presets: Path | None = None, directory: Path | None = None) -> StudyConfig:
    """Read and check a study config; ``overrides`` are ``--set TABLE.KEY=VALUE`` strings;
    ``directory``: where its relative paths start (default: the config's folder)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        choices = ", ".join(sorted(p.stem for p in presets.glob("*.toml"))) if presets and presets.is_dir() else ""
        raise UserError(f"study config {path} does not exist" + (f"; presets (give the name): {choices}" if choices else "")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read study config {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    raw = apply_overrides(read_toml(text, str(path)), overrides or [], str(path))
    return parse_config(raw, str(path), Path(directory or path.resolve().parent), study_overrides)
