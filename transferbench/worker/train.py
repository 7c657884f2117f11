"""The worker: train one network of the study from a job spec and write one result record.

``train(trainer)`` is the whole loop, step by step: fetch a batch, take an SGD step, evaluate
every ``eval_every`` iterations, checkpoint every ``checkpoint_every``, and write the weights and
the record at the end. ``Trainer`` holds one network and what it needs (its data, model,
optimizer, progress) and does each of those steps; fused groups (``worker/fused.py``) feed the
same steps to several trainers. Stop signals, fetching ahead and the progress bar are the
helpers of ``worker/running.py``.

Determinism: every random draw comes from a stream keyed by (seed, purpose, epoch or
iteration) (``worker/streams.py``), so a run killed at any checkpoint and resumed replays
exactly the iterations an uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from transferbench import __version__
from transferbench.errors import UserError
from transferbench.fileio import atomic_write_bytes, atomic_write_text
from transferbench.provenance import git_commit
from transferbench.schema.health import HealthSettings, frozen_condition, judge
from transferbench.schema.record import JobIdentity, ResultRecord, mean_of_best, read_attempts, retries
from transferbench.schema.spec import JobSpec, load_spec  # noqa: F401  (load_spec: `transferbench train`)
from transferbench.tasks.layout import dataset_classes
from transferbench.worker import steps, streams
from transferbench.worker.data import load_image_set
from transferbench.worker.forgetting import measure_forgetting
from transferbench.worker.grow import apply_growth, build_model
from transferbench.worker.inputs import (Batches, augment_generator, batch_indices, image_set_settings, input_mean, input_std,
                                         load_planned_split)
from transferbench.worker.running import StopRequested, fetched_ahead, progress_bar, stop_signals  # noqa: F401
from transferbench.worker.transfer import apply_condition, check_source

# Losses stay on the device and are read (one GPU sync) every this many iterations.
LOSS_SYNC_EVERY = 20


def train(trainer: "Trainer") -> ResultRecord:
    """Train one network to the end of its recipe; write and return its record. A stop signal
    (SIGTERM, SIGINT, SIGUSR1, SIGUSR2) checkpoints it and raises StopRequested."""
    config, start, end = trainer.config, trainer.state["iteration"], trainer.iterations
    with stop_signals() as stop, progress_bar(trainer.progress, end, start, trainer.spec.key) as bar:
        trainer.begin()
        for iteration, batch in fetched_ahead(trainer.fetch, start, end, trainer.train_batches.reads_files):
            x, y = trainer.train_batches.to_device(batch)
            loss = trainer.step(iteration, x, y)
            done = iteration + 1
            evaluate_now = done % config.eval_every == 0 or done == end
            checkpoint_now = done % config.checkpoint_every == 0 or done == end or stop.requested
            failure = trainer.note_loss(done, loss, flush=evaluate_now or checkpoint_now)
            if failure:
                return trainer.finish(failure)
            if evaluate_now:
                trainer.evaluate()
            if checkpoint_now:
                trainer.checkpoint()
            stop.raise_if_requested(done)
            bar.update(1)
    return trainer.finish(None)


class Trainer:
    """One network from its spec to its result record.

    Building it loads the data, builds the model (copying and freezing as the condition says)
    and the optimizer, and resumes from ``out_dir/checkpoint.pt`` when one exists. Its steps
    (``fetch``, ``step``, ``note_loss``, ``evaluate``, ``checkpoint``, ``finish``) are what
    ``train`` calls in turn; ``run()`` is ``train(self)``.
    """

    def __init__(self, spec: JobSpec, device: str = "cpu", progress: bool = True, identity: JobIdentity | None = None,
                 commit: str | None = None, health: HealthSettings | None = None,
                 source: dict[str, Any] | None = None, log: Callable[[str], Any] | None = None,
                 shared: "Trainer | None" = None) -> None:
        """``shared``: a trainer of the same stream (``JobSpec.stream``) whose images and batches
        this one reuses instead of loading them again (a fused group)."""
        self.spec, self.config, self.progress = spec, spec.train, progress
        self.log = log or (lambda _line: None)  # a line per start, evaluation and end (for log files, not terminals)
        # The base this job must copy from, as the plan names it: {"key", "config_hash", "attempt"}.
        self.expected_source = source
        self.health_settings = health or HealthSettings()
        # A stalled network retrained on request (submit --retry-stalled) draws from other random
        # streams (``retry``); its identity, spec and hash stay those of the plan.
        self.attempts = read_attempts(Path(spec.out_dir))
        self.retry = retries(self.attempts)
        self.identity = identity or JobIdentity.from_key(spec)
        self.commit = commit if commit is not None else git_commit()
        self.out_dir = Path(spec.out_dir)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but no CUDA device is available; use --device cpu")
        if shared is not None and shared.spec.stream() != spec.stream():
            raise ValueError(f"{spec.key} cannot share the images of {shared.spec.key}: their training streams differ")
        self._load_data(shared)
        if self.config.lr_step_epochs is not None:  # the step in iterations, for this training set
            steps = max(1, math.ceil(self.config.lr_step_epochs * len(self.train_set) / self.config.batch_size))
            self.config = dataclasses.replace(self.config, lr_step=steps)
        self._build_model(shared)
        self.iterations = (self.config.iterations if self.config.epochs is None
                           else math.ceil(self.config.epochs * len(self.train_set) / self.config.batch_size))
        self.checkpoint_path = self.out_dir / "checkpoint.pt"
        self.previous_checkpoint_path = self.out_dir / "checkpoint.prev.pt"
        self.state: dict[str, Any] = {"iteration": 0, "evaluations": [], "losses": [], "images_seen": 0, "wall_time": 0.0,
                                      "started_at": time.time()}
        self._resume()

    # ------------------------------------------------------------------ build

    def _load_data(self, shared: "Trainer | None") -> None:
        spec = self.spec
        split = load_planned_split(spec.split, spec.split_hash)
        root = Path(spec.data_root) if spec.data_root else None
        val_list = Path(spec.val_list) if spec.val_list else None
        own = image_set_settings(spec, self.progress)
        val_split = split if split and split.method != "reduced" else None
        if shared is not None:
            self.train_set, self.val_set, self.holdout_set = shared.train_set, shared.val_set, shared.holdout_set
        else:
            self.train_set = load_image_set(spec.dataset, root, True, split, spec.side, **own)
            self.val_set = load_image_set(spec.dataset, root, False, val_split, spec.side if val_split else None, val_list,
                                          **own)
            self.train_set, self.holdout_set = hold_out(self.train_set, spec.train.holdout, spec.train.seed)
        if split is not None:
            num_classes, what = len(split.label_map(spec.side)), f"side {spec.side} of split {split.name}"
        else:
            num_classes, what = dataset_classes(spec.dataset, root, spec.data_options, check_files=False)[0], spec.dataset
        if spec.model.num_classes != num_classes:
            raise UserError(f"model.num_classes is {spec.model.num_classes} but {what} has {num_classes} classes; set model.num_classes")
        self.forgetting_sets = None
        if spec.forgetting_side is not None:
            if split is None:
                raise UserError(f"{spec.key}: forgetting_side {spec.forgetting_side} needs a split")
            self.forgetting_sets = tuple(
                load_image_set(spec.dataset, root, train, split, spec.forgetting_side, val_list if not train else None, **own)
                for train in (True, False))
        elif spec.forgetting_data is not None:  # the source's own validation set, brought to its input as it saw it in training
            data = spec.forgetting_data
            self.forgetting_sets = (None, load_image_set(
                data.dataset, Path(data.data_root) if data.data_root else None, False,
                load_planned_split(data.split, data.split_hash), data.side, Path(data.val_list) if data.val_list else None,
                **dict(own, pack_dir=None, options=data.data_options, adapt=True)))

    def _build_model(self, shared: "Trainer | None") -> None:
        spec, config = self.spec, self.config
        streams.seed_global(config.seed, "init", retry=self.retry)
        model = build_model(spec.model, spec.growth)
        self.source_state = None
        if spec.condition.needs_source:
            if not spec.source_checkpoint or not Path(spec.source_checkpoint).is_file():
                raise UserError(f"base checkpoint {spec.source_checkpoint} is missing; train the base network first")
            state = torch.load(spec.source_checkpoint, map_location="cpu", weights_only=True)
            self._check_source(state)
            self.source_state = state.get("model", state)
        mean = input_mean(spec.input)
        if spec.growth is not None:
            self.layers = apply_growth(model, self.source_state)
            self.frozen_prefix = 0  # frozen layers are requires_grad=False; autograd records nothing for them
        else:
            self.layers = apply_condition(model, spec.condition, self.source_state)
            self.frozen_prefix = len(model.frozen_units)  # units, which run without autograd
        model.to(self.device)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.model = model
        self.step_model = torch.compile(model) if config.compile else model
        self.optimizer = steps.build_optimizer(model, config, new_classifier=spec.condition.needs_source)
        if shared is not None:
            self.train_batches, self.val_batches = shared.train_batches, shared.val_batches
            self.holdout_batches = shared.holdout_batches
        else:
            std = input_std(spec)
            self.train_batches = Batches(self.train_set, config, self.device, True, spec.strict, mean=mean, std=std)
            self.val_batches = Batches(self.val_set, config, self.device, False, spec.strict, mean=self.train_batches.mean,
                                       std=std)
            self.holdout_batches = (Batches(self.holdout_set, config, self.device, False, spec.strict,
                                            mean=self.train_batches.mean, std=std) if self.holdout_set is not None else None)

    def _check_source(self, state: dict[str, Any]) -> None:
        if self.expected_source is not None:
            check_source(state, Path(self.spec.source_checkpoint), self.expected_source)

    def _resume(self) -> None:
        """Resume from the newest readable checkpoint: ``checkpoint.pt``, else the one before it
        (``checkpoint.prev.pt``), else from scratch; an unreadable one is named and moved aside."""
        for path in (self.checkpoint_path, self.previous_checkpoint_path):
            if not path.is_file():
                continue
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain values only: no code runs
                if not isinstance(saved, dict) or not {"config_hash", "model", "optimizer", "state"} <= set(saved):
                    raise ValueError("not a transferbench checkpoint")
            except Exception as exc:  # noqa: BLE001  (truncated zip, bad pickle, wrong content: all unusable)
                aside = path.with_name(path.name + ".corrupt")
                path.replace(aside)
                print(f"transferbench: warning: checkpoint {path} is unreadable ({type(exc).__name__}: "
                      f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'}); moved to {aside.name}",
                      file=sys.stderr)
                continue
            if saved["config_hash"] != self.spec.config_hash():
                raise UserError(f"{path} belongs to another spec (config hash differs); delete it or use another out_dir")
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.state = saved["state"]
            self.state.setdefault("resumed_at", []).append(self.state["iteration"])
            if path != self.checkpoint_path:
                print(f"transferbench: warning: resumed from the previous checkpoint {path.name} at iteration "
                      f"{self.state['iteration']}", file=sys.stderr)
            return
        if any(p.with_name(p.name + ".corrupt").exists() for p in (self.checkpoint_path, self.previous_checkpoint_path)):
            print(f"transferbench: warning: no readable checkpoint in {self.out_dir}; training {self.spec.key} from the start",
                  file=sys.stderr)

    # ------------------------------------------------------------------ steps

    def begin(self, fused_with: int = 0) -> None:
        """Start the clock and say where training starts."""
        self._clock_started, self._wall_before = time.perf_counter(), self.state["wall_time"]
        self._pending: list[tuple[int, torch.Tensor]] = []
        state, fused = self.state, f", fused with {fused_with} more" if fused_with else ""
        self.log(f"{self.spec.key}: {'resuming at' if state['iteration'] else 'starting at'} iteration "
                 f"{state['iteration']} of {self.iterations} on {self.device} ({len(self.train_set)} training and "
                 f"{len(self.val_set)} validation images, spec {self.spec.config_hash()}{fused})")

    def fetch(self, iteration: int) -> tuple[torch.Tensor, ...]:
        """The CPU half of training batch ``iteration``: its images (stream ``order``) and their
        crops and mirror flags (stream ``augment``)."""
        config = self.config
        indices = batch_indices(len(self.train_set), config.batch_size, config.seed, iteration, self.retry)
        return self.train_batches.fetch(indices, augment_generator(config.seed, iteration, self.retry))

    def step(self, iteration: int, x: torch.Tensor, y: torch.Tensor, shared=None, chain: tuple[int, ...] = ()) -> torch.Tensor:
        """One SGD step on a batch already on the device; the loss stays there. In a fused group,
        ``chain`` names the frozen layers 1..n to take from ``shared`` (``fused.SharedPrefix``),
        computed there once for the whole group."""
        streams.seed_global(self.config.seed, "dropout", iteration, self.retry)
        lr = steps.learning_rate(self.config, iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"]
        if chain:
            features = shared.output(self.model, chain, self.device)
            loss = steps.sgd_step(self.model, self.optimizer, features, y, self.frozen_prefix, self.config.amp,
                                  start=len(chain))
        else:
            loss = steps.sgd_step(self.step_model, self.optimizer, x, y, self.frozen_prefix, self.config.amp)
        self.state["iteration"] = iteration + 1
        self.state["images_seen"] += len(y)
        return loss

    def note_loss(self, iteration: int, loss: torch.Tensor, flush: bool = False) -> str | None:
        """Keep the loss of ``iteration`` (read from the device every LOSS_SYNC_EVERY iterations, or
        when ``flush``); why training must stop if one is not finite."""
        self._pending.append((iteration, loss.detach()))
        if len(self._pending) < LOSS_SYNC_EVERY and not flush:
            return None
        values = torch.stack([value for _, value in self._pending]).tolist()
        noted, self._pending = [i for i, _ in self._pending], []
        for number, value in zip(noted, values):
            if not math.isfinite(value):
                return f"diverged: loss is {value} at iteration {number}; lower train.lr"
            self.state["losses"].append([number, value])
        return None

    def evaluate(self, result: dict[str, float] | None = None) -> None:
        """Evaluate on the validation set and the held-out training images, if any (or take
        ``result``, evaluated with a fused group's) and keep it."""
        if result is None:
            result = evaluate_all([self])[0]
        iteration = self.state["iteration"]
        self.state["evaluations"].append({"iteration": iteration, **result})
        self.log(f"{self.spec.key}: iteration {iteration}/{self.iterations}: top-1 {result['top1']:.4f}, "
                 f"validation loss {result['loss']:.4f}")

    def _clock(self) -> None:
        self.state["wall_time"] = self._wall_before + time.perf_counter() - self._clock_started

    def checkpoint(self) -> None:
        """Write model, optimizer and progress atomically: a killed job resumes from here. The one
        before is kept as checkpoint.prev.pt, so a checkpoint damaged later (a disk, a copy) costs
        one interval, not the run."""
        self._clock()
        payload = _torch_bytes({
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "state": self.state,
            "config_hash": self.spec.config_hash()})
        if self.checkpoint_path.is_file():
            os.replace(self.checkpoint_path, self.previous_checkpoint_path)
        atomic_write_bytes(self.checkpoint_path, payload)

    def finish(self, failure: str | None) -> ResultRecord:
        """Write the record (and the weights, unless the run failed); the spent checkpoints go."""
        if hasattr(self, "_clock_started"):
            self._clock()
        record = self.record(failure)
        if not failure:  # with the mean image it subtracted, so that a job of another study can transfer from it
            atomic_write_bytes(self.out_dir / "model.pt", _torch_bytes({
                "model": self.model.state_dict(), "config_hash": self.spec.config_hash(), "attempt": len(self.attempts) + 1,
                "mean": self.train_batches.mean.cpu()}))
        atomic_write_text(self.out_dir / "result.json", record.to_text())
        self.log(f"{self.spec.key}: {record.status}" + (f" ({failure})" if failure else
                 f": top-1 {record.top1_final:.4f} (mean of 10 best {record.top1_mean_best10:.4f}), health "
                 f"{record.health['state']}, {self.state['wall_time']:.0f} s"))
        if not failure and not self.config.keep_checkpoint:  # the record and the weights are safe: the checkpoints are spent
            for path in (self.checkpoint_path, self.previous_checkpoint_path):
                path.unlink(missing_ok=True)
        return record

    def run(self) -> ResultRecord:
        """Train to the end (or to a stop signal); write and return the record."""
        return train(self)

    def record(self, failure: str | None) -> ResultRecord:
        """The result record of the run so far (``failure``: why it stopped early)."""
        spec, state = self.spec, self.state
        top1 = [e["top1"] for e in state["evaluations"]]
        chance = self.chance_top1()
        health = judge([(e["iteration"], e["top1"]) for e in state["evaluations"]], state["losses"], spec.model.num_classes,
                       len(self.val_set), self.health_settings, failure, chance,
                       frozen=frozen_condition(dataclasses.asdict(spec.condition)) and spec.growth is None)
        forgetting: dict[str, Any] = {}
        if self.forgetting_sets is not None and not failure:
            forgetting = measure_forgetting(spec, self.model, self.source_state, self.forgetting_sets, self.device,
                                            self.train_batches.mean if spec.forgetting_data is not None else None)
        held = [e for e in state["evaluations"] if "holdout_top1" in e]
        chosen = max(reversed(held), key=lambda e: e["holdout_top1"]) if held and not failure else None
        return ResultRecord(
            key=spec.key, status="failed" if failure else "done", reason=failure, spec=spec.to_dict(),
            condition=spec.condition.label(),
            top1_final=top1[-1] if top1 and not failure else None,
            top5_final=state["evaluations"][-1]["top5"] if top1 and not failure else None,
            class_top1_final=state["evaluations"][-1].get("class_top1") if top1 and not failure else None,
            top1_mean_best10=mean_of_best(top1), evaluations=state["evaluations"], train_loss=state["losses"],
            iterations=state["iteration"], images_seen=state["images_seen"], train_images=len(self.train_set),
            val_images=self.val_batches.readable, skipped_images=self.train_batches.skipped + self.val_batches.skipped,
            wall_time_s=state["wall_time"], resumed_at=state.get("resumed_at", []), started_at=state.get("started_at"),
            finished_at=time.time(),
            device=torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else platform.processor() or "cpu",
            versions={"transferbench": __version__, "torch": torch.__version__, "python": platform.python_version()},
            git_commit=self.commit, config_hash=spec.config_hash(), layers=self.layers, identity=self.identity,
            health=health.to_dict(), attempts=self.attempts, source=self.expected_source, retry=self.retry,
            random_streams=streams.VERSION, chance_top1=chance, top1_holdout=chosen["top1"] if chosen else None,
            holdout_images=len(self.holdout_set) if self.holdout_set is not None else 0, **forgetting)

    def chance_top1(self) -> float | None:
        """The majority-class rate of the validation set: what guessing the largest class scores."""
        labels = self.val_set.labels
        if labels is None or len(labels) == 0:
            return None
        return float(torch.bincount(torch.as_tensor(labels)).max()) / len(labels)


def evaluate_all(trainers: list["Trainer"]) -> list[dict[str, float]]:
    """Top-1, top-5 and loss of each trainer's model on the validation set (one pass for all), and
    top-1 on the held-out training images (``holdout_top1``) where the recipe holds some out."""
    lead = trainers[0]
    results = steps.evaluate_models([t.model for t in trainers], lead.val_batches, lead.config.batch_size, lead.config.amp)
    if lead.holdout_batches is not None:
        held = steps.evaluate_models([t.model for t in trainers], lead.holdout_batches, lead.config.batch_size,
                                     lead.config.amp)
        results = [{**result, "holdout_top1": other["top1"]} for result, other in zip(results, held)]
    return results


def hold_out(images, fraction: float, seed: int):
    """(training images, held-out images or None): ``fraction`` of each class's training images,
    at least one, drawn by the ``holdout`` stream of ``seed``, never trained on."""
    if not fraction:
        return images, None
    generator = streams.generator(seed, "holdout")
    order = torch.randperm(len(images), generator=generator)
    labels = images.labels[order]
    held: list[int] = []
    for label in torch.unique(images.labels).tolist():
        members = order[labels == label]
        count = max(1, round(fraction * len(members))) if len(members) > 1 else 0
        held += members[:count].tolist()
    chosen = torch.zeros(len(images), dtype=torch.bool)
    chosen[held] = True
    keep, out = torch.nonzero(~chosen).flatten(), torch.nonzero(chosen).flatten()
    return images.subset(keep), images.subset(out)


def run_job(spec: JobSpec, device: str = "cpu", progress: bool = True) -> ResultRecord:
    """Train the network ``spec`` describes (resuming from its checkpoint) and return its record,
    which is also written to ``out_dir/result.json``."""
    return Trainer(spec, device, progress).run()


def _torch_bytes(payload: dict[str, Any]) -> bytes:
    """``torch.save`` into memory, so the file can be written atomically."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()
