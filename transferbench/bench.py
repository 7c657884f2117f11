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

On CUDA there are more rows: ``ceiling`` (a bf16 8192^3 matrix product: the device's
practical peak, against which each model row's FLOP utilisation is given), the uint8 pack
held in GPU memory, and a compact JPEG pack (each image stored once at 256x256) decoded in
batches on the GPU by nvJPEG (``torchvision.io.decode_jpeg(device="cuda")``). ``--matrix``
adds CaffeNet's model rows in fp32 / bf16 x NCHW / channels_last, and compiled.
Each model row's FLOPs are counted per layer from its shapes (``layer_multiply_adds``,
``training_flops``): ``torch.utils.flop_counter`` over-counts the backward pass of a strided
convolution (conv1), by about a fifth of CaffeNet's training step.

The JPEGs are written by the benchmark (random smooth images at ImageNet's typical
500x375) unless ``--images`` gives a folder of real ones.
"""

from __future__ import annotations

import dataclasses
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


GROUPS = ("model", "fused", "data", "train")


@dataclass
class BenchRow:
    group: str  # model | data | train
    name: str
    images_per_s: float
    peak_memory_mb: float | None  # CUDA: peak allocated during the row; None on CPU
    batch_size: int
    iterations: int
    note: str = ""
    tflops: float | None = None  # achieved, from the counted FLOPs per image (model and train rows)
    utilisation: float | None = None  # tflops / the measured ceiling (CUDA)


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
    matrix: bool = False  # CaffeNet's model rows in every precision and layout too
    groups: tuple[str, ...] = GROUPS  # which kinds of rows to measure

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


def layer_multiply_adds(arch: str) -> list[float]:
    """Forward multiply-adds per image of each unit and the head (conv1..fc8 for the 8-layer
    networks), from the shapes a forward pass produces: a convolution costs output elements x
    in-channels/groups x kernel area, a fully connected layer tokens x in x out, an attention
    layer its projections and its two token-by-token products."""
    from transferbench.worker.models import build_network

    model_cfg, size = model_config(arch)
    model = build_network(model_cfg)
    counts: dict[str, float] = {}

    def hook(name):
        def record(layer, inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            if isinstance(layer, torch.nn.Conv2d):
                kernel = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
                counts[name] = counts.get(name, 0.0) + out[0].numel() * kernel
            elif isinstance(layer, torch.nn.Linear):
                counts[name] = counts.get(name, 0.0) + out[0].numel() * layer.in_features
            elif isinstance(layer, torch.nn.MultiheadAttention):
                tokens, dim = inputs[0].shape[1], layer.embed_dim
                counts[name] = counts.get(name, 0.0) + 4 * tokens * dim * dim + 2 * tokens * tokens * dim
        return record

    names = model.units + (model.head,)
    for name in names:
        for module in model.layers[name].modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.MultiheadAttention)):
                module.register_forward_hook(hook(name))
    with torch.no_grad():
        model.eval()(torch.zeros(1, model_cfg.in_channels, size, size))
    return [float(counts.get(name, 0.0)) for name in names]


def training_flops(macs: list[float], frozen_prefix: int) -> float:
    """FLOPs (2 per multiply-add) of one training image with layers 1..n frozen: the frozen layers
    forward only; the trained ones forward and both backward passes, but no input gradient for
    the first trained layer (nothing before it needs one)."""
    trained = macs[frozen_prefix:]
    return 2 * (sum(macs[:frozen_prefix]) + 3 * sum(trained) - trained[0])


def fused_flops(macs: list[float], prefixes: list[int]) -> float:
    """FLOPs of one image for a fused group of networks that freeze layers 1..n (n in
    ``prefixes``) of one source: each frozen layer is computed once for all of them."""
    shared = 2 * sum(macs[:max(prefixes)])
    return shared + sum(training_flops(macs, n) - 2 * sum(macs[:n]) for n in prefixes)


def measure_ceiling(device: torch.device, size: int = 8192, repeats: int = 10) -> float:
    """TFLOP/s of a bf16 ``size``^3 matrix product on random data: the device's practical peak."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * size ** 3 * repeats / (time.perf_counter() - started) / 1e12


