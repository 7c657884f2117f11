"""Transfer conditions: which layers come from where, and which are frozen.

| condition    | layers 1..n                     | layers n+1..n+k          | rest     |
|--------------|---------------------------------|--------------------------|----------|
| base         | random, trained                 |                          | random   |
| selffer      | copied from the target's base   |                          | random   |
| transfer     | copied from the source's base   |                          | random   |
| random_init  | random, frozen ("nolearn")      |                          | random   |
| preserved    | copied, frozen                  | copied, fine-tuned (k)   | random   |

``fine_tune`` (BnB+ / AnB+) trains the copied layers instead of freezing them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from transferbench.errors import UserError
from transferbench.models import LAYER_NAMES, TransferNet

CONDITIONS = ("base", "selffer", "transfer", "random_init", "preserved")


@dataclass(frozen=True)
class Condition:
    """What a job does with layers 1..8."""

    kind: str = "base"
    n_transferred: int = 0  # n: layers 1..n copied (or random-frozen for random_init)
    fine_tune: bool = False  # "+" conditions: copied layers keep training
    n_preserved: int = 0  # preserved-k: layers n+1..n+k also copied, and fine-tuned

    def __post_init__(self) -> None:
        if self.kind not in CONDITIONS:
            raise UserError(f"unknown condition {self.kind!r}; choose one of {', '.join(CONDITIONS)}")
        if self.kind == "base":
            if self.n_transferred or self.fine_tune or self.n_preserved:
                raise UserError("a base condition copies nothing: n_transferred, fine_tune and n_preserved must be unset")
            return
        if not 1 <= self.n_transferred <= 7:
            raise UserError(f"n_transferred {self.n_transferred} must be 1..7 for condition {self.kind}")
        if self.kind == "random_init" and self.fine_tune:
            raise UserError("random_init freezes its random layers; fine_tune does not apply")
        if self.kind == "preserved":
            if not 1 <= self.n_preserved <= 7 - self.n_transferred:
                raise UserError(f"n_preserved {self.n_preserved} must be 1..{7 - self.n_transferred} with n_transferred {self.n_transferred}")
        elif self.n_preserved:
            raise UserError("n_preserved is only for the preserved condition")

    @property
    def needs_source(self) -> bool:
        return self.kind in ("selffer", "transfer", "preserved")

    @property
    def copied_layers(self) -> tuple[str, ...]:
        if not self.needs_source:
            return ()
        return LAYER_NAMES[: self.n_transferred + self.n_preserved]

    @property
    def frozen_layers(self) -> tuple[str, ...]:
        if self.kind == "base" or self.fine_tune:
            return ()
        return LAYER_NAMES[: self.n_transferred]

    def label(self) -> str:
        """The paper's notation, e.g. ``AnB`` with n: ``transfer3+``, ``selffer5``, ``random_init2``."""
        if self.kind == "base":
            return "base"
        suffix = "+" if self.fine_tune else ""
        preserved = f"^{self.n_preserved}" if self.kind == "preserved" else ""
        return f"{self.kind}{self.n_transferred}{preserved}{suffix}"


def copy_layers(model: TransferNet, source_state: dict[str, torch.Tensor], layers: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Copy the parameters of ``layers`` from ``source_state`` into ``model``.

    Returns (copied keys, re-initialised keys) and asserts they are exactly the named layers'
    parameters and all the others: nothing copied by accident, nothing silently skipped.
    """
    wanted = [key for name in layers for key in model.layer_parameters(name)]
    missing = [key for key in wanted if key not in source_state]
    if missing:
        raise UserError(f"source checkpoint lacks {', '.join(missing)}; it is not a network of this architecture")
    own = model.state_dict()
    for key in wanted:
        if source_state[key].shape != own[key].shape:
            raise UserError(f"source {key} has shape {tuple(source_state[key].shape)}, this network needs {tuple(own[key].shape)}; "
                            "the base network was built with other widths")
    result = model.load_state_dict({key: source_state[key] for key in wanted}, strict=False)
    reinitialised = sorted(result.missing_keys)
    expected_reinit = sorted(key for key in own if key not in wanted)
    assert not result.unexpected_keys, result.unexpected_keys
    assert reinitialised == expected_reinit, (reinitialised, expected_reinit)
    for key in wanted:
        assert torch.equal(model.state_dict()[key], source_state[key].to(own[key].dtype)), key
    return wanted, reinitialised


def apply_condition(model: TransferNet, condition: Condition, source_state: dict[str, torch.Tensor] | None) -> dict[str, list[str]]:
    """Copy and freeze as ``condition`` says; return which keys were copied, re-initialised, frozen."""
    copied: list[str] = []
    reinitialised = sorted(model.state_dict())
    if condition.needs_source:
        if source_state is None:
            raise UserError(f"condition {condition.label()} needs a source network checkpoint")
        copied, reinitialised = copy_layers(model, source_state, condition.copied_layers)
    frozen = []
    for name in condition.frozen_layers:
        for key, parameter in model.layer_parameters(name).items():
            parameter.requires_grad_(False)
            frozen.append(key)
    return {"copied": copied, "reinitialised": reinitialised, "frozen": frozen}


def frozen_prefix(condition: Condition) -> int:
    """How many leading layers run without autograd."""
    return len(condition.frozen_layers)
