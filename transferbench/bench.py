"""`transferbench bench`: what a GPU-hour buys. Throughput (images/s) and peak device memory of
the study's networks on the current device, and the data path measured alone, each next to a
plain reference loop as in the canonical PyTorch ImageNet example.

Rows (every figure is measured in this run; nothing is looked up):

* ``model``: the model step alone on device-resident batches: CaffeNet at 227 px and the
  small variant at 32 px; full training, frozen-prefix training (n = 3, 5, 7: the frozen
  layers run without autograd) and evaluation;
* ``data``: decode + augment alone, to the device: transferbench's path (threads decode the
  JPEGs to uint8, the device subtracts the mean, crops and mirrors), the same from a uint8
  pack (no decoding), and the reference (a DataLoader of PIL decoding with
  RandomResizedCrop, flip, ToTensor and Normalize in worker processes);
* ``train``: both together, CaffeNet at 227 px: transferbench's loop (prefetch thread, uint8
  to the device, bf16 autocast and channels_last on CUDA) and the reference loop (fp32, NCHW,
  that DataLoader), and their ratio.

The JPEGs are written by the benchmark (random smooth images at ImageNet's typical
500x375) unless ``--images`` gives a folder of real ones.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from transferbench.errors import UserError
from transferbench.fileio import atomic_write_text
from transferbench.worker.models import ModelConfig, TransferNet

Echo = Callable[[str], None]


@dataclass
class BenchRow:
    group: str  # model | data | train
    name: str
    images_per_s: float
    peak_memory_mb: float | None  # CUDA: peak allocated during the row; None on CPU
    batch_size: int
    iterations: int
    note: str = ""


@dataclass(frozen=True)
class BenchConfig:
    device: str = "cpu"
    batch_size: int = 16  # CUDA default 256 (see defaults())
    iterations: int = 2  # timed iterations per row
    warmup: int = 1  # untimed iterations first (cudnn autotuning, compile)
    images: int = 64  # JPEGs to generate when no folder is given
    workers: int = 0  # decoding threads (ours) and DataLoader processes (reference); 0: one per core, at most 8
    amp: bool = False  # bf16 autocast in transferbench's rows (CUDA)
    channels_last: bool = False
    compile: bool = False
    archs: tuple[str, ...] = ("caffenet", "small")

    @staticmethod
    def defaults(device: str) -> "BenchConfig":
        if device.startswith("cuda"):
            return BenchConfig(device, 256, 20, 5, 2048, 0, True, True)
        return BenchConfig(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_start(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _timed(step: Callable[[], None], config: BenchConfig, device: torch.device, count: int) -> float:
    """Images per second of ``step`` (one batch of ``count`` images) after the warm-up."""
    for _ in range(config.warmup):
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(config.iterations):
        step()
    _sync(device)
    return count * config.iterations / (time.perf_counter() - started)


def model_config(arch: str) -> tuple[ModelConfig, int]:
    """The paper's CaffeNet on one 500-class half at 227 px; the small variant on 50 classes at 32 px."""
    if arch == "caffenet":
        return ModelConfig(num_classes=500), 227
    if arch == "small":
        return ModelConfig.small(50), 32
    raise UserError(f"unknown arch {arch!r}; choose caffenet or small")


def bench_model(arch: str, mode: str, config: BenchConfig, device: torch.device) -> BenchRow:
    """``mode``: train, frozen3/5/7 or eval, on a batch that already sits on the device."""
    from transferbench.worker.train import TrainConfig, build_optimizer, sgd_step

    model_cfg, size = model_config(arch)
    model = TransferNet(model_cfg).to(device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    prefix = int(mode.removeprefix("frozen")) if mode.startswith("frozen") else 0
    for name in list(model.layers)[:prefix]:
        for parameter in model.layers[name].parameters():
            parameter.requires_grad_(False)
    step_model = torch.compile(model) if config.compile else model
    optimizer = build_optimizer(model, TrainConfig())
    x = torch.randn(config.batch_size, 3, size, size, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, model_cfg.num_classes, (config.batch_size,), device=device)

    def train_step() -> None:
        sgd_step(step_model, optimizer, x, y, prefix, config.amp)

    @torch.no_grad()
    def eval_step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp):
            step_model(x)

    if mode == "eval":
        model.eval()
    _peak_start(device)
    rate = _timed(eval_step if mode == "eval" else train_step, config, device, config.batch_size)
    label = {"train": "full training", "eval": "evaluation"}.get(mode, f"frozen layers 1..{prefix}")
    return BenchRow("model", f"{arch} {size}px {label}", rate, _peak(device), config.batch_size, config.iterations,
                    _precision(config))


