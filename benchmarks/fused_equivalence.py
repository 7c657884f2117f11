"""Fused training against separate jobs on one device: the same weights and curves, bit for bit?

Plans the demo study (one seed) in a temporary folder, trains its two bases, then trains the
networks that copy from them (side B: AnB, AnB+, BnB, BnB+, n = 1, 4, 7) twice in this
process: one after another as separate jobs, and as one fused group (``train_together``).
Prints, per network, whether the final weights and the evaluation and loss curves are equal.

    python benchmarks/fused_equivalence.py --device cuda [--deterministic]

On a CPU they are equal (tests/test_fused.py). On a GPU, cuDNN's fastest algorithms are not
all deterministic, so two separate runs may differ too: ``--deterministic`` asks PyTorch for
deterministic algorithms only (and cuBLAS for a fixed workspace), and then fused and separate
must agree exactly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args()
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)

    from transferbench.shipped import find_config
    from transferbench.study.run import run_task
    from transferbench.study.plan import build_plan, write_plan
    from transferbench.study.study import Study
    from transferbench.worker.fused import train_together
    from transferbench.worker.train import Trainer

    with tempfile.TemporaryDirectory(prefix="transferbench-fused-") as scratch:
        plan = build_plan(find_config("demo"), Path(scratch) / "jobs", None,
                          ["study.seeds=[0]", f"train.iterations={args.iterations}"])
        write_plan(plan, echo=lambda *_: None)
        study = Study.open(plan.study_dir)
        for key in ("random0/baseA/seed0", "random0/baseB/seed0"):
            run_task(str(study.directory), key, args.device)
        members = [job for key, job in study.jobs.items()
                   if job.depends and job.side == "B" and job.spec.growth is None and "R" not in job.network]
        separate = {}
        for job in members:
            record = Trainer(job.spec, args.device, progress=False).run()
            separate[job.key] = (record, torch.load(job.out_dir / "model.pt")["model"])
            shutil.rmtree(job.out_dir)
        lead = Trainer(members[0].spec, args.device, progress=False)
        trainers = [lead] + [Trainer(job.spec, args.device, progress=False, shared=lead) for job in members[1:]]
        fused = train_together(trainers)
        equal = 0
        for job, record in zip(members, fused):
            alone, weights = separate[job.key]
            mine = torch.load(job.out_dir / "model.pt")["model"]
            same_weights = all(torch.equal(mine[k], weights[k]) for k in weights)
            same_curves = record.evaluations == alone.evaluations and record.train_loss == alone.train_loss
            equal += same_weights and same_curves
            gap = max(abs(a["top1"] - b["top1"]) for a, b in zip(record.evaluations, alone.evaluations))
            print(f"{job.key:24s} weights {'equal' if same_weights else 'differ'}, curves "
                  f"{'equal' if same_curves else 'differ'} (largest top-1 gap {gap:.4f}; final top-1 "
                  f"{alone.top1_final:.4f} alone, {record.top1_final:.4f} fused)")
        print(f"{equal} of {len(members)} networks bit for bit equal, fused vs separate, on {args.device}"
              f"{' (deterministic algorithms)' if args.deterministic else ''}")


if __name__ == "__main__":
    main()
