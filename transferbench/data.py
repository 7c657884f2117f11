"""Datasets in their genuine on-disk formats, and the split-side selection.

* Fashion-MNIST: IDX files (``train-images-idx3-ubyte[.gz]`` ...) in torchvision's layout
  (``ROOT/FashionMNIST/raw/``), directly in ``ROOT``, or Debian's ``dataset-fashion-mnist``
  install (``/usr/share/datasets/fashion-mnist``).
* CIFAR-100: torchvision's ``ROOT/cifar-100-python/{train,test}`` pickles.
* ImageNet ILSVRC-2012: ``ROOT/train/<wnid>/*.JPEG``; validation as ``ROOT/val/<wnid>/``
  folders or a flat folder with a Caffe-style label list (``<file> <class index>``).

Small datasets are held in memory as uint8 tensors; ImageNet images are decoded per item
and resized to 256x256 (the paper's preprocessing), cropped and mirrored per batch.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from transferbench.errors import UserError
from transferbench.splits import Split

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DATASET_FORMATS = ("fashion-mnist", "cifar100", "imagenet1k")


@dataclass
class ImageSet:
    """Images of one split side: uint8 NCHW (in memory) or an item reader, and labels 0..k-1."""

    images: torch.Tensor | None  # N x C x H x W uint8, or None for on-disk (ImageNet)
    labels: torch.Tensor  # int64, renumbered within the side
    files: list[Path] | None = None  # ImageNet: one file per item
    skipped: int = 0  # corrupt images counted and skipped

    def __len__(self) -> int:
        return len(self.labels)


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

def load_cifar100(root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    path = Path(root) / "cifar-100-python" / ("train" if train else "test")
    try:
        with open(path, "rb") as handle:
            entry = pickle.load(handle, encoding="bytes")
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
        from transferbench.splits import read_image_list

        return [(folder / name, label) for name, label in read_image_list(val_list, len(wnids)).entries]
    items = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name not in index_of:
            raise UserError(f"{sub} is not an ILSVRC-2012 class folder (unknown wnid {sub.name!r})")
        items += [(f, index_of[sub.name]) for f in sorted(sub.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not items:
        raise UserError(f"no images under {folder}; expected {folder}/<wnid>/*.JPEG (or --val-list for a flat val folder)")
    return items


def decode_resized(path: Path, size: int = 256) -> torch.Tensor | None:
    """A JPEG as uint8 3 x size x size (the paper's 256x256 resize); None if it is corrupt."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB").resize((size, size), Image.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


# ---------------------------------------------------------------------------- selection

def select_side(labels: torch.Tensor, split: Split | None, side: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the samples on ``side`` and their labels renumbered 0..k-1; reduced splits cap per class."""
    if split is None:
        return torch.arange(len(labels)), labels
    mapping = split.label_map(side)
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
                   val_list: Path | None = None, strict: bool = False) -> ImageSet:
    """The images of one split side, labels renumbered, in their dataset's genuine format."""
    if split is not None and split.dataset != dataset:
        raise UserError(f"split {split.name} is for {split.dataset}, not {dataset}; choose a split of {dataset}")
    if dataset == "fashion-mnist":
        images, labels = load_fashion_mnist(root, train)
    elif dataset == "cifar100":
        if root is None:
            raise UserError("CIFAR-100 needs --data-root, the folder holding cifar-100-python/")
        images, labels = load_cifar100(root, train)
    elif dataset == "imagenet1k":
        from transferbench.classes import load_table

        if root is None:
            raise UserError("ImageNet needs --data-root, the folder holding train/ and val/")
        wnids = [c.wnid for c in load_table("imagenet1k").classes]
        items = imagenet_items(root, train, wnids, val_list)
        keep, new_labels = select_side(torch.tensor([label for _, label in items]), split, side)
        return ImageSet(None, new_labels, [items[i][0] for i in keep.tolist()])
    else:
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASET_FORMATS)}")
    keep, new_labels = select_side(labels, split, side)
    return ImageSet(images[keep], new_labels)


class ImageFileReader:
    """Decodes ImageNet items; corrupt files are counted and skipped (fatal when strict)."""

    def __init__(self, files: list[Path], strict: bool) -> None:
        self.files, self.strict, self.skipped = files, strict, 0

    def load(self, indices: list[int]) -> tuple[torch.Tensor, list[int]]:
        images, kept = [], []
        for index in indices:
            image = decode_resized(self.files[index])
            if image is None:
                if self.strict:
                    raise UserError(f"corrupt image {self.files[index]}; remove it or run without --strict to skip it")
                self.skipped += 1
                warnings.warn(f"skipping corrupt image {self.files[index]}", stacklevel=2)
                continue
            images.append(image)
            kept.append(index)
        if not images:
            return torch.empty(0, 3, 256, 256, dtype=torch.uint8), kept
        return torch.stack(images), kept
