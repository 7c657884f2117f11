"""bf16 autocast against fp32 on the same short schedule: does the faster path learn the same?

CaffeNet (the study's 8-layer network, Caffe initialisation, dropout 0.5) at 227 px on the
built-in synthetic images (12 classes, see transferbench/worker/synthetic.py) scaled up 8x
to 256 px, trained with the worker's own pieces (Batches, build_optimizer, sgd_step,
evaluate) for a few hundred iterations, in fp32 and in bf16 autocast, over several seeds.
The seed fixes the initial weights, the sample order and the crops, so a precision's
difference shows against the spread between seeds.

    python benchmarks/bf16_numerics.py --device cuda --out numerics.json

Prints the training loss every --every iterations and the final validation top-1 and loss
of each run, then the mean and spread per precision.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from transferbench.worker.data import ImageSet
from transferbench.worker.models import ModelConfig, TransferNet
from transferbench.worker.synthetic import NUM_CLASSES, load_synthetic
from transferbench.schema.spec import TrainConfig
from transferbench.worker.inputs import Batches
from transferbench.worker.steps import build_optimizer, evaluate_models, learning_rate, sgd_step


def upscaled(train: bool, per_class: int, device: torch.device) -> ImageSet:
    images, labels = load_synthetic(train, per_class)
    images = images.repeat_interleave(8, 2).repeat_interleave(8, 3)  # 32 -> 256 px, nearest
    return ImageSet(images.to(device), labels)


def run(seed: int, amp: bool, args: argparse.Namespace, train_set: ImageSet, val_set: ImageSet,
        device: torch.device) -> dict:
    config = TrainConfig(lr=args.lr, batch_size=args.batch_size, iterations=args.iterations, lr_step=args.lr_step,
                         warmup=args.warmup, crop=227, amp=amp, channels_last=device.type == "cuda", seed=seed)
    torch.manual_seed(seed)
    model = TransferNet(ModelConfig(num_classes=NUM_CLASSES)).to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config)
    mean = train_set.images.float().mean(0)
    train_batches = Batches(train_set, config, device, True, mean=mean)
    val_batches = Batches(val_set, config, device, False, mean=mean)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train_set), generator=generator)
    losses = []
    started = time.perf_counter()
    for iteration in range(args.iterations):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, iteration) * group["lr_mult"]
        start = (iteration * args.batch_size) % (len(order) - args.batch_size)
        x, y = train_batches.prepare(order[start:start + args.batch_size].tolist(), generator)
        loss = sgd_step(model, optimizer, x, y, 0, amp)
        if (iteration + 1) % args.every == 0:
            losses.append(round(float(loss.detach()), 4))
    final = evaluate_models([model], val_batches, 256, amp)[0]
    return {"seed": seed, "precision": "bf16" if amp else "fp32", "losses": losses, "val_top1": final["top1"],
            "val_loss": final["loss"], "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--lr-step", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=100, help="iterations of linear learning-rate ramp")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--per-class", type=int, default=300, help="training images per class (validation: 60)")
    parser.add_argument("--every", type=int, default=50, help="record the training loss every N iterations")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train_set, val_set = upscaled(True, args.per_class, device), upscaled(False, 60, device)
    runs = []
    for seed in range(args.seeds):
        for amp in (False, True):
            result = run(seed, amp, args, train_set, val_set, device)
            runs.append(result)
            print(f"seed {seed} {result['precision']}: val top-1 {result['val_top1']:.4f}, val loss "
                  f"{result['val_loss']:.4f}, {result['seconds']:.1f} s; loss every {args.every}: {result['losses']}",
                  flush=True)
    for precision in ("fp32", "bf16"):
        top1 = [r["val_top1"] for r in runs if r["precision"] == precision]
        spread = statistics.stdev(top1) if len(top1) > 1 else float("nan")
        print(f"{precision}: val top-1 mean {statistics.mean(top1):.4f}, sd over seeds {spread:.4f} ({len(top1)} seeds)")
    differences = [b["val_top1"] - f["val_top1"] for f, b in zip(runs[::2], runs[1::2])]
    print(f"bf16 - fp32 per seed: {', '.join(f'{d:+.4f}' for d in differences)}")
    if args.out:
        args.out.write_text(json.dumps({"device": str(device), "torch": torch.__version__, "args": vars(args) | {"out": str(args.out)},
                                        "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
