"""The worker: train one network of the study from a job spec and write one result record.

Determinism: the sample order of epoch e comes from a generator seeded with (seed, e) and
the augmentation and dropout of iteration i from (seed, i), so a run killed at any
checkpoint and resumed replays exactly the iterations an uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import platform
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from transferbench import __version__
from transferbench.data import ImageFileReader, ImageSet, load_image_set
from transferbench.errors import UserError
from transferbench.fileio import atomic_write_bytes, atomic_write_text
from transferbench.grow import Growth, GrownNet, apply_growth, build_model, check_growth, is_classifier
from transferbench.models import ModelConfig, TransferNet
from transferbench.results import mean_of_best
from transferbench.splits import load_split
from transferbench.transfer import Condition, apply_condition, frozen_prefix

# Signals that make the worker checkpoint and stop: preemption or requeue (TERM), a user's
# request (USR1), Slurm's warning before the time limit (USR2, sbatch --signal).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

# Losses stay on the device and are read (one GPU sync) every this many iterations.
LOSS_SYNC_EVERY = 20

# ImageNet's per-channel RGB mean (0-255), standing in for Caffe's mean image.
IMAGENET_MEAN = (123.68, 116.78, 103.94)


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
    growth: Growth | None = None  # a developmental network (transferbench.grow); None: the plain network
    forgetting_side: str | None = None  # after training, the source network's accuracy on this side (its classifier kept aside)

    def __post_init__(self) -> None:
        if self.growth is not None:
            check_growth(self.condition.kind, self.condition.n_transferred, self.condition.fine_tune, self.growth)
        if self.forgetting_side is not None and not self.condition.needs_source:
            raise UserError(f"{self.key}: forgetting is measured against a source network; a {self.condition.kind} job has none")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for optional in ("growth", "forgetting_side"):  # absent when unset: older plans keep their config hashes
            if data[optional] is None:
                del data[optional]
        return data

    @staticmethod
    def from_dict(data: dict[str, Any], source: str = "job spec") -> "JobSpec":
        def build(cls, values, where):
            if not isinstance(values, dict):
                raise UserError(f"{source}: {where} must be a table of values")
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(values) - names)
            if unknown:
                raise UserError(f"{source}: unknown key {where}.{unknown[0]}; valid keys are {', '.join(sorted(names))}")
            return values

        top = build(JobSpec, data, "spec")
        try:
            condition = Condition(**build(Condition, top.get("condition", {}), "condition"))
            model_values = dict(build(ModelConfig, top.get("model", {}), "model"))
            if "conv_widths" in model_values:
                model_values["conv_widths"] = tuple(model_values["conv_widths"])
            model = ModelConfig(**model_values)
            train = TrainConfig(**build(TrainConfig, top.get("train", {}), "train"))
            growth = Growth(**build(Growth, top["growth"], "growth")) if top.get("growth") is not None else None
            rest = {k: v for k, v in top.items() if k not in ("condition", "model", "train", "growth")}
            return JobSpec(condition=condition, model=model, train=train, growth=growth, **rest)
        except TypeError as exc:
            raise UserError(f"{source}: {exc}; see `transferbench train --help` for the spec format") from exc

    def config_hash(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_spec(path: Path) -> JobSpec:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"job spec {path} does not exist") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"job spec {path} does not parse as JSON: {exc}") from exc
    return JobSpec.from_dict(data, str(path))


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
        self.reader = ImageFileReader(images.files, strict, config.workers, config.resize) if images.files is not None else None
        if mean is None:
            if images.mean is not None:
                mean = images.mean  # the pack's mean image
            elif images.images is not None:
                mean = images.images.float().mean(0)  # the training set's mean image, as Caffe subtracts it
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
        crop, pad = self.config.crop, self.config.pad
        count, _, height, width = images.shape
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
        return images, labels, tops, lefts, flips, torch.tensor(crop)

    def to_device(self, fetched: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The device half: copy the bytes, subtract the mean, pad, crop and mirror."""
        images, labels, tops, lefts, flips, crop = fetched
        if self.device.type == "cuda":
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
    return config.lr * config.lr_gamma ** (iteration // config.lr_step)


def sgd_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
             frozen_prefix: int = 0, amp: bool = False) -> torch.Tensor:
    """One training step (bf16 autocast when ``amp``); the loss stays on the device."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x, frozen_prefix)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


@torch.no_grad()
def evaluate(model: TransferNet, batches: Batches, batch_size: int, amp: bool) -> dict[str, float]:
    model.eval()
    correct1 = correct5 = total = 0
    loss_sum = 0.0
    for start in range(0, len(batches.set), batch_size):
        x, y = batches.prepare(list(range(start, min(start + batch_size, len(batches.set)))), None)
        if len(y) == 0:
            continue
        with torch.autocast(batches.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += int((top[:, 0] == y).sum())
        correct5 += int((top == y[:, None]).any(1).sum())
        total += len(y)
    model.train()
    if total == 0:
        raise UserError("no readable validation image: every one was corrupt or the side has none; check the data")
    return {"top1": correct1 / total, "top5": correct5 / total, "loss": loss_sum / total}


class StopRequested(Exception):
    """SIGTERM/SIGUSR1/SIGUSR2 arrived: a checkpoint was written, the job should be requeued."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[1]
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode:
            return None
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run_job(spec: JobSpec, device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """Train the network ``spec`` describes; resume from its checkpoint if one exists.

    Returns the result record, which is also written to ``out_dir/result.json``.
    """
    out_dir = Path(spec.out_dir)
    config = spec.train
    torch_device = torch.device(device)
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no CUDA device is available; use --device cpu")
    split = load_split(spec.split) if spec.split else None
    root = Path(spec.data_root) if spec.data_root else None
    val_list = Path(spec.val_list) if spec.val_list else None
    pack_dir = Path(spec.pack_dir) if spec.pack_dir else None
    train_set = load_image_set(spec.dataset, root, True, split, spec.side, strict=spec.strict, pack_dir=pack_dir,
                               workers=config.workers, progress=progress, size=config.resize)
    val_split = split if split and split.method != "reduced" else None
    val_set = load_image_set(spec.dataset, root, False, val_split, spec.side if val_split else None, val_list,
                             strict=spec.strict, pack_dir=pack_dir, workers=config.workers, progress=progress,
                             size=config.resize)
    if split is not None:
        num_classes, what = len(split.label_map(spec.side)), f"side {spec.side} of split {split.name}"
    else:
        from transferbench.classes import load_table

        num_classes, what = len(load_table(spec.dataset).classes), spec.dataset
    if spec.model.num_classes != num_classes:
        raise UserError(f"model.num_classes is {spec.model.num_classes} but {what} has {num_classes} classes; set model.num_classes")

    forgetting_sets = None
    if spec.forgetting_side is not None:
        if split is None:
            raise UserError(f"{spec.key}: forgetting_side {spec.forgetting_side} needs a split")
        forgetting_sets = tuple(
            load_image_set(spec.dataset, root, train, split, spec.forgetting_side, val_list if not train else None,
                           strict=spec.strict, pack_dir=pack_dir, workers=config.workers, progress=progress, size=config.resize)
            for train in (True, False))

    torch.manual_seed(config.seed)
    model = build_model(spec.model, spec.growth)
    source_state = None
    if spec.condition.needs_source:
        if not spec.source_checkpoint or not Path(spec.source_checkpoint).is_file():
            raise UserError(f"base checkpoint {spec.source_checkpoint} is missing; train the base network first")
        source_state = torch.load(spec.source_checkpoint, map_location="cpu", weights_only=True)
        source_state = source_state.get("model", source_state)
    if spec.growth is not None:
        keys = apply_growth(model, source_state)
        prefix = 0  # frozen layers are requires_grad=False; autograd records nothing for them
    else:
        keys = apply_condition(model, spec.condition, source_state)
        prefix = frozen_prefix(spec.condition)
    model.to(torch_device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if torch_device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    step_model = torch.compile(model) if config.compile else model
    optimizer = build_optimizer(model, config)

    train_batches = Batches(train_set, config, torch_device, True, spec.strict)
    val_batches = Batches(val_set, config, torch_device, False, spec.strict, mean=train_batches.mean)
    iterations = config.iterations if config.epochs is None else math.ceil(config.epochs * len(train_set) / config.batch_size)

    checkpoint_path = out_dir / "checkpoint.pt"
    state = {"iteration": 0, "evaluations": [], "losses": [], "images_seen": 0, "wall_time": 0.0, "started_at": time.time()}
    if checkpoint_path.is_file():
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        if saved["config_hash"] != spec.config_hash():
            raise UserError(f"{checkpoint_path} belongs to another spec (config hash differs); delete it or use another out_dir")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        state.setdefault("resumed_at", []).append(state["iteration"])

    def save_checkpoint() -> None:
        atomic_write_bytes(checkpoint_path, _torch_bytes({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                                          "state": state, "config_hash": spec.config_hash()}))

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS} if _main_thread() else {}
    progress_bar = None
    if progress:
        from tqdm import tqdm

        progress_bar = tqdm(total=iterations, initial=state["iteration"], desc=spec.key, unit="it", leave=False)
    failure = None
    started = time.perf_counter()
    wall_before = state["wall_time"]
    prefetcher = ThreadPoolExecutor(1, thread_name_prefix="prefetch") if train_batches.reads_files else None
    pending: list[tuple[int, torch.Tensor]] = []  # (iteration, loss on the device), read in one sync

    def fetch(iteration: int):
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + iteration + 7)
        return train_batches.fetch(batch_indices(len(train_set), config.batch_size, config.seed, iteration), generator)

    def flush_losses() -> str | None:
        """Move the pending losses to the record; the reason to stop if one is not finite."""
        if not pending:
            return None
        values = torch.stack([loss for _, loss in pending]).tolist()
        iterations_done = [i for i, _ in pending]
        pending.clear()
        for iteration, value in zip(iterations_done, values):
            if not math.isfinite(value):
                return f"diverged: loss is {value} at iteration {iteration}; lower train.lr"
            state["losses"].append([iteration, value])
        if progress_bar is not None:
            progress_bar.set_postfix(loss=f"{values[-1]:.3f}", refresh=False)
        return None

    try:
        model.train()
        upcoming = prefetcher.submit(fetch, state["iteration"]) if prefetcher else None
        while state["iteration"] < iterations:
            iteration = state["iteration"]
            fetched = upcoming.result() if upcoming else fetch(iteration)
            if prefetcher and iteration + 1 < iterations:
                upcoming = prefetcher.submit(fetch, iteration + 1)
            x, y = train_batches.to_device(fetched)
            torch.manual_seed(config.seed * 1_000_003 + iteration)  # dropout of this iteration
            lr = learning_rate(config, iteration)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_mult"]
            loss = sgd_step(step_model, optimizer, x, y, prefix, config.amp)
            state["iteration"] = iteration + 1
            state["images_seen"] += len(y)
            pending.append((iteration + 1, loss.detach()))
            if progress_bar is not None:
                progress_bar.update(1)
            done = state["iteration"] == iterations
            evaluate_now = state["iteration"] % config.eval_every == 0 or done
            checkpoint_now = state["iteration"] % config.checkpoint_every == 0 or done or stop["signal"] is not None
            if len(pending) >= LOSS_SYNC_EVERY or evaluate_now or checkpoint_now:
                failure = flush_losses()
                if failure:
                    break
            if evaluate_now:
                state["evaluations"].append({"iteration": state["iteration"], **evaluate(model, val_batches, config.batch_size, config.amp)})
            if checkpoint_now:
                state["wall_time"] = wall_before + time.perf_counter() - started
                save_checkpoint()
                if stop["signal"] is not None:
                    raise StopRequested(f"signal {stop['signal']} at iteration {state['iteration']}", stop["signal"])
    finally:
        if prefetcher is not None:
            prefetcher.shutdown(cancel_futures=True)
        if progress_bar is not None:
            progress_bar.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    state["wall_time"] = wall_before + time.perf_counter() - started
    top1 = [e["top1"] for e in state["evaluations"]]
    record = {
        "key": spec.key,
        "status": "failed" if failure else "done",
        "reason": failure,
        "spec": spec.to_dict(),
        "condition": spec.condition.label(),
        "top1_final": top1[-1] if top1 and not failure else None,
        "top5_final": state["evaluations"][-1]["top5"] if top1 and not failure else None,
        "top1_mean_best10": mean_of_best(top1),
        "evaluations": state["evaluations"],
        "train_loss": state["losses"],
        "iterations": state["iteration"],
        "images_seen": state["images_seen"],
        "train_images": len(train_set),
        "val_images": len(val_set),
        "skipped_images": train_batches.skipped + val_batches.skipped,
        "wall_time_s": state["wall_time"],
        "resumed_at": state.get("resumed_at", []),  # iterations this run was resumed from a checkpoint
        "started_at": state.get("started_at"),  # epoch seconds of the first start (kept across resumes)
        "finished_at": time.time(),
        "device": torch.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else platform.processor() or "cpu",
        "versions": {"transferbench": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "git_commit": _git_commit(),
        "config_hash": spec.config_hash(),
        "layers": keys,
    }
    if forgetting_sets is not None and not failure:
        record.update(measure_forgetting(spec, model, source_state, forgetting_sets, torch_device))
    if not failure:
        atomic_write_bytes(out_dir / "model.pt", _torch_bytes({"model": model.state_dict()}))
    atomic_write_text(out_dir / "result.json", json.dumps(record, indent=1) + "\n")
    return record


def measure_forgetting(spec: JobSpec, model: TransferNet, source_state: dict[str, torch.Tensor],
                       sets: tuple[ImageSet, ImageSet], device: torch.device) -> dict[str, Any]:
    """Learning without forgetting: the source network's top-1 on its own validation set,
    before and after this job, with the source's classifier kept aside.

    "After" is the source network with every layer but its classifier replaced by this job's
    (same names by construction: old units keep their keys when a network grows).
    """
    source_growth = spec.growth.source() if spec.growth is not None else None
    classes = int(source_state["layers.fc8.bias"].shape[0])
    source_model = build_model(dataclasses.replace(spec.model, num_classes=classes), source_growth)
    source_model.load_state_dict(source_state)
    source_model.to(device)
    train_set, val_set = sets
    mean = Batches(train_set, spec.train, device, True, spec.strict).mean  # the source was trained with its own mean
    batches = Batches(val_set, spec.train, device, False, spec.strict, mean=mean)
    before = evaluate(source_model, batches, spec.train.batch_size, spec.train.amp)
    own = source_model.state_dict()
    body = {key: value for key, value in model.state_dict().items() if key in own and not is_classifier(key)}
    assert sorted(body) == sorted(key for key in own if not is_classifier(key)), "the source body is not inside this network"
    source_model.load_state_dict(body, strict=False)
    after = evaluate(source_model, batches, spec.train.batch_size, spec.train.amp)
    return {"forgetting_side": spec.forgetting_side, "source_top1_before": before["top1"], "source_top1_after": after["top1"]}


def _torch_bytes(payload: dict[str, Any]) -> bytes:
    """``torch.save`` into memory, so the file can be written atomically."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
