"""`transferbench task`: one job (or fused group) of a study: what the local executor starts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add(commands, formatter) -> None:
    task = commands.add_parser("task")  # one job (or fused group) of a study, what the local executor starts: not listed
    task.add_argument("study", type=Path)
    task.add_argument("keys", nargs="+")
    task.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from transferbench.study.run import TaskFailed, run_unit
    from transferbench.worker.running import StopRequested

    try:
        run_unit(str(args.study), args.keys)
    except StopRequested as stop:
        print(f"transferbench: stopped by {stop}; checkpoint written", file=sys.stderr)
        return 143
    except TaskFailed as exc:
        print(f"transferbench: error: {exc}", file=sys.stderr)
        return 1
    return 0
