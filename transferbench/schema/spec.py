"""The job spec: everything one worker run needs, as frozen dataclasses that import no torch.

``JobSpec`` = key, data (dataset, split file, side), ``Condition`` (which layers are copied
and frozen), ``ModelConfig`` (architecture), ``TrainConfig`` (the recipe), optionally
``Growth`` (a developmental network). The planner writes it into plan.json, the worker
reads it back with ``JobSpec.from_dict``; the hash of its dict names the result it yields.

Field order is part of the contract: ``to_dict`` follows it, and plan.json and the config
hash follow ``to_dict`` (tests/reference/yosinski2014-plan.json pins them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferbench.errors import UserError
from transferbench.schema.architectures import (ARCHITECTURES, BLOCKS, Architecture, activation_count, architecture,
                                                parameter_count)
from transferbench.schema.loader import build

LAYER_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")  # the 8-layer networks' units and head
INITS = ("paper", "kaiming")
CONDITIONS = ("base", "selffer", "transfer", "random_init", "preserved")
VARIANTS = ("DA", "WA", "DWA", "WWA")
# Scope -> the lowest pre-trained layer level that trains (conv1..conv5 are 1..5, fc6 6, fc7 7,
# earlier fca layers 7.5); "new" trains no pre-trained layer.
SCOPES = {"all": 0.0, "fc6": 6.0, "fc7": 7.0, "new": float("inf")}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one network."""

    arch: str = "caffenet"  # schema/architectures.py: caffenet (227 px, the paper), small (28-64 px), vgg16, resnet50, vit_b16, ...
    num_classes: int = 500  # outputs of the head (fc8)
    in_channels: int = 3  # 1 for Fashion-MNIST
    conv_widths: tuple[int, int, int, int, int] = (96, 256, 384, 384, 256)  # the 8-layer networks: output channels of conv1..conv5
    fc_width: int = 4096  # the 8-layer networks and VGG16: units of fc6 and fc7
    dropout: float = 0.5  # after fc6 and fc7
    init: str = "paper"  # "paper": Gaussian sigma 0.01 / 0.005, Caffe biases; "kaiming": He normal, zero biases
    blocks: str = "units"  # what n counts: the architecture's units one by one, or its stages (schema/architectures.py)

    def __post_init__(self) -> None:
        object.__setattr__(self, "conv_widths", tuple(self.conv_widths))
        _require(self.arch in ARCHITECTURES, f"arch {self.arch!r} is not one of {', '.join(ARCHITECTURES)}")
        _require(self.blocks in BLOCKS, f"model.blocks {self.blocks!r} is not one of {', '.join(BLOCKS)}")
        _require(self.num_classes >= 2, f"num_classes {self.num_classes}: a classifier needs at least 2 classes")
        _require(self.in_channels >= 1, f"in_channels must be at least 1, got {self.in_channels}")
        _require(len(self.conv_widths) == 5 and all(w >= 1 for w in self.conv_widths),
                 f"conv_widths must be 5 positive widths, got {list(self.conv_widths)}")
        _require(self.fc_width >= 1, f"fc_width must be at least 1, got {self.fc_width}")
        _require(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        _require(self.init in INITS, f"init {self.init!r} is not one of {', '.join(INITS)}")

    @property
    def architecture(self) -> Architecture:
        return architecture(self.arch)

    @property
    def depth(self) -> int:
        """L: the blocks n runs over (7 for the 8-layer networks)."""
        return len(self.architecture.blocks(self.blocks))

    def units_of(self, blocks: int) -> tuple[str, ...]:
        """The units of blocks 1..``blocks``, in order."""
        return tuple(unit for block in self.architecture.blocks(self.blocks)[:blocks] for unit in block)

    @property
    def eight_layer(self) -> bool:
        return self.architecture.family == "eight"

    def describe(self) -> str:
        """The network in a few words, for summaries: its widths where they are settings."""
        widths = {"eight": f", conv widths {list(self.conv_widths)}, fc {self.fc_width}", "vgg": f", fc {self.fc_width}",
                  "resnet": f", widths {list(self.conv_widths)}" if self.arch == "resnet_small" else ""}
        return (f"{self.arch}{widths.get(self.architecture.family, '')}, {self.num_classes} classes, "
                f"{self.parameter_count() / 1e6:.1f}M parameters")

    @property
    def groups(self) -> int:
        """Groups of conv2, conv4 and conv5: 2 in CaffeNet (the two GPUs of the original), 1 in
        torchvision's one-tower AlexNet."""
        return 1 if self.arch == "alexnet" else 2  # (the 8-layer networks only)

    def parameter_count(self) -> int:
        """Learned parameters of the plain network (weights and biases of conv1..fc8)."""
        if not self.eight_layer:
            return parameter_count(self)
        c1, c2, c3, c4, c5 = self.conv_widths
        kernel, pooled = (5, 3) if self.arch == "small" else (11, 6)
        g = self.groups
        shapes = [(self.in_channels * kernel * kernel, c1), (c1 // g * 25, c2), (c2 * 9, c3), (c3 // g * 9, c4),
                  (c4 // g * 9, c5), (c5 * pooled * pooled, self.fc_width), (self.fc_width, self.fc_width),
                  (self.fc_width, self.num_classes)]
        return sum(fan_in * out + out for fan_in, out in shapes)

    def activation_count(self) -> int:
        """Values one image leaves in memory in a forward pass (each layer's output and its pooled
        and normalised maps): a rough measure for memory estimates."""
        if not self.eight_layer:
            return activation_count(self)
        c1, c2, c3, c4, c5 = self.conv_widths
        s1, p1, p2 = (32, 15, 7) if self.arch == "small" else (55, 27, 13)
        pooled = 3 if self.arch == "small" else 6
        return (c1 * s1 * s1 + 2 * c1 * p1 * p1 + c2 * p1 * p1 + 2 * c2 * p2 * p2 + (c3 + c4 + c5) * p2 * p2
                + c5 * pooled * pooled + 2 * self.fc_width + self.num_classes)

    @staticmethod
    def small(num_classes: int, in_channels: int = 3, conv_widths=(32, 64, 96, 96, 64), fc_width: int = 256) -> "ModelConfig":
        return ModelConfig("small", num_classes, in_channels, tuple(conv_widths), fc_width, 0.5, "kaiming")


@dataclass(frozen=True)
class TrainConfig:
    """The paper's recipe as defaults (SPEC section 1)."""

    lr: float = 0.01  # base learning rate
    momentum: float = 0.9
    weight_decay: float = 5e-4  # on weights only; biases get none
    bias_lr_mult: float = 2.0  # biases learn at 2x the rate, as in Caffe
    batch_size: int = 256
    iterations: int = 450_000  # total SGD steps (use `epochs` to give the budget in epochs instead)
    epochs: float | None = None  # if set, iterations = ceil(epochs * train images / batch_size)
    lr_step: int = 100_000  # divide the lr by 1/lr_gamma every lr_step iterations
    lr_gamma: float = 0.1
    eval_every: int = 1_000  # iterations between validation passes
    checkpoint_every: int = 1_000  # iterations between checkpoints
    seed: int = 0
    resize: int = 256  # ImageNet: images resized to resize x resize
    crop: int = 227  # training crop (random) and evaluation crop (centre)
    pad: int = 0  # small images: zero padding before the random crop
    mirror: bool = True
    input_scale: float = 1.0  # multiply (image - mean) by this: 1.0 is Caffe's 0-255 range
    amp: bool = False  # bf16 autocast (CUDA)
    channels_last: bool = False
    compile: bool = False  # torch.compile the model
    workers: int = 0  # ImageNet: decoding threads (0: one per core, at most 8)
    warmup: int = 0  # iterations over which the lr rises linearly from lr/warmup to lr (0: none, the paper's recipe)
    keep_checkpoint: bool = False  # keep checkpoint.pt once the record and model.pt are written (it is 2x model.pt)
    lr_step_epochs: float | None = None  # if set, lr_step = ceil(lr_step_epochs * train images / batch_size): one recipe for datasets of any size
    holdout: float = 0.0  # fraction of each class's training images held out of training to choose an evaluation on (0: none, the paper's)
    classifier_lr_mult: float = 1.0  # a transfer's new classifier (fc8) at this multiple of the rate (Caffe's fine-tuning: 10; Yosinski et al.: 1)

    def __post_init__(self) -> None:
        for name in ("lr", "input_scale", "lr_gamma"):
            value = getattr(self, name)
            _require(math.isfinite(value) and value > 0, f"{name} must be a positive number, got {value}")
        _require(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        for name in ("weight_decay", "bias_lr_mult", "classifier_lr_mult"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "iterations", "lr_step", "eval_every", "checkpoint_every", "resize", "crop"):
            _require(getattr(self, name) >= 1, f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("seed", "pad", "workers", "warmup"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        _require(self.epochs is None or self.epochs > 0, f"epochs must be positive, got {self.epochs}")
        _require(self.lr_step_epochs is None or self.lr_step_epochs > 0, f"lr_step_epochs must be positive, got {self.lr_step_epochs}")
        _require(0 <= self.holdout < 0.5, f"holdout must be in [0, 0.5): a fraction of each class's training images, got {self.holdout}")


@dataclass(frozen=True)
class Condition:
    """What a job does with layers 1..8.

    | condition    | layers 1..n                     | layers n+1..n+k          | rest     |
    |--------------|---------------------------------|--------------------------|----------|
    | base         | random, trained                 |                          | random   |
    | selffer      | copied from the target's base   |                          | random   |
    | transfer     | copied from the source's base   |                          | random   |
    | random_init  | random, frozen ("nolearn")      |                          | random   |
    | preserved    | copied, frozen                  | copied, fine-tuned (k)   | random   |

    ``fine_tune`` (BnB+ / AnB+) trains the copied layers instead of freezing them.
    """

    kind: str = "base"
    n_transferred: int = 0  # n: layers 1..n copied (or random-frozen for random_init)
    fine_tune: bool = False  # "+" conditions: copied layers keep training
    n_preserved: int = 0  # preserved-k: layers n+1..n+k also copied, and fine-tuned

    def __post_init__(self) -> None:
        if self.kind not in CONDITIONS:
            raise UserError(f"unknown condition {self.kind!r}; choose one of {', '.join(CONDITIONS)}")
        if self.kind == "base":
            if self.n_transferred or self.fine_tune or self.n_preserved:
                raise UserError("a base condition copies nothing: n_transferred, fine_tune and n_preserved must be unset")
            return
        if self.n_transferred < 1:
            raise UserError(f"n_transferred {self.n_transferred} must be at least 1 for condition {self.kind}")
        if self.kind == "random_init" and self.fine_tune:
            raise UserError("random_init freezes its random layers; fine_tune does not apply")
        if self.kind == "preserved":
            if self.n_preserved < 1:
                raise UserError(f"n_preserved {self.n_preserved} must be at least 1")
        elif self.n_preserved:
            raise UserError("n_preserved is only for the preserved condition")

    def check_depth(self, depth: int, arch: str) -> None:
        """n (and n + k) within the L blocks of the architecture."""
        if self.kind == "base":
            return
        if self.n_transferred > depth:
            raise UserError(f"n_transferred {self.n_transferred} must be 1..{depth}: {arch} has {depth} blocks "
                            f"(the head excluded)")
        if self.kind == "preserved" and self.n_transferred + self.n_preserved > depth:
            raise UserError(f"n_preserved {self.n_preserved} must be 1..{depth - self.n_transferred} with n_transferred "
                            f"{self.n_transferred} ({arch} has {depth} blocks)")

    @property
    def needs_source(self) -> bool:
        return self.kind in ("selffer", "transfer", "preserved")

    @property
    def copied_blocks(self) -> int:
        """How many leading blocks are copied from the source."""
        return self.n_transferred + self.n_preserved if self.needs_source else 0

    @property
    def frozen_prefix(self) -> int:
        """How many leading blocks are frozen (and run without autograd)."""
        return 0 if self.kind == "base" or self.fine_tune else self.n_transferred

    def label(self) -> str:
        """The paper's notation, e.g. ``AnB`` with n: ``transfer3+``, ``selffer5``, ``random_init2``."""
        if self.kind == "base":
            return "base"
        suffix = "+" if self.fine_tune else ""
        preserved = f"^{self.n_preserved}" if self.kind == "preserved" else ""
        return f"{self.kind}{self.n_transferred}{preserved}{suffix}"


@dataclass(frozen=True)
class Growth:
    """How a developmental network was grown and how the job that grows it trains
    (see transferbench/worker/grow.py for what each variant adds)."""

    variant: str  # DA | WA | DWA | WWA
    units: tuple[int, ...]  # S of every growth step so far, oldest first (a chain has one per task)
    new: bool = True  # the last step's units are added by this job (False: a wide network, all units trained together)
    normalize: bool = True  # L2-normalise and scale (learnable γ) blocks where they meet and at the classifier
    scale_init: float = 10.0  # initial γ
    scope: str = "all"  # new | fc7 | fc6 | all: which pre-trained layers fine-tune
    new_lr_mult: float = 10.0  # learning-rate multiplier of the new units and their γ

    def __post_init__(self) -> None:
        object.__setattr__(self, "units", tuple(self.units))
        if self.variant not in VARIANTS:
            raise UserError(f"unknown growth variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if not self.units or not all(isinstance(s, int) and s > 0 for s in self.units):
            raise UserError(f"growth units must list one positive S per growth step, got {list(self.units)!r}")
        if self.variant == "WWA" and any(s % 2 for s in self.units):
            raise UserError(f"WWA adds S/2 units to fc6: S must be even, got {list(self.units)!r}")
        if self.variant == "DWA" and len(self.units) > 1:
            raise UserError("DWA grows in one step only: a second step's fc7 units would have no reader; chain DA, WA or WWA")
        if self.scope not in SCOPES:
            raise UserError(f"unknown fine-tuning scope {self.scope!r}; choose one of {', '.join(SCOPES)}")
        if not self.scale_init > 0 or not self.new_lr_mult > 0:
            raise UserError("growth scale_init and new_lr_mult must be positive")

    def label(self) -> str:
        """``WA1024``; a chain's later steps read ``WA1024x2``."""
        steps = len(self.units)
        return f"{self.variant}{self.units[-1]}" + (f"x{steps}" if steps > 1 else "")

    def source(self) -> "Growth | None":
        """The architecture of the network this one starts from (None: the plain network)."""
        units = self.units[:-1] if self.new else self.units
        return Growth(self.variant, units, False, self.normalize, self.scale_init) if units else None


def check_growth(condition: Condition, growth: Growth, model: ModelConfig | None = None) -> None:
    """A growth fits a base (a wide network from scratch) or a fine-tuned transfer of all L blocks."""
    kind, n_transferred, fine_tune = condition.kind, condition.n_transferred, condition.fine_tune
    depth = model.depth if model is not None else 7
    if model is not None and not model.architecture.has_fc_top:
        if growth.variant not in ("DA", "WA"):
            raise UserError(f"{model.arch} grows at its pooled features by depth (DA) or width (WA); {growth.variant} "
                            "widens fc6 and fc7, which only the 8-layer networks and VGG16 have")
        if growth.scope in ("fc6", "fc7"):
            raise UserError(f"scope {growth.scope} names a layer {model.arch} does not have; use new or all")
    if kind == "base":
        if growth.new or growth.scope != "all":
            raise UserError("a grown base network is trained from scratch: growth.new must be false and scope all")
    elif kind in ("transfer", "selffer") and n_transferred == depth and not fine_tune:
        # A grown network frozen whole with a new classifier (its features read on another task:
        # the source's accuracy with its classifier retrained, Growing a Brain's Table 4).
        if growth.new or growth.scope != "new":
            raise UserError("a frozen grown network adds no units and trains its classifier alone: growth.new must be "
                            "false and scope new")
    elif kind not in ("transfer", "selffer") or n_transferred != depth:
        raise UserError(f"a developmental network copies blocks 1..{depth} and fine-tunes (AnB+ with n={depth}), "
                        f"not {kind} with n={n_transferred}{' fine-tuned' if fine_tune else ''}")


# Recipe settings that change how a job runs, never what it computes: left out of its identity.
TRAIN_PLACEMENT = ("workers", "keep_checkpoint", "checkpoint_every")

LAYOUTS = ("cub200", "mit67", "sun397", "caltech101", "folder")  # datasets read in their genuine layouts (tasks/layout.py)
IMAGE_SIZES = {"fashion-mnist": 28, "cifar100": 32, "synthetic": 32}  # datasets held in memory: their images' size
MEANS = ("source", "target")
RESIZES = ("warp", "shorter")  # how image files reach size x size: Caffe's warp, torchvision's shorter side + centre crop


@dataclass(frozen=True)
class DataOptions:
    """Settings of a dataset read in its genuine on-disk layout (``transferbench.tasks.layouts``)."""

    partition: int = 1  # SUN-397: which of the ten official partitions (Training_NN.txt / Testing_NN.txt)
    train_per_class: int = 30  # Caltech-101: training images per class (customarily 15 or 30); the rest are for testing
    background: bool = False  # Caltech-101: keep BACKGROUND_Google as a class (excluded by custom)
    split_seed: int = 0  # Caltech-101: seed of the draw of each class's training images
    test_per_class: int | None = 50  # Caltech-101: test images per class, drawn after the training ones (the literature's 50; None: all the rest)

    def __post_init__(self) -> None:
        _require(1 <= self.partition <= 10, f"partition must be 1..10 (SUN-397's ten official partitions), got {self.partition}")
        _require(self.train_per_class >= 1, f"train_per_class must be at least 1, got {self.train_per_class}")
        _require(self.split_seed >= 0, f"split_seed must be >= 0, got {self.split_seed}")
        _require(self.test_per_class is None or self.test_per_class >= 1,
                 f"test_per_class must be at least 1 (or left out: all the rest), got {self.test_per_class}")


@dataclass(frozen=True)
class InputAdapter:
    """How a job feeds its images to a network that was trained on other data (a cross-dataset
    transfer): each image is brought to the source network's input before the recipe's crop.
    The source's crop and input scale are the job's ``train.crop`` and ``train.input_scale``."""

    size: int  # images are resized to size x size: the source's input size (CaffeNet: 256, then the 227 crop)
    channels: int  # the source's input channels: gray images are repeated to 3, colour ones reduced to 1 (luminance)
    mean: str = "source"  # subtract the mean image stored with the source's weights ("source") or the target training set's ("target")
    mean_file: str | None = None  # "source": the weights file that holds it (every job on the target subtracts the same)
    mean_of: str | None = None  # "source": "<config hash>#<attempt>" that file carries (another source, another mean, another job)
    std: tuple[float, ...] | None = None  # per channel, 0-255 units: (image - mean) x input_scale / std (torchvision's normalisation)
    resize: str = "warp"  # image files: "warp" to size x size (Caffe's), or "shorter" side to size, then the centre (torchvision's)

    def __post_init__(self) -> None:
        _require(self.size >= 1, f"input size must be at least 1, got {self.size}")
        _require(self.channels in (1, 3), f"input channels must be 1 or 3, got {self.channels}")
        _require(self.mean in MEANS, f"input mean {self.mean!r} is not one of {', '.join(MEANS)}")
        _require(self.resize in RESIZES, f"input resize {self.resize!r} is not one of {', '.join(RESIZES)}")
        _require(self.std is None or (len(self.std) == self.channels and all(v > 0 for v in self.std)),
                 f"input std must give one positive value per channel ({self.channels}), got {self.std}")
        _require((self.mean == "source") == (self.mean_file is not None) == (self.mean_of is not None),
                 "input mean 'source' names the weights file that holds it and their identity (mean_file, mean_of), "
                 "and only then")


def caffenet_pool5(crop: int) -> int:
    """The side of CaffeNet's pool5 output for a ``crop`` px input (227: 6, what fc6 takes)."""
    side = (crop - 11) // 4 + 1  # conv1: 11 px, stride 4, no padding; conv2-5 keep the size
    for _ in range(3):  # pool1, pool2, pool5: 3 px, stride 2
        side = (side - 3) // 2 + 1
    return side


@dataclass(frozen=True)
class SourceRef:
    """The network a job copies from when it is not a job of its own plan: weights imported from a
    file, or a job of another study. The weights must carry ``config_hash`` and ``attempt``."""

    name: str  # "source:<name>" for an imported file ([source.<name>]), "<study>:<job key>" for another study's job
    config_hash: str  # an imported file: the first 16 hex digits of its sha256; a job: its spec hash
    attempt: int = 1  # a study job's attempt: a retrained network is another network
    settings: str | None = None  # an imported file: its import settings (canonical JSON), part of what it computes

    def expected(self) -> dict[str, Any]:
        """What the weights must carry, as the worker checks a base: {"key", "config_hash", "attempt"}."""
        return {"key": self.name, "config_hash": self.config_hash, "attempt": self.attempt}


@dataclass(frozen=True)
class DataRef:
    """One side of one dataset, named as a job names its own data: where a cross-dataset job
    measures its source network's accuracy before and after (forgetting)."""

    dataset: str
    split: str | None = None  # a split file, or None for all classes
    side: str | None = None
    data_root: str | None = None
    val_list: str | None = None
    data_options: DataOptions | None = None
    split_hash: str | None = None  # the split's content hash (its identity; ``split`` is only where it lies)
    data_id: str | None = None  # the data's fingerprint (tasks/fingerprint.py; ``data_root`` is only where it lies)


@dataclass(frozen=True)
class JobSpec:
    """Everything one worker run needs. Written as JSON by the planner."""

    key: str  # e.g. random0/A3B+/seed0: the job's name, folder and row
    dataset: str  # fashion-mnist | cifar100 | imagenet1k
    split: str | None  # path of a split file, or None for all classes
    side: str | None  # which side of the split is trained on (A, B, all)
    out_dir: str  # where the checkpoint, weights and record go
    condition: Condition = field(default_factory=Condition)
    source_checkpoint: str | None = None  # weights of the base network layers are copied from
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data_root: str | None = None
    val_list: str | None = None  # ImageNet: Caffe-style list for a flat validation folder
    strict: bool = False  # corrupt images are fatal instead of skipped
    pack_dir: str | None = None  # ImageNet: decode once into a uint8 pack here, shared by every job
    growth: Growth | None = None  # a developmental network (transferbench.worker.grow); None: the plain network
    forgetting_side: str | None = None  # after training, the source network's accuracy on this side (its classifier kept aside)
    data_options: DataOptions | None = None  # a dataset in its genuine layout (cub200, mit67, sun397, caltech101, folder)
    input: InputAdapter | None = None  # cross-dataset: how the images are brought to the source network's input
    source_ref: SourceRef | None = None  # cross-dataset: the imported weights or other study's job it copies from
    forgetting_data: DataRef | None = None  # cross-dataset: the source's own data, for its accuracy before and after
    # What the paths above hold, which is what the job's identity covers (set by the planner):
    split_hash: str | None = None  # the split file's content hash
    data_id: str | None = None  # the fingerprint of the dataset's images (tasks/fingerprint.py)
    source_id: str | None = None  # the identity (config hash) of the base network of its own study it copies from

    def __post_init__(self) -> None:
        self.condition.check_depth(self.model.depth, f"{self.model.arch} ({self.model.blocks})")
        if self.growth is not None:
            check_growth(self.condition, self.growth, self.model)
        if (self.forgetting_side is not None or self.forgetting_data is not None) and not self.condition.needs_source:
            raise UserError(f"{self.key}: forgetting is measured against a source network; a {self.condition.kind} job has none")
        if self.forgetting_side is not None and self.forgetting_data is not None:
            raise UserError(f"{self.key}: forgetting is measured on a side of the job's split or on the source's own data, not both")
        if self.source_ref is not None and not self.condition.needs_source:
            raise UserError(f"{self.key}: a {self.condition.kind} job copies nothing; it has no source")
        arch = self.model.architecture
        if arch.family == "vit" and self.train.crop != arch.crop:
            raise UserError(f"{self.key}: {self.model.arch} reads {arch.crop} px images (its position embeddings are "
                            f"for that many patches), not a {self.train.crop} px crop; set train.crop = {arch.crop}")
        if self.model.arch in ("caffenet", "bvlc_alexnet") and caffenet_pool5(self.train.crop) != 6:
            raise UserError(f"{self.key}: a {self.train.crop} px crop leaves CaffeNet's pool5 at "
                            f"{caffenet_pool5(self.train.crop)}x{caffenet_pool5(self.train.crop)}, but its fc6 takes 6x6; "
                            "set train.crop = 227 (CaffeNet's; 224 is torchvision AlexNet's)")
        if self.data_options is not None and self.dataset not in LAYOUTS:
            raise UserError(f"{self.key}: data options are for datasets read in a layout ({', '.join(LAYOUTS)}), not {self.dataset}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        # absent when unset: older plans keep their config hashes
        for optional in ("growth", "forgetting_side", "data_options", "input", "source_ref", "forgetting_data",
                         "split_hash", "data_id", "source_id"):
            if data[optional] is None:
                del data[optional]
        for part, names in (("source_ref", ("settings",)), ("forgetting_data", ("split_hash", "data_id")), ("input", ("std",))):
            for name in names:
                if data.get(part) is not None and data[part][name] is None:
                    del data[part][name]
        for part in (data, data.get("forgetting_data")):  # a Caltech-101 setting: other layouts keep their hashes
            if part is not None and part.get("data_options") is not None and part["dataset"] != "caltech101":
                part["data_options"].pop("test_per_class", None)
        if data.get("input") is not None and data["input"]["resize"] == "warp":
            del data["input"]["resize"]
        for default_off in ("warmup", "keep_checkpoint", "lr_step_epochs", "holdout"):  # likewise for settings added later, when off
            if not data["train"][default_off]:
                del data["train"][default_off]
        if data["train"]["classifier_lr_mult"] == 1.0:
            del data["train"]["classifier_lr_mult"]
        if data["model"]["blocks"] == "units":  # the 8-layer networks' units are their stages: older hashes hold
            del data["model"]["blocks"]
        return data

    @staticmethod
    def from_dict(data: Any, source: str = "job spec") -> "JobSpec":
        return build(JobSpec, data, "spec", source)

    def identity(self) -> dict[str, Any]:
        """What the job computes: ``to_dict`` without its placement (where it runs, reads and writes).

        A path is left out where the planner recorded what it holds: the split file's content
        hash, the data's fingerprint, the base's identity. A spec written by hand (``transferbench
        train``) without them keeps its paths, which are then all that tells its inputs apart."""
        data = self.to_dict()
        data.pop("key")
        data.pop("out_dir")
        data.pop("pack_dir")  # a pack holds the same bytes as the files it was built from
        for name in TRAIN_PLACEMENT:
            data["train"].pop(name, None)
        if self.split_hash is not None:
            data.pop("split")
        if self.data_id is not None:
            data.pop("data_root")
            data.pop("val_list")
        if self.source_id is not None or self.source_ref is not None:
            data.pop("source_checkpoint")
        if "input" in data and self.input.mean_of is not None:
            data["input"].pop("mean_file")
        ref = data.get("forgetting_data")
        if ref is not None:
            if ref.get("split_hash") is not None:
                ref.pop("split")
            if ref.get("data_id") is not None:
                ref.pop("data_root")
                ref.pop("val_list")
        return data

    def config_hash(self) -> str:
        """The job's identity, hashed: what names its checkpoint, weights and record (``identity``)."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def image_size(self) -> int:
        """The side of the images this job reads (before its crop): the source's input size for a
        cross-dataset job, the size of a dataset held in memory, else the recipe's resize."""
        return self.input.size if self.input is not None else IMAGE_SIZES.get(self.dataset, self.train.resize)

    def weights_bytes(self) -> int:
        """Bytes of the final model.pt's contents: the float32 weights and the mean image it subtracted."""
        return 4 * (self.model.parameter_count() + self.model.in_channels * self.image_size() ** 2)

    def memory_estimate(self) -> int:
        """Bytes of device memory training this network takes, roughly: weights, gradients, momentum
        and a copy (4 x 4 bytes per parameter), and per image of the batch its activations twice
        (kept for the backward pass, and their gradients) in float32. CaffeNet at batch 256: 2.8 GB
        (measured peak on an H200: 3.3 GB in fp32, 2.0 GB in bf16)."""
        return 16 * self.model.parameter_count() + 8 * self.train.batch_size * self.model.activation_count()

    def stream(self) -> str | None:
        """What fixes this job's training stream: jobs with the same stream read the same images
        in the same order with the same crops (the seed fixes order and draws), so one fused
        process can train them together. None for a job that trains alone (a grown network,
        a compiled model)."""
        if self.growth is not None or self.train.compile:
            return None
        data = self.to_dict()
        return json.dumps([data.get(name) for name in ("dataset", "split", "side", "data_root", "val_list", "strict", "pack_dir",
                                                       "model", "train", "data_options", "input")],
                          sort_keys=True, separators=(",", ":"))


def load_spec(path: Path) -> JobSpec:
    """A job spec from its JSON file (``transferbench train SPEC.json``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"job spec {path} does not exist") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"job spec {path} does not parse as JSON: {exc}") from exc
    return JobSpec.from_dict(data, str(path))
