"""torchvision's VGG-16, ResNet-50 and ViT-B/16 (random weights, saved to a temporary folder) imported
by transferbench: every tensor mapped to a unit, and the largest difference between transferbench's
logits and torchvision's on the same input; with each network's units, stages, parameters and
forward multiply-adds.

    python benchmarks/torchvision_imports.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.formats import torchvision_reference  # noqa: E402  (the reference networks the tests use)
from transferbench.bench import layer_multiply_adds  # noqa: E402
from transferbench.worker.models import build_network  # noqa: E402
from transferbench.worker.sources import import_weights  # noqa: E402

ARCHS = ("resnet50", "vgg16", "vit_b16")


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    print(f"{'network':10s} {'units':>5s} {'stages':>6s} {'parameters':>12s} {'GMACs (500 classes)':>20s} "
          f"{'tensors':>8s} {'max |logit difference|':>24s} {'largest |logit|':>16s}")
    for arch in ARCHS:
        reference = torchvision_reference(arch, seed=0)
        torch.save(reference.state_dict(), folder / f"{arch}.pth")
        imported = import_weights(folder / f"{arch}.pth", arch)
        ours = build_network(imported.info.model).eval()
        ours.load_state_dict(imported.state)
        x = torch.randn(4, 3, 224, 224)
        with torch.no_grad():
            theirs, mine = reference(x), ours(x)
        model = imported.info.model
        stages = len(model.architecture.stages)
        print(f"{arch:10s} {len(model.architecture.units):5d} {stages:6d} {model.parameter_count():12,d} "
              f"{sum(layer_multiply_adds(arch)) / 1e9:20.2f} {len(imported.state):8d} "
              f"{(theirs - mine).abs().max().item():24.3g} {theirs.abs().max().item():16.3g}")


if __name__ == "__main__":
    main()