MODES = ("train", "frozen3", "frozen5", "frozen7", "eval")
# (amp, channels_last, compile) of --matrix; torch.compile only for full training and evaluation
VARIANTS = ((False, False, False), (False, True, False), (True, False, False), (True, True, False), (True, True, True))


BENCH_ARCHS = ("caffenet", "small", "vgg16", "resnet50", "vit_b16", "resnet_small", "vit_tiny")


def model_config(arch: str) -> tuple[ModelConfig, int]:
    """The paper's CaffeNet on one 500-class half at 227 px (VGG-16, ResNet-50 and ViT-B/16 at
    224 px, n over their stages); the small networks on 50 classes at 32 px."""
    if arch == "caffenet":
        return ModelConfig(num_classes=500), 227
    if arch == "small":
        return ModelConfig.small(50), 32
    if arch in ("vgg16", "resnet50", "vit_b16"):
        return ModelConfig(arch=arch, num_classes=500, blocks="stages"), 224
    if arch in ("resnet_small", "vit_tiny"):
        return ModelConfig(arch=arch, num_classes=50, conv_widths=(16, 32, 32, 32, 32), blocks="stages"), 32
    raise UserError(f"unknown arch {arch!r}; choose one of {', '.join(BENCH_ARCHS)}")


def bench_model(arch: str, mode: str, config: BenchConfig, device: torch.device) -> BenchRow:
    """``mode``: train, frozen3/5/7 or eval, on a batch that already sits on the device."""
    from transferbench.schema.spec import TrainConfig
    from transferbench.worker.steps import build_optimizer, sgd_step

    from transferbench.worker.models import build_network

    model_cfg, size = model_config(arch)
    model = build_network(model_cfg).to(device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    blocks = int(mode.removeprefix("frozen")) if mode.startswith("frozen") else 0
    frozen_units = model_cfg.units_of(blocks)
    prefix = len(frozen_units)
    model.freeze_units(frozen_units)
    for name in frozen_units:
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
    step = eval_step if mode == "eval" else train_step
    rate = _timed(step, config, device, config.batch_size)
    peak = _peak(device)
    macs = layer_multiply_adds(arch)
    flops = 2 * sum(macs) if mode == "eval" else training_flops(macs, prefix)
    label = {"train": "full training", "eval": "evaluation"}.get(mode, f"frozen blocks 1..{blocks}")
    return BenchRow("model", f"{arch} {size}px {label}", rate, peak, config.batch_size, config.iterations,
                    _precision(config), flops * rate / 1e12)


def _precision(config: BenchConfig) -> str:
    return ", ".join(part for part in ("bf16" if config.amp else "fp32", "channels_last" if config.channels_last else "NCHW",
                                       "compiled" if config.compile else "") if part)


# ---------------------------------------------------------------------------- fused training

def fused_members(config: BenchConfig, device: torch.device) -> list:
    """The seven AnB networks (n = 1..7) of one split at CaffeNet 227 px: each copies and freezes
    layers 1..n of one base A (random weights stand in for a trained base)."""
    from transferbench.schema.spec import Condition
    from transferbench.schema.spec import TrainConfig
    from transferbench.worker.steps import build_optimizer
    from transferbench.worker.transfer import apply_condition

    model_cfg, _ = model_config("caffenet")
    base = TransferNet(model_cfg).state_dict()
    members = []
    for n in range(1, 8):
        model = TransferNet(model_cfg)
        apply_condition(model, Condition("transfer", n), base)
        model.to(device)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        members.append((model, build_optimizer(model, TrainConfig()), n))
    return members


def bench_fused(config: BenchConfig, device: torch.device, stream=None) -> list[BenchRow]:
    """The seven AnB networks trained one after another vs fused (one batch for all, base A's
    frozen layers computed once per batch), the same batches and iterations; with ``stream``
    each separate network also reads its own batches, as separate jobs do, and the fused group
    reads each batch once. Returns the separate row, the fused row (its note: measured and
    counted ratios)."""
    from transferbench.worker.fused import SharedPrefix, prefix_chains
    from transferbench.worker.steps import sgd_step

    members = fused_members(config, device)
    chains = prefix_chains([(model, n) for model, _, n in members])
    model_cfg, size = model_config("caffenet")
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    fixed = (torch.randn(config.batch_size, 3, size, size, device=device).contiguous(memory_format=memory_format),
             torch.randint(0, model_cfg.num_classes, (config.batch_size,), device=device))

    def batch():
        if stream is None:
            return fixed
        x, y = next(stream)
        return x, y % model_cfg.num_classes

    def separate() -> None:
        for model, optimizer, n in members:
            x, y = batch()
            sgd_step(model, optimizer, x, y, n, config.amp)

    def fused() -> None:
        x, y = batch()
        prefix = SharedPrefix(x, config.amp)
        for (model, optimizer, n), chain in zip(members, chains):
            sgd_step(model, optimizer, prefix.output(model, chain, device), y, n, config.amp, start=len(chain))

    count = config.batch_size * len(members)  # images trained on per step, counted once per network
    macs = layer_multiply_adds("caffenet")
    prefixes = [n for _, _, n in members]
    counted = {"one after another": sum(training_flops(macs, n) for n in prefixes), "fused": fused_flops(macs, prefixes)}
    rows = []
    for name, step in (("one after another", separate), ("fused", fused)):
        _peak_start(device)
        rate = _timed(step, config, device, count)
        rows.append((name, rate, _peak(device), counted[name] * config.batch_size))
    (_, separate_rate, _, separate_flops), (_, fused_rate, _, fused_flops_step) = rows
    what = "JPEG-free uint8 pack" if stream is not None else "device-resident batch"
    return [BenchRow("fused", f"7 AnB (n=1..7) caffenet 227px, {name}, {what}", rate / len(members), peak, config.batch_size,
                     config.iterations, _precision(config) + (f"; fused/separate time {separate_rate / fused_rate:.3f}, "
                                                              f"counted FLOPs {fused_flops_step / separate_flops:.3f}"
                                                              if name == "fused" else ""),
                     flops * rate / count / 1e12)
            for name, rate, peak, flops in rows]


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


def our_batches(files: list[Path] | None, config: BenchConfig, device: torch.device, crop: int, pack=None,
                resident: bool = False):
    """The worker's data path: uint8 decoded by threads (or read from a pack, or gathered from the
    pack held in device memory when ``resident``), one batch fetched ahead in a thread,
    mean/crop/mirror on the device."""
    from transferbench.worker.data import ImageSet
    from transferbench.schema.spec import TrainConfig
    from transferbench.worker.inputs import Batches

    count = len(files) if files is not None else len(pack.images)
    labels = torch.arange(count) % 10
    if pack is None:
        image_set = ImageSet(None, labels, files=files)
    elif resident:
        image_set = ImageSet(torch.from_numpy(np.array(pack.images)).to(device), labels, mean=pack.mean)
    else:
        image_set = ImageSet(None, labels, packed=pack.images, rows=np.arange(count), mean=pack.mean)
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


def compact_jpegs(pack, quality: int = 90) -> list[torch.Tensor]:
    """Each packed 256x256 image encoded once as a JPEG (about a tenth of the pack's bytes)."""
    from torchvision.io import encode_jpeg

    return [encode_jpeg(torch.from_numpy(np.array(image)), quality=quality) for image in pack.images]


def nvjpeg_batches(jpegs: list[torch.Tensor], mean: torch.Tensor, config: BenchConfig, device: torch.device, crop: int):
    """Batches decoded on the GPU (nvJPEG, one batched call), then the worker's mean/crop/mirror there."""
    from torchvision.io import decode_jpeg

    from transferbench.worker.data import ImageSet
    from transferbench.schema.spec import TrainConfig
    from transferbench.worker.inputs import Batches

    labels = torch.arange(len(jpegs)) % 10
    batches = Batches(ImageSet(None, labels, mean=mean), TrainConfig(crop=crop, channels_last=config.channels_last),
                      device, True)
    generator = torch.Generator().manual_seed(0)
    position = 0
    while True:
        indices = [(position * config.batch_size + i) % len(jpegs) for i in range(config.batch_size)]
        images = torch.stack(decode_jpeg([jpegs[i] for i in indices], device=device))
        yield batches.to_device((images, labels[indices], *batches.draw(images.shape, generator)))
        position += 1


def bench_data(name: str, stream, config: BenchConfig, device: torch.device) -> BenchRow:
    rate = _timed(lambda: next(stream), config, device, config.batch_size)
    return BenchRow("data", name, rate, None, config.batch_size, config.iterations)


def bench_train(name: str, stream, config: BenchConfig, device: torch.device, ours: bool) -> BenchRow:
    """CaffeNet at 227 px, fed by ``stream``: ours with the configured precision and layout, the
    reference in fp32 NCHW with plain SGD over every parameter (the ImageNet example)."""
    from transferbench.schema.spec import TrainConfig
    from transferbench.worker.steps import build_optimizer, sgd_step

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
    peak = _peak(device)
    flops = training_flops(layer_multiply_adds("caffenet"), 0)
    return BenchRow("train", name, rate, peak, config.batch_size, config.iterations,
                    _precision(config) if ours else "fp32, NCHW (reference)", flops * rate / 1e12)


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
    ceiling = measure_ceiling(device) if device.type == "cuda" else None

    def report(row: BenchRow) -> None:
        if ceiling and row.tflops is not None:
            row.utilisation = row.tflops / ceiling
        rows.append(row)
        memory = f"{row.peak_memory_mb:9.0f} MB" if row.peak_memory_mb is not None else f"{'-':>12s}"
        flops = f"{row.tflops:8.2f}" if row.tflops is not None else f"{'-':>8s}"
        share = f"{row.utilisation:6.1%}" if row.utilisation is not None else f"{'':6s}"
        echo(f"  {row.group:5s} {row.name:56s} {row.images_per_s:10.1f} img/s {memory} {flops} {share}  {row.note}")

    def model_row(arch: str, mode: str, variant: BenchConfig) -> None:
        try:
            report(bench_model(arch, mode, variant, device))
        except Exception as exc:  # noqa: BLE001 -- one failing variant (a compiler error, say) must not lose the others
            echo(f"  model {arch} {mode} ({_precision(variant)}) failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    echo(f"  {'group':5s} {'what':56s} {'throughput':>16s} {'peak memory':>12s} {'TFLOP/s':>8s} {'of peak':>6s}")
    if ceiling:
        rows.append(BenchRow("ceiling", "bf16 8192^3 matrix product", 0.0, None, 0, 10, "TFLOP/s in tflops", ceiling, 1.0))
        echo(f"  ceiling: a bf16 8192^3 matrix product runs at {ceiling:.0f} TFLOP/s (utilisation is against it)")
    for arch in config.archs if "model" in config.groups else ():
        depth = model_config(arch)[0].depth
        for mode in MODES:
            if not mode.startswith("frozen") or int(mode.removeprefix("frozen")) <= depth:
                model_row(arch, mode, config)
    if "fused" in config.groups and "caffenet" in config.archs:
        for row in bench_fused(config, device):
            report(row)
    if config.matrix and "caffenet" in config.archs:
        for amp, channels_last, compiled in VARIANTS:
            variant = dataclasses.replace(config, amp=amp, channels_last=channels_last, compile=compiled)
            if variant == config:
                continue
            for mode in (("train", "eval") if compiled else MODES):
                model_row("caffenet", mode, variant)
    with tempfile.TemporaryDirectory(prefix="transferbench-bench-") as scratch:
        if {"data", "train"} & set(config.groups) or ("fused" in config.groups and "caffenet" in config.archs
                                                       and device.type == "cuda"):
            files = find_jpegs(images, config.images) if images else write_jpegs(Path(scratch) / "jpegs", config.images,
                                                                                  echo=echo)
            from transferbench.worker.data import pack_images

            pack = pack_images([(path, 0) for path in files], Path(scratch) / "pack", "bench", workers=_workers(config))
            _data_rows(config, device, files, pack, report, echo)
    if device.type == "cpu":
        echo(f"  (CPU: peak memory is not tracked per row; process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
    if out is not None:
        atomic_write_text(out, json.dumps({"device": hardware, "torch": torch.__version__, "config": asdict(config),
                                           "rows": [asdict(row) for row in rows]}, indent=1) + "\n")
        echo(f"wrote {out}")
    return rows


def _data_rows(config: BenchConfig, device: torch.device, files: list[Path], pack, report: Callable[[BenchRow], None],
               echo: Echo) -> None:
    """The data, train and (on CUDA) data-inclusive fused rows, over ``files`` and their pack."""
    cuda = device.type == "cuda"
    if cuda:
        jpegs = compact_jpegs(pack)
        kilobytes = sum(len(j) for j in jpegs) / len(jpegs) / 1e3
    if "data" in config.groups:
        report(bench_data("transferbench: JPEG decode (threads) + device augment", our_batches(files, config, device, 227),
                          config, device))
        report(bench_data("transferbench: uint8 pack + device augment", our_batches(None, config, device, 227, pack),
                          config, device))
        if cuda:
            report(bench_data("transferbench: uint8 pack in GPU memory + device augment",
                              our_batches(None, config, device, 227, pack, resident=True), config, device))
            report(bench_data(f"JPEG pack ({kilobytes:.0f} kB/img) + nvJPEG batch decode + augment",
                              nvjpeg_batches(jpegs, pack.mean, config, device, 227), config, device))
    if "fused" in config.groups and "caffenet" in config.archs and cuda:  # on a CPU the model dwarfs the data path: the model-only rows say it all
        for row in bench_fused(config, device, our_batches(None, config, device, 227, pack)):
            report(row)
    if "train" not in config.groups and "data" not in config.groups:
        return
    reference = reference_batches(files, config, device, 227)
    if "data" in config.groups:
        report(bench_data("reference: DataLoader + PIL transforms", reference, config, device))
    if "train" not in config.groups:
        return
    ours = bench_train("transferbench: caffenet 227px, JPEG files", our_batches(files, config, device, 227), config,
                       device, ours=True)
    report(ours)
    fastest = [ours, bench_train("transferbench: caffenet 227px, uint8 pack", our_batches(None, config, device, 227, pack),
                                 config, device, ours=True)]
    report(fastest[-1])
    if cuda:
        fastest.append(bench_train("transferbench: caffenet 227px, pack in GPU memory",
                                   our_batches(None, config, device, 227, pack, resident=True), config, device, ours=True))
        report(fastest[-1])
        fastest.append(bench_train("transferbench: caffenet 227px, JPEG pack + nvJPEG",
                                   nvjpeg_batches(jpegs, pack.mean, config, device, 227), config, device, ours=True))
        report(fastest[-1])
    theirs = bench_train("reference: caffenet 227px, DataLoader", reference, config, device, ours=False)
    report(theirs)
    echo(f"  training CaffeNet from JPEG files: transferbench / reference = {ours.images_per_s / theirs.images_per_s:.2f}x")
    best = max(fastest, key=lambda row: row.images_per_s)
    echo(f"  fastest: {best.name}: {best.images_per_s:.0f} img/s, {best.images_per_s / theirs.images_per_s:.2f}x the reference")
