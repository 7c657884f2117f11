"""`transferbench plot`: the paper's figures and tables from results CSVs."""

from __future__ import annotations

import argparse
from pathlib import Path

from transferbench.errors import UserError


def add(commands, formatter) -> None:
    plot = commands.add_parser("plot", help="the paper's figures and tables from results CSVs", formatter_class=formatter,
                               description="Writes <study>-fig2, -fig3, -reduced, -preserved (PNG and PDF) and "
                                           "<study>-boost.csv per study in the CSVs, and prints the lingering-boost table "
                                           "with 95% bootstrap intervals. Works on partial data and says what is missing.")
    plot.add_argument("csv", type=Path, nargs="*", metavar="CSV", help="results CSVs (default: every CSV under results/)")
    plot.add_argument("--out", type=Path, default=Path("results/figures"), metavar="DIR",
                      help="folder for the figures (default: results/figures)")
    plot.add_argument("--reference", metavar="STUDY", help="overlay this study's means, e.g. yosinski2014 (read from "
                                                            "./results/<STUDY>.csv, else the copy that ships with "
                                                            "transferbench); with no CSV of your own, draw it")
    plot.add_argument("--metric", default="top1_mean_best10", choices=("top1_mean_best10", "top1_final"),
                      help="per-network value (default: the paper's mean of the 10 best evaluations)")
    plot.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import time

    from transferbench.analysis.figures import plot_all
    from transferbench.analysis.results import read_csv

    started = time.perf_counter()
    paths = args.csv or sorted(Path("results").glob("*.csv"))
    reference = None
    if args.reference:
        from transferbench.shipped import find_results

        reference_path = find_results(args.reference)
        reference = read_csv(reference_path)
        if not paths:  # nothing of the user's: draw the reference study itself
            paths = [reference_path]
            reference = None
    if not paths:
        raise UserError("no CSV given and none under results/; run `transferbench collect jobs/STUDY`, give a CSV, "
                        "or `--reference yosinski2014` for the published results")
    rows = [row for path in paths for row in read_csv(path)]
    if reference is not None:
        # The published rows are told from a user's own by their source, not by the study's name: a
        # user who planned the yosinski2014 preset has rows named yosinski2014 too.
        published = {(row.study, row.source) for row in reference}
        rows = [row for row in rows if (row.study, row.source) not in published]
    written = plot_all(rows, args.out, reference, args.metric)
    print(f"wrote {len(written)} files to {args.out} in {time.perf_counter() - started:.1f} s:")
    for path in written:
        print(f"  {path}")
