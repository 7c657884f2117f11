"""`transferbench bench`: throughput and memory next to a reference loop."""

from __future__ import annotations

import argparse
from pathlib import Path

from transferbench.cli.types import device


DESCRIPTION = """\
What a GPU-hour buys, measured on this machine's device (cuda when visible, else cpu):

  model  images/s and peak device memory of CaffeNet at 227 px and the small variant at
         32 px: full training, frozen layers 1..n (n = 3, 5, 7) and evaluation, on batches
         already on the device
  data   decode + augment alone: transferbench's path from JPEG files and from a uint8 pack,
         and the reference (DataLoader, PIL, RandomResizedCrop, flip, ToTensor, Normalize)
  fused  the seven AnB networks (n = 1..7) of one split at CaffeNet 227 px, one after another
         and fused (one batch for all, the shared frozen layers computed once), with the
         ratio the multiply-adds predict; on CUDA also with each network reading its batches
  data   on CUDA also: the uint8 pack held in GPU memory, and a compact JPEG pack decoded
         by nvJPEG
  train  CaffeNet at 227 px with each data path, and the reference loop of the PyTorch
         ImageNet example (fp32, NCHW), with the ratio of ours to it

On CUDA each row also gives TFLOP/s (multiply-adds counted per layer) and its share of the
device's ceiling, a bf16 matrix product measured first. --rows picks groups; --matrix adds
CaffeNet in fp32/bf16, NCHW/channels_last and compiled.

The JPEGs are generated (random 500x375 images) unless --images gives real ones.
Results are printed; --out also writes them as JSON.  See benchmarks/RESULTS.md.
"""


def add(commands, formatter) -> None:
    bench = commands.add_parser("bench", help="throughput and memory of the networks and the data path, vs a reference loop",
                                formatter_class=formatter, description=DESCRIPTION)
    bench.add_argument("--device", type=device, help="cpu or cuda (default: cuda when one is visible)")
    bench.add_argument("--batch-size", type=int, help="images per batch (default: 256 on CUDA, 16 on CPU)")
    bench.add_argument("--iterations", type=int, help="timed iterations per row (default: 20 on CUDA, 2 on CPU)")
    bench.add_argument("--warmup", type=int, help="untimed iterations before each row (default: 5 on CUDA, 1 on CPU)")
    bench.add_argument("--images", type=Path, metavar="DIR", help="real JPEGs to read (e.g. an ImageNet train folder; "
                                                                   "default: generate random 500x375 JPEGs)")
    bench.add_argument("--count", type=int, help="JPEGs to generate or read (default: 2048 on CUDA, 64 on CPU)")
    bench.add_argument("--workers", type=int, default=0, help="decoding threads / DataLoader processes (default: one per core, at most 8)")
    bench.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                       help="bf16 autocast in transferbench's rows (default: on with CUDA)")
    bench.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                       help="channels_last layout in transferbench's rows (default: on with CUDA)")
    bench.add_argument("--compile", action="store_true", help="torch.compile transferbench's models")
    bench.add_argument("--rows", nargs="+", choices=("model", "fused", "data", "train"), metavar="GROUP",
                       help="measure only these groups of rows: model, fused (the seven AnB networks fused vs one after "
                            "another), data, train (default: all)")
    bench.add_argument("--matrix", action="store_true", help="also CaffeNet's model rows in fp32 and bf16, NCHW and "
                       "channels_last, and compiled (the compiled rows take a minute or two to compile)")
    bench.add_argument("--arch", nargs="+", default=["caffenet", "small"],
                       choices=("caffenet", "small", "vgg16", "resnet50", "vit_b16", "resnet_small", "vit_tiny"),
                       help="networks of the model rows (default: caffenet and small); vgg16, resnet50 and vit_b16 at "
                            "224 px with n over their stages, for the GPU-hours of their grids")
    bench.add_argument("--out", type=Path, metavar="FILE.json", help="also write the figures here")
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import dataclasses

    import torch

    from transferbench.bench import BenchConfig, run_bench as bench

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    config = BenchConfig.defaults(device)
    changes = {"batch_size": args.batch_size, "iterations": args.iterations, "warmup": args.warmup, "images": args.count,
               "amp": args.amp, "channels_last": args.channels_last, "compile": args.compile or None,
               "workers": args.workers or None, "archs": tuple(args.arch),
               "matrix": args.matrix or None, "groups": tuple(args.rows) if args.rows else None}
    bench(dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None}), args.images, args.out)
