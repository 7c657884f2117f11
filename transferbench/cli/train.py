"""`transferbench train`: train one network from a job spec."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from transferbench.cli.types import device


DESCRIPTION = """\
Train one network from a job spec (JSON): its key, dataset, split file and side, condition
(base, selffer, transfer, random_init, preserved; n_transferred; fine_tune; n_preserved),
source_checkpoint, model and train settings (the paper's recipe by default), out_dir;
optionally growth (a developmental network: variant, units, new, normalize, scale_init,
scope, new_lr_mult; see transferbench/worker/grow.py) and forgetting_side (measure the source
network's accuracy on that side after training).
Writes out_dir/checkpoint.pt every train.checkpoint_every iterations and on a stop signal
(SIGTERM, SIGINT, SIGUSR1, or Slurm's SIGUSR2 before the time limit; then exits 143),
out_dir/model.pt and out_dir/result.json at the end. Run it again on the same spec and it
resumes from the checkpoint. A spec written by hand may leave out split_hash, data_id and
source_id; its identity then covers its paths.

  transferbench train spec.json                      # spec.json: one entry of plan.json's jobs, its "spec"
  transferbench train spec.json --device cuda --no-progress
"""


def add(commands, formatter) -> None:
    train = commands.add_parser("train", help="train one network from a job spec", description=DESCRIPTION,
                                formatter_class=formatter)
    train.add_argument("spec", type=Path, metavar="SPEC.json", help="the job spec")
    train.add_argument("--device", type=device, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from transferbench.schema.spec import load_spec
    from transferbench.worker.running import StopRequested
    from transferbench.worker.train import run_job

    try:
        record = run_job(load_spec(args.spec), args.device, progress=not args.no_progress)
    except StopRequested as stop:
        print(f"transferbench: stopped by {stop}; checkpoint written, run again to resume", file=sys.stderr)
        return 143
    if record.status != "done":
        print(f"transferbench: error: {record.key} {record.reason}", file=sys.stderr)
        return 1
    print(f"{record.key}: top-1 {record.top1_final:.4f} (mean of 10 best {record.top1_mean_best10:.4f}), "
          f"{record.iterations} iterations, {record.wall_time_s:.1f} s -> {Path(record.spec['out_dir']) / 'result.json'}")
    health = record.health or {}
    if health.get("state") not in (None, "healthy"):
        print(f"  health: {health['state'].replace('_', ' ')}: {health.get('reason')}")
    return 0
