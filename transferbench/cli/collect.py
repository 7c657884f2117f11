"""`transferbench collect`: gather a study's result records into a results CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from transferbench.errors import UserError


EXAMPLES = """\
examples:
  transferbench collect jobs/yosinski2014                  # -> results/yosinski2014.csv
  transferbench collect jobs/demo --out results/demo-2.csv
"""


def add(commands, formatter) -> None:
    collect = commands.add_parser("collect", epilog=EXAMPLES, help="gather a study's results into results/<study>.csv", formatter_class=formatter,
                                  description="One row per finished network of the study (schema: `python -c \"import "
                                              "transferbench.schema.record as r; print(r.__doc__)\"`). A partly finished study "
                                              "collects what is done and lists what is missing.")
    collect.add_argument("study", type=Path, metavar="jobs/STUDY")
    collect.add_argument("--out", type=Path, metavar="FILE", help="CSV to write (default: results/<study>.csv)")
    collect.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from transferbench.analysis.results import (collect_rows, column_values, curve_rows, curves_path, health_lines,
                                                write_curves, write_rows)
    from transferbench.study.study import Study

    records: dict = {}
    rows, missing = collect_rows(args.study, records)
    out = args.out or Path("results") / f"{Study.open(args.study).name}.csv"
    if out.is_file() and "caffe-log" in column_values(out, "source"):
        raise UserError(f"{out} holds imported published results; give --out FILE for this study's results")
    if not rows:
        raise UserError(f"no job of {args.study} has finished yet ({len(missing)} missing); see `transferbench status {args.study}`")
    write_rows(out, rows)
    curves = curve_rows(records, rows)
    if curves:  # grown networks reading old and new units side by side: their units' learning curves
        write_curves(curves_path(out), curves)
        print(f"wrote {curves_path(out)}: the learning curves of old units, new units and both of "
              f"{len({c['key'] for c in curves})} grown networks (`plot` draws them)")
    elif curves_path(out).is_file():
        curves_path(out).unlink()  # an earlier collect's curves would no longer match the CSV
    unusable = sum(1 for r in rows if not r.usable)
    print(f"wrote {out}: {len(rows)} networks" + (f", {unusable} of them left out of means, figures' lines and tables "
                                                  "(the health column says why)" if unusable else ", all healthy enough to count"))
    for line in health_lines(rows):
        print(f"  {line}")
    corrupt = [m for m in missing if "(corrupt result record" in m]
    for line in corrupt:
        print(f"  left out: {line}")
    waiting = [m for m in missing if m not in corrupt]
    if waiting:
        print(f"{len(waiting)} not finished yet: {', '.join(waiting[:5])}{' ...' if len(waiting) > 5 else ''}")
