"""Developmental networks (Wang, Ramanan & Hebert 2017, "Growing a Brain"): transfer with
added capacity.

A grown network is the study's 8-layer network plus S new units per growth step:

| variant | what one step of S units adds                                                  |
|---------|--------------------------------------------------------------------------------|
| DA      | a new fully connected layer ``fca_k`` (S units, ReLU) on top; the classifier reads it |
| WA      | ``fc7_k``: S new fc7 units fed by fc6; the classifier reads [fc7, fc7_k]        |
| DWA     | both: ``fc7_k`` (S) and ``fca_k`` (S) reading [fc7, fc7_k]; one step only       |
| WWA     | ``fc6_k`` (S/2, fed by pool5) and ``fc7_k`` (S, fed by [fc6, fc6_k])            |

Every layer that exists in the source network reads exactly what it read there, so with the
new units' weights zeroed the old units compute what the source computed. Where blocks meet
(a new layer reading old and new blocks together) and at the classifier, each input block is
L2-normalised and multiplied by a learnable per-channel scale γ (``normalize``; initial
value ``scale_init``, e.g. 10 or 20): the paper's fix for new and pre-trained units learning
at different paces. ``normalize=False`` is the ablation. A network that is wide from the start
(``new=False``: the paper's wide baseline) is planned as a plain wider network without
normalisation: its units all train together, and L2-normalising the tiny activations of a
randomly initialised network makes its gradients explode (measured: stuck at chance).

A chain of tasks (A → B → C) grows again at every step: ``units`` lists S for every step
so far, oldest first, and the last step's units are new when ``new`` is set.

Scopes (which pre-trained layers fine-tune): ``new`` (only new units and the classifier),
``fc7`` (from fc7 up), ``fc6`` (from fc6 up), ``all``. New units and the γ scales the
growth adds learn at ``new_lr_mult`` times the base rate. The classifier is re-initialised in every transfer
condition and learns at the base rate, as in plain AnB+, so a comparison with AnB+
isolates the added capacity.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from transferbench.errors import UserError
from transferbench.schema.spec import LAYER_NAMES, SCOPES, VARIANTS, Growth, ModelConfig  # noqa: F401
from transferbench.worker.blocknet import BlockNet
from transferbench.worker.models import build_network, network_class

CLASSIFIER = ("layers.fc8.", "norms.fc8.", "layers.fc.", "layers.head.")  # every architecture's head, and a grown one's γ


class BlockNorm(nn.Module):
    """Each input block L2-normalised over its channels, then scaled by a learnable per-channel γ."""

    def __init__(self, widths: tuple[int, ...], scale_init: float) -> None:
        super().__init__()
        self.widths = widths
        self.scale = nn.Parameter(torch.full((sum(widths),), float(scale_init)))

    def forward(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([F.normalize(block, dim=1) for block in blocks], 1) * self.scale


class GrownNet(BlockNet):
    """A network with grown units (see the module docstring). ``GrownNet(config, growth)`` builds
    the grown form of ``config``'s architecture: the 8-layer networks and VGG16 grow at fc6 and
    fc7; ResNet and ViT at their pooled features ("fc7": the last unit's, "fc6": the pooled output
    of the unit below it, which WA's new units read as fc7's read fc6)."""

    def __new__(cls, config: ModelConfig, growth: Growth | None = None):
        if cls is GrownNet:
            cls = _grown_class(config)
        return super().__new__(cls)

    def __init__(self, config: ModelConfig, growth: Growth) -> None:
        super().__init__(config)
        self.growth = growth
        self.fc_top = config.architecture.has_fc_top
        head = self.head
        if self.fc_top:
            width = {"fc6": self.layers["fc6"].out_features, "fc7": self.layers["fc7"].out_features}
            pool5 = self.layers["fc6"].in_features
        else:
            width = {"fc6": self.unit_width(self.units[-2]), "fc7": self.unit_width(self.units[-1])}
            pool5 = 0
        self.reads: dict[str, tuple[str, ...]] = {}  # layer -> the blocks it reads (pool5 for fc6 blocks)
        self.level: dict[str, float] = {name: float(number) for number, name in enumerate(self.units + (head,), 1)}
        fc6_level, fc7_level = self.level[self.units[-2]], self.level[self.units[-1]]
        self.thresholds = {"all": 0.0, "fc6": fc6_level, "fc7": fc7_level, "new": float("inf")}
        self.step_of: dict[str, int] = {}
        self.grown = nn.ModuleDict()
        fc6_blocks, fc7_blocks, adapters = ["fc6"], ["fc7"], []

        def add(name: str, reads: tuple[str, ...], size: int, level: float, step: int, init_like: str) -> None:
            inputs = pool5 if reads == ("pool5",) else sum(width[block] for block in reads)
            layer = nn.Linear(inputs, size)
            self.init_grown(layer, init_like)
            self.grown[name], self.reads[name], self.level[name], self.step_of[name], width[name] = layer, reads, level, step, size

        for step, size in enumerate(growth.units, 1):
            if growth.variant == "WWA":
                add(f"fc6_{step}", ("pool5",), size // 2, fc6_level, step, "fc6")
                fc6_blocks.append(f"fc6_{step}")
            if growth.variant in ("WA", "WWA", "DWA"):
                add(f"fc7_{step}", tuple(fc6_blocks), size, fc7_level, step, "fc7")
                fc7_blocks.append(f"fc7_{step}")
            if growth.variant in ("DA", "DWA"):
                add(f"fca_{step}", (adapters[-1],) if adapters else tuple(fc7_blocks), size, fc7_level + 0.5, step, "fc7")
                adapters.append(f"fca_{step}")
        self.widths = width
        self.reads["fc8"] = (adapters[-1],) if adapters else tuple(fc7_blocks)
        self.layers[head] = nn.Linear(sum(width[block] for block in self.reads["fc8"]), config.num_classes)
        self.init_layer(self.layers[head], head)
        self.step_of["fc8"] = len(growth.units)
        # Blocks are normalised and scaled where they meet and at the classifier; a layer that
        # reads one block (fc7_k from fc6, fca_k from the previous fca) reads it as fc7 reads fc6.
        self.norms = nn.ModuleDict({
            name: BlockNorm(tuple(width[block] for block in reads), growth.scale_init)
            for name, reads in self.reads.items() if growth.normalize and (name == "fc8" or len(reads) > 1)
        })

    def init_grown(self, layer: nn.Linear, like: str) -> None:
        """A new layer of units, initialised as the network's own fc6/fc7 are (He normal where the
        network has none)."""
        if self.fc_top:
            self.init_layer(layer, like)
        else:
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(F.relu(x, inplace=True), self.config.dropout if self.fc_top else 0.0, self.training)

    def _read(self, name: str, blocks: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = [blocks[block] for block in self.reads[name]]
        if name in self.norms:
            return self.norms[name](inputs)
        return inputs[0] if len(inputs) == 1 else torch.cat(inputs, 1)

    def _classifier_input(self, images: torch.Tensor, frozen_prefix: int = 0) -> torch.Tensor:
        body = self.units[:-2] if self.fc_top else self.units[:-1]
        x = images
        for number, name in enumerate(body, start=1):
            with torch.set_grad_enabled(torch.is_grad_enabled() and number > frozen_prefix):
                x = self._layer_block(name, x)
        if self.fc_top:
            blocks = {"pool5": x}
            blocks["fc6"] = self._hidden(self.layers["fc6"](x))
            blocks["fc7"] = self._hidden(self.layers["fc7"](blocks["fc6"]))
        else:
            blocks = {"fc6": self.pool(x), "fc7": self.pool(self._layer_block(self.units[-1], x))}
        for name, layer in self.grown.items():  # in creation order: every block's inputs exist
            blocks[name] = self._hidden(layer(self._read(name, blocks)))
        return self._read("fc8", blocks)

    def forward(self, images: torch.Tensor, frozen_prefix: int = 0) -> torch.Tensor:
        return self.layers[self.head](self._classifier_input(images, frozen_prefix))

    @property
    def readouts(self) -> tuple[str, ...]:
        """The blocks the classifier reads side by side (fc7 and fc7_1 for WA): each one's share of
        the logits is its own readout (Growing a Brain's figure 6); () when it reads one block."""
        reads = self.reads["fc8"]
        return reads if len(reads) > 1 else ()

    def readout_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the logits, {block: the logits of that block alone}): the classifier applied to one
        block's (normalised, scaled) units with the other blocks' set to zero. The blocks' logits
        add up to the logits plus (blocks - 1) x the classifier's bias."""
        features = self._classifier_input(images)
        classifier = self.layers[self.head]
        alone, start = {}, 0
        for block in self.reads["fc8"]:
            width = self.widths[block]
            part = torch.zeros_like(features)
            part[:, start:start + width] = features[:, start:start + width]
            alone[block] = classifier(part)
            start += width
        return classifier(features), alone

    def parameter_info(self) -> dict[str, tuple[float, bool]]:
        """Every parameter key -> (level, created by this job)."""
        last = len(self.growth.units)
        info = {}
        for key, _ in self.named_parameters():
            part, name = key.split(".")[:2]
            if part == "layers" and name != self.head:
                info[key] = (self.level[name], False)
            elif name in (self.head, "fc8"):  # the classifier: re-initialised, trains in every scope; its γ is new with the growth
                info[key] = (float("inf"), part == "norms" and self.growth.new)
            else:
                info[key] = (self.level[name], self.growth.new and self.step_of[name] == last)
        return info


