"""The steps every training loop is made of: the optimizer and its learning-rate schedule, one
SGD step, and an evaluation pass. The single-network loop (``worker/train.py``), the fused
strategy (``worker/fused.py``) and ``transferbench bench`` all take them from here."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from transferbench.errors import UserError
from transferbench.schema.spec import TrainConfig
from transferbench.worker.grow import GrownNet, is_classifier
from transferbench.worker.inputs import Batches
from transferbench.worker.blocknet import BlockNet


EVAL_BATCH = 256  # evaluation batches hold at least this many images: no gradients, so memory allows it, and it is faster


def build_optimizer(model: BlockNet, config: TrainConfig, new_classifier: bool = False) -> torch.optim.SGD:
    """SGD over the trainable parameters: weights with weight decay, biases at ``bias_lr_mult``
    without; a grown network's new units (and γ scales, never decayed) at ``new_lr_mult``; with
    ``new_classifier`` (a transfer: its fc8 is re-initialised), the classifier at
    ``classifier_lr_mult`` (which takes the place of ``new_lr_mult`` for the classifier's own γ)."""
    info = model.parameter_info() if isinstance(model, GrownNet) else {}
    new_mult = model.growth.new_lr_mult if isinstance(model, GrownNet) else 1.0
    classifier_apart = new_classifier and config.classifier_lr_mult != 1.0  # else the groups of a checkpoint as before
    groups: dict[tuple[str, str], list[torch.nn.Parameter]] = {}
    for key, parameter in model.named_parameters():
        if parameter.requires_grad:
            kind = "weight" if key.endswith(".weight") else "bias" if key.endswith(".bias") else "scale"
            role = "classifier" if classifier_apart and is_classifier(key) else \
                "new" if info.get(key, (0, False))[1] else "old"
            groups.setdefault((kind, role), []).append(parameter)
    mults = {"old": 1.0, "new": new_mult, "classifier": config.classifier_lr_mult}
    settings = {"weight": (1.0, config.weight_decay), "bias": (config.bias_lr_mult, 0.0), "scale": (1.0, 0.0)}
    return torch.optim.SGD([
        {"params": params, "lr_mult": settings[kind][0] * mults[role], "weight_decay": settings[kind][1]}
        for (kind, role), params in groups.items()
    ], lr=config.lr, momentum=config.momentum)


def learning_rate(config: TrainConfig, iteration: int) -> float:
    """The step schedule (divided by 1/lr_gamma every lr_step), ramped up linearly over the first ``warmup`` iterations."""
    ramp = min(1.0, (iteration + 1) / config.warmup) if config.warmup else 1.0
    return ramp * config.lr * config.lr_gamma ** (iteration // config.lr_step)


def sgd_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
             frozen_prefix: int = 0, amp: bool = False, start: int = 0) -> torch.Tensor:
    """One training step (bf16 autocast when ``amp``); the loss stays on the device. ``start`` > 0:
    ``x`` is the output of layer ``start`` (see ``BlockNet.forward``)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x, frozen_prefix, start=start) if start else model(x, frozen_prefix)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


@torch.no_grad()
def evaluate_models(models: list[BlockNet], batches: Batches, batch_size: int, amp: bool) -> list[dict[str, float]]:
    """Top-1, top-5, loss and mean per-class top-1 (``class_top1``: each class's top-1 averaged over
    the classes the set has, as the literature reports imbalanced sets such as Caltech-101) of
    each model on the validation set; each batch is read once for all. A grown network whose
    classifier reads old and new units side by side also gets ``top1_only_<block>``: the top-1 of
    each block's units alone (``GrownNet.readout_logits``), for the learning curves of old units,
    new units and both."""
    for model in models:
        model.eval()
    counts = [[0, 0, 0.0, None] for _ in models]  # correct top-1, correct top-5, summed loss, top-1 hits per class
    readouts = [dict.fromkeys(getattr(model, "readouts", ()), 0) for model in models]  # block -> correct top-1 of it alone
    per_class = None  # images per class
    total = 0
    batch_size = max(batch_size, EVAL_BATCH)
    for start in range(0, len(batches.set), batch_size):
        x, y = batches.prepare(list(range(start, min(start + batch_size, len(batches.set)))), None)
        if len(y) == 0:
            continue
        for model, count, alone in zip(models, counts, readouts):
            with torch.autocast(batches.device.type, dtype=torch.bfloat16, enabled=amp):
                if alone:
                    logits, by_block = model.readout_logits(x)
                    for block, block_logits in by_block.items():
                        alone[block] += int((block_logits.argmax(1) == y).sum())
                else:
                    logits = model(x)
            count[2] += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = top[:, 0] == y
            count[0] += int(hits.sum())
            count[1] += int((top == y[:, None]).any(1).sum())
            class_hits = torch.bincount(y[hits], minlength=logits.shape[1])  # on the device: read once, at the end
            count[3] = class_hits if count[3] is None else count[3] + class_hits
        images = torch.bincount(y, minlength=count[3].numel())
        per_class = images if per_class is None else per_class + images
        total += len(y)
    for model in models:
        model.train()
    if total == 0:
        raise UserError("no readable validation image: every one was corrupt or the side has none; check the data")
    per_class = per_class.cpu()
    present = per_class > 0
    return [{"top1": c1 / total, "top5": c5 / total, "loss": loss / total,
             "class_top1": float((hits.cpu()[present].double() / per_class[present].double()).mean()),
             **{f"top1_only_{block}": correct / total for block, correct in alone.items()}}
            for (c1, c5, loss, hits), alone in zip(counts, readouts)]
