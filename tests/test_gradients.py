"""Every architecture, every n and condition and every growth variant: a training step gives
every trainable parameter a gradient and no frozen one, and an SGD step leaves frozen units as
they were, their BatchNorm statistics included (as timm runs its tests over every registered
model)."""

from __future__ import annotations

import itertools

import pytest
import torch

from transferbench.schema.architectures import architecture
from transferbench.schema.spec import ARCHITECTURES, SCOPES, VARIANTS, Condition, Growth, ModelConfig, TrainConfig
from transferbench.worker.grow import apply_growth, build_model, is_classifier
from transferbench.worker.steps import build_optimizer, sgd_step
from transferbench.worker.transfer import apply_condition

SIZES = {"caffenet": 227, "bvlc_alexnet": 227, "alexnet": 224, "resnet50": 64, "vit_b16": 224}  # the rest: 32 px
HEAVY = ("vgg16", "resnet50", "vit_b16")  # full-size networks: their stages, and n at the ends and the middle


def conditions(depth: int, every_n: bool = True) -> list[Condition]:
    if not every_n:  # a full-size network: one of each kind, n at the bottom, the middle and the top
        return [Condition(), Condition("transfer", depth // 2), Condition("selffer", depth, True), Condition("random_init", 1),
                Condition("preserved", 1, False, depth - 1)]
    ns = range(1, depth + 1)
    return ([Condition()] + [Condition(kind, n, fine_tune) for kind in ("selffer", "transfer") for n in ns
                             for fine_tune in (False, True)]
            + [Condition("random_init", n) for n in ns]
            + [Condition("preserved", n, fine_tune, k) for n in ns if n < depth for k in sorted({1, depth - n})
               for fine_tune in (False, True)])


CONDITIONS = conditions(7)
GROWTHS = ([Growth(variant, (8,), True, normalize, 10.0, scope) for variant in VARIANTS for scope in SCOPES
            for normalize in (True, False)]
           + [Growth(variant, (8,), False, False) for variant in VARIANTS]
           + [Growth(variant, (8, 8), True) for variant in ("DA", "WA", "WWA")])  # a chain's second step


def small_config(arch: str, blocks: str = "units") -> ModelConfig:
    return ModelConfig(arch, 5, 3, (8, 16, 16, 16, 8), 16, 0.5, "kaiming", blocks)


def check_one_step(model, frozen_prefix: int, arch: str, frozen_units: tuple[str, ...] = ()) -> None:
    torch.manual_seed(1)
    size = SIZES.get(arch, 32)
    x, y = torch.randn(3, 3, size, size), torch.tensor([0, 1, 2])
    before = {key: p.detach().clone() for key, p in model.named_parameters()}
    frozen_buffers = {key: b.clone() for key, b in model.named_buffers()
                      if key.split(".")[1] in frozen_units and b.is_floating_point()}
    optimizer = build_optimizer(model, TrainConfig(lr=0.01))
    model.train()
    sgd_step(model, optimizer, x, y, frozen_prefix)
    buffers = dict(model.named_buffers())
    for key, value in frozen_buffers.items():  # BatchNorm statistics of frozen units: not updated by a training step
        assert torch.equal(buffers[key], value), f"{key} is in a frozen unit but its statistics moved"
    for key, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, f"{key} trains but got no gradient"
            assert torch.isfinite(parameter.grad).all(), key
        else:
            assert parameter.grad is None, f"{key} is frozen but got a gradient"
            assert torch.equal(parameter.detach(), before[key]), f"{key} is frozen but moved"
    trainable = {key for key, p in model.named_parameters() if p.requires_grad}
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert {key for key, p in model.named_parameters() if id(p) in in_optimizer} == trainable


@pytest.mark.parametrize("arch, blocks", [(arch, blocks) for arch in ARCHITECTURES for blocks in ("units", "stages")
                                          if (blocks == "stages") == (arch in HEAVY) or arch in ("resnet_small", "vit_tiny")])
def test_every_condition_trains_exactly_its_unfrozen_layers(arch, blocks):
    config = small_config(arch, blocks)
    source = build_model(config, None).state_dict()
    for condition in conditions(config.depth, every_n=arch not in HEAVY):
        model = build_model(config, None)
        layers = apply_condition(model, condition, source if condition.needs_source else None)
        frozen = {key for key, p in model.named_parameters() if not p.requires_grad}
        assert frozen == set(layers["frozen"]), condition
        assert frozen == {key for key, _ in model.named_parameters() if key.split(".")[1] in
                          config.units_of(condition.frozen_prefix)}, condition
        frozen_units = config.units_of(condition.frozen_prefix)
        check_one_step(model, len(frozen_units), arch, frozen_units)


@pytest.mark.parametrize("arch", [arch for arch in ARCHITECTURES if arch not in HEAVY])
def test_every_growth_variant_and_scope_trains_exactly_what_it_says(arch):
    fc_top = architecture(arch).has_fc_top
    for growth in GROWTHS:
        if not fc_top and (growth.variant not in ("DA", "WA") or growth.scope in ("fc6", "fc7")):
            continue  # ResNet and ViT grow at their pooled features: DA and WA, scopes new and all
        origin = growth.source()
        source = build_model(small_config(arch), origin).state_dict() if growth.new else None
        model = build_model(small_config(arch), growth)
        apply_growth(model, source)
        level = SCOPES[growth.scope]
        for key, parameter in model.named_parameters():
            if not growth.new or is_classifier(key):
                assert parameter.requires_grad, (growth, key)
        if growth.new and level == float("inf"):  # scope "new": no pre-trained layer trains
            assert not any(p.requires_grad for key, p in model.named_parameters()
                           if key.split(".")[0] == "layers" and not is_classifier(key)), growth
        frozen_units = tuple(unit for unit in model.units
                             if not any(p.requires_grad for p in model.layers[unit].parameters()))
        check_one_step(model, 0, arch, frozen_units)  # a unit the scope freezes whole keeps its statistics


def test_the_lists_cover_every_kind():
    kinds = {condition.kind for condition in CONDITIONS}
    assert kinds == {"base", "selffer", "transfer", "random_init", "preserved"}
    assert {g.variant for g in GROWTHS} == set(VARIANTS) and {g.scope for g in GROWTHS} == set(SCOPES)
    assert len(list(itertools.product(ARCHITECTURES, CONDITIONS))) > 100


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_plans_parameter_counts_are_the_networks(arch):
    """Memory estimates rest on ModelConfig.parameter_count: it must count what the worker builds."""
    from transferbench.worker.models import build_network

    for config in (small_config(arch), ModelConfig(arch, 1000), ModelConfig(arch, 7, in_channels=1)):
        with torch.device("meta"):
            network = build_network(config)
        assert config.parameter_count() == sum(p.numel() for p in network.parameters()), config


def test_vgg16_grows_at_fc6_and_fc7_as_alexnet_does():
    """VGG-16 (a full-size network, so two variants here): WWA widens fc6 and fc7, the old units
    copied from the plain network, and the scope fc7 leaves conv1_1..fc6 frozen."""
    config = small_config("vgg16", "stages")
    source = build_model(config, None).state_dict()
    for growth in (Growth("WWA", (8,), scope="fc7"), Growth("DA", (8,))):
        model = build_model(config, growth)
        keys = apply_growth(model, source)
        assert "grown.fc7_1.weight" in keys["new"] or "grown.fca_1.weight" in keys["new"]
        assert all(torch.equal(model.state_dict()[key], source[key]) for key in keys["copied"])
        frozen = {key.split(".")[1] for key in keys["frozen"]}
        assert frozen == (set(config.units_of(6)) if growth.scope == "fc7" else set())
        check_one_step(model, 0, "vgg16")
