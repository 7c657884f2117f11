"""`transferbench status`: where every job of a study stands."""

from __future__ import annotations

import argparse
from pathlib import Path


EXAMPLES = """\
examples:
  transferbench status jobs/yosinski2014
  transferbench status jobs/demo --all
"""


def add(commands, formatter) -> None:
    status = commands.add_parser("status", epilog=EXAMPLES, help="where every job of a study stands", formatter_class=formatter,
                                 description="A table of the jobs that are running, queued, blocked or failed (with the "
                                             "reason and the log path), the finished networks whose health is not "
                                             "'healthy' (stalled, not converged, ...), and the totals per state. Reads the "
                                             "job folders and squeue; works with Slurm accounting off. Exit status: 0 all "
                                             "well, 1 some failed or blocked, 3 Slurm could not be asked.")
    status.add_argument("study", type=Path, metavar="jobs/STUDY", help="the folder `plan` wrote")
    status.add_argument("--all", action="store_true", help="a line for every job, done and planned ones included")
    status.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from transferbench.study.status import status_table

    table, totals = status_table(args.study, args.all)
    print(table, end="")
    if totals["unknown"]:
        return 3  # Slurm could not be asked: the states are not known
    return 1 if totals["failed"] or totals["blocked"] else 0
