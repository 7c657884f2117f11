"""Time the ImageNet pack build (`transferbench.worker.data.pack_images`) on generated JPEGs.

    python benchmarks/pack_build.py [--images 2048] [--workers N] [--size 256]

Writes JPEGs of ImageNet's typical size (500 x 375, quality 90, seeded noise and shapes) in
ILSVRC-2012's folder layout under a temporary folder, packs them as a job would, and prints
images/s overall and per decoding thread, and the time the main thread spent copying chunks
into the pack and adding them to the mean. It extrapolates to the real 1,281,167 training
images. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMAGENET_TRAIN = 1_281_167


def make_jpegs(root: Path, count: int, classes: int = 16) -> list[tuple[Path, int]]:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    items = []
    for i in range(count):
        label = i % classes
        folder = root / "train" / f"n{label:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (375, 500, 3), dtype=np.uint8) // 4 + np.uint8(60)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y = rng.integers(0, 450), rng.integers(0, 330)
            draw.ellipse([x, y, x + rng.integers(20, 120), y + rng.integers(20, 120)], fill=tuple(rng.integers(0, 255, 3).tolist()))
        path = folder / f"img_{i:06d}.JPEG"
        image.save(path, quality=90)
        items.append((path, label))
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    from transferbench.worker import data

    with tempfile.TemporaryDirectory() as scratch:
        items = make_jpegs(Path(scratch), args.images)
        started = time.perf_counter()
        pack = data.pack_images(items, Path(scratch) / "pack", "train", workers=args.workers, size=args.size)
        seconds = time.perf_counter() - started
        stats = getattr(data, "LAST_PACK_STATS", {})
    rate = args.images / seconds
    print(f"packed {args.images} JPEGs (500x375) at {args.size} px with {args.workers} decoding threads on "
          f"{os.cpu_count()} cores in {seconds:.1f} s: {rate:.0f} img/s, {rate / args.workers:.1f} img/s per thread")
    if stats:
        print(f"  main thread copying into the pack and adding to the mean: {stats['main_s']:.2f} s "
              f"({100 * stats['main_s'] / seconds:.0f}% of the build), waiting for decoded chunks: {stats['wait_s']:.2f} s")
    print(f"  the real training set ({IMAGENET_TRAIN:,} images) at this rate: {IMAGENET_TRAIN / rate / 60:.0f} min; "
          f"on 16 such cores: {IMAGENET_TRAIN / (rate / args.workers * 16) / 60:.0f} min; "
          f"pack size {IMAGENET_TRAIN * 3 * args.size * args.size / 1e9:.0f} GB")
    assert pack.images.shape[0] == args.images


if __name__ == "__main__":
    main()
