"""The study's networks. Every one is an ordered list of transferable units plus a head
(``schema/architectures.py``), each unit's parameters under ``model.layers[unit]``, so copying or
freezing "blocks 1..n" is a matter of names whatever the architecture:

- ``TransferNet``: the 8-layer networks, CaffeNet (227 px), BVLC's AlexNet (normalisation before
  pooling), torchvision's AlexNet (224 px, to use its pretrained weights) and a small-image
  variant (28-64 px); units conv1..conv5, fc6, fc7, head fc8, numbered 1..8 as in the paper.
- ``nets.VGGNet``, ``nets.ResNet``, ``nets.ViT`` (``transferbench/worker/nets.py``): VGG-16,
  ResNet-50 and ViT-B/16 in torchvision's computation, and small members of the ResNet and ViT
  families for the CPU.

``forward(images, frozen_prefix, start)``: the first ``frozen_prefix`` units run without autograd
and, once ``freeze_units`` has named them, with their normalisation statistics frozen
(BatchNorm in eval mode whatever the network's mode: frozen means frozen).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from transferbench.schema.architectures import EIGHT_LAYER_UNITS
from transferbench.schema.spec import ARCHITECTURES, LAYER_NAMES, ModelConfig  # noqa: F401  (re-exported for the worker)
from transferbench.worker.blocknet import BlockNet
from transferbench.worker.nets import NETWORKS

# The paper's initialisation: weight sigma and bias constant per layer (SPEC section 1).
PAPER_WEIGHT_STD = {"conv1": 0.01, "conv2": 0.01, "conv3": 0.01, "conv4": 0.01, "conv5": 0.01,
                    "fc6": 0.005, "fc7": 0.005, "fc8": 0.01}
PAPER_BIAS = {"conv1": 0.0, "conv2": 1.0, "conv3": 0.0, "conv4": 1.0, "conv5": 1.0, "fc6": 1.0, "fc7": 1.0, "fc8": 0.0}


class TransferNet(BlockNet):
    """conv1 → relu → pool → LRN → conv2 (2 groups) → relu → pool → LRN → conv3 → relu →
    conv4 (2 groups) → relu → conv5 (2 groups) → relu → pool → fc6 → relu → dropout →
    fc7 → relu → dropout → fc8 (BVLC's AlexNet: LRN before pool; torchvision's: no LRN).
    """

    units, head = EIGHT_LAYER_UNITS, "fc8"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        if not config.eight_layer:
            raise ValueError(f"{config.arch} is not an 8-layer network; build it with build_network")
        c1, c2, c3, c4, c5 = config.conv_widths
        groups = config.groups  # CaffeNet's two towers; torchvision's AlexNet has one
        if config.arch in ("caffenet", "bvlc_alexnet"):
            conv1 = nn.Conv2d(config.in_channels, c1, 11, stride=4)
            self.input_size = 227
        elif config.arch == "alexnet":
            conv1 = nn.Conv2d(config.in_channels, c1, 11, stride=4, padding=2)
            self.input_size = 224
        else:
            conv1 = nn.Conv2d(config.in_channels, c1, 5, padding=2)
            self.input_size = 32
        self.layers = nn.ModuleDict({
            "conv1": conv1,
            "conv2": nn.Conv2d(c1, c2, 5, padding=2, groups=groups),
            "conv3": nn.Conv2d(c2, c3, 3, padding=1),
            "conv4": nn.Conv2d(c3, c4, 3, padding=1, groups=groups),
            "conv5": nn.Conv2d(c4, c5, 3, padding=1, groups=groups),
        })
        # CaffeNet's 227 px input leaves 6x6 after pool5 (AlexNet's 224 px too, and it averages
        # to 6x6 whatever the input, as torchvision's does); the small variant pools to 3x3
        # whatever its input size, so one model serves 28-64 px.
        self.pooled = 3 if config.arch == "small" else 6
        self.layers["fc6"] = nn.Linear(c5 * self.pooled * self.pooled, config.fc_width)
        self.layers["fc7"] = nn.Linear(config.fc_width, config.fc_width)
        self.layers["fc8"] = nn.Linear(config.fc_width, config.num_classes)
        self.lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.reset_layers(LAYER_NAMES)

    def init_layer(self, layer: nn.Module, name: str) -> None:
        """Initialise ``layer`` with the configured scheme of learned layer ``name`` (its place in the network)."""
        if self.config.init == "paper":
            nn.init.normal_(layer.weight, 0.0, PAPER_WEIGHT_STD[name])
            nn.init.constant_(layer.bias, PAPER_BIAS[name])
        else:
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu" if name != "fc8" else "linear")
            nn.init.zeros_(layer.bias)

    def _layer_block(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """One learned layer with the fixed operations that follow it."""
        layer = self.layers[name]
        if name.startswith("conv"):
            x = F.relu(layer(x), inplace=True)
            arch = self.config.arch
            if name in ("conv1", "conv2"):
                if arch == "bvlc_alexnet":  # BVLC's AlexNet normalises, then pools
                    x = F.max_pool2d(self.lrn(x), 3, 2)
                else:
                    x = F.max_pool2d(x, 3, 2)
                    x = x if arch == "alexnet" else self.lrn(x)  # torchvision's AlexNet has no local response normalisation
            elif name == "conv5":
                if arch == "small":
                    x = F.adaptive_max_pool2d(x, self.pooled)
                else:
                    x = F.max_pool2d(x, 3, 2)
                    x = F.adaptive_avg_pool2d(x, self.pooled) if arch == "alexnet" else x
                x = torch.flatten(x, 1)
            return x
        x = layer(x)
        if name != "fc8":
            x = F.dropout(F.relu(x, inplace=True), self.config.dropout, self.training)
        return x


def build_network(config: ModelConfig) -> BlockNet:
    """The plain network of ``config`` (grown ones: ``grow.build_model``)."""
    return network_class(config)(config)


def network_class(config: ModelConfig) -> type[BlockNet]:
    """The class of ``config``'s plain network: TransferNet for the 8-layer networks, else its family's."""
    return TransferNet if config.eight_layer else NETWORKS[config.architecture.family]
