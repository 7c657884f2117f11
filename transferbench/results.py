"""Results CSVs: one row per network, from a study's result records or from the authors' Caffe logs.

Columns (``SCHEMA``):

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
| top1_final        | top-1 of the last evaluation                                           |
| top1_mean_best10  | mean of the 10 best top-1 evaluations (the paper's statistic)          |
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
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from transferbench.errors import UserError
from transferbench.fileio import atomic_write_text

SCHEMA = ("study", "source", "key", "dataset", "split", "network", "condition", "n", "fine_tune", "source_side",
          "target_side", "seed", "top1_final", "top1_mean_best10", "top5_final", "evaluations", "last_iteration",
          "max_iter", "complete", "images_seen", "gpu_hours", "commit", "config_hash", "notes",
          "growth", "growth_mode", "scope", "normalize", "source_top1_before", "source_top1_after")
NUMERIC = {"n", "fine_tune", "seed", "top1_final", "top1_mean_best10", "top5_final", "evaluations", "last_iteration",
           "max_iter", "complete", "images_seen", "gpu_hours", "normalize", "source_top1_before", "source_top1_after"}


def mean_of_best(values: list[float], count: int = 10) -> float | None:
    """The paper's per-network statistic: the mean of the ``count`` highest values (None if there are none)."""
    best = sorted(values, reverse=True)[:count]
    return sum(best) / len(best) if best else None


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SCHEMA, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]))
                         for k in SCHEMA})
    return buffer.getvalue()


def read_csv(path: Path) -> list[dict[str, Any]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"results file {path} does not exist; run `transferbench collect` or give another CSV") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("split", "network", "condition", "n", "top1_mean_best10") if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{path} is not a transferbench results CSV (no column {missing[0]}); see `transferbench collect --help`")
    rows = []
    for number, raw in enumerate(reader, 2):
        row: dict[str, Any] = dict(raw)
        for key in NUMERIC & set(row):
            value = row[key]
            try:
                row[key] = None if value in ("", None) else (float(value) if "." in value or "e" in value.lower()
                                                              or value in ("nan", "inf") else int(value))
            except ValueError:
                raise UserError(f"{path} line {number}: {key} = {value!r} is not a number") from None
        rows.append(row)
    return rows


def caffe_rows(root: Path, study: str = "yosinski2014", progress: bool = False) -> list[dict[str, Any]]:
    from transferbench.caffe import import_logs

    rows = []
    for net in import_logs(root, progress):
        top1 = [e[1] for e in net.evaluations]
        last = net.evaluations[-1][0] if net.evaluations else None
        notes = list(net.notes)
        if not net.logs:
            notes.append("no log")
        elif not net.evaluations:
            notes.append("logs hold no evaluation")
        elif net.max_iter and last < net.max_iter:
            notes.append(f"unfinished: last evaluation at {last} of {net.max_iter}")
        rows.append({"study": study, "source": "caffe-log", "key": f"{net.split}/{net.network}/seed0", "dataset": "imagenet1k",
                     "split": net.split, "network": net.network, "condition": net.condition, "n": net.n,
                     "fine_tune": int(net.fine_tune), "source_side": net.source_side, "target_side": net.target_side,
                     "seed": 0, "top1_final": top1[-1] if top1 else None, "top1_mean_best10": mean_of_best(top1),
                     "top5_final": None, "evaluations": len(top1), "last_iteration": last, "max_iter": net.max_iter,
                     "complete": int(bool(last and net.max_iter and last >= net.max_iter)),
                     "images_seen": last * 256 if last else None, "gpu_hours": round(net.gpu_hours, 2),
                     "commit": None, "config_hash": None, "notes": "; ".join(notes) or None})
    return rows


def collect_rows(study_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the finished jobs of a study, and the keys that have no result yet."""
    from transferbench.execute import Study, outcome
    from transferbench.grow import Growth

    study = Study.open(study_dir)
    rows, missing = [], []
    for key, job in study.jobs.items():
        if outcome(job) != ("done", None):
            missing.append(key)
            continue
        record = json.loads((Path(job["out_dir"]) / "result.json").read_text(encoding="utf-8"))
        spec = record["spec"]
        condition = spec["condition"]
        network = job["network"]
        source_side = study.jobs[job["depends"][0]]["side"] if job["depends"] else None
        growth = spec.get("growth")
        evaluations = record["evaluations"]
        device_hours = record["wall_time_s"] / 3600 if "cpu" not in str(record.get("device", "")).lower() else None
        rows.append({"study": study.plan["study"], "source": "transferbench", "key": key, "dataset": spec["dataset"],
                     "split": job["split"], "network": network, "condition": condition["kind"],
                     "n": condition["n_transferred"], "fine_tune": int(condition["fine_tune"]), "source_side": source_side,
                     "target_side": job["side"] if job["side"] not in (None, "all") else None, "seed": job["seed"],
                     "top1_final": record["top1_final"], "top1_mean_best10": record["top1_mean_best10"],
                     "top5_final": record["top5_final"], "evaluations": len(evaluations),
                     "last_iteration": evaluations[-1]["iteration"] if evaluations else None,
                     "max_iter": record["iterations"], "complete": 1, "images_seen": record["images_seen"],
                     "gpu_hours": round(device_hours, 4) if device_hours is not None else None,
                     "commit": record.get("git_commit"), "config_hash": record["config_hash"],
                     "notes": f"device {record.get('device')}, wall {record['wall_time_s']:.0f} s",
                     "growth": growth and Growth(**growth).label(),
                     "growth_mode": growth and ("grown" if growth["new"] else "wide"),
                     "scope": growth and growth["scope"], "normalize": growth and int(growth["normalize"]),
                     "source_top1_before": record.get("source_top1_before"),
                     "source_top1_after": record.get("source_top1_after")})
    return rows, missing


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, to_csv(rows))
