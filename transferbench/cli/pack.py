"""`transferbench pack`: build a study's ImageNet pack ahead."""

from __future__ import annotations

import argparse
from pathlib import Path


EXAMPLES = """\
example:
  transferbench pack jobs/yosinski2014
"""


def add(commands, formatter) -> None:
    pack = commands.add_parser("pack", epilog=EXAMPLES, help="build a study's ImageNet pack by hand (submit does it first anyway)",
                               formatter_class=formatter,
                               description="Decode the ImageNet images a planned study reads into its pack_dir once "
                                           "(uint8, 256x256, with the training set's mean image), train and val. submit "
                                           "builds it as the study's first job; run this to build it ahead, e.g. on a "
                                           "node with many cores. Safe to run twice at once (the second waits for the "
                                           "first) and resumable if killed.")
    pack.add_argument("study", type=Path, metavar="jobs/STUDY")
    pack.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from transferbench.study.run import build_packs

    count = build_packs(str(args.study))
    print(f"{count} packs ready" if count else f"{args.study} has no ImageNet job with a pack_dir: nothing to pack")
