"""Every architecture, every condition and every growth variant: a training step gives every
trainable parameter a gradient and no frozen one, and an SGD step leaves frozen layers as they
were (as timm runs its tests over every registered model)."""

from __future__ import annotations

import itertools

import pytest
import torch

from transferbench.schema.spec import ARCHITECTURES, SCOPES, VARIANTS, Condition, Growth, ModelConfig, TrainConfig
from transferbench.worker.grow import apply_growth, build_model
from transferbench.worker.steps import build_optimizer, sgd_step
from transferbench.worker.transfer import apply_condition

SIZES = {"caffenet": 227, "alexnet": 224, "small": 32}
CONDITIONS = ([Condition()] + [Condition(kind, n, fine_tune) for kind in ("selffer", "transfer") for n in range(1, 8)
                               for fine_tune in (False, True)]
              + [Condition("random_init", n) for n in range(1, 8)]
              + [Condition("preserved", n, fine_tune, k) for n in range(1, 7) for k in (1, 7 - n) for fine_tune in (False, True)])
GROWTHS = ([Growth(variant, (8,), True, normalize, 10.0, scope) for variant in VARIANTS for scope in SCOPES
            for normalize in (True, False)]
           + [Growth(variant, (8,), False, False) for variant in VARIANTS]
           + [Growth(variant, (8, 8), True) for variant in ("DA", "WA", "WWA")])  # a chain's second step


def small_config(arch: str) -> ModelConfig:
    return ModelConfig(arch, 5, 3, (8, 16, 16, 16, 8), 16, 0.5, "kaiming")


def check_one_step(model, frozen_prefix: int, arch: str) -> None:
    torch.manual_seed(1)
    x, y = torch.randn(3, 3, SIZES[arch], SIZES[arch]), torch.tensor([0, 1, 2])
    before = {key: p.detach().clone() for key, p in model.named_parameters()}
    optimizer = build_optimizer(model, TrainConfig(lr=0.01))
    sgd_step(model, optimizer, x, y, frozen_prefix)
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


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_condition_trains_exactly_its_unfrozen_layers(arch):
    source = build_model(small_config(arch), None).state_dict()
    for condition in CONDITIONS:
        model = build_model(small_config(arch), None)
        layers = apply_condition(model, condition, source if condition.needs_source else None)
        frozen = {key for key, p in model.named_parameters() if not p.requires_grad}
        assert frozen == set(layers["frozen"]), condition
        check_one_step(model, condition.frozen_prefix, arch)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_growth_variant_and_scope_trains_exactly_what_it_says(arch):
    for growth in GROWTHS:
        origin = growth.source()
        source = build_model(small_config(arch), origin).state_dict() if growth.new else None
        model = build_model(small_config(arch), growth)
        apply_growth(model, source)
        level = SCOPES[growth.scope]
        for key, parameter in model.named_parameters():
            if not growth.new or key.startswith(("layers.fc8.", "norms.fc8.")):
                assert parameter.requires_grad, (growth, key)
        if growth.new and level == float("inf"):  # scope "new": no pre-trained layer trains
            assert not any(p.requires_grad for key, p in model.named_parameters() if key.startswith("layers.conv")), growth
        check_one_step(model, 0, arch)


def test_the_lists_cover_every_kind():
    kinds = {condition.kind for condition in CONDITIONS}
    assert kinds == {"base", "selffer", "transfer", "random_init", "preserved"}
    assert {g.variant for g in GROWTHS} == set(VARIANTS) and {g.scope for g in GROWTHS} == set(SCOPES)
    assert len(list(itertools.product(ARCHITECTURES, CONDITIONS))) > 100
