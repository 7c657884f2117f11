"""`transferbench demo`: the whole pipeline on built-in data in minutes."""

from __future__ import annotations

import argparse
from pathlib import Path

from transferbench.cli.types import positive_int, seed

DESCRIPTION = """\
Plans a small study (base networks, BnB, BnB+, AnB, AnB+ at n = 2 and 6, random frozen layers
at n = 6, and Growing a Brain's grown network beside classic fine-tuning, A7B+WA64 vs A7B+),
each network with 4 seeds; trains it with the local executor (2 networks at a time on a CPU,
up to 8 sharing each GPU), collects the results, plots the paper's figures and says what they
show: every claim rests on a test over the 4 independent replicates, Holm-adjusted over its
figure. The default data are synthetic (procedurally generated, seeded: see
transferbench/worker/synthetic.py).

Ctrl-C stops it: the networks in training checkpoint, and the same command again resumes them
and trains the rest.

  transferbench demo                         # about 5 minutes on 2 CPU cores
  transferbench demo --first-seed 10         # another draw of the same study (seeds 10-13)
  transferbench demo --set study.seeds=[0] --set train.iterations=60   # a quick look, nothing shown
"""


def add(commands, formatter) -> None:
    demo = commands.add_parser("demo", help="the whole pipeline on built-in data, in minutes", formatter_class=formatter,
                               description=DESCRIPTION)
    demo.add_argument("--dataset", default="synthetic", choices=("synthetic", "fashion-mnist"),
                      help="synthetic (built in) or fashion-mnist (Debian's dataset-fashion-mnist or --data-root)")
    demo.add_argument("--out", type=Path, default=Path("transferbench-demo"), metavar="DIR",
                      help="where the jobs, results and figures go (default: ./transferbench-demo)")
    demo.add_argument("--workers", type=positive_int, help="networks trained at once (default: 2 on CPU; on GPUs up to 8, sharing them)")
    demo.add_argument("--data-root", metavar="DIR", help="Fashion-MNIST folder (default: Debian's install)")
    demo.add_argument("--first-seed", type=seed, default=0, metavar="S",
                      help="train every network with seeds S, S+1, ... (default 0): another draw of the same study")
    demo.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE", dest="settings",
                      help="override one value of the demo's config, as for plan (repeatable): e.g. --set "
                           "train.iterations=40 --set study.seeds=[0] for a quick look")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from transferbench.demo import run_demo

    run_demo(args.dataset, args.out, args.workers, args.data_root, first_seed=args.first_seed, settings=args.settings)
