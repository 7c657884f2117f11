"""`transferbench import-weights`: check (and convert) a pretrained network's weights file."""

from __future__ import annotations

import argparse
from pathlib import Path

from transferbench.errors import UserError


EXAMPLES = """\
examples:
  transferbench import-weights models/bvlc_reference_caffenet.caffemodel --mean models/imagenet_mean.binaryproto
  transferbench import-weights alexnet-owt-7be5be79.pth --out models/alexnet-imported
"""


def add(commands, formatter) -> None:
    weights = commands.add_parser(
        "import-weights", epilog=EXAMPLES, help="check (and convert) a pretrained network's weights file", formatter_class=formatter,
        description="Read a pretrained network from a local file and map it onto transferbench's 8-layer network, layer by "
                    "layer, every shape checked: a Caffe .caffemodel (read with protobuf; CaffeNet's topology checked; "
                    "conv1 reversed from BGR to RGB), torchvision's AlexNet state dict (its input normalisation and "
                    "shorter-side resize kept as the input), or a state dict in CaffeNet's names. Prints the mapping and the input it expects. `plan` imports a "
                    "[source.NAME] weights file the same way; --out writes model.pt, mean.pt and source.json here too.")
    weights.add_argument("file", type=Path, metavar="FILE", help="the .caffemodel, .pth or .pt file")
    weights.add_argument("--format", choices=("caffe", "torchvision-alexnet", "torchvision-vgg16", "torchvision-resnet50",
                                              "torchvision-vit_b16", "state-dict"),
                         help="the file's layout (default: from the suffix and the keys)")
    weights.add_argument("--mean", help="the mean to subtract: a Caffe .binaryproto or .npy image, or R,G,B values "
                                        "(default: ImageNet's per-channel mean; torchvision's own for its AlexNet)")
    weights.add_argument("--std", help="a state dict's input std per channel in 0-255 units, R,G,B (e.g. 58.395,57.12,57.375; "
                                       "default: none, as Caffe)")
    weights.add_argument("--resize", choices=("warp", "shorter"),
                         help="how images reach SIZE: warp to SIZE x SIZE (Caffe's; the default) or the shorter side to "
                              "SIZE, then the centre (torchvision's; the default for its AlexNet)")
    weights.add_argument("--channel-order", choices=("RGB", "BGR"), help="a state dict's conv1 channel order (default RGB)")
    weights.add_argument("--size", type=int, help="images are resized to SIZE x SIZE before the crop (default 256)")
    weights.add_argument("--out", type=Path, metavar="DIR", help="write the converted weights and their description here")
    weights.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from transferbench.worker.sources import describe, import_weights, safe_name, write_imported

    mean = args.mean
    if mean and "," in mean and not Path(mean).exists():
        try:
            mean = [float(value) for value in mean.split(",")]
        except ValueError:
            raise UserError(f"--mean {args.mean!r}: give a mean file or comma-separated numbers, e.g. 123.68,116.78,103.94") from None
    std = None
    if args.std:
        try:
            std = [float(value) for value in args.std.split(",")]
        except ValueError:
            raise UserError(f"--std {args.std!r}: give comma-separated numbers in 0-255 units, e.g. 58.395,57.12,57.375") from None
    imported = import_weights(args.file, safe_name(args.file.stem), args.format, mean, args.channel_order, args.size, std,
                              args.resize)
    info = write_imported(imported, args.out) if args.out else imported.info
    print(describe(info))
    if args.out:
        print(f"wrote {args.out / 'model.pt'}, {args.out / 'mean.pt'} and {args.out / 'source.json'}")
