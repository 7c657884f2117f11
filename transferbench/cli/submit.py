"""`transferbench submit`: run a planned study on Slurm, on this machine or in this process."""

from __future__ import annotations

import argparse
from pathlib import Path

from transferbench.cli.types import positive_int


DESCRIPTION = """\
Run the jobs of a planned study that are not done, queued or running.

  --executor slurm  sbatch through submitit: jobs grouped into arrays by the base network they
                    wait for (afterok on that base's array task), requeued on timeout or
                    preemption and resumed from their checkpoint.  Resources come from the
                    config's [slurm] table; the flags below override them.
  --executor local  this machine: the dependency graph with --workers processes (default one per GPU;
                    more than the GPUs share them)
  --executor debug  in this process, one job after another (tests, debugging)

Failed jobs are left alone unless --retry-failed; jobs a stop signal checkpointed (Ctrl-C, a
preemption) resume at the next submit; --dry-run prints what would be submitted and why the
rest is skipped.  Progress is tracked in jobs/<study>/manifest.json and the files the jobs
write, so `status` works without Slurm accounting (sacct).  A stop signal (SIGTERM, SIGINT,
SIGUSR1, or Slurm's SIGUSR2 before the time limit) makes a job checkpoint and stop.

  transferbench submit jobs/yosinski2014 --dry-run
  transferbench submit jobs/yosinski2014 --partition gpu --time-min 2880
  transferbench submit jobs/demo --executor local --workers 2
  transferbench submit jobs/demo --executor local --retry-failed
"""


def add(commands, formatter) -> None:
    submit = commands.add_parser("submit", help="run a planned study (Slurm, local or debug)", description=DESCRIPTION,
                                 formatter_class=formatter)
    submit.add_argument("study", type=Path, metavar="jobs/STUDY", help="the folder `plan` wrote")
    submit.add_argument("--executor", default="slurm", choices=("slurm", "local", "debug"), help="where jobs run (default: slurm)")
    submit.add_argument("--retry-failed", action="store_true", help="run failed jobs (and those blocked behind them) again")
    submit.add_argument("--retry-stalled", action="store_true",
                        help="train stalled networks (`status` names them) again from other random streams (the same "
                             "seed and key, the next retry of its stream tree), and the finished networks that copy from "
                             "them; earlier attempts are kept in attempt<k>/ and listed in the new record")
    submit.add_argument("--dry-run", action="store_true", help="print what would be submitted and why, submit nothing")
    submit.add_argument("--workers", type=positive_int, help="local executor: jobs at once (default: one per GPU, or 1; more than the GPUs share them)")
    for flag, kind, text in (("partition", str, "Slurm partition"), ("account", str, "Slurm account"), ("qos", str, "Slurm QOS"),
                             ("gpus", int, "GPUs per job"), ("cpus", int, "CPUs per job"), ("mem-gb", int, "memory per job, GB"),
                             ("time-min", int, "time limit per job, minutes"),
                             ("array-parallelism", int, "most tasks of one array running at once"),
                             ("folder", str, "submitit log folder (default: jobs/STUDY/slurm; must be on a shared filesystem)")):
        submit.add_argument(f"--{flag}", type=kind, help=f"{text} (overrides [slurm])")
    submit.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from transferbench.study.submit import submit
    from transferbench.study.status import status_table

    overrides = {name: getattr(args, name) for name in ("partition", "account", "qos", "gpus", "cpus", "array_parallelism", "folder")}
    overrides.update(mem_gb=args.mem_gb, time_min=args.time_min)
    submit(args.study, args.executor, args.retry_failed, args.dry_run, overrides, args.workers,
           retry_stalled=args.retry_stalled)
    if args.executor != "slurm" and not args.dry_run:
        table, totals = status_table(args.study)
        print(table, end="")
        return 1 if totals["failed"] or totals["blocked"] else 0
    return 0
