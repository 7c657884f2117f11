"""Results CSVs: one Row per network, from a study's result records or from the authors' Caffe logs.

The columns are ``transferbench.schema.record.SCHEMA`` (documented in that module). Every
CSV is written and read with the csv module.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from transferbench.errors import UserError
from transferbench.fileio import atomic_write_text
from transferbench.schema.health import frozen_condition, judge
from transferbench.schema.record import SCHEMA, Row, mean_of_best

REQUIRED_COLUMNS = ("split", "network", "condition", "n", "top1_mean_best10", "study", "key")


def to_csv(rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SCHEMA, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.to_csv_dict())
    return buffer.getvalue()


def table_csv(table: list[dict], header: list[str] | None = None) -> str:
    """A derived table (boost, developmental) as CSV text; floats as ``%.6g``, None empty."""
    header = header or (list(table[0]) if table else [])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in table:
        writer.writerow(["" if row[h] is None else (f"{row[h]:.6g}" if isinstance(row[h], float) else row[h]) for h in header])
    return buffer.getvalue()


def read_csv(path: Path) -> list[Row]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"results file {path} does not exist; run `transferbench collect` or give another CSV") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read results file {path}: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{path} is not a transferbench results CSV (no column {missing[0]}); see `transferbench collect --help`")
    rows = []
    for number, raw in enumerate(reader, 2):
        if None in raw or any(raw[c] is None for c in reader.fieldnames):  # a row with more or fewer cells than the header
            cells = sum(raw[c] is not None for c in reader.fieldnames) + len(raw.get(None) or [])
            raise UserError(f"{path} line {number}: {cells} cells where the header has "
                            f"{len(reader.fieldnames)}; the file is cut or edited: collect it again")
        rows.append(Row.from_csv_dict(raw, f"{path} line {number}"))
    return rows


def column_values(path: Path, column: str) -> set[str]:
    """The values one column of a CSV holds (none if the file has no such column or cannot be read)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return {row.get(column) or "" for row in csv.DictReader(handle)}
    except (OSError, UnicodeDecodeError, csv.Error):
        return set()


def write_rows(path: Path, rows: list[Row]) -> None:
    atomic_write_text(path, to_csv(rows))


# Classes a network of the published study was trained on: 500 per side of a random split,
# 449 natural (side A) and 551 man-made (side B) classes on the man-made/natural split, 1000 for "all".
CAFFE_CLASSES = {"natman": {"A": 449, "B": 551}}
CAFFE_VAL_PER_CLASS = 50  # ILSVRC-2012 validation images per class


def caffe_rows(root: Path, study: str = "yosinski2014", progress: bool = False) -> list[Row]:
    """The authors' logs (one folder per network) as Rows, each network's health judged from its
    logged evaluations and training losses (``Iteration N, loss = X``, every 20 iterations), on
    ILSVRC-2012's balanced validation set (chance 1/C)."""
    from transferbench.analysis.caffe import import_logs

    rows = []
    for net in import_logs(root, progress):
        classes = 1000 if net.target_side is None else CAFFE_CLASSES.get(net.split, {}).get(net.target_side, 500)
        frozen = frozen_condition(net.condition, net.fine_tune)
        health = judge([(i, t) for i, t, _ in net.evaluations], net.train_loss, classes, classes * CAFFE_VAL_PER_CLASS,
                       frozen=frozen) if net.evaluations else None
        top1 = [e[1] for e in net.evaluations]
        last = net.evaluations[-1][0] if net.evaluations else None
        notes = list(net.notes)
        if not net.logs:
            notes.append("no log")
        elif not net.evaluations:
            notes.append("logs hold no evaluation")
        elif net.max_iter and last < net.max_iter:
            notes.append(f"unfinished: last evaluation at {last} of {net.max_iter}")
        rows.append(Row(study=study, source="caffe-log", key=f"{net.split}/{net.network}/seed0", dataset="imagenet1k",
                        split=net.split, network=net.network, condition=net.condition, n=net.n,
                        fine_tune=int(net.fine_tune), source_side=net.source_side, target_side=net.target_side,
                        seed=0, top1_final=top1[-1] if top1 else None, top1_mean_best10=mean_of_best(top1),
                        top5_final=None, evaluations=len(top1), last_iteration=last, max_iter=net.max_iter,
                        complete=int(bool(last and net.max_iter and last >= net.max_iter)),
                        images_seen=last * 256 if last else None, gpu_hours=round(net.gpu_hours, 2),
                        commit=None, config_hash=None, notes="; ".join(notes) or None,
                        health=health.state if health else None, health_reason=health.reason if health else None))
    return rows


