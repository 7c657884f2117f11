"""Transfer on the real Fashion-MNIST (Debian's dataset-fashion-mnist): base A, base B, AnB and AnB+ at n=1 and n=7.

    python benchmarks/fashion_mnist_transfer.py [--iterations 500] [--out /tmp/fm-transfer] [--device cpu]

Prints one line per network (final top-1 and the paper's mean of the 10 best evaluations).
It trains the small 8-layer variant on split splits/fashion-mnist-random0.json (5/5 classes).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from transferbench.worker.models import ModelConfig
from transferbench.schema.spec import JobSpec, TrainConfig
from transferbench.worker.train import run_job
from transferbench.worker.transfer import Condition

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("/tmp/fm-transfer"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-root", default=None, help="Fashion-MNIST IDX folder (default: Debian's install)")
    args = parser.parse_args()

    model = ModelConfig("small", 5, 1, (32, 64, 96, 96, 64), 256, 0.5, "kaiming")
    train = TrainConfig(lr=0.01, batch_size=128, iterations=args.iterations, lr_step=max(1, args.iterations * 2 // 3),
                        eval_every=max(1, args.iterations // 10), checkpoint_every=max(1, args.iterations // 5), crop=28, pad=2,
                        input_scale=1 / 64)
    split = str(REPO / "splits" / "fashion-mnist-random0.json")

    def spec(name: str, side: str, condition: Condition, source: str | None = None) -> JobSpec:
        return JobSpec(key=f"fashion-mnist-random0/{name}", dataset="fashion-mnist", split=split, side=side,
                       out_dir=str(args.out / name), condition=condition, source_checkpoint=source, model=model,
                       train=dataclasses.replace(train), data_root=args.data_root)

    jobs = [spec("baseA", "A", Condition()), spec("baseB", "B", Condition())]
    source = str(args.out / "baseA" / "model.pt")
    for n in (1, 7):
        jobs.append(spec(f"A{n}B", "B", Condition("transfer", n), source))
        jobs.append(spec(f"A{n}B+", "B", Condition("transfer", n, fine_tune=True), source))
    rows = []
    for job in jobs:
        record = run_job(job, args.device)
        rows.append((job.key.split("/")[-1], record["top1_final"], record["top1_mean_best10"], record["wall_time_s"]))
        print(f"{rows[-1][0]:8s} top1 {rows[-1][1]:.4f}  mean-best-10 {rows[-1][2]:.4f}  {rows[-1][3]:.0f} s", flush=True)
    print(f"\n{'network':8s} {'top1':>7s} {'best10':>7s}")
    for name, top1, best, _ in rows:
        print(f"{name:8s} {top1:7.4f} {best:7.4f}")


if __name__ == "__main__":
    main()
