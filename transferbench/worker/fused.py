"""Fused training: networks of one stream trained by one process from one data stream.

Networks whose jobs read the same images in the same order with the same crops and recipe
(``JobSpec.stream``) can share everything but their own parameters: each batch is read,
augmented and moved to the device once, and frozen layers that several of them share (base A's
layers 1..n for every AnB copied from it) are computed once per batch (``SharedPrefix``). Every
member takes the same steps as ``worker/train.py``'s loop (``Trainer.step``, ``note_loss``,
``evaluate``, ``checkpoint``, ``finish``) with its own parameters, optimizer, dropout streams,
evaluations, checkpoint and record, so each record is bit for bit what the member trained
alone would have written (but for its wall time, which is the group's).
"""

from __future__ import annotations

import torch

from transferbench.schema.record import ResultRecord
from transferbench.worker.blocknet import BlockNet
from transferbench.worker.running import fetched_ahead, progress_bar, stop_signals
from transferbench.worker.train import Trainer, evaluate_all


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(device: torch.device, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def prefix_chains(members: list[tuple[BlockNet, int]]) -> list[tuple[int, ...]]:
    """For each (model, frozen prefix n), the frozen layers 1..n it shares with the others, as a
    path in a tree of layers: two models share node k of their paths when their layers 1..k hold
    the very same weights (compared exactly), so the activations after layer k are the same for
    both. Give n = 0 for a model that must not share (a grown network, a compiled model)."""
    nodes: list[tuple[int | None, str, list[torch.Tensor]]] = []  # (parent node, layer, its parameters)
    chains = []
    for model, frozen_prefix in members:
        chain: list[int] = []
        if frozen_prefix:
            parent = None
            for name in model.units[:frozen_prefix]:
                params = [p.detach() for p in model.layers[name].parameters()]
                found = next((i for i, (up, layer, theirs) in enumerate(nodes) if up == parent and layer == name
                              and all(torch.equal(a, b) for a, b in zip(theirs, params))), None)
                if found is None:
                    nodes.append((parent, name, params))
                    found = len(nodes) - 1
                chain.append(found)
                parent = found
        chains.append(tuple(chain))
    return chains


class SharedPrefix:
    """The frozen layers of one training batch, each computed once for every trainer that shares
    it, with the random state after each layer (dropout in a frozen fc6 or fc7 draws from it), so
    that every trainer continues exactly as if it had computed its prefix itself."""

    def __init__(self, x: torch.Tensor, amp: bool) -> None:
        self.x, self.amp = x, amp
        self.cache: dict[int, tuple[torch.Tensor, tuple]] = {}

    @torch.no_grad()
    def output(self, model: BlockNet, chain: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """The output of layer len(chain) for ``model``; the random state is left as after it.
        Call right after seeding the iteration's random state."""
        known = len(chain)
        while known and chain[known - 1] not in self.cache:
            known -= 1
        x = self.x
        if known:
            x, state = self.cache[chain[known - 1]]
            _set_rng_state(device, state)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp):
            for depth in range(known, len(chain)):
                x = model._layer_block(model.units[depth], x)
                self.cache[chain[depth]] = (x, _rng_state(device))
        return x


def train_together(trainers: list[Trainer]) -> list[ResultRecord]:
    """Train the networks of one stream together and write each one's record (one trainer: the
    loop of ``worker/train.py``). A member whose loss diverges is finished as failed and leaves
    the group; the others go on. A member resumed from a later checkpoint than the others waits
    for the group to catch up. A stop signal checkpoints every member and raises StopRequested."""
    lead = trainers[0]
    config = lead.config
    if any(t.config != config or t.retry != lead.retry or t.iterations != lead.iterations
           or t.train_batches is not lead.train_batches for t in trainers[1:]):
        raise ValueError("train_together needs trainers of one stream sharing the lead's batches (Trainer(shared=...))")
    chains = dict(zip(map(id, trainers), prefix_chains(
        [(t.model, t.frozen_prefix if t.spec.stream() is not None else 0) for t in trainers])))
    active = [t for t in trainers if t.state["iteration"] < t.iterations]
    records: dict[int, ResultRecord] = {}
    first, end = min((t.state["iteration"] for t in active), default=lead.iterations), lead.iterations
    label = lead.spec.key + (f" +{len(trainers) - 1} fused" if len(trainers) > 1 else "")
    with stop_signals() as stop, progress_bar(lead.progress, end, first, label) as bar:
        for trainer in trainers:
            trainer.begin(fused_with=len(trainers) - 1)
        for iteration, batch in fetched_ahead(lead.fetch, first, end if active else first, lead.train_batches.reads_files):
            x, y = lead.train_batches.to_device(batch)
            shared = SharedPrefix(x, config.amp)
            stepping = [t for t in active if t.state["iteration"] == iteration]
            losses = [(t, t.step(iteration, x, y, shared, chains[id(t)])) for t in stepping]
            del shared
            done = iteration + 1
            evaluate_now = done % config.eval_every == 0 or done == end
            checkpoint_now = done % config.checkpoint_every == 0 or done == end or stop.requested
            going = []
            for trainer, loss in losses:
                failure = trainer.note_loss(done, loss, flush=evaluate_now or checkpoint_now)
                if failure:
                    records[id(trainer)] = trainer.finish(failure)
                else:
                    going.append(trainer)
            if evaluate_now and going:
                for trainer, result in zip(going, evaluate_all(going)):
                    trainer.evaluate(result)
            if checkpoint_now:
                for trainer in going:
                    trainer.checkpoint()
            stop.raise_if_requested(done)
            active = [t for t in active if id(t) not in records and t.state["iteration"] < t.iterations]
            if done == end:
                for trainer in going:
                    records[id(trainer)] = trainer.finish(None)
            bar.update(1)
            if not active:
                break
    for trainer in trainers:  # already at the end when the run began (a checkpoint of the last iteration)
        if id(trainer) not in records:
            records[id(trainer)] = trainer.finish(None)
    return [records[id(t)] for t in trainers]
