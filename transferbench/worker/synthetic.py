"""The built-in demo dataset: synthetic, procedurally generated, seeded. Not natural images.

It is built so that the study has something to find. Every image is a 4x4 grid of 8x8
cells on a 32x32 canvas; a cell holds one oriented Gabor-like stroke from a bank shared by
all classes (low-level structure, shared by A and B) or stays empty. The 12 classes form a
hierarchy of 4 families x 3 classes (see ``data/synthetic_classes.tsv``):

* a family fixes 6 cells and their strokes (mid-level structure, shared within a family);
* a class adds 4 cells of its own and a colour (high-level structure, class-specific).

Each image then varies: strokes turn by one step of the bank with probability 0.2, parts
drop out with probability 0.15, the whole pattern shifts by up to 3 pixels, contrast and
colour jitter, and Gaussian noise is added. A random half of the classes therefore shares
low-level features with the other half but not the class-specific combinations, which is
what gives transfer its general-to-specific gradient. The generator is deterministic in
its seed: the same bytes on every machine.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

FAMILIES, PER_FAMILY, GRID, CELL, ORIENTATIONS = 4, 3, 4, 8, 8
SIZE = GRID * CELL
NUM_CLASSES = FAMILIES * PER_FAMILY


def stroke_bank() -> np.ndarray:
    """ORIENTATIONS oriented strokes (Gabor-like), CELL x CELL, values in [-1, 1]."""
    coords = np.arange(CELL) - (CELL - 1) / 2
    y, x = np.meshgrid(coords, coords, indexing="ij")
    bank = []
    for k in range(ORIENTATIONS):
        angle = np.pi * k / ORIENTATIONS
        along = x * np.cos(angle) + y * np.sin(angle)
        across = -x * np.sin(angle) + y * np.cos(angle)
        bank.append(np.cos(across * 1.6) * np.exp(-(across ** 2) / 6 - (along ** 2) / 14))
    return np.stack(bank).astype(np.float32)


def class_templates(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per class: stroke index per grid cell (-1: empty), and an RGB colour."""
    rng = np.random.default_rng([seed, 1])
    templates = np.full((NUM_CLASSES, GRID * GRID), -1, dtype=np.int64)
    colours = np.zeros((NUM_CLASSES, 3), dtype=np.float32)
    for family in range(FAMILIES):
        cells = rng.permutation(GRID * GRID)
        shared, rest = cells[:6], cells[6:]
        shared_strokes = rng.integers(0, ORIENTATIONS, len(shared))
        family_colour = rng.uniform(0.3, 1.0, 3)
        for member in range(PER_FAMILY):
            label = family * PER_FAMILY + member
            templates[label, shared] = shared_strokes
            own = rng.choice(rest, 4, replace=False)
            templates[label, own] = rng.integers(0, ORIENTATIONS, 4)
            colours[label] = np.clip(family_colour + rng.normal(0, 0.25, 3), 0.1, 1.0)
    return templates, colours


def render(labels: np.ndarray, rng: np.random.Generator, seed: int = 0) -> np.ndarray:
    """uint8 N x 3 x SIZE x SIZE images of the given classes."""
    bank = stroke_bank()
    templates, colours = class_templates(seed)
    count = len(labels)
    strokes = templates[labels].copy()  # N x 16
    present = strokes >= 0
    turn = rng.random(strokes.shape) < 0.2
    strokes = np.where(present & turn, (strokes + rng.choice([-1, 1], strokes.shape)) % ORIENTATIONS, strokes)
    present &= rng.random(strokes.shape) >= 0.15
    cells = np.where(present[..., None, None], bank[np.maximum(strokes, 0)], 0.0)  # N x 16 x 8 x 8
    canvas = cells.reshape(count, GRID, GRID, CELL, CELL).transpose(0, 1, 3, 2, 4).reshape(count, SIZE, SIZE)
    shifts = rng.integers(-3, 4, (count, 2))
    for i in range(count):
        canvas[i] = np.roll(canvas[i], tuple(shifts[i]), axis=(0, 1))
    contrast = rng.uniform(0.6, 1.2, (count, 1, 1, 1))
    colour = colours[labels][:, :, None, None] * rng.uniform(0.8, 1.2, (count, 3, 1, 1))
    image = 0.5 + 0.5 * contrast * canvas[:, None] * colour + rng.normal(0, 0.08, (count, 3, SIZE, SIZE))
    return np.clip(image * 255, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def load_synthetic(train: bool, per_class: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The demo dataset: 500 training and 100 test images per class by default. Drawing them takes
    about 2 s; every process of a study needs them, so the arrays are kept in the user's cache
    folder (``$XDG_CACHE_HOME/transferbench``, checked by their hash) and drawn again when missing."""
    per_class = per_class or (500 if train else 100)
    cached = _read_cache(train, per_class, seed)
    if cached is not None:
        return cached
    rng = np.random.default_rng([seed, 2 if train else 3])
    labels = np.repeat(np.arange(NUM_CLASSES), per_class)
    rng.shuffle(labels)
    images = render(labels, rng, seed)
    _write_cache(train, per_class, seed, images, labels.astype(np.int64))
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def _cache_path(train: bool, per_class: int, seed: int):
    import os
    from pathlib import Path

    from transferbench.tasks.fingerprint import SYNTHETIC_VERSION

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "transferbench"
    return root / f"synthetic-v{SYNTHETIC_VERSION}-{'train' if train else 'test'}-{per_class}-{seed}.npz"


def _digest(images: np.ndarray, labels: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()


def _read_cache(train: bool, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        with np.load(_cache_path(train, per_class, seed)) as saved:
            images, labels, digest = saved["images"], saved["labels"], str(saved["digest"])
    except (OSError, KeyError, ValueError):
        return None  # absent, unreadable or from elsewhere: drawn again
    if _digest(images, labels) != digest or images.shape != (NUM_CLASSES * per_class, 3, SIZE, SIZE):
        return None
    return torch.from_numpy(images), torch.from_numpy(labels)


def _write_cache(train: bool, per_class: int, seed: int, images: np.ndarray, labels: np.ndarray) -> None:
    import io

    from transferbench.fileio import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez(buffer, images=images, labels=labels, digest=np.array(_digest(images, labels)))
    try:
        atomic_write_bytes(_cache_path(train, per_class, seed), buffer.getvalue())
    except Exception:  # noqa: BLE001 - a cache that cannot be written (read-only home) only costs time
        pass
