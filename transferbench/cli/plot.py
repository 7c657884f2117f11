"""`transferbench plot`: the paper's figures and tables from results CSVs."""

from __future__ import annotations

import argparse
from pathlib import Path

from transferbench.errors import UserError

DESCRIPTION = """\
Writes, per study in the CSVs: <study>-fig2, -fig3, -reduced, -preserved, -developmental (PNG
and PDF), <study>-effects.csv (every effect per n, pooled and as a trend over n: mean, 95%
t-interval over independent replicates, p and Holm-adjusted p, shown or not, pairs, replicates
and bases), the lingering-boost tables, and prints what the figures show.  Works on partial
data and says what is missing.  Where `collect` wrote <csv>-curves.csv beside a CSV (grown
networks whose classifier reads old and new units side by side), also <study>-units: the
learning curves of the old units alone, the new units alone and both (Growing a Brain's figure 6).

  transferbench plot                                  # the CSVs under results/ (or, with none, the published study)
  transferbench plot results/mine.csv --reference yosinski2014
  transferbench plot results/mine.csv --metric top1_final --out figures-final
"""


def add(commands, formatter) -> None:
    plot = commands.add_parser("plot", help="the paper's figures and tables from results CSVs", formatter_class=formatter,
                               description=DESCRIPTION)
    plot.add_argument("csv", type=Path, nargs="*", metavar="CSV", help="results CSVs (default: every CSV under results/)")
    plot.add_argument("--out", type=Path, default=Path("results/figures"), metavar="DIR",
                      help="folder for the figures (default: results/figures)")
    plot.add_argument("--reference", metavar="STUDY", help="overlay this study's means, e.g. yosinski2014 (read from "
                                                            "./results/<STUDY>.csv, else the copy that ships with "
                                                            "transferbench); with no CSV of your own, draw it")
    plot.add_argument("--metric", default="top1_mean_best10",
                      choices=("top1_mean_best10", "top1_final", "top1_holdout", "class_top1_final"),
                      help="per-network value: the paper's mean of the 10 best evaluations (default; chosen on the "
                           "validation images it reports), the final network's top-1, the top-1 at the evaluation "
                           "chosen on held-out training images (needs train.holdout), or the final network's mean "
                           "per-class top-1 (the literature's figure for imbalanced sets such as Caltech-101)")
    plot.add_argument("--keep-flagged", action="store_true",
                      help="put the networks left out of means (stalled, diverged, built on one) back into every figure "
                           "and table, to see what leaving them out changed")
    plot.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import time

    from transferbench.analysis.figures import plot_all, plot_units
    from transferbench.analysis.results import curves_path, read_csv, read_curves

    from transferbench.analysis.reading import reading
    from transferbench.shipped import find_results

    started = time.perf_counter()
    paths = args.csv or sorted(Path("results").glob("*.csv"))
    reference = None
    if args.reference:
        reference_path = find_results(args.reference)
        reference = read_csv(reference_path)
        if not paths:  # nothing of the user's: draw the reference study itself
            paths = [reference_path]
            reference = None
    if not paths:  # a bare `plot` with no results of one's own: the published study
        paths = [find_results("yosinski2014")]
        print(f"no CSV given and none under results/: plotting the published study of Yosinski et al. 2014 ({paths[0]})")
    resolved = [Path(p).resolve() for p in paths]
    twice = next((p for p in resolved if resolved.count(p) > 1), None)
    if twice is not None:
        raise UserError(f"{twice} is given twice; give each CSV once (its networks would count twice in every mean)")
    rows = unique_rows([(path, read_csv(path)) for path in resolved])
    if reference is not None:
        # The published rows are told from a user's own by their source, not by the study's name: a
        # user who planned the yosinski2014 preset has rows named yosinski2014 too.
        published = {(row.study, row.source) for row in reference}
        rows = [row for row in rows if (row.study, row.source) not in published]
    written = plot_all(rows, args.out, reference, args.metric, keep_flagged=args.keep_flagged)
    for path in resolved:  # the grown networks' units' curves that collect wrote beside a CSV
        if curves_path(path).is_file():
            written += plot_units(read_curves(curves_path(path)), args.out, keep_flagged=args.keep_flagged)
    print(f"wrote {len(written)} files to {args.out} in {time.perf_counter() - started:.1f} s:")
    for path in written:
        print(f"  {path}")
    for study in dict.fromkeys(row.study for row in rows):
        print(f"what {study} shows ({args.metric}):")
        for line in reading([row for row in rows if row.study == study], args.metric, args.keep_flagged):
            print(f"  - {line}")


def unique_rows(read: list) -> list:
    """The rows of every CSV read, refusing a network that appears twice (the same CSV given twice,
    or a copy of it under results/): pooled twice, every mean would count it twice."""
    seen: dict[tuple, Path] = {}
    rows = []
    for path, found in read:
        for row in found:
            key = (row.study, row.source, row.key)
            if key in seen:
                where = "twice in" if seen[key] == path else f"in {seen[key]} and in"
                raise UserError(f"{row.study} network {row.key} is {where} {path}; give each study's CSV once (a copy "
                                "under results/ is read too: move it away, or name the CSVs to plot)")
            seen[key] = path
            rows.append(row)
    return rows
