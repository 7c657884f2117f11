"""Apply a transfer condition to a network: copy layers 1..n (and n+1..n+k) from a source
network and freeze what the condition says (what each condition means: ``schema.spec.Condition``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from transferbench.errors import UserError
from transferbench.schema.spec import Condition
from transferbench.worker.blocknet import BlockNet


def copy_layers(model: BlockNet, source_state: dict[str, torch.Tensor], layers: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Copy the parameters and buffers (BatchNorm's statistics) of the units ``layers`` from
    ``source_state`` into ``model``.

    Returns (copied keys, re-initialised keys) and asserts they are exactly the named layers'
    parameters and all the others: nothing copied by accident, nothing silently skipped.
    """
    wanted = [key for name in layers for key in model.layer_state_keys(name)]
    missing = [key for key in wanted if key not in source_state]
    if missing:
        raise UserError(f"source checkpoint lacks {', '.join(missing)}; it is not a network of this architecture")
    own = model.state_dict()
    for key in wanted:
        if source_state[key].shape != own[key].shape:
            raise UserError(f"source {key} has shape {tuple(source_state[key].shape)}, this network needs {tuple(own[key].shape)}; "
                            "the base network was built with other widths")
    result = model.load_state_dict({key: source_state[key] for key in wanted}, strict=False)
    reinitialised = sorted(key for key in own if key not in wanted)
    assert not result.unexpected_keys, result.unexpected_keys
    # (BatchNorm does not report a missing num_batches_tracked; it is a counter, not a weight)
    assert sorted(result.missing_keys) == [k for k in reinitialised if not k.endswith("num_batches_tracked")], \
        "the copy left other keys than the units it was not asked to copy"
    for key in wanted:
        assert torch.equal(model.state_dict()[key], source_state[key].to(own[key].dtype)), key
    return wanted, reinitialised


def apply_condition(model: BlockNet, condition: Condition, source_state: dict[str, torch.Tensor] | None) -> dict[str, list[str]]:
    """Copy and freeze as ``condition`` says (n counts the blocks of ``model.config``: its units or
    its stages); return which keys were copied, re-initialised, frozen. Frozen units keep their
    normalisation statistics too."""
    copied: list[str] = []
    reinitialised = sorted(model.state_dict())
    if condition.needs_source:
        if source_state is None:
            raise UserError(f"condition {condition.label()} needs a source network checkpoint")
        copied, reinitialised = copy_layers(model, source_state, model.config.units_of(condition.copied_blocks))
    frozen = []
    frozen_units = model.config.units_of(condition.frozen_prefix)
    record = model.freeze_units(frozen_units)
    for name in frozen_units:
        for key, parameter in model.layer_parameters(name).items():
            parameter.requires_grad_(False)
            frozen.append(key)
    return {"copied": copied, "reinitialised": reinitialised, "frozen": frozen, **record}


def check_source(state: dict[str, Any], weights: Path, expected: dict[str, Any]) -> None:
    """A result must rest on the base its plan names (``expected``: {"key", "config_hash",
    "attempt"}): the base's weights carry its spec hash and attempt (older ones: the record beside
    them), and both must match."""
    found_hash, found_attempt = state.get("config_hash"), state.get("attempt", 1)
    if found_hash is None:  # weights written before they carried their hash
        try:
            found_hash = json.loads(weights.with_name("result.json").read_text(encoding="utf-8")).get("config_hash")
        except (OSError, ValueError, AttributeError):
            found_hash = None
    if found_hash != expected["config_hash"] or found_attempt != expected["attempt"]:
        raise UserError(f"{weights} is not the base {expected['key']} this job's plan names "
                        f"(found spec {found_hash}, attempt {found_attempt}; the plan's: {expected['config_hash']}, "
                        f"attempt {expected['attempt']}): the base was re-planned or retrained after this job was "
                        "queued; train the base, then `transferbench submit --retry-failed`")
