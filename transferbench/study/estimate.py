"""GPU-hours of a plan, from the rates `transferbench bench --out FILE.json` measured.

Each job trains ``iterations x batch`` images (``epochs x`` its training images, ImageNet's at
1,281 per class), at the measured model rate of its architecture with as many frozen blocks as it
freezes (the largest measured at or below, else full training), and evaluates its validation
images (ImageNet's 50 per class) every ``eval_every`` iterations at the evaluation rate. Model
rates exclude data loading: where the data path is slower, so is the job (the bench's data and
train rows say by how much).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from transferbench.errors import UserError

TRAIN_PER_CLASS = {"imagenet1k": 1281}  # ILSVRC-2012: 1,281,167 training images over 1,000 classes
VAL_PER_CLASS = {"imagenet1k": 50}


def read_rates(path: Path) -> tuple[str, dict[str, dict[str, float]]]:
    """(device, {arch: {"train" | "eval" | "frozen<k>": images/s}}) from a bench JSON file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        rows = data["rows"]
    except FileNotFoundError:
        raise UserError(f"bench file {path} does not exist; write one with `transferbench bench --arch ... --out FILE.json`") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a `transferbench bench --out` file ({type(exc).__name__}: {exc})") from None
    rates: dict[str, dict[str, float]] = {}
    for row in rows:
        match = re.fullmatch(r"(\S+) \d+px (full training|evaluation|frozen (?:blocks|layers) 1\.\.(\d+))", row.get("name", ""))
        if row.get("group") != "model" or not match or not row.get("images_per_s"):
            continue
        mode = "train" if match[2] == "full training" else "eval" if match[2] == "evaluation" else f"frozen{match[3]}"
        rates.setdefault(match[1], {})[mode] = float(row["images_per_s"])
    return str(data.get("device", "an unnamed device")), rates


def job_hours(spec, rates: dict[str, float]) -> float | None:
    """Device-hours of one job at ``rates`` (its architecture's); None where its size is unknown."""
    train = spec.train
    classes = spec.model.num_classes
    per_class = TRAIN_PER_CLASS.get(spec.dataset)
    if train.epochs is not None:
        if per_class is None:
            return None
        iterations = math.ceil(train.epochs * classes * per_class / train.batch_size)
    else:
        iterations = train.iterations
    frozen = spec.condition.frozen_prefix if spec.growth is None else 0
    measured = [int(mode.removeprefix("frozen")) for mode in rates if mode.startswith("frozen")]
    below = [k for k in measured if k <= frozen]
    rate = rates.get(f"frozen{max(below)}") if below else rates.get("train")
    if rate is None:
        return None
    seconds = iterations * train.batch_size / rate
    if "eval" in rates and spec.dataset in VAL_PER_CLASS:
        seconds += (iterations // train.eval_every + 1) * classes * VAL_PER_CLASS[spec.dataset] / rates["eval"]
    return seconds / 3600


def hours_summary(jobs, measured: tuple[str, dict[str, dict[str, float]]], path: Path) -> str:
    """The plan's device-hours per condition and in all, at the rates ``read_rates`` read from ``path``."""
    from transferbench.study.plan import category

    device, rates = measured
    per_category: dict[str, float] = {}
    unknown: list[str] = []
    for job in jobs:
        hours = job_hours(job.spec, rates.get(job.spec.model.arch, {}))
        if hours is None:
            unknown.append(job.key)
            continue
        per_category[category(job)] = per_category.get(category(job), 0.0) + hours
    lines = [f"\n  device-hours at the model rates measured on {device} ({path}; data loading not included):"]
    lines += [f"    {kind:40s} {hours:10.1f}" for kind, hours in sorted(per_category.items())]
    lines.append(f"    {'total':40s} {sum(per_category.values()):10.1f}")
    if unknown:
        archs = sorted({key for key in rates}) or ["none"]
        lines.append(f"    not estimated: {len(unknown)} jobs (their architecture has no rate in the file, which has "
                     f"{', '.join(archs)}, or their training set's size is not known), e.g. {unknown[0]}")
    return "\n".join(lines) + "\n"