_GROWN_CLASSES: dict[type, type] = {}


def _grown_class(config: ModelConfig) -> type:
    """GrownNet over the plain network class of ``config``'s architecture."""
    base = network_class(config)
    if base not in _GROWN_CLASSES:
        _GROWN_CLASSES[base] = type(f"Grown{base.__name__}", (GrownNet, base), {})
    return _GROWN_CLASSES[base]


def build_model(config: ModelConfig, growth: Growth | None) -> BlockNet:
    return GrownNet(config, growth) if growth is not None else build_network(config)


def is_classifier(key: str) -> bool:
    return key.startswith(CLASSIFIER)


def apply_growth(model: GrownNet, source_state: dict[str, torch.Tensor] | None) -> dict[str, list[str]]:
    """Copy the source network into the grown one and freeze what the scope says.

    The source is every layer of the network this one grew from, except its classifier: the
    copy asserts that exactly those tensors were copied and that the re-initialised ones are
    exactly the new units and the classifier.
    """
    growth = model.growth
    info = model.parameter_info()
    own = model.state_dict()
    new_keys = sorted(key for key, (_, new) in info.items() if new)
    copied: list[str] = []
    if source_state is not None:
        wanted = [key for key in own if not is_classifier(key) and key not in new_keys]
        source_keys = {key for key in source_state if not is_classifier(key)}
        missing = sorted(set(wanted) - source_keys)
        extra = sorted(source_keys - set(wanted))
        if missing or extra:
            what = f"lacks {', '.join(missing[:4])}" if missing else f"has {', '.join(extra[:4])}, which this network has no place for"
            raise UserError(f"source checkpoint {what}; it is not the network this one grows from "
                            f"(growth {growth.label()}, new={growth.new})")
        for key in wanted:
            if source_state[key].shape != own[key].shape:
                raise UserError(f"source {key} has shape {tuple(source_state[key].shape)}, this network needs "
                                f"{tuple(own[key].shape)}; the source was built with other widths")
        result = model.load_state_dict({key: source_state[key] for key in wanted}, strict=False)
        assert sorted(result.missing_keys) == sorted(key for key in own if key not in wanted), result.missing_keys
        copied = wanted
    elif growth.new or growth.scope != "all":
        raise UserError(f"growth {growth.label()} with new units or scope {growth.scope!r} needs a source network; "
                        "a network trained from scratch (a wide base) has new=false and scope all")
    threshold = model.thresholds[growth.scope]
    frozen = []
    for key, parameter in model.named_parameters():
        level, new = info[key]
        if not new and level < threshold:
            parameter.requires_grad_(False)
            frozen.append(key)
    reinitialised = sorted(key for key in own if key not in copied)
    # Units the scope freezes whole keep their normalisation statistics too (a ResNet's BatchNorm).
    frozen_units = tuple(unit for unit in model.units if not any(p.requires_grad for p in model.layers[unit].parameters()))
    return {"copied": copied, "reinitialised": reinitialised, "frozen": frozen, "new": new_keys,
            **model.freeze_units(frozen_units)}
