"""The result record (``result.json``, one per trained network) and the results CSV row.

A record carries the network's identity (study, split, network, seed, sides) beside its
spec and its curves, so a CSV row is built from the record alone: ``Row.from_record``.
The authors' Caffe logs become Rows too (``transferbench.analysis.results.caffe_rows``).

CSV columns (``SCHEMA``, in order):

| column            | meaning                                                                 |
|-------------------|-------------------------------------------------------------------------|
| study             | study name (``yosinski2014`` for the published logs)                    |
| source            | ``transferbench`` or ``caffe-log``                                      |
| key               | the job key, e.g. ``random0/A3B+/seed0``                               |
| dataset           | imagenet1k, cifar100, fashion-mnist, synthetic                          |
| split             | random0..3, natman, all, reducedK, ...                                  |
| network           | the paper's notation: baseA, A3B, A3B+, B5B, R2, base                   |
| condition         | base, selffer, transfer, random_init, preserved                        |
| n                 | layers copied (or random and frozen); 0 for bases                      |
| fine_tune         | 1 for the "+" conditions                                               |
| source_side       | side of the base the layers come from (A, B; empty for bases)          |
| target_side       | side the network is trained on (A, B; empty for all classes)           |
| seed              | training seed                                                          |
| top1_final        | top-1 of the last evaluation (selection-free)                          |
| top1_mean_best10  | mean of the 10 best top-1 evaluations (the paper's statistic; chosen on the validation images it reports) |
| top5_final        | top-5 of the last evaluation (empty for Caffe logs: not logged)         |
| evaluations       | number of evaluations                                                  |
| last_iteration    | iteration of the last evaluation                                       |
| max_iter          | iterations the recipe asks for                                         |
| complete          | 1 if the network reached max_iter                                      |
| images_seen       | training images processed                                              |
| gpu_hours         | device hours (Caffe: the span of the logs, one K20 per network)        |
| commit            | git commit of the code that trained it                                 |
| config_hash       | hash of the job spec                                                   |
| notes             | anything the importer or collector flagged                             |
| growth            | developmental networks: variant and S, e.g. WA128 (WA128x2: 2nd chain step) |
| growth_mode       | grown (units added at transfer) or wide (as wide from the start)       |
| scope             | grown networks: new, fc7, fc6 or all (which pre-trained layers trained) |
| normalize         | 1 if blocks were L2-normalised and scaled (0 for -nonorm and wide ones) |
| source_top1_before | the source network's top-1 on its own validation set                  |
| source_top1_after | the same with this network's layers and the source's classifier (forgetting) |
| health            | healthy, not_converged, at_chance, stalled, diverged, source_unhealthy (transferbench.schema.health); empty: not judged |
| health_reason     | what the health rests on, e.g. "top-1 at most 0.171 over the last 3 evaluations, chance is 0.167" |
| cross_dataset     | 1 for a network of a cross-dataset block (its split is then ``<source>-<target>[-<target>...]``, side A the source, B, C, ... the targets) |
| top1_holdout      | top-1 at the evaluation chosen on held-out training images (``train.holdout``): a selection-free alternative to top1_mean_best10, which chooses on the validation images it reports; empty without a holdout |
| class_top1_final  | mean per-class top-1 of the last evaluation: each class's top-1 averaged over the classes of the validation set (the literature's figure for imbalanced sets such as Caltech-101); empty for Caffe logs and for records written before it was measured |
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferbench.errors import UserError
from transferbench.schema.health import EXCLUDED, Health
from transferbench.schema.loader import build, field_types
from transferbench.schema.notation import NetworkName, parse_network
from transferbench.schema.spec import Growth, JobSpec

RECORD_STATUSES = ("done", "failed")


def mean_of_best(values: list[float], count: int = 10) -> float | None:
    """The paper's per-network statistic: the mean of the ``count`` highest values (None if there are none)."""
    best = sorted(values, reverse=True)[:count]
    return sum(best) / len(best) if best else None


@dataclass(frozen=True)
class JobIdentity:
    """Which network of which study a job trains: what a CSV row needs beside the numbers."""

    study: str | None  # None for a spec trained alone (`transferbench train`)
    split: str | None
    network: str | None
    seed: int
    source_side: str | None = None
    target_side: str | None = None

    @staticmethod
    def from_key(spec: JobSpec, study: str | None = None) -> "JobIdentity":
        """The identity a planner's key (``<split>/<network>/seed<s>``) gives; the side from the spec."""
        parts = spec.key.split("/")
        network = None
        if len(parts) == 3 and parts[2] == f"seed{spec.train.seed}":
            try:
                network = parse_network(parts[1])
            except UserError:
                network = None
        target = spec.side if spec.side not in (None, "all") else None
        if network is None:
            return JobIdentity(study, None, None, spec.train.seed, None, target)
        return JobIdentity(study, parts[0], network.text, spec.train.seed, network.source_side, target)