def _precision(config: BenchConfig) -> str:
    return ", ".join(part for part in ("bf16" if config.amp else "fp32", "channels_last" if config.channels_last else "NCHW",
                                       "compiled" if config.compile else "") if part)


# ---------------------------------------------------------------------------- JPEGs and data paths

def write_jpegs(folder: Path, count: int, seed: int = 0, echo: Echo = print) -> list[Path]:
    """``count`` random smooth 500x375 JPEGs (ImageNet's typical size and quality) in ImageNet's
    folder layout, 10 classes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    files = []
    for index in range(count):
        low = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(low).resize((500, 375), Image.BICUBIC)
        noise = rng.integers(-20, 21, (375, 500, 3))
        pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        path = folder / f"n{index % 10:08d}" / f"bench_{index:06d}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)
        files.append(path)
    echo(f"wrote {count} benchmark JPEGs (500x375) to {folder}")
    return files


def find_jpegs(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))[:limit]
    if not files:
        raise UserError(f"--images {folder}: no .JPEG/.jpg files found; give an ImageNet train folder or drop --images")
    return files


class ReferenceDataset(torch.utils.data.Dataset):
    """The PyTorch ImageNet example's training transform, over a list of JPEG files."""

    def __init__(self, files: list[Path], crop: int) -> None:
        from torchvision import transforms

        self.files = files
        self.transform = transforms.Compose([
            transforms.RandomResizedCrop(crop), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        from PIL import Image

        with Image.open(self.files[index]) as image:
            return self.transform(image.convert("RGB")), index % 10


def _workers(config: BenchConfig) -> int:
    return config.workers or max(1, min(8, os.cpu_count() or 1))


def reference_batches(files: list[Path], config: BenchConfig, device: torch.device, crop: int):
    """An endless stream of (images, labels) on the device from the reference DataLoader."""
    loader = torch.utils.data.DataLoader(ReferenceDataset(files, crop), batch_size=config.batch_size, shuffle=True,
                                         num_workers=_workers(config), pin_memory=device.type == "cuda", drop_last=True,
                                         persistent_workers=True, prefetch_factor=4)
    if len(loader) == 0:
        raise UserError(f"{len(files)} images are fewer than one batch of {config.batch_size}; lower --batch-size or add images")
    while True:
        for images, labels in loader:
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def our_batches(files: list[Path] | None, config: BenchConfig, device: torch.device, crop: int, pack=None):
    """The worker's data path: uint8 decoded by threads (or read from a pack), one batch fetched
    ahead in a thread, mean/crop/mirror on the device."""
    from transferbench.worker.data import ImageSet
    from transferbench.worker.train import Batches, TrainConfig

    count = len(files) if files is not None else len(pack.images)
    labels = torch.arange(count) % 10
    image_set = (ImageSet(None, labels, files=files) if pack is None else
                 ImageSet(None, labels, packed=pack.images, rows=np.arange(count), mean=pack.mean))
    train = TrainConfig(crop=crop, workers=_workers(config), channels_last=config.channels_last)
    batches = Batches(image_set, train, device, True)
    generator = torch.Generator().manual_seed(0)

    def fetch(position: int):
        indices = [(position * config.batch_size + i) % count for i in range(config.batch_size)]
        return batches.fetch(indices, generator)

    with ThreadPoolExecutor(1) as prefetcher:
        position = 0
        upcoming = prefetcher.submit(fetch, position)
        while True:
            fetched = upcoming.result()
            position += 1
            upcoming = prefetcher.submit(fetch, position)
            yield batches.to_device(fetched)


def bench_data(name: str, stream, config: BenchConfig, device: torch.device) -> BenchRow:
    rate = _timed(lambda: next(stream), config, device, config.batch_size)
    return BenchRow("data", name, rate, None, config.batch_size, config.iterations)


def bench_train(name: str, stream, config: BenchConfig, device: torch.device, ours: bool) -> BenchRow:
    """CaffeNet at 227 px, fed by ``stream``: ours with the configured precision and layout, the
    reference in fp32 NCHW with plain SGD over every parameter (the ImageNet example)."""
    from transferbench.worker.train import TrainConfig, build_optimizer, sgd_step

    model_cfg, _ = model_config("caffenet")
    model = TransferNet(model_cfg).to(device)
    amp = config.amp and ours
    if ours and config.channels_last:
        model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if (config.compile and ours) else model
    optimizer = (build_optimizer(model, TrainConfig()) if ours else
                 torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=5e-4))

    def step() -> None:
        x, y = next(stream)
        sgd_step(step_model, optimizer, x, y % model_cfg.num_classes, 0, amp)

    _peak_start(device)
    rate = _timed(step, config, device, config.batch_size)
    return BenchRow("train", name, rate, _peak(device), config.batch_size, config.iterations,
                    _precision(config) if ours else "fp32, NCHW (reference)")


# ---------------------------------------------------------------------------- the run

def run_bench(config: BenchConfig, images: Path | None = None, out: Path | None = None, echo: Echo = print) -> list[BenchRow]:
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no CUDA device is available; use --device cpu")
    if config.batch_size < 1 or config.iterations < 1 or config.warmup < 0:
        raise UserError("--batch-size and --iterations must be at least 1, --warmup at least 0")
    if out is not None and out.suffix != ".json":
        raise UserError(f"--out {out}: give a .json file for the figures")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {os.cpu_count()} cores"
    echo(f"transferbench bench on {hardware}; torch {torch.__version__}; batch {config.batch_size}, "
         f"{config.iterations} timed iterations after {config.warmup} warm-up")
    rows: list[BenchRow] = []

    def report(row: BenchRow) -> None:
        rows.append(row)
        memory = f"{row.peak_memory_mb:9.0f} MB" if row.peak_memory_mb is not None else f"{'-':>12s}"
        echo(f"  {row.group:5s} {row.name:52s} {row.images_per_s:10.1f} img/s {memory}  {row.note}")

    echo(f"  {'group':5s} {'what':52s} {'throughput':>16s} {'peak memory':>12s}")
    for arch in config.archs:
        for mode in ("train", "frozen3", "frozen5", "frozen7", "eval"):
            report(bench_model(arch, mode, config, device))
    with tempfile.TemporaryDirectory(prefix="transferbench-bench-") as scratch:
        files = find_jpegs(images, config.images) if images else write_jpegs(Path(scratch) / "jpegs", config.images, echo=echo)
        from transferbench.worker.data import pack_images

        pack = pack_images([(path, 0) for path in files], Path(scratch) / "pack", "bench", workers=_workers(config))
        report(bench_data("transferbench: JPEG decode (threads) + device augment", our_batches(files, config, device, 227),
                          config, device))
        report(bench_data("transferbench: uint8 pack + device augment", our_batches(None, config, device, 227, pack),
                          config, device))
        reference = reference_batches(files, config, device, 227)
        report(bench_data("reference: DataLoader + PIL transforms", reference, config, device))
        ours = bench_train("transferbench: caffenet 227px, JPEG files", our_batches(files, config, device, 227), config,
                           device, ours=True)
        report(ours)
        report(bench_train("transferbench: caffenet 227px, uint8 pack", our_batches(None, config, device, 227, pack),
                           config, device, ours=True))
        theirs = bench_train("reference: caffenet 227px, DataLoader", reference, config, device, ours=False)
        report(theirs)
        del reference
    echo(f"  training CaffeNet from JPEG files: transferbench / reference = {ours.images_per_s / theirs.images_per_s:.2f}x")
    if device.type == "cpu":
        echo(f"  (CPU: peak memory is not tracked per row; process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
    if out is not None:
        atomic_write_text(out, json.dumps({"device": hardware, "torch": torch.__version__, "config": asdict(config),
                                           "rows": [asdict(row) for row in rows]}, indent=1) + "\n")
        echo(f"wrote {out}")
    return rows
