"""The worker: train one network of the study from a job spec and write one result record.

Determinism: the sample order of epoch e comes from a generator seeded with (seed, e) and
the augmentation and dropout of iteration i from (seed, i), so a run killed at any
checkpoint and resumed replays exactly the iterations an uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import platform
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F

from transferbench import __version__
from transferbench.errors import UserError
from transferbench.fileio import atomic_write_bytes, atomic_write_text
from transferbench.provenance import git_commit
from transferbench.schema.health import HealthSettings, judge
from transferbench.schema.record import JobIdentity, ResultRecord, attempt_seed, mean_of_best, read_attempts
from transferbench.schema.spec import JobSpec, TrainConfig, load_spec  # noqa: F401  (load_spec: `transferbench train`)
from transferbench.tasks.layout import dataset_classes
from transferbench.tasks.splits import load_split
from transferbench.worker.data import LUMINANCE, ImageFileReader, ImageSet, load_image_set
from transferbench.worker.grow import GrownNet, apply_growth, build_model, is_classifier
from transferbench.worker.models import LAYER_NAMES, TransferNet
from transferbench.worker.transfer import apply_condition

# Signals that make the worker checkpoint and stop: preemption or requeue (TERM), a user's
# request (USR1), Slurm's warning before the time limit (USR2, sbatch --signal).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

# Losses stay on the device and are read (one GPU sync) every this many iterations.
LOSS_SYNC_EVERY = 20

# ImageNet's per-channel RGB mean (0-255), standing in for Caffe's mean image.
IMAGENET_MEAN = (123.68, 116.78, 103.94)


# ---------------------------------------------------------------------------- batches

class Batches:
    """Training and evaluation batches of one image set, augmented on the fly.

    The uint8 images travel to the device first (a quarter of the bytes of float32, pinned
    and non-blocking on CUDA); mean subtraction, padding, the random crop and the mirror
    then run there as one gather, so the CPU only reads or decodes bytes. On a CPU device
    the same values come from slicing each image, which is several times faster there.
    """

    def __init__(self, images: ImageSet, config: TrainConfig, device: torch.device, train: bool,
                 strict: bool = False, mean: torch.Tensor | None = None) -> None:
        self.set, self.config, self.device, self.train = images, config, device, train
        self.reader = ImageFileReader(images.files, strict, config.workers, images.size, images.channels) \
            if images.files is not None else None
        if mean is None:
            if images.mean is not None:
                mean = images.mean  # the pack's mean image
            elif images.images is not None:
                mean = images.images.float().mean(0)  # the training set's mean image, as Caffe subtracts it
            elif images.channels == 1:
                mean = torch.tensor([sum(w * m for w, m in zip(LUMINANCE, IMAGENET_MEAN))]).view(1, 1, 1)
            else:
                mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.mean = mean.float()
        self.device_mean = self.mean.to(device)

    @property
    def skipped(self) -> int:
        return (self.reader.skipped if self.reader is not None else 0) + self.set.skipped

    def raw(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images and labels of ``indices`` on the CPU (corrupt files dropped)."""
        if self.reader is not None:
            images, kept = self.reader.load(indices)
            return images, self.set.labels[kept]
        if self.set.packed is not None:
            return torch.from_numpy(np.ascontiguousarray(self.set.packed[self.set.rows[indices]])), self.set.labels[indices]
        return self.set.images[indices], self.set.labels[indices]

    @property
    def reads_files(self) -> bool:
        """True when fetching a batch touches the disk, so it pays to fetch the next one ahead."""
        return self.reader is not None or self.set.packed is not None

    def prepare(self, indices: list[int], generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.to_device(self.fetch(indices, generator))

    def fetch(self, indices: list[int], generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        """The CPU half of a batch: uint8 images, labels and the crop/mirror draws."""
        images, labels = self.raw(indices)
        return (images, labels, *self.draw(images.shape, generator))

    def draw(self, shape: torch.Size, generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        """The crop offsets and mirror flags of a batch of ``shape`` (the central crop, unmirrored, when evaluating)."""
        crop, pad = self.config.crop, self.config.pad
        count, _, height, width = shape
        height, width = height + 2 * pad, width + 2 * pad
        crop = min(crop, height, width)
        if self.train and generator is not None:
            tops = torch.randint(0, height - crop + 1, (count,), generator=generator)
            lefts = torch.randint(0, width - crop + 1, (count,), generator=generator)
            flips = (torch.rand(count, generator=generator) < 0.5) & self.config.mirror
        else:
            tops = torch.full((count,), (height - crop) // 2)
            lefts = torch.full((count,), (width - crop) // 2)
            flips = torch.zeros(count, dtype=torch.bool)
        return tops, lefts, flips, torch.tensor(crop)

    def to_device(self, fetched: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The device half: copy the bytes (unless they are there already), subtract the mean, pad, crop and mirror."""
        images, labels, tops, lefts, flips, crop = fetched
        if self.device.type == "cuda" and images.device.type == "cpu":
            images, labels = images.pin_memory(), labels.pin_memory()
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        memory_format = torch.channels_last if self.config.channels_last else torch.contiguous_format
        crop_images = self._crop_on_cpu if self.device.type == "cpu" else self._crop_gather
        return crop_images(images, tops, lefts, flips, int(crop)).contiguous(memory_format=memory_format), labels

    def _crop_gather(self, images: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, flips: torch.Tensor,
                     crop: int) -> torch.Tensor:
        """Mean, padding, crop and mirror of the whole batch as one gather: one kernel on a GPU."""
        pad = self.config.pad
        x = (images.float() - self.device_mean) * self.config.input_scale
        if pad:
            x = F.pad(x, (pad, pad, pad, pad))
        steps = torch.arange(crop)
        rows = (tops[:, None] + steps).to(images.device)
        cols = torch.where(flips[:, None], lefts[:, None] + crop - 1 - steps, lefts[:, None] + steps).to(images.device)
        batch = torch.arange(len(images), device=images.device)[:, None, None, None]
        channel = torch.arange(x.shape[1], device=images.device)[None, :, None, None]
        return x[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]

    def _crop_on_cpu(self, images: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, flips: torch.Tensor,
                     crop: int) -> torch.Tensor:
        """The same values as the gather, by slicing each image (about 6x faster on a CPU):
        only the cropped pixels are converted and have the mean subtracted."""
        pad, scale = self.config.pad, self.config.input_scale
        if pad:  # padding is zeros after mean subtraction, as in the gather
            source, mean = F.pad((images.float() - self.device_mean) * scale, (pad, pad, pad, pad)), None
        else:
            source, mean = images, self.device_mean.expand(images.shape[1:])
        out = torch.empty(len(images), images.shape[1], crop, crop)
        for i, (top, left, flip) in enumerate(zip(tops.tolist(), lefts.tolist(), flips.tolist())):
            window = source[i, :, top:top + crop, left:left + crop]
            if mean is not None:
                window = (window.float() - mean[:, top:top + crop, left:left + crop]) * scale
            out[i] = window.flip(-1) if flip else window
        return out


def _epoch_order(count: int, seed: int, epoch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(count, generator=generator)


def batch_indices(count: int, batch_size: int, seed: int, iteration: int) -> list[int]:
    """Indices of training batch ``iteration``: a fresh shuffle every epoch, deterministic."""
    per_epoch = max(1, count // batch_size)
    epoch, position = divmod(iteration, per_epoch)
    order = _epoch_order(count, seed, epoch)
    return order[position * batch_size:(position + 1) * batch_size].tolist()


# ---------------------------------------------------------------------------- training

def build_optimizer(model: TransferNet, config: TrainConfig) -> torch.optim.SGD:
    """SGD over the trainable parameters: weights with weight decay, biases at ``bias_lr_mult``
    without; a grown network's new units (and γ scales, never decayed) at ``new_lr_mult``."""
    info = model.parameter_info() if isinstance(model, GrownNet) else {}
    new_mult = model.growth.new_lr_mult if isinstance(model, GrownNet) else 1.0
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for key, parameter in model.named_parameters():
        if parameter.requires_grad:
            kind = "weight" if key.endswith(".weight") else "bias" if key.endswith(".bias") else "scale"
            groups.setdefault((kind, info.get(key, (0, False))[1]), []).append(parameter)
    settings = {"weight": (1.0, config.weight_decay), "bias": (config.bias_lr_mult, 0.0), "scale": (1.0, 0.0)}
    return torch.optim.SGD([
        {"params": params, "lr_mult": settings[kind][0] * (new_mult if new else 1.0), "weight_decay": settings[kind][1]}
        for (kind, new), params in groups.items()
    ], lr=config.lr, momentum=config.momentum)


def learning_rate(config: TrainConfig, iteration: int) -> float:
    """The step schedule (divided by 1/lr_gamma every lr_step), ramped up linearly over the first ``warmup`` iterations."""
    ramp = min(1.0, (iteration + 1) / config.warmup) if config.warmup else 1.0
    return ramp * config.lr * config.lr_gamma ** (iteration // config.lr_step)


def sgd_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
             frozen_prefix: int = 0, amp: bool = False, start: int = 0) -> torch.Tensor:
    """One training step (bf16 autocast when ``amp``); the loss stays on the device. ``start`` > 0:
    ``x`` is the output of layer ``start`` (see ``TransferNet.forward``)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x, frozen_prefix, start=start) if start else model(x, frozen_prefix)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def evaluate(model: TransferNet, batches: Batches, batch_size: int, amp: bool) -> dict[str, float]:
    return evaluate_models([model], batches, batch_size, amp)[0]


@torch.no_grad()
def evaluate_models(models: list[TransferNet], batches: Batches, batch_size: int, amp: bool) -> list[dict[str, float]]:
    """Top-1, top-5 and loss of each model on the validation set; each batch is read once for all."""
    for model in models:
        model.eval()
    counts = [[0, 0, 0.0] for _ in models]  # correct top-1, correct top-5, summed loss
    total = 0
    for start in range(0, len(batches.set), batch_size):
        x, y = batches.prepare(list(range(start, min(start + batch_size, len(batches.set)))), None)
        if len(y) == 0:
            continue
        for model, count in zip(models, counts):
            with torch.autocast(batches.device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
            count[2] += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            count[0] += int((top[:, 0] == y).sum())
            count[1] += int((top == y[:, None]).any(1).sum())
        total += len(y)
    for model in models:
        model.train()
    if total == 0:
        raise UserError("no readable validation image: every one was corrupt or the side has none; check the data")
    return [{"top1": c1 / total, "top5": c5 / total, "loss": loss / total} for c1, c5, loss in counts]


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(device: torch.device, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def prefix_chains(members: list[tuple[TransferNet, int]]) -> list[tuple[int, ...]]:
    """For each (model, frozen prefix n), the frozen layers 1..n it shares with the others, as a
    path in a tree of layers: two models share node k of their paths when their layers 1..k hold
    the very same weights (compared exactly), so the activations after layer k are the same for
    both. Give n = 0 for a model that must not share (a grown network, a compiled model)."""
    nodes: list[tuple[int | None, str, list[torch.Tensor]]] = []  # (parent node, layer, its parameters)
    chains = []
    for model, frozen_prefix in members:
        chain: list[int] = []
        if frozen_prefix:
            parent = None
            for name in LAYER_NAMES[:frozen_prefix]:
                params = [p.detach() for p in model.layers[name].parameters()]
                found = next((i for i, (up, layer, theirs) in enumerate(nodes) if up == parent and layer == name
                              and all(torch.equal(a, b) for a, b in zip(theirs, params))), None)
                if found is None:
                    nodes.append((parent, name, params))
                    found = len(nodes) - 1
                chain.append(found)
                parent = found
        chains.append(tuple(chain))
    return chains


class SharedPrefix:
    """The frozen layers of one training batch, each computed once for every trainer that shares
    it, with the random state after each layer (dropout in a frozen fc6 or fc7 draws from it), so
    that every trainer continues exactly as if it had computed its prefix itself."""

    def __init__(self, x: torch.Tensor, amp: bool) -> None:
        self.x, self.amp = x, amp
        self.cache: dict[int, tuple[torch.Tensor, tuple]] = {}

    @torch.no_grad()
    def output(self, model: TransferNet, chain: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """The output of layer len(chain) for ``model``; the random state is left as after it.
        Call right after seeding the iteration's random state."""
        known = len(chain)
        while known and chain[known - 1] not in self.cache:
            known -= 1
        x = self.x
        if known:
            x, state = self.cache[chain[known - 1]]
            _set_rng_state(device, state)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp):
            for depth in range(known, len(chain)):
                x = model._layer_block(LAYER_NAMES[depth], x)
                self.cache[chain[depth]] = (x, _rng_state(device))
        return x


class StopRequested(Exception):
    """SIGTERM/SIGUSR1/SIGUSR2 arrived: a checkpoint was written, the job should be requeued."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class Trainer:
    """One network from its spec to its result record.

    ``Trainer(spec).run()`` builds the data, the model (copying and freezing as the
    condition says) and the optimizer, resumes from ``out_dir/checkpoint.pt`` when one
    exists, then (``train_together``, alone or with the other networks of a fused group)
    alternates training steps with evaluations and checkpoints until the recipe's iterations
    are done, and writes ``model.pt`` and ``result.json``. A stop signal (SIGTERM, SIGUSR1,
    SIGUSR2) makes it checkpoint and raise StopRequested: the requeue hook.
    """

    def __init__(self, spec: JobSpec, device: str = "cpu", progress: bool = True, identity: JobIdentity | None = None,
                 commit: str | None = None, health: HealthSettings | None = None,
                 source: dict[str, Any] | None = None, log: Callable[[str], Any] | None = None,
                 shared: "Trainer | None" = None) -> None:
        """``shared``: a trainer of the same stream (``JobSpec.stream``) whose images and batches
        this one reuses instead of loading them again (a fused group)."""
        self.spec, self.config, self.progress = spec, spec.train, progress
        self.log = log or (lambda _line: None)  # a line per start, evaluation and end (for log files, not terminals)
        # The base this job must copy from, as the plan names it: {"key", "config_hash", "attempt"}.
        self.expected_source = source
        self.health_settings = health or HealthSettings()
        # A stalled network retrained on request (submit --retry-stalled) trains with another
        # seed; its identity, spec and hash stay those of the plan.
        self.attempts = read_attempts(Path(spec.out_dir))
        seed = attempt_seed(spec.train.seed, self.attempts)
        if seed != spec.train.seed:
            self.config = dataclasses.replace(spec.train, seed=seed)
        self.identity = identity or JobIdentity.from_key(spec)
        self.commit = commit if commit is not None else git_commit()
        self.out_dir = Path(spec.out_dir)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but no CUDA device is available; use --device cpu")
        if shared is not None and shared.spec.stream() != spec.stream():
            raise ValueError(f"{spec.key} cannot share the images of {shared.spec.key}: their training streams differ")
        self._load_data(shared)
        if self.config.lr_step_epochs is not None:  # the step in iterations, for this training set
            steps = max(1, math.ceil(self.config.lr_step_epochs * len(self.train_set) / self.config.batch_size))
            self.config = dataclasses.replace(self.config, lr_step=steps)
        self._build_model(shared)
        self.iterations = (self.config.iterations if self.config.epochs is None
                           else math.ceil(self.config.epochs * len(self.train_set) / self.config.batch_size))
        self.checkpoint_path = self.out_dir / "checkpoint.pt"
        self.previous_checkpoint_path = self.out_dir / "checkpoint.prev.pt"
        self.state: dict[str, Any] = {"iteration": 0, "evaluations": [], "losses": [], "images_seen": 0, "wall_time": 0.0,
                                      "started_at": time.time()}
        self._resume()

    # ------------------------------------------------------------------ build

    def _load_data(self, shared: "Trainer | None") -> None:
        spec = self.spec
        split = load_split(spec.split) if spec.split else None
        root = Path(spec.data_root) if spec.data_root else None
        val_list = Path(spec.val_list) if spec.val_list else None
        own = image_set_settings(spec, self.progress)
        val_split = split if split and split.method != "reduced" else None
        if shared is not None:
            self.train_set, self.val_set = shared.train_set, shared.val_set
        else:
            self.train_set = load_image_set(spec.dataset, root, True, split, spec.side, **own)
            self.val_set = load_image_set(spec.dataset, root, False, val_split, spec.side if val_split else None, val_list,
                                          **own)
        if split is not None:
            num_classes, what = len(split.label_map(spec.side)), f"side {spec.side} of split {split.name}"
        else:
            num_classes, what = dataset_classes(spec.dataset, root, spec.data_options, check_files=False)[0], spec.dataset
        if spec.model.num_classes != num_classes:
            raise UserError(f"model.num_classes is {spec.model.num_classes} but {what} has {num_classes} classes; set model.num_classes")
        self.forgetting_sets = None
        if spec.forgetting_side is not None:
            if split is None:
                raise UserError(f"{spec.key}: forgetting_side {spec.forgetting_side} needs a split")
            self.forgetting_sets = tuple(
                load_image_set(spec.dataset, root, train, split, spec.forgetting_side, val_list if not train else None, **own)
                for train in (True, False))
        elif spec.forgetting_data is not None:  # the source's own validation set, brought to its input as it saw it in training
            data = spec.forgetting_data
            self.forgetting_sets = (None, load_image_set(
                data.dataset, Path(data.data_root) if data.data_root else None, False,
                load_split(data.split) if data.split else None, data.side, Path(data.val_list) if data.val_list else None,
                **dict(own, pack_dir=None, options=data.data_options, adapt=True)))

    def _build_model(self, shared: "Trainer | None") -> None:
        spec, config = self.spec, self.config
        torch.manual_seed(config.seed)
        model = build_model(spec.model, spec.growth)
        self.source_state = None
        if spec.condition.needs_source:
            if not spec.source_checkpoint or not Path(spec.source_checkpoint).is_file():
                raise UserError(f"base checkpoint {spec.source_checkpoint} is missing; train the base network first")
            state = torch.load(spec.source_checkpoint, map_location="cpu", weights_only=True)
            self._check_source(state)
            self.source_state = state.get("model", state)
        mean = input_mean(spec.input)
        if spec.growth is not None:
            self.layers = apply_growth(model, self.source_state)
            self.frozen_prefix = 0  # frozen layers are requires_grad=False; autograd records nothing for them
        else:
            self.layers = apply_condition(model, spec.condition, self.source_state)
            self.frozen_prefix = spec.condition.frozen_prefix
        model.to(self.device)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.model = model
        self.step_model = torch.compile(model) if config.compile else model
        self.optimizer = build_optimizer(model, config)
        if shared is not None:
            self.train_batches, self.val_batches = shared.train_batches, shared.val_batches
        else:
            self.train_batches = Batches(self.train_set, config, self.device, True, spec.strict, mean=mean)
            self.val_batches = Batches(self.val_set, config, self.device, False, spec.strict, mean=self.train_batches.mean)

    def _check_source(self, state: dict[str, Any]) -> None:
        if self.expected_source is not None:
            check_source(state, Path(self.spec.source_checkpoint), self.expected_source)

    def _resume(self) -> None:
        """Resume from the newest readable checkpoint: ``checkpoint.pt``, else the one before it
        (``checkpoint.prev.pt``), else from scratch; an unreadable one is named and moved aside."""
        for path in (self.checkpoint_path, self.previous_checkpoint_path):
            if not path.is_file():
                continue
            try:
                saved = torch.load(path, map_location="cpu", weights_only=False)
                if not isinstance(saved, dict) or not {"config_hash", "model", "optimizer", "state"} <= set(saved):
                    raise ValueError("not a transferbench checkpoint")
            except Exception as exc:  # noqa: BLE001  (truncated zip, bad pickle, wrong content: all unusable)
                aside = path.with_name(path.name + ".corrupt")
                path.replace(aside)
                print(f"transferbench: warning: checkpoint {path} is unreadable ({type(exc).__name__}: "
                      f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'}); moved to {aside.name}",
                      file=sys.stderr)
                continue
            if saved["config_hash"] != self.spec.config_hash():
                raise UserError(f"{path} belongs to another spec (config hash differs); delete it or use another out_dir")
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.state = saved["state"]
            self.state.setdefault("resumed_at", []).append(self.state["iteration"])
            if path != self.checkpoint_path:
                print(f"transferbench: warning: resumed from the previous checkpoint {path.name} at iteration "
                      f"{self.state['iteration']}", file=sys.stderr)
            return
        if any(p.with_name(p.name + ".corrupt").exists() for p in (self.checkpoint_path, self.previous_checkpoint_path)):
            print(f"transferbench: warning: no readable checkpoint in {self.out_dir}; training {self.spec.key} from the start",
                  file=sys.stderr)

    # ------------------------------------------------------------------ steps

    def fetch(self, iteration: int) -> tuple[torch.Tensor, ...]:
        """The CPU half of training batch ``iteration`` (its samples and augmentation draws are fixed by the seed)."""
        config = self.config
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + iteration + 7)
        return self.train_batches.fetch(batch_indices(len(self.train_set), config.batch_size, config.seed, iteration), generator)

    def step_on(self, iteration: int, x: torch.Tensor, y: torch.Tensor, prefix: SharedPrefix,
                chain: tuple[int, ...]) -> torch.Tensor:
        """One SGD step on a batch already on the device. ``chain`` (see ``prefix_chains``): the
        frozen layers 1..n to take from ``prefix``, computed there once for the whole group."""
        torch.manual_seed(self.config.seed * 1_000_003 + iteration)  # dropout of this iteration
        lr = learning_rate(self.config, iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"]
        if chain:
            features = prefix.output(self.model, chain, self.device)
            loss = sgd_step(self.model, self.optimizer, features, y, self.frozen_prefix, self.config.amp, start=len(chain))
        else:
            loss = sgd_step(self.step_model, self.optimizer, x, y, self.frozen_prefix, self.config.amp)
        self.state["iteration"] = iteration + 1
        self.state["images_seen"] += len(y)
        return loss

    def checkpoint(self) -> None:
        """Write model, optimizer and progress atomically: a killed job resumes from here. The one
        before is kept as checkpoint.prev.pt, so a checkpoint damaged later (a disk, a copy) costs
        one interval, not the run."""
        payload = _torch_bytes({
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "state": self.state,
            "config_hash": self.spec.config_hash()})
        if self.checkpoint_path.is_file():
            os.replace(self.checkpoint_path, self.previous_checkpoint_path)
        atomic_write_bytes(self.checkpoint_path, payload)

    # ------------------------------------------------------------------ the loop

    def run(self) -> ResultRecord:
        """Train to the end (or to a stop signal); write and return the record."""
        return train_together([self])[0]

    def finish(self, failure: str | None) -> ResultRecord:
        """Write the record (and the weights, unless the run failed); the spent checkpoints go."""
        record = self.record(failure)
        if not failure:  # with the mean image it subtracted, so that a job of another study can transfer from it
            atomic_write_bytes(self.out_dir / "model.pt", _torch_bytes({
                "model": self.model.state_dict(), "config_hash": self.spec.config_hash(), "attempt": len(self.attempts) + 1,
                "mean": self.train_batches.mean.cpu()}))
        atomic_write_text(self.out_dir / "result.json", record.to_text())
        self.log(f"{self.spec.key}: {record.status}" + (f" ({failure})" if failure else
                 f": top-1 {record.top1_final:.4f} (mean of 10 best {record.top1_mean_best10:.4f}), health "
                 f"{record.health['state']}, {self.state['wall_time']:.0f} s"))
        if not failure and not self.config.keep_checkpoint:  # the record and the weights are safe: the checkpoints are spent
            for path in (self.checkpoint_path, self.previous_checkpoint_path):
                path.unlink(missing_ok=True)
        return record

    def _flush_losses(self, pending: list[tuple[int, torch.Tensor]], progress_bar) -> str | None:
        """Move the pending losses to the state; the reason to stop if one is not finite."""
        if not pending:
            return None
        values = torch.stack([loss for _, loss in pending]).tolist()
        iterations_done = [i for i, _ in pending]
        pending.clear()
        for iteration, value in zip(iterations_done, values):
            if not math.isfinite(value):
                return f"diverged: loss is {value} at iteration {iteration}; lower train.lr"
            self.state["losses"].append([iteration, value])
        if progress_bar is not None:
            progress_bar.set_postfix(loss=f"{values[-1]:.3f}", refresh=False)
        return None

    def record(self, failure: str | None) -> ResultRecord:
        """The result record of the run so far (``failure``: why it stopped early)."""
        spec, state = self.spec, self.state
        top1 = [e["top1"] for e in state["evaluations"]]
        health = judge([(e["iteration"], e["top1"]) for e in state["evaluations"]], state["losses"], spec.model.num_classes,
                       len(self.val_set), self.health_settings, failure)
        forgetting: dict[str, Any] = {}
        if self.forgetting_sets is not None and not failure:
            forgetting = measure_forgetting(spec, self.model, self.source_state, self.forgetting_sets, self.device,
                                            self.train_batches.mean if spec.forgetting_data is not None else None)
        return ResultRecord(
            key=spec.key, status="failed" if failure else "done", reason=failure, spec=spec.to_dict(),
            condition=spec.condition.label(),
            top1_final=top1[-1] if top1 and not failure else None,
            top5_final=state["evaluations"][-1]["top5"] if top1 and not failure else None,
            top1_mean_best10=mean_of_best(top1), evaluations=state["evaluations"], train_loss=state["losses"],
            iterations=state["iteration"], images_seen=state["images_seen"], train_images=len(self.train_set),
            val_images=len(self.val_set), skipped_images=self.train_batches.skipped + self.val_batches.skipped,
            wall_time_s=state["wall_time"], resumed_at=state.get("resumed_at", []), started_at=state.get("started_at"),
            finished_at=time.time(),
            device=torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else platform.processor() or "cpu",
            versions={"transferbench": __version__, "torch": torch.__version__, "python": platform.python_version()},
            git_commit=self.commit, config_hash=spec.config_hash(), layers=self.layers, identity=self.identity,
            health=health.to_dict(), seed_used=self.config.seed if self.attempts else None, attempts=self.attempts,
            source=self.expected_source,
            **forgetting)


def train_together(trainers: list[Trainer]) -> list[ResultRecord]:
    """Train networks of one stream (``JobSpec.stream``: same images, order, crops and recipe)
    from one data stream, and write each one's record; one trainer is the plain single job.

    Each batch is read, augmented and moved to the device once; the frozen layers that
    trainers share (the same weights, e.g. base A's layers 1..n for every AnB) are computed
    once per batch (``SharedPrefix``). Each trainer keeps its own parameters, optimizer,
    dropout draws, evaluations, checkpoint and record, so every record is bit for bit what a
    separate job would have written (but for its wall time, which is the group's). A trainer
    whose loss diverges is finished as failed and leaves the group; the others go on. A stop
    signal checkpoints every trainer and raises StopRequested.
    """
    lead = trainers[0]
    config, device = lead.config, lead.device
    if any(t.config != config or t.iterations != lead.iterations or t.train_batches is not lead.train_batches
           for t in trainers[1:]):
        raise ValueError("train_together needs trainers of one stream sharing the lead's batches (Trainer(shared=...))")
    stop: dict[str, int | None] = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    previous = ({s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
                if threading.current_thread() is threading.main_thread() else {})
    chains = dict(zip(map(id, trainers), prefix_chains(
        [(t.model, t.frozen_prefix if t.spec.stream() is not None else 0) for t in trainers])))
    active = [t for t in trainers if t.state["iteration"] < t.iterations]
    records: dict[int, ResultRecord] = {}
    first = min((t.state["iteration"] for t in active), default=lead.iterations)
    progress_bar = None
    if lead.progress:
        from tqdm import tqdm

        label = lead.spec.key + (f" +{len(trainers) - 1} fused" if len(trainers) > 1 else "")
        progress_bar = tqdm(total=lead.iterations, initial=first, desc=label, unit="it", leave=False)
    for trainer in trainers:
        state = trainer.state
        fused = f", fused with {len(trainers) - 1} more" if len(trainers) > 1 else ""
        trainer.log(f"{trainer.spec.key}: {'resuming at' if state['iteration'] else 'starting at'} iteration "
                    f"{state['iteration']} of {trainer.iterations} on {device} ({len(trainer.train_set)} training and "
                    f"{len(trainer.val_set)} validation images, spec {trainer.spec.config_hash()}{fused})")
    started = time.perf_counter()
    wall_before = {id(t): t.state["wall_time"] for t in trainers}
    pending: dict[int, list[tuple[int, torch.Tensor]]] = {id(t): [] for t in trainers}  # (iteration, loss on the device)

    def clock(trainer: Trainer) -> None:
        trainer.state["wall_time"] = wall_before[id(trainer)] + time.perf_counter() - started

    def finish(trainer: Trainer, failure: str | None) -> None:
        clock(trainer)
        records[id(trainer)] = trainer.finish(failure)

    prefetcher = ThreadPoolExecutor(1, thread_name_prefix="prefetch") if lead.train_batches.reads_files else None
    try:
        for trainer in trainers:
            trainer.model.train()
        iteration = first
        upcoming: Future | None = prefetcher.submit(lead.fetch, iteration) if prefetcher and active else None
        while active:
            fetched = upcoming.result() if upcoming else lead.fetch(iteration)
            if prefetcher and iteration + 1 < lead.iterations:
                upcoming = prefetcher.submit(lead.fetch, iteration + 1)
            x, y = lead.train_batches.to_device(fetched)
            prefix = SharedPrefix(x, config.amp)
            # A trainer resumed from a later checkpoint than the others waits for the group to catch up.
            stepping = [t for t in active if t.state["iteration"] == iteration]
            losses = [(t, t.step_on(iteration, x, y, prefix, chains[id(t)])) for t in stepping]
            del prefix
            iteration += 1
            if progress_bar is not None:
                progress_bar.update(1)
            done = iteration == lead.iterations
            evaluate_now = iteration % config.eval_every == 0 or done
            checkpoint_now = iteration % config.checkpoint_every == 0 or done or stop["signal"] is not None
            for trainer, loss in losses:
                pending[id(trainer)].append((iteration, loss.detach()))
            failed = set()
            for trainer, _ in losses:
                if len(pending[id(trainer)]) >= LOSS_SYNC_EVERY or evaluate_now or checkpoint_now:
                    failure = trainer._flush_losses(pending[id(trainer)], progress_bar)
                    if failure:
                        finish(trainer, failure)
                        failed.add(id(trainer))
            evaluated = [t for t, _ in losses if id(t) not in failed]
            if evaluate_now and evaluated:
                results = evaluate_models([t.model for t in evaluated], lead.val_batches, config.batch_size, config.amp)
                for trainer, result in zip(evaluated, results):
                    trainer.state["evaluations"].append({"iteration": iteration, **result})
                    trainer.log(f"{trainer.spec.key}: iteration {iteration}/{trainer.iterations}: top-1 {result['top1']:.4f}, "
                                f"validation loss {result['loss']:.4f}")
            if checkpoint_now:
                for trainer in evaluated:
                    clock(trainer)
                    trainer.checkpoint()
                if stop["signal"] is not None:
                    raise StopRequested(f"signal {stop['signal']} at iteration {iteration}", stop["signal"])
            active = [t for t in active if id(t) not in failed and t.state["iteration"] < t.iterations]
            if done:
                for trainer in evaluated:
                    finish(trainer, None)
    finally:
        if prefetcher is not None:
            prefetcher.shutdown(cancel_futures=True)
        if progress_bar is not None:
            progress_bar.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for trainer in trainers:  # already at the end when the run began (a checkpoint of the last iteration)
        if id(trainer) not in records:
            finish(trainer, None)
    return [records[id(t)] for t in trainers]


def image_set_settings(spec: JobSpec, progress: bool = False) -> dict[str, Any]:
    """How a job reads its own images (``load_image_set``'s keywords); a cross-dataset job's are
    brought to its source network's input."""
    adapter = spec.input
    return dict(strict=spec.strict, pack_dir=Path(spec.pack_dir) if spec.pack_dir else None, workers=spec.train.workers,
                progress=progress, size=adapter.size if adapter else spec.train.resize,
                channels=adapter.channels if adapter else None, options=spec.data_options, adapt=adapter is not None)


def check_source(state: dict[str, Any], weights: Path, expected: dict[str, Any]) -> None:
    """A result must rest on the base its plan names (``expected``: {"key", "config_hash",
    "attempt"}): the base's weights carry its spec hash and attempt (older ones: the record beside
    them), and both must match."""
    found_hash, found_attempt = state.get("config_hash"), state.get("attempt", 1)
    if found_hash is None:  # weights written before they carried their hash
        try:
            found_hash = json.loads(weights.with_name("result.json").read_text(encoding="utf-8")).get("config_hash")
        except (OSError, ValueError, AttributeError):
            found_hash = None
    if found_hash != expected["config_hash"] or found_attempt != expected["attempt"]:
        raise UserError(f"{weights} is not the base {expected['key']} this job's plan names "
                        f"(found spec {found_hash}, attempt {found_attempt}; the plan's: {expected['config_hash']}, "
                        f"attempt {expected['attempt']}): the base was re-planned or retrained after this job was "
                        "queued; train the base, then `transferbench submit --retry-failed`")


def input_mean(adapter) -> torch.Tensor | None:
    """The mean image a cross-dataset job subtracts: its source network's (None: the training set's own).
    ``adapter``: the spec's InputAdapter (or None)."""
    if adapter is None or adapter.mean != "source":
        return None
    path = Path(adapter.mean_file)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path} (the source weights that hold the mean image) is missing; train or import the source "
                        "first") from None
    mean = saved.get("mean") if isinstance(saved, dict) else None
    found = f"{saved.get('config_hash')}#{saved.get('attempt', 1)}" if isinstance(saved, dict) else None
    if found != adapter.mean_of:
        raise UserError(f"{path} holds the mean of another source (found {found}, the plan's {adapter.mean_of}): the "
                        "source was imported or trained again after this job was planned; plan the study again")
    if mean is None:
        raise UserError(f"{path} carries no mean image (written by an older transferbench); train the source again, or "
                        "plan with input mean = \"target\"")
    mean = mean.float()
    if mean.shape[0] != adapter.channels or (mean.shape[1:] != (1, 1) and mean.shape[1:] != (adapter.size, adapter.size)):
        raise UserError(f"the mean image in {path} has shape {tuple(mean.shape)}; the source's input is "
                        f"{adapter.channels} x {adapter.size} x {adapter.size}")
    return mean


def run_job(spec: JobSpec, device: str = "cpu", progress: bool = True) -> ResultRecord:
    """Train the network ``spec`` describes (resuming from its checkpoint) and return its record,
    which is also written to ``out_dir/result.json``."""
    return Trainer(spec, device, progress).run()


def measure_forgetting(spec: JobSpec, model: TransferNet, source_state: dict[str, torch.Tensor],
                       sets: tuple[ImageSet | None, ImageSet], device: torch.device,
                       mean: torch.Tensor | None = None) -> dict[str, Any]:
    """Learning without forgetting: the source network's top-1 on its own validation set,
    before and after this job, with the source's classifier kept aside.

    "After" is the source network with every layer but its classifier replaced by this job's
    (same names by construction: old units keep their keys when a network grows). The source
    saw its validation images with ``mean`` subtracted (default: the mean of ``sets[0]``, its
    training side).
    """
    source_growth = spec.growth.source() if spec.growth is not None else None
    classes = int(source_state["layers.fc8.bias"].shape[0])
    source_model = build_model(dataclasses.replace(spec.model, num_classes=classes), source_growth)
    source_model.load_state_dict(source_state)
    source_model.to(device)
    train_set, val_set = sets
    if mean is None:
        mean = Batches(train_set, spec.train, device, True, spec.strict).mean  # the source was trained with its own mean
    batches = Batches(val_set, spec.train, device, False, spec.strict, mean=mean)
    before = evaluate(source_model, batches, spec.train.batch_size, spec.train.amp)
    own = source_model.state_dict()
    body = {key: value for key, value in model.state_dict().items() if key in own and not is_classifier(key)}
    assert sorted(body) == sorted(key for key in own if not is_classifier(key)), "the source body is not inside this network"
    source_model.load_state_dict(body, strict=False)
    after = evaluate(source_model, batches, spec.train.batch_size, spec.train.amp)
    return {"forgetting_side": spec.forgetting_side or "source", "source_top1_before": before["top1"],
            "source_top1_after": after["top1"]}


def _torch_bytes(payload: dict[str, Any]) -> bytes:
    """``torch.save`` into memory, so the file can be written atomically."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()