def collect_rows(study_dir: Path, records: dict | None = None) -> tuple[list[Row], list[str]]:
    """Rows of the finished jobs of a study (each from its record alone, its health judged with
    the study's thresholds), diverged ones included (a row that counts in no mean, drawn as left
    out), and the keys that have none yet. The records of the finished jobs (each read once) go
    into ``records`` when given."""
    from transferbench.study.study import Study, read_record
    from transferbench.study.status import judge_study

    study = Study.open(study_dir)
    records = {} if records is None else records
    missing = []
    diverged = []
    for key, job in study.jobs.items():
        try:
            record = read_record(job)  # once per job: status's "done" is exactly a readable record with status done
        except UserError as exc:
            missing.append(f"{key} (corrupt result record: {exc})")  # shown, and the rest collected
            continue
        if record is not None and record.status != "done" and (record.health or {}).get("state") == "diverged":
            diverged.append(record)
            continue
        if record is None or record.status != "done":
            missing.append(key)
            continue
        records[key] = record
    health = judge_study(study, records)
    return [Row.from_record(record, health[key]) for key, record in records.items()] + \
        [Row.from_record(record) for record in diverged], missing


def health_lines(rows: list[Row]) -> list[str]:
    """One line per network that is not healthy, saying whether it counts and why, most serious first."""
    order = {"diverged": 0, "stalled": 1, "source_unhealthy": 2, "not_converged": 3}
    flagged = sorted((r for r in rows if r.health in order), key=lambda r: (order[r.health], r.key))
    return [f"{r.key}: {r.health.replace('_', ' ')} ({'left out of means' if not r.usable else 'kept in means'}): "
            f"{r.health_reason}" for r in flagged]


# ---------------------------------------------------------------------------- units' curves

CURVE_COLUMNS = ("study", "key", "network", "split", "cross_dataset", "seed", "health", "iteration", "readout", "top1")
READOUT_PREFIX = "top1_only_"


def curve_rows(records: dict, rows: list[Row]) -> list[dict]:
    """The learning curves of the grown networks whose classifier reads old and new units side by
    side (Growing a Brain's figure 6): one line per evaluation and readout, ``both`` (the network),
    and each block alone (``fc7``: the old units, ``fc7_1``: the new ones)."""
    health = {row.key: row.health or "" for row in rows}
    cross = {row.key: int(row.cross_dataset or 0) for row in rows}
    out = []
    for key, record in records.items():
        who = record.identity
        if record.spec["condition"]["kind"] == "base":  # a wide network from scratch: no unit is older than another
            continue
        for evaluation in record.evaluations:
            blocks = {name.removeprefix(READOUT_PREFIX): value for name, value in evaluation.items()
                      if name.startswith(READOUT_PREFIX)}
            for readout, value in ({"both": evaluation["top1"], **blocks} if blocks else {}).items():
                out.append({"study": who.study or "", "key": key, "network": who.network or key, "split": who.split or "",
                            "cross_dataset": cross.get(key, 0), "seed": who.seed, "health": health.get(key, ""), "iteration": int(evaluation["iteration"]),
                            "readout": readout, "top1": float(value)})
    return out


def curves_path(csv_path: Path) -> Path:
    """Where the units' curves of a results CSV live: beside it, ``<name>-curves.csv``."""
    return Path(csv_path).with_name(f"{Path(csv_path).stem}-curves.csv")


def write_curves(path: Path, curves: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CURVE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(curves)
    atomic_write_text(path, buffer.getvalue())


def read_curves(path: Path) -> list[dict]:
    """A curves CSV (``write_curves``) back, checked column by column."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != CURVE_COLUMNS:
            raise UserError(f"{path} is not a transferbench curves CSV (columns {', '.join(CURVE_COLUMNS)}); collect the "
                            "study again")
        try:
            return [{**row, "iteration": int(row["iteration"]), "top1": float(row["top1"]),
                     "cross_dataset": int(row["cross_dataset"] or 0)} for row in reader]
        except ValueError as exc:
            raise UserError(f"{path}: {exc}; the file is cut or edited: collect the study again") from None

