"""Learning without forgetting: how well the source network still does its own task once a
transfer job has changed the layers it shares with it."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from transferbench.schema.spec import JobSpec
from transferbench.worker.data import ImageSet
from transferbench.worker.grow import build_model, is_classifier
from transferbench.worker.inputs import Batches, input_std
from transferbench.worker.models import TransferNet
from transferbench.worker.steps import evaluate_models


def measure_forgetting(spec: JobSpec, model: TransferNet, source_state: dict[str, torch.Tensor],
                       sets: tuple[ImageSet | None, ImageSet], device: torch.device,
                       mean: torch.Tensor | None = None) -> dict[str, Any]:
    """Learning without forgetting: the source network's top-1 on its own validation set,
    before and after this job, with the source's classifier kept aside.

    "After" is the source network with every layer but its classifier replaced by this job's
    (same names by construction: old units keep their keys when a network grows). The source
    saw its validation images with ``mean`` subtracted (default: the mean of ``sets[0]``, its
    training side).
    """
    source_growth = spec.growth.source() if spec.growth is not None else None
    classes = int(source_state[f"layers.{spec.model.architecture.head}.bias"].shape[0])
    source_model = build_model(dataclasses.replace(spec.model, num_classes=classes), source_growth)
    source_model.load_state_dict(source_state)
    source_model.to(device)
    train_set, val_set = sets
    if mean is None:
        mean = Batches(train_set, spec.train, device, True, spec.strict).mean  # the source was trained with its own mean
    batches = Batches(val_set, spec.train, device, False, spec.strict, mean=mean, std=input_std(spec))  # the source's input
    before = evaluate_models([source_model], batches, spec.train.batch_size, spec.train.amp)[0]
    own = source_model.state_dict()
    body = {key: value for key, value in model.state_dict().items() if key in own and not is_classifier(key)}
    assert sorted(body) == sorted(key for key in own if not is_classifier(key)), "the source body is not inside this network"
    source_model.load_state_dict(body, strict=False)
    after = evaluate_models([source_model], batches, spec.train.batch_size, spec.train.amp)[0]
    return {"forgetting_side": spec.forgetting_side or "source", "source_top1_before": before["top1"],
            "source_top1_after": after["top1"]}
