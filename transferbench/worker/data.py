"""Datasets in their genuine on-disk formats, and the split-side selection.

* Fashion-MNIST: IDX files (``train-images-idx3-ubyte[.gz]`` ...) in torchvision's layout
  (``ROOT/FashionMNIST/raw/``), directly in ``ROOT``, or Debian's ``dataset-fashion-mnist``
  install (``/usr/share/datasets/fashion-mnist``).
* CIFAR-100: torchvision's ``ROOT/cifar-100-python/{train,test}`` pickles.
* ImageNet ILSVRC-2012: ``ROOT/train/<wnid>/*.JPEG``; validation as ``ROOT/val/<wnid>/``
  folders or a flat folder with a Caffe-style label list (``<file> <class index>``).
* CUB-200-2011, MIT Indoor-67, SUN-397, Caltech-101 and a folder per class, in their genuine
  layouts with their official train/test lists (``transferbench.tasks.layout``), decoded
  like ImageNet.

A cross-dataset job brings every image to its source network's input (``adapt_images``, or
the decoder's size and colour mode): resized to the source's size, gray repeated to three
channels or colour reduced to one.

Small datasets are held in memory as uint8 tensors. ImageNet images are resized to 256x256
(the paper's preprocessing) and either decoded per batch by a pool of threads (PIL releases
the GIL while decoding) or, with a pack folder, decoded once into a uint8 ``.npy`` file that
every later job memory-maps: the path that keeps a fast GPU fed (see ``pack_images``).
Cropping, mirroring and mean subtraction happen per batch on the training device.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import struct
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from transferbench.errors import UserError
from transferbench.fileio import atomic_write_bytes, atomic_write_text, ensure_writable_dir
from transferbench.schema.spec import LAYOUTS, DataOptions
from transferbench.tasks.splits import Split

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DATASET_FORMATS = ("fashion-mnist", "cifar100", "imagenet1k", "synthetic", *LAYOUTS)


@dataclass
class ImageSet:
    """Images of one split side and their labels 0..k-1, held in one of three ways.

    * ``images``: uint8 N x C x H x W in memory (Fashion-MNIST, CIFAR-100, the demo data);
    * ``files``: one JPEG per item, decoded per batch (ImageNet without a pack);
    * ``packed`` + ``rows``: a memory-mapped uint8 pack, item i is ``packed[rows[i]]``.
    """

    images: torch.Tensor | None
    labels: torch.Tensor  # int64, renumbered within the side
    files: list[Path] | None = None
    packed: np.ndarray | None = None
    rows: np.ndarray | None = None
    mean: torch.Tensor | None = None  # the training set's mean image, when the source provides one
    skipped: int = 0  # corrupt images counted and skipped (while packing)
    size: int = 256  # files: decoded and resized to size x size
    channels: int = 3  # files: decoded to 3 (RGB) or 1 (gray) channels
    resize: str = "warp"  # files: "warp" to size x size (Caffe's), or "shorter": the shorter side to size, centre crop

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: torch.Tensor) -> "ImageSet":
        """The items at positions ``keep`` (a sorted index tensor), held the same way."""
        import dataclasses

        positions = keep.tolist()
        return dataclasses.replace(
            self, images=self.images[keep] if self.images is not None else None, labels=self.labels[keep],
            files=[self.files[i] for i in positions] if self.files is not None else None,
            rows=self.rows[keep.numpy()] if self.rows is not None else None)


# ---------------------------------------------------------------------------- IDX

def _read_maybe_gz(path: Path) -> bytes:
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as handle:
        return handle.read()


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (the MNIST format): magic 0x0000 08 <ndim>, big-endian dims, uint8 data."""
    try:
        data = _read_maybe_gz(path)
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read IDX file {path}: {exc}; re-download or reinstall the dataset") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{path} is not an IDX file of unsigned bytes (bad magic number); re-download it")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4: 4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(data) != expected:
        raise UserError(f"{path} is truncated or corrupt: {len(data)} bytes, expected {expected}; re-download it")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find_fashion_mnist(root: Path | None) -> Path:
    candidates = [root / "FashionMNIST" / "raw", root] if root else [DEBIAN_FASHION_MNIST]
    for folder in candidates:
        for suffix in ("", ".gz"):
            if (folder / f"train-images-idx3-ubyte{suffix}").is_file():
                return folder
    where = root or DEBIAN_FASHION_MNIST
    raise UserError(f"no Fashion-MNIST IDX files under {where}; give --data-root with train-images-idx3-ubyte[.gz], "
                    "or install Debian's dataset-fashion-mnist")