@dataclass(frozen=True)
class ResultRecord:
    """What one worker run wrote: ``out_dir/result.json``."""

    key: str
    status: str  # done | failed
    reason: str | None  # why it failed
    spec: dict[str, Any]  # the JobSpec as planned
    condition: str  # the Condition's label, e.g. transfer3+
    top1_final: float | None
    top5_final: float | None
    top1_mean_best10: float | None
    evaluations: list[dict[str, float]]  # {"iteration", "top1", "top5", "loss"} per validation pass
    train_loss: list[list[float]]  # [iteration, loss] per iteration
    iterations: int
    images_seen: int
    train_images: int
    val_images: int
    skipped_images: int  # corrupt files of its side, each once (with a pack: all; without: those drawn)
    wall_time_s: float
    resumed_at: list[int]  # iterations this run was resumed from a checkpoint
    started_at: float | None  # epoch seconds of the first start (kept across resumes)
    finished_at: float
    device: str
    versions: dict[str, str]
    git_commit: str | None
    config_hash: str
    layers: dict[str, list[str]]  # copied, reinitialised, frozen (and new) parameter keys; frozen_units, and what freezing did to their normalisation (frozen_norms)
    identity: JobIdentity
    forgetting_side: str | None = None
    source_top1_before: float | None = None
    source_top1_after: float | None = None
    health: dict[str, Any] | None = None  # {"state", "reason"} judged when written (transferbench.schema.health)
    seed_used: int | None = None  # records of older versions: the seed a retried attempt trained with
    attempts: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # earlier attempts, oldest first
    source: dict[str, Any] | None = None  # the base it copied from, checked: {"key", "config_hash", "attempt"}
    retry: int = 0  # how many stalled attempts came before: the random streams' retry key (worker/streams.py)
    chance_top1: float | None = None  # the majority-class rate of its validation set: the top-1 of guessing
    top1_holdout: float | None = None  # validation top-1 at the evaluation chosen on held-out training images
    class_top1_final: float | None = None  # mean per-class top-1 of the last evaluation
    holdout_images: int = 0  # training images held out of training for that choice (train.holdout)
    random_streams: str | None = None  # the scheme its random numbers were drawn with (worker/streams.VERSION)

    def __post_init__(self) -> None:
        if self.status not in RECORD_STATUSES:
            raise UserError(f"status {self.status!r} is not one of {', '.join(RECORD_STATUSES)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_text(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @staticmethod
    def from_dict(data: Any, source: str) -> "ResultRecord":
        return build(ResultRecord, data, "record", source)

    @staticmethod
    def read(path: Path, config_hash: str | None = None) -> "ResultRecord | None":
        """A record from its file, parsed once; None if there is no file, or if ``config_hash`` is
        given and the record is of another spec. A UserError names the file when it is
        unreadable or missing a part."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path} is not a readable result record ({exc})") from exc
        if config_hash is not None and isinstance(data, dict) and data.get("config_hash") not in (None, config_hash):
            return None  # a record of an earlier spec (moved aside on re-planning; here only if copied back)
        return ResultRecord.from_dict(data, str(path))


# ---------------------------------------------------------------------------- earlier attempts

ATTEMPTS_FILE = "attempts.json"  # in a job's out_dir: what earlier attempts gave, oldest first (written by submit)


def read_attempts(out_dir: Path) -> list[dict[str, Any]]:
    """The earlier attempts of the job in ``out_dir`` ([] if none): each {"attempt", "seed",
    "why" ("stalled" or "source retrained"), "health", "reason", "top1_mean_best10", "archived"}."""
    path = Path(out_dir) / ATTEMPTS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not readable ({exc}); restore it or delete it to forget earlier attempts") from exc
    if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
        raise UserError(f"{path} is not a list of attempts; restore it or delete it to forget earlier attempts")
    return data


def retries(attempts: list[dict[str, Any]]) -> int:
    """The retry key of the next attempt's random streams: one more per stalled or diverged attempt
    (a network retrained because its source was retrained, or its weights were deleted, draws the
    same streams as before and trains the same network)."""
    return sum(1 for entry in attempts if entry.get("why") in ("stalled", "diverged"))


# ---------------------------------------------------------------------------- the CSV row

@dataclass(frozen=True)
class Row:
    """One network in a results CSV (columns: the module docstring)."""

    study: str
    source: str
    key: str
    dataset: str
    split: str
    network: str
    condition: str
    n: int
    fine_tune: int
    source_side: str | None = None
    target_side: str | None = None
    seed: int = 0
    top1_final: float | None = None
    top1_mean_best10: float | None = None
    top5_final: float | None = None
    evaluations: int | None = None
    last_iteration: int | None = None
    max_iter: int | None = None
    complete: int | None = None
    images_seen: int | None = None
    gpu_hours: float | None = None
    commit: str | None = None
    config_hash: str | None = None
    notes: str | None = None
    growth: str | None = None
    growth_mode: str | None = None
    scope: str | None = None
    normalize: int | None = None
    source_top1_before: float | None = None
    source_top1_after: float | None = None
    health: str | None = None
    health_reason: str | None = None
    cross_dataset: int | None = None
    top1_holdout: float | None = None
    class_top1_final: float | None = None

    @property
    def usable(self) -> bool:
        """Whether the network counts in means, intervals, tables and readings: not stalled,
        diverged or built on such a network (an empty health, an older CSV, counts)."""
        return self.health not in EXCLUDED

    @property
    def name(self) -> NetworkName:
        """The network notation, parsed (``developmental``, ``classic_reference``, ``k``, ...)."""
        return parse_network(self.network)

    def value(self, metric: str) -> float | None:
        """A numeric column, or None where it is empty or not a number."""
        value = getattr(self, metric)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)

    def to_csv_dict(self) -> dict[str, str]:
        return {name: "" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))
                for name, value in dataclasses.asdict(self).items()}

    @staticmethod
    def from_csv_dict(raw: dict[str, str | None], where: str) -> "Row":
        """A row from the csv module's dict (all strings); numbers parsed by column type."""
        values: dict[str, Any] = {}
        for name, hint in field_types(Row).items():
            text = raw.get(name)
            if text in (None, ""):
                values[name] = None
                continue
            kind = int if "int" in str(hint) else float if "float" in str(hint) else str
            try:
                values[name] = kind(float(text)) if kind is int and text.lower().endswith(".0") else kind(text)
            except ValueError:
                raise UserError(f"{where}: {name} = {text!r} is not {'an integer' if kind is int else 'a number'}") from None
        for name in ("study", "source", "key", "dataset", "split", "network", "condition", "n", "fine_tune"):
            if values[name] is None:
                raise UserError(f"{where}: the {name} column is empty; every row needs it")
        if values["seed"] is None:
            values["seed"] = 0
        for name in ACCURACIES:
            value = values[name]
            if value is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise UserError(f"{where}: {values['key']} has {name} = {value}, which no accuracy can be (0 to 1); "
                                "correct or remove the row")
        return Row(**values)

    @staticmethod
    def from_record(record: ResultRecord, health: Health | None = None) -> "Row":
        """The CSV row of a finished network, from its record alone; ``health`` (as judged by the
        collector with the study's settings) replaces the one the worker wrote."""
        spec, identity = record.spec, record.identity
        if health is None and record.health is not None:
            health = Health(record.health["state"], record.health.get("reason"))
        notes = [f"device {record.device}, wall {record.wall_time_s:.0f} s"]
        if record.attempts:
            drawn = (f"random streams of retry {record.retry}" if record.seed_used is None else
                     f"trained with seed {record.seed_used}")
            notes.append(f"attempt {len(record.attempts) + 1}, {drawn}; earlier: "
                         + ", ".join(f"{a.get('health', '?')} ({_attempt_draw(a)})" for a in record.attempts))
        condition = spec["condition"]
        growth = Growth(**spec["growth"]) if spec.get("growth") is not None else None
        evaluations = record.evaluations
        on_gpu = "cpu" not in str(record.device).lower()
        return Row(
            study=identity.study or "", source="transferbench", key=record.key, dataset=spec["dataset"],
            split=identity.split or "", network=identity.network or record.key, condition=condition["kind"],
            n=condition["n_transferred"], fine_tune=int(condition["fine_tune"]), source_side=identity.source_side,
            target_side=identity.target_side, seed=identity.seed, top1_final=record.top1_final,
            top1_mean_best10=record.top1_mean_best10, top5_final=record.top5_final, evaluations=len(evaluations),
            last_iteration=int(evaluations[-1]["iteration"]) if evaluations else None, max_iter=record.iterations,
            complete=1, images_seen=record.images_seen,
            gpu_hours=round(record.wall_time_s / 3600, 4) if on_gpu else None, commit=record.git_commit,
            config_hash=record.config_hash, notes="; ".join(notes),
            growth=growth.label() if growth else None, growth_mode=("grown" if growth.new else "wide") if growth else None,
            scope=growth.scope if growth else None, normalize=int(growth.normalize) if growth else None,
            source_top1_before=record.source_top1_before, source_top1_after=record.source_top1_after,
            health=health.state if health else None, health_reason=health.reason if health else None,
            cross_dataset=1 if spec.get("input") is not None else None, top1_holdout=record.top1_holdout,
            class_top1_final=record.class_top1_final)


def _attempt_draw(entry: dict[str, Any]) -> str:
    return f"retry {entry['retry']}" if "retry" in entry else f"seed {entry.get('seed')}"


SCHEMA = tuple(f.name for f in dataclasses.fields(Row))
ACCURACIES = ("top1_final", "top1_mean_best10", "top5_final", "source_top1_before", "source_top1_after", "top1_holdout",
              "class_top1_final")
