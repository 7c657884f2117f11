"""The input pipeline of a training run: which images each batch holds, and how they reach the network.

``batch_indices`` fixes the images of training batch i (a fresh order every epoch, from the
``order`` stream of ``worker/streams.py``); ``Batches`` reads them (from memory, a pack or image
files), subtracts the mean image and draws the random crop and mirror (the ``augment`` stream of
iteration i) on the device. ``image_set_settings`` and ``load_planned_split`` say how a job reads
its own images; ``input_mean`` is the mean image a cross-dataset job subtracts (its source's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from transferbench.errors import UserError
from transferbench.schema.spec import JobSpec, TrainConfig
from transferbench.tasks.splits import load_split
from transferbench.worker import streams
from transferbench.worker.data import LUMINANCE, ImageFileReader, ImageSet

# ImageNet's per-channel RGB mean (0-255), standing in for Caffe's mean image.
IMAGENET_MEAN = (123.68, 116.78, 103.94)


class Batches:
    """Training and evaluation batches of one image set, augmented on the fly.

    The uint8 images travel to the device first (a quarter of the bytes of float32, pinned
    and non-blocking on CUDA); mean subtraction, padding, the random crop and the mirror
    then run there as one gather, so the CPU only reads or decodes bytes. On a CPU device
    the same values come from slicing each image, which is several times faster there.
    """

    def __init__(self, images: ImageSet, config: TrainConfig, device: torch.device, train: bool,
                 strict: bool = False, mean: torch.Tensor | None = None, std: tuple[float, ...] | None = None) -> None:
        """``mean``: the image or per-channel values to subtract (default: the training set's mean
        image); ``std``: per-channel values (0-255 units) to divide by after it, a source's input
        normalisation (torchvision's); the result is multiplied by ``config.input_scale``."""
        self.set, self.config, self.device, self.train = images, config, device, train
        self.reader = ImageFileReader(images.files, strict, config.workers, images.size, images.channels, images.resize) \
            if images.files is not None else None
        # One number (Caffe's 0-255 range: 1) or one per channel: (image - mean) * input_scale / std.
        self.scale: float | torch.Tensor = config.input_scale if std is None else \
            (config.input_scale / torch.tensor(std, dtype=torch.float32)).view(-1, 1, 1).to(device)
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
    def readable(self) -> int:
        """The images of the set that were not found corrupt (a pack holds only readable ones)."""
        return len(self.set) - (self.reader.skipped if self.reader is not None else 0)

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
        x = (images.float() - self.device_mean) * self.scale
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
        pad, scale = self.config.pad, self.scale
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


def epoch_order(count: int, seed: int, epoch: int, retry: int = 0) -> torch.Tensor:
    """The order of the ``count`` training images in ``epoch`` (stream ``order``, index ``epoch``)."""
    return torch.randperm(count, generator=streams.generator(seed, "order", epoch, retry))


def batch_indices(count: int, batch_size: int, seed: int, iteration: int, retry: int = 0) -> list[int]:
    """Indices of training batch ``iteration``: a fresh shuffle every epoch, deterministic."""
    per_epoch = max(1, count // batch_size)
    epoch, position = divmod(iteration, per_epoch)
    order = epoch_order(count, seed, epoch, retry)
    return order[position * batch_size:(position + 1) * batch_size].tolist()


def augment_generator(seed: int, iteration: int, retry: int = 0) -> torch.Generator:
    """The generator of batch ``iteration``'s crops and mirror flags (stream ``augment``)."""
    return streams.generator(seed, "augment", iteration, retry)


def load_planned_split(path: str | None, content_hash: str | None):
    """The split a job was planned on (None: all classes); a file whose content changed since is refused."""
    if path is None:
        return None
    split = load_split(path)
    if content_hash is not None and split.content_hash() != content_hash:
        raise UserError(f"the split file {path} changed since this job was planned (content {split.content_hash()}, "
                        f"planned {content_hash}); run `transferbench plan` again, which re-plans exactly its jobs")
    return split


def image_set_settings(spec: JobSpec, progress: bool = False) -> dict[str, Any]:
    """How a job reads its own images (``load_image_set``'s keywords); a cross-dataset job's are
    brought to its source network's input (its size, channels and way of resizing)."""
    adapter = spec.input
    return dict(strict=spec.strict, pack_dir=Path(spec.pack_dir) if spec.pack_dir else None, workers=spec.train.workers,
                progress=progress, size=adapter.size if adapter else spec.train.resize,
                channels=adapter.channels if adapter else None, options=spec.data_options, adapt=adapter is not None,
                resize=adapter.resize if adapter else "warp")


def input_std(spec: JobSpec) -> tuple[float, ...] | None:
    """The per-channel values (0-255 units) a job divides its input by: its source's, if any."""
    return spec.input.std if spec.input is not None else None


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
    found = None
    if isinstance(saved, dict):
        found = f"{saved.get('config_hash')}#{saved.get('attempt', 1)}" + (f"@{saved['settings']}" if saved.get("settings") else "")
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