def load_fashion_mnist(root: Path | None, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    folder = find_fashion_mnist(root)
    prefix = "train" if train else "t10k"

    def pick(kind: str) -> Path:
        for suffix in ("", ".gz"):
            path = folder / f"{prefix}-{kind}{suffix}"
            if path.is_file():
                return path
        raise UserError(f"{folder} lacks {prefix}-{kind}[.gz]; the Fashion-MNIST download is incomplete")

    images = read_idx(pick("images-idx3-ubyte"))
    labels = read_idx(pick("labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f"{folder}: {prefix} images {images.shape} and labels {labels.shape} do not match")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


# ---------------------------------------------------------------------------- CIFAR-100

class _ArraysOnly(pickle.Unpickler):
    """Unpickles what CIFAR-100's files hold (dicts, lists, bytes, numbers and numpy arrays) and
    nothing else: a planted file cannot run code on load."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR-100 file")
        return super().find_class(module, name)


def load_cifar100(root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    path = Path(root) / "cifar-100-python" / ("train" if train else "test")
    try:
        with open(path, "rb") as handle:
            entry = _ArraysOnly(handle, encoding="bytes").load()
        data = np.asarray(entry[b"data"], dtype=np.uint8)
        labels = np.asarray(entry[b"fine_labels"], dtype=np.int64)
    except FileNotFoundError:
        raise UserError(f"no CIFAR-100 at {path}; give --data-root, the folder holding cifar-100-python/") from None
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as exc:
        raise UserError(f"{path} is not a CIFAR-100 pickle ({exc!r}); re-download it") from exc
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise UserError(f"{path}: expected N x 3072 images and N labels, got {data.shape} and {labels.shape}")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


# ---------------------------------------------------------------------------- ImageNet

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def imagenet_items(root: Path, train: bool, wnids: list[str], val_list: Path | None = None) -> list[tuple[Path, int]]:
    """(file, original class index) for ILSVRC-2012 train or validation images."""
    folder = Path(root) / ("train" if train else "val")
    if not folder.is_dir():
        raise UserError(f"no ImageNet {'train' if train else 'val'} folder at {folder}; give --data-root with train/ and val/")
    index_of = {w: i for i, w in enumerate(wnids)}
    if not train and val_list is not None:
        from transferbench.tasks.splits import read_image_list

        return [(folder / name, label) for name, label in read_image_list(val_list, len(wnids)).entries]
    items = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name not in index_of:
            raise UserError(f"{sub} is not an ILSVRC-2012 class folder (unknown wnid {sub.name!r})")
        items += [(f, index_of[sub.name]) for f in sorted(sub.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not items:
        raise UserError(f"no images under {folder}; expected {folder}/<wnid>/*.JPEG (or --val-list for a flat val folder)")
    return items


def decode_resized(path: Path, size: int = 256, channels: int = 3, resize: str = "warp") -> torch.Tensor | None:
    """An image file as uint8 channels x size x size, in RGB or, with one channel, gray (PIL's
    luminance, the same weights as ``adapt_images``); None if it is corrupt. ``resize``: "warp"
    resizes the whole image to size x size (the paper's and Caffe's 256x256); "shorter" resizes
    its shorter side to size and keeps the centre size x size (torchvision's Resize(size) then
    CenterCrop(size))."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB" if channels == 3 else "L")
            if resize == "warp":
                image = image.resize((size, size), Image.BILINEAR)
            else:
                width, height = image.size
                scale = size / min(width, height)
                new = (max(size, round(width * scale)), max(size, round(height * scale)))
                image = image.resize(new, Image.BILINEAR)
                left, top = (new[0] - size) // 2, (new[1] - size) // 2
                image = image.crop((left, top, left + size, top + size))
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return None
    tensor = torch.from_numpy(array.copy())
    return tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor.unsqueeze(0)


LUMINANCE = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's convert("L")


ADAPT_CHUNK = 4096  # images resized at a time: float copies of a whole dataset would take gigabytes


def adapt_images(images: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """uint8 N x C x H x W brought to N x ``channels`` x ``size`` x ``size``: colour reduced to its
    luminance or gray repeated to three channels, each channel resized (bilinear, antialiased) and
    rounded back to bytes. Unchanged when it already fits. Channels are reduced before and
    repeated after the resize, in chunks, so that no float copy of more than one chunk exists."""
    if images.shape[1] not in (1, 3) or channels not in (1, 3):
        raise UserError(f"cannot bring images of {images.shape[1]} channels to {channels}")
    if images.shape[1] == 3 and channels == 1:
        weights = torch.tensor(LUMINANCE).view(1, 3, 1, 1)
        images = torch.cat([(part.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
                            for part in images.split(ADAPT_CHUNK)])
    if images.shape[-2:] != (size, size):
        images = torch.cat([F.interpolate(part.float(), size=(size, size), mode="bilinear", align_corners=False,
                                          antialias=True).round().clamp(0, 255).to(torch.uint8)
                            for part in images.split(ADAPT_CHUNK)])
    if images.shape[1] == 1 and channels == 3:
        images = images.expand(-1, 3, -1, -1)
    return images.contiguous()


# ---------------------------------------------------------------------------- selection

def select_side(labels: torch.Tensor, split: Split | None, side: str | None,
                names: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the samples on ``side`` and their labels renumbered 0..k-1; reduced splits cap per
    class. A class of the side without a single image fails, named (``names``: original index -> name)."""
    if split is None:
        return torch.arange(len(labels)), labels
    mapping = split.label_map(side)
    found = set(labels.unique().tolist())
    empty = [original for original in mapping if original not in found]
    if empty and len(empty) < len(mapping):  # none at all: the message below says it better
        named = [names[i] if names and i < len(names) else f"class {i}" for i in empty]
        raise UserError(f"{len(empty)} classes of split {split.name} side {side} have no image: {', '.join(named[:5])}"
                        f"{' ...' if len(empty) > 5 else ''}; check the dataset folder (a class folder missing or empty)")
    lookup = torch.full((int(labels.max()) + 1,), -1, dtype=torch.int64)
    for original, new in mapping.items():
        if original < len(lookup):
            lookup[original] = new
    new_labels = lookup[labels]
    keep = torch.nonzero(new_labels >= 0).flatten()
    cap = split.images_per_class
    if cap is not None:
        counts: dict[int, int] = {}
        capped = []
        for index in keep.tolist():
            label = int(labels[index])
            if counts.get(label, 0) < cap:
                counts[label] = counts.get(label, 0) + 1
                capped.append(index)
        keep = torch.tensor(capped, dtype=torch.int64)
    if len(keep) == 0:
        raise UserError(f"no images of split {split.name} side {side} in this dataset; check the split's dataset")
    return keep, new_labels[keep]


def load_image_set(dataset: str, root: Path | None, train: bool, split: Split | None, side: str | None,
                   val_list: Path | None = None, strict: bool = False, pack_dir: Path | None = None,
                   workers: int = 0, progress: bool = False, size: int = 256, options: DataOptions | None = None,
                   channels: int | None = None, adapt: bool = False, resize: str = "warp") -> ImageSet:
    """The images of one split side, labels renumbered, in their dataset's genuine format.

    Files are decoded to ``size`` x ``size`` with ``channels`` channels (default 3), ``resize``
    saying how (``decode_resized``). With ``adapt``
    (a cross-dataset job), images held in memory are brought to the same size and channels."""
    if split is not None and split.dataset != dataset:
        raise UserError(f"split {split.name} is for {split.dataset}, not {dataset}; choose a split of {dataset}")
    if dataset in LAYOUTS:
        from transferbench.tasks.classes import layout_table
        from transferbench.tasks.layout import read_layout
        from transferbench.tasks.splits import check_split_classes

        index = read_layout(dataset, root, options, check_files=False)
        if split is not None:
            check_split_classes(split, layout_table(dataset, index.classes), f"{dataset} at {root}")
        return _file_set(index.items(train), split, side, list(index.classes), train, strict, pack_dir, workers, progress,
                         size, channels or 3, resize)
    if dataset == "fashion-mnist":
        images, labels = load_fashion_mnist(root, train)
    elif dataset == "synthetic":
        from transferbench.worker.synthetic import load_synthetic

        images, labels = load_synthetic(train)
    elif dataset == "cifar100":
        if root is None:
            raise UserError("CIFAR-100 needs --data-root, the folder holding cifar-100-python/")
        images, labels = load_cifar100(root, train)
    elif dataset == "imagenet1k":
        from transferbench.tasks.classes import load_table

        if root is None:
            raise UserError("ImageNet needs --data-root, the folder holding train/ and val/")
        wnids = [c.wnid for c in load_table("imagenet1k").classes]
        items = imagenet_items(root, train, wnids, val_list)
        return _file_set(items, split, side, wnids, train, strict, pack_dir, workers, progress, size, channels or 3,
                         resize)
    else:
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASET_FORMATS)}")
    keep, new_labels = select_side(labels, split, side)
    images = images[keep]
    if adapt:
        images = adapt_images(images, size, channels or images.shape[1])
    return ImageSet(images, new_labels)


def _file_set(items: list[tuple[Path, int]], split: Split | None, side: str | None, names: list[str], train: bool,
              strict: bool, pack_dir: Path | None, workers: int, progress: bool, size: int, channels: int,
              resize: str = "warp") -> ImageSet:
    """The ImageSet of image files (ImageNet, the layouts): decoded per batch, or from a pack."""
    if pack_dir is not None:
        pack = pack_images(items, Path(pack_dir), "train" if train else "val", strict, workers, progress, size, channels,
                           resize)
        valid = np.flatnonzero(pack.valid)
        keep, new_labels = select_side(torch.tensor([items[i][1] for i in valid]), split, side, names)
        on_side = set(split.label_map(side)) if split is not None else None
        skipped = sum(1 for i in np.flatnonzero(~pack.valid) if on_side is None or items[i][1] in on_side)
        return ImageSet(None, new_labels, packed=pack.images, rows=valid[keep.numpy()], mean=pack.mean if train else None,
                        skipped=skipped, size=size, channels=channels, resize=resize)  # this side's corrupt files
    keep, new_labels = select_side(torch.tensor([label for _, label in items]), split, side, names)
    return ImageSet(None, new_labels, [items[i][0] for i in keep.tolist()], size=size, channels=channels, resize=resize)


def _default_workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


class ImageFileReader:
    """Decodes ImageNet items with a pool of threads; corrupt files are counted and skipped (fatal when strict)."""

    def __init__(self, files: list[Path], strict: bool, workers: int = 0, size: int = 256, channels: int = 3,
                 resize: str = "warp") -> None:
        self.files, self.strict, self.size, self.channels, self.resize = files, strict, size, channels, resize
        self.corrupt: set[int] = set()  # each corrupt file once, however often a batch draws it
        self.pool = ThreadPoolExecutor(workers or _default_workers(), thread_name_prefix="decode")

    @property
    def skipped(self) -> int:
        return len(self.corrupt)

    def load(self, indices: list[int]) -> tuple[torch.Tensor, list[int]]:
        images, kept = [], []
        decoded = self.pool.map(lambda i: decode_resized(self.files[i], self.size, self.channels, self.resize), indices)
        for index, image in zip(indices, decoded):
            if image is None:
                if not self.files[index].exists():  # not corrupt: the data changed after plan checked every file
                    raise UserError(f"image {self.files[index]} is missing (it was there when the study was planned); "
                                    "restore it, or plan the study again on the data as it is now")
                if self.strict:
                    raise UserError(f"corrupt image {self.files[index]}; remove it or run without --strict to skip it")
                if index not in self.corrupt:
                    self.corrupt.add(index)
                    warnings.warn(f"skipping corrupt image {self.files[index]}", stacklevel=2)
                continue
            images.append(image)
            kept.append(index)
        if not images:
            return torch.empty(0, self.channels, self.size, self.size, dtype=torch.uint8), kept
        return torch.stack(images), kept


# ---------------------------------------------------------------------------- packs

@dataclass
class Pack:
    images: np.ndarray  # memory-mapped uint8 N x 3 x size x size, row i = item i
    valid: np.ndarray  # bool per item: False where the file was corrupt
    mean: torch.Tensor  # float32 3 x size x size, mean of the valid images
    skipped: int


def _build_pack(items, base: Path, images_path: Path, mean_path: Path, meta_path: Path, part: str, strict: bool,
                workers: int, progress: bool, size: int, channels: int = 3, resize: str = "warp") -> None:
    """The build behind ``pack_images`` (the caller holds the lock), resuming a killed one."""
    partial, saved = base.with_suffix(".partial.npy"), base.with_suffix(".progress.npz")
    shape = (len(items), channels, size, size)
    done, total, corrupt = 0, np.zeros((channels, size, size), dtype=np.float64), []
    if partial.is_file() and saved.is_file():
        try:
            state = np.load(saved)
            done, total, corrupt = int(state["done"]), state["total"].astype(np.float64), state["corrupt"].tolist()
            array = np.lib.format.open_memmap(partial, mode="r+")
            if array.shape != shape:
                raise ValueError(f"shape {array.shape}")
        except (OSError, ValueError, KeyError) as exc:
            print(f"transferbench: warning: the unfinished pack {partial} cannot be resumed ({exc}); starting it again",
                  file=sys.stderr)
            done, total, corrupt = 0, np.zeros((channels, size, size), dtype=np.float64), []
            array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
    else:
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
    reader = ImageFileReader([p for p, _ in items], strict, workers, size, channels, resize)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), initial=done, desc=f"packing {part}", unit="img")

    def save(count: int, pixels: np.ndarray) -> None:
        pixels.flush()
        buffer = io.BytesIO()
        np.savez(buffer, done=count, total=total, corrupt=np.asarray(corrupt, dtype=np.int64))
        atomic_write_bytes(saved, buffer.getvalue())

    chunk = PACK_CHUNK
    starts = list(range(done, len(items), chunk))
    ahead = ThreadPoolExecutor(1, thread_name_prefix="pack-ahead")  # decodes chunk k+1 while chunk k is stored
    main_s = wait_s = 0.0
    last_save = time.monotonic()
    try:
        upcoming = ahead.submit(reader.load, list(range(starts[0], min(starts[0] + chunk, len(items))))) if starts else None
        for number, start in enumerate(starts):
            indices = list(range(start, min(start + chunk, len(items))))
            waited = time.perf_counter()
            batch, kept = upcoming.result()
            wait_s += time.perf_counter() - waited
            if number + 1 < len(starts):
                following = starts[number + 1]
                upcoming = ahead.submit(reader.load, list(range(following, min(following + chunk, len(items)))))
            busy = time.perf_counter()
            if kept:
                pixels = batch.numpy()
                array[kept] = pixels
                total += pixels.sum(axis=0, dtype=np.uint32)  # exact for up to 16 million images per chunk
            corrupt += sorted(set(indices) - set(kept))
            main_s += time.perf_counter() - busy
            if bar is not None:
                bar.update(len(indices))
            if time.monotonic() - last_save > PACK_SAVE_EVERY_S:
                save(indices[-1] + 1, array)
                last_save = time.monotonic()
        array.flush()
        del array
        valid_count = len(items) - len(corrupt)
        mean = (total / max(1, valid_count)).astype(np.float32)
        buffer = io.BytesIO()
        np.save(buffer, mean)
        atomic_write_bytes(mean_path, buffer.getvalue())
        atomic_write_text(meta_path, json.dumps({"items": len(items), "size": size, "corrupt": corrupt}) + "\n")
        os.replace(partial, images_path)  # last: a pack that exists is whole
        saved.unlink(missing_ok=True)
    finally:
        ahead.shutdown(cancel_futures=True)
        if bar is not None:
            bar.close()
        LAST_PACK_STATS.update(main_s=main_s, wait_s=wait_s)


LAST_PACK_STATS: dict[str, float] = {}  # seconds of the last build: main thread copying/summing, waiting for decoding
PACK_SAVE_EVERY_S = 30.0  # a killed build resumes from its last save, at most this many seconds of decoding behind
PACK_CHUNK = 256  # images decoded ahead as one unit


def pack_images(items: list[tuple[Path, int]], pack_dir: Path, part: str, strict: bool = False, workers: int = 0,
                progress: bool = False, size: int = 256, channels: int = 3, resize: str = "warp") -> Pack:
    """Decode ``items`` once into ``pack_dir/<part>-<hash>.npy`` (uint8) and memory-map it.

    The hash covers the file names, labels, size, channels and way of resizing, so a changed dataset gets a new pack and
    every job that reads the same folder shares one. One builder at a time: an flock on
    ``<pack>.lock`` makes a second job (or `transferbench pack`) wait and then use the first
    one's pack instead of decoding ImageNet again. The build writes ``<pack>.partial.npy`` and
    saves its progress every ``PACK_SAVE_EVERY_S`` seconds, so a killed build resumes; it is
    renamed into place only when whole. Decoding (a pool of threads) runs one chunk ahead of the
    main thread, which copies each chunk into the pack and adds it to the mean.
    """
    # Warped RGB packs keep the names they had before channels and resizing were settings.
    key = [[str(p), c] for p, c in items] + [size] + ([channels] if channels != 3 else []) + \
        ([resize] if resize != "warp" else [])
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    ensure_writable_dir(pack_dir)
    base = pack_dir / f"{part}-{digest}"
    images_path, mean_path, meta_path = base.with_suffix(".npy"), base.with_suffix(".mean.npy"), base.with_suffix(".json")

    def complete() -> bool:
        return images_path.is_file() and mean_path.is_file() and meta_path.is_file()

    import fcntl

    for attempt in (1, 2):
        if not complete():
            with open(base.with_suffix(".lock"), "a+") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if progress:
                        print(f"transferbench: waiting for another job that is building the pack {images_path}",
                              file=sys.stderr)
                    fcntl.flock(lock, fcntl.LOCK_EX)
                if not complete():  # the other builder may have finished it while we waited
                    _build_pack(items, base, images_path, mean_path, meta_path, part, strict, workers, progress, size,
                                channels, resize)
        try:
            return _open_pack(images_path, mean_path, meta_path, (len(items), channels, size, size))
        except PackDamaged as damaged:
            if attempt == 2:
                raise UserError(f"{damaged} even after it was built again; check the disk of {pack_dir}") from None
            with open(base.with_suffix(".lock"), "a+") as lock:  # set it aside (once, whoever comes first) and build again
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    _open_pack(images_path, mean_path, meta_path, (len(items), channels, size, size))
                except PackDamaged:
                    for path in (images_path, mean_path, meta_path):
                        if path.exists():
                            path.replace(path.with_name(path.name + ".damaged"))
                    print(f"transferbench: warning: {damaged}; set aside as *.damaged and built again", file=sys.stderr)
    raise AssertionError("unreachable")


class PackDamaged(Exception):
    """A pack's files are there but cannot be read as the pack they claim to be."""


def _open_pack(images_path: Path, mean_path: Path, meta_path: Path, shape: tuple[int, ...]) -> Pack:
    try:
        meta = json.loads(meta_path.read_text())
        valid = np.ones(meta["items"], dtype=bool)
        valid[meta["corrupt"]] = False
        images = np.load(images_path, mmap_mode="r")
        mean = np.load(mean_path)
    except (OSError, ValueError, KeyError, TypeError, IndexError, EOFError) as exc:  # truncated, cut or edited
        raise PackDamaged(f"the pack {images_path} is damaged ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from exc
    if images.shape != shape or len(valid) != shape[0]:
        raise PackDamaged(f"the pack {images_path} has shape {images.shape} for {len(valid)} items, expected {shape}")
    return Pack(images, valid, torch.from_numpy(mean), int((~valid).sum()))
