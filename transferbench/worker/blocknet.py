"""What every network of the study shares (``models.TransferNet``, ``nets.VGGNet``, ``nets.ResNet``,
``nets.ViT``): units in order then a head, each unit's parameters under ``layers.<unit>.``, a
forward pass unit by unit, and frozen units that stay frozen."""

from __future__ import annotations

import torch
from torch import nn

from transferbench.schema.spec import ModelConfig


class BlockNet(nn.Module):
    """What every network of the study shares: ``layers`` (units in order, then the head),
    ``units``, ``head``, a forward pass unit by unit, and frozen units that stay frozen."""

    units: tuple[str, ...] = ()
    head: str = ""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.frozen_units: tuple[str, ...] = ()

    def forward(self, images: torch.Tensor, frozen_prefix: int = 0, start: int = 0) -> torch.Tensor:
        """Logits for a batch. The first ``frozen_prefix`` units run without autograd: frozen
        units cost no backward pass and keep no activations. ``start`` > 0: ``images`` is the
        output of unit ``start`` (computed elsewhere, e.g. shared by a fused group) and only the
        units after it run."""
        x = images
        for number, name in enumerate(self.units + (self.head,), start=1):
            if number <= start:
                continue
            with torch.set_grad_enabled(torch.is_grad_enabled() and number > frozen_prefix):
                x = self._layer_block(name, x)
        return x

    def _layer_block(self, name: str, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reset_layers(self, names) -> None:
        """Re-initialise the named units with the configured scheme."""
        for name in names:
            self.init_layer(self.layers[name], name)

    def init_layer(self, layer: nn.Module, name: str) -> None:
        raise NotImplementedError



    def layer_parameters(self, name: str) -> dict[str, nn.Parameter]:
        return {f"layers.{name}.{key}": p for key, p in self.layers[name].named_parameters()}

    def layer_state_keys(self, name: str) -> list[str]:
        """The state-dict keys of a unit: its parameters and buffers (BatchNorm's running statistics)."""
        return [f"layers.{name}.{key}" for key in self.layers[name].state_dict()]

    def freeze_units(self, names: tuple[str, ...]) -> dict[str, list[str]]:
        """Freeze these units' normalisation statistics too: they stay in eval mode. Returns what
        the record says of it: ``frozen_units`` and ``frozen_norms``."""
        self.frozen_units = tuple(names)
        self.train(self.training)
        return {"frozen_units": list(self.frozen_units), "frozen_norms": [self.frozen_norms] if self.frozen_units else []}

    def train(self, mode: bool = True) -> "BlockNet":
        super().train(mode)
        for name in self.frozen_units:
            self.layers[name].eval()
        return self

    @property
    def frozen_norms(self) -> str:
        """What freezing does to the frozen units' normalisation layers, for the record."""
        kinds = {type(m).__name__ for name in self.frozen_units for m in self.layers[name].modules()
                 if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, nn.LocalResponseNorm))}
        if "BatchNorm2d" in kinds:
            return "BatchNorm running statistics frozen (eval mode), its scale and shift too"
        if "LayerNorm" in kinds:
            return "LayerNorm parameters frozen (LayerNorm keeps no statistics)"
        return "no normalisation statistics to freeze"
