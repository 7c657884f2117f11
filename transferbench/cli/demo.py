"""`transferbench demo`: the whole pipeline on built-in data in minutes."""

from __future__ import annotations

import argparse
from pathlib import Path


def add(commands, formatter) -> None:
    demo = commands.add_parser("demo", help="the whole pipeline on built-in data, in minutes", formatter_class=formatter,
                               description="Plans a small study (base networks, BnB, BnB+, AnB, AnB+ at n = 1, 4, 7, "
                                           "random-init frozen layers, one developmental network grown by 64 fc7 units), trains it with the local executor (one job per "
                                           "core, or per GPU), collects the results, plots the paper's figures and says "
                                           "what they show. The default data are synthetic (procedurally generated, "
                                           "seeded: see transferbench/worker/synthetic.py). Run it again to resume.")
    demo.add_argument("--dataset", default="synthetic", choices=("synthetic", "fashion-mnist"),
                      help="synthetic (built in) or fashion-mnist (Debian's dataset-fashion-mnist or --data-root)")
    demo.add_argument("--out", type=Path, default=Path("transferbench-demo"), metavar="DIR",
                      help="where the jobs, results and figures go (default: ./transferbench-demo)")
    demo.add_argument("--workers", type=int, help="networks trained at once (default: 2 on CPU; on GPUs up to 8, sharing them)")
    demo.add_argument("--data-root", metavar="DIR", help="Fashion-MNIST folder (default: Debian's install)")
    demo.add_argument("--first-seed", type=int, default=0, metavar="S",
                      help="train every network with seeds S, S+1, S+2 (default 0): another draw of the same study")
    demo.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE", dest="settings",
                      help="override one value of the demo's config, as for plan (repeatable): e.g. --set "
                           "train.iterations=40 --set study.seeds=[0] for a quick look")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from transferbench.demo import run_demo

    run_demo(args.dataset, args.out, args.workers, args.data_root, first_seed=args.first_seed, settings=args.settings)
