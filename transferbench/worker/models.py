"""The 8-layer networks of the study: CaffeNet (227 px), torchvision's AlexNet (224 px, to use its
pretrained weights) and a small-image variant (28-64 px).

Learned layers are numbered 1..8 as in the paper (conv1..conv5, fc6..fc8) and live in
``model.layers[name]``, so copying or freezing "layers 1..n" is a matter of names.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from transferbench.schema.spec import ARCHITECTURES, LAYER_NAMES, ModelConfig  # noqa: F401  (re-exported for the worker)

# The paper's initialisation: weight sigma and bias constant per layer (SPEC section 1).
PAPER_WEIGHT_STD = {"conv1": 0.01, "conv2": 0.01, "conv3": 0.01, "conv4": 0.01, "conv5": 0.01,
                    "fc6": 0.005, "fc7": 0.005, "fc8": 0.01}
PAPER_BIAS = {"conv1": 0.0, "conv2": 1.0, "conv3": 0.0, "conv4": 1.0, "conv5": 1.0, "fc6": 1.0, "fc7": 1.0, "fc8": 0.0}


class TransferNet(nn.Module):
    """conv1 → relu → pool → LRN → conv2 (2 groups) → relu → pool → LRN → conv3 → relu →
    conv4 (2 groups) → relu → conv5 (2 groups) → relu → pool → fc6 → relu → dropout →
    fc7 → relu → dropout → fc8.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.arch not in ARCHITECTURES:
            raise ValueError(f"unknown arch {config.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        self.config = config
        c1, c2, c3, c4, c5 = config.conv_widths
        groups = config.groups  # CaffeNet's two towers; torchvision's AlexNet has one
        if config.arch == "caffenet":
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

    def reset_layers(self, names) -> None:
        """Re-initialise the named layers with the configured scheme."""
        for name in names:
            self.init_layer(self.layers[name], name)

    def init_layer(self, layer: nn.Module, name: str) -> None:
        """Initialise ``layer`` with the configured scheme of learned layer ``name`` (its place in the network)."""
        if self.config.init == "paper":
            nn.init.normal_(layer.weight, 0.0, PAPER_WEIGHT_STD[name])
            nn.init.constant_(layer.bias, PAPER_BIAS[name])
        else:
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu" if name != "fc8" else "linear")
            nn.init.zeros_(layer.bias)

    def forward(self, images: torch.Tensor, frozen_prefix: int = 0, start: int = 0) -> torch.Tensor:
        """Logits for a batch. The first ``frozen_prefix`` layers run without autograd:
        frozen layers cost no backward pass and keep no activations. ``start`` > 0: ``images``
        is the output of layer ``start`` (computed elsewhere, e.g. shared by a fused group) and
        only the layers after it run."""
        x = images
        for number, name in enumerate(LAYER_NAMES, start=1):
            if number <= start:
                continue
            with torch.set_grad_enabled(torch.is_grad_enabled() and number > frozen_prefix):
                x = self._layer_block(name, x)
        return x

    def _layer_block(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """One learned layer with the fixed operations that follow it."""
        layer = self.layers[name]
        if name.startswith("conv"):
            x = F.relu(layer(x), inplace=True)
            arch = self.config.arch
            if name in ("conv1", "conv2"):
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

    def layer_parameters(self, name: str) -> dict[str, nn.Parameter]:
        return {f"layers.{name}.{key}": p for key, p in self.layers[name].named_parameters()}
