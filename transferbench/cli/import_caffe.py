"""`transferbench import-caffe`: read the authors' Caffe logs into the results CSV schema."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


EXAMPLES = """\
The logs are the authors' own: the results/ folder of github.com/yosinski/convnet_transfer.

examples:
  transferbench import-caffe convnet_transfer/results     # -> results/yosinski2014.csv
  transferbench plot results/yosinski2014.csv
"""


def add(commands, formatter) -> None:
    caffe = commands.add_parser("import-caffe", epilog=EXAMPLES, help="the authors' Caffe logs -> a results CSV", formatter_class=formatter,
                                description="Read the published logs of Yosinski et al. 2014 (one folder per network: half0A, "
                                            "transfer0A0B_1_3, transfer-ft..., halfnatmanA, transfernatmanAB_1_2, nolearn_1_4, "
                                            "reduced-0010, netbase) into the results schema. Restarted networks have several "
                                            "logs: the newest line for an iteration wins. Networks without a log or unfinished "
                                            "are kept and flagged in the notes column.")
    caffe.add_argument("logs", type=Path, metavar="DIR", help="the results/ folder of the authors' repository "
                                                              "(git clone https://github.com/yosinski/convnet_transfer)")
    caffe.add_argument("--out", type=Path, default=Path("results/yosinski2014.csv"), metavar="FILE",
                       help="CSV to write (default: results/yosinski2014.csv)")
    caffe.add_argument("--study", default="yosinski2014", help="study name in the CSV (default: yosinski2014)")
    caffe.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from transferbench.analysis.results import caffe_rows, health_lines, write_rows

    rows = caffe_rows(args.logs, args.study, progress=sys.stderr.isatty())
    write_rows(args.out, rows)
    flagged = [r for r in rows if r.notes]
    print(f"wrote {args.out}: {len(rows)} networks, {len(rows) - len(flagged)} complete")
    for row in flagged:
        print(f"  {row.key}: {row.notes}")
    for line in health_lines(rows):
        print(f"  {line}")
