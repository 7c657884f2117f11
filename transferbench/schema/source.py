"""A pretrained source network, as `plan` sees it: ``source.json`` beside its weights.

A cross-dataset block of a study config transfers from a network that was trained elsewhere:
weights imported from a file (``[source.<name>]``, see ``transferbench.worker.sources``) or a
job of another study (``"<study>:<job key>"``). Planning needs its architecture and its input
contract (image size, crop, scale, channels, mean) without loading the weights, so the import
writes this description, torch-free, beside the ``model.pt`` it makes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transferbench.errors import UserError
from transferbench.schema.loader import build
from transferbench.schema.spec import DataRef, ModelConfig

SOURCE_FORMATS = ("caffe", "torchvision-alexnet", "torchvision-vgg16", "torchvision-resnet50", "torchvision-vit_b16", "state-dict",
                  "study")


@dataclass(frozen=True)
class SourceInfo:
    """What a study needs to know of a source network to plan transfers from it."""

    name: str  # "source:<name>" for an imported file, "<study>:<job key>" for a job of another study
    origin: str  # the file it was imported from, or the job's folder
    format: str  # caffe | torchvision-alexnet, -vgg16, -resnet50, -vit_b16 | state-dict | study
    config_hash: str  # what its model.pt carries: the imported file's sha256 (16 hex digits), or the job's spec hash
    attempt: int  # a study job's attempt (1 for an imported file)
    weights: str  # its model.pt (transferbench's layout: layers.conv1.weight ... layers.fc8.bias, and the mean image)
    model: ModelConfig  # its architecture (num_classes: its own classifier's)
    size: int  # images are resized to size x size before the crop
    crop: int  # the crop the network takes (CaffeNet: 227)
    input_scale: float  # (image - mean) x input_scale / std, in 0-255 pixel units (Caffe: 1)
    mean: str  # what the mean image is, in words
    notes: tuple[str, ...] = ()  # what the import did (channel order, folded normalisation, defaults it took)
    mapping: tuple[str, ...] = ()  # which tensor of the file became which layer, with its shape
    data: DataRef | None = None  # its own training data, where known: forgetting and wide-from-scratch need it
    train: dict[str, Any] | None = None  # the recipe it was trained with, where known (a study job's)
    settings: dict[str, Any] | None = None  # an import's settings (format, mean, std, channel_order, size, resize): a change imports again
    std: tuple[float, ...] | None = None  # per channel, 0-255 units, divided after the mean (torchvision's: 255 x its std)
    resize: str = "warp"  # how image files reach size x size: "warp" (Caffe's) or "shorter" side + centre crop (torchvision's)

    def __post_init__(self) -> None:
        if self.format not in SOURCE_FORMATS:
            raise UserError(f"source format {self.format!r} is not one of {', '.join(SOURCE_FORMATS)}")

    @property
    def channels(self) -> int:
        return self.model.in_channels

    @property
    def mean_identity(self) -> str:
        """What its mean.pt and model.pt carry and a job that subtracts its mean checks:
        "<config hash>#<attempt>", and "@<digest>" of the import settings where any is given (a
        changed mean setting changes every job that subtracts it, trained from it or not)."""
        text = f"{self.config_hash}#{self.attempt}"
        if self.settings and any(value is not None for value in self.settings.values()):
            text += "@" + hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:12]
        return text

    def to_text(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @staticmethod
    def read(path: Path) -> "SourceInfo":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path} does not exist; import the source again") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"{path} is not a readable source description ({exc}); import the source again") from exc
        return build(SourceInfo, data, "source", str(path))
