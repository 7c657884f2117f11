"""`transferbench probe jobs/STUDY`: per layer 1..7, cheap predictions of how well base A's
features transfer to side B, beside the measured AnB curve of the same split and seed.

For every split and seed whose baseA and baseB finished healthy, on side B's images (and for
every target of a cross-dataset block with a healthy baseB, with the block's source network
as base A, on the target's images brought to the source's input as its jobs see them):

| measure  | from                                                    | predicts           |
|----------|---------------------------------------------------------|--------------------|
| probe    | the fixed linear probe (``measures.ridge_probe``) on baseA's layer-n features | AnB top-1 |
| logme    | LogME of baseA's layer-n features for side B's labels   | AnB top-1          |
| cka      | linear CKA of baseA's and baseB's layer-n features      | how general layer n is |
| cka_anb_plus | linear CKA of a fine-tuned AnB+'s and baseB's layer-n features (where the study has AnB+) | (described, not a predictor) |
| leep     | LEEP of baseA's classifier on side B (layer 8 only: it needs a source head) | the whole transfer |

Features: each learned layer's output after its ReLU (and pooling and LRN where the network
has them); conv maps are averaged over space to one value per channel (conv5's pooled map is
kept as the network flattens it). At most ``TRAIN_IMAGES`` training images (a seeded choice)
and ``VAL_IMAGES`` validation images, centre-cropped as the network is evaluated.
Forward passes only.

The agreement of each per-layer measure with the measured AnB curve is Kendall's tau over
the layers both have, per split and seed, with a 95% bootstrap interval over those pairs.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferbench.analysis.results import collect_rows, table_csv
from transferbench.analysis.stats import bootstrap_ci
from transferbench.errors import UserError
from transferbench.fileio import atomic_write_bytes, atomic_write_text, ensure_writable_dir
from transferbench.probe.measures import leep, linear_cka, logme, ridge_probe
from transferbench.schema.spec import LAYER_NAMES
from transferbench.study.study import Study
from transferbench.worker.data import load_image_set
from transferbench.worker.grow import build_model
from transferbench.worker.inputs import Batches, image_set_settings, input_mean, load_planned_split
from transferbench.worker.transfer import check_source

TRAIN_IMAGES, VAL_IMAGES, BATCH = 2000, 1000, 256
LAYER_MEASURES = ("probe", "logme", "cka")


def _features(model, batches: Batches, count: int, seed: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Per layer 1..7 the (pooled) features, the labels, and the network's class probabilities."""
    order = torch.randperm(len(batches.set), generator=torch.Generator().manual_seed(seed))[:count].sort().values.tolist()
    layers: list[list[np.ndarray]] = [[] for _ in range(7)]
    labels, probabilities = [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), BATCH):
            x, y = batches.prepare(order[start:start + BATCH], None)
            for number, name in enumerate(LAYER_NAMES):
                x = model._layer_block(name, x)
                if number < 7:
                    layers[number].append((x.mean((2, 3)) if x.dim() == 4 else x).float().cpu().numpy())
            probabilities.append(torch.softmax(x.float(), 1).cpu().numpy())
            labels.append(y.cpu().numpy())
    return [np.concatenate(parts) for parts in layers], np.concatenate(labels), np.concatenate(probabilities)


def _load_model(job, device):
    model = build_model(job.spec.model, job.spec.growth)
    state = torch.load(job.out_dir / "model.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state.get("model", state))
    return model.to(device)


@dataclass
class _Pair:
    """What one split and seed compares: the network whose layers transfer (side A) and the network
    trained on the target (baseB), read on the target's images as baseB read them."""

    split: str  # the split, or a cross-dataset block's <source>-<target>
    seed: int
    target: Any  # baseB's PlannedJob
    source_job: Any = None  # baseA's PlannedJob (within one dataset)
    source_weights: Path | None = None  # a cross-dataset block's source: its model.pt (checked against source_ref)
    source_ref: Any = None

    @property
    def part(self) -> str | None:
        """The cross-dataset target this pair belongs to (its figure), or None within one dataset."""
        return self.split if self.source_weights is not None else None

    def source_model(self, device):
        if self.source_job is not None:
            return _load_model(self.source_job, device)
        state = torch.load(self.source_weights, map_location="cpu", weights_only=True)
        check_source(state, self.source_weights, self.source_ref.expected())
        weights = state.get("model", state)
        config = dataclasses.replace(self.target.spec.model, num_classes=int(weights["layers.fc8.bias"].shape[0]))
        model = build_model(config, None)
        model.load_state_dict(weights)
        return model.to(device)


def _pairs(study: Study, usable: set[str]) -> list[_Pair]:
    """Every split and seed with a healthy baseA and baseB; and every cross-dataset target and seed
    with a healthy baseB whose block transfers from its source (side A)."""
    bases: dict[tuple, dict[str, Any]] = defaultdict(dict)
    sources: dict[str, tuple[Path, Any]] = {}
    for key, job in study.jobs.items():
        spec = job.spec
        if spec.source_ref is not None and job.side == "B":
            sources.setdefault(job.split, (Path(spec.source_checkpoint), spec.source_ref))
        if spec.condition.kind == "base" and spec.growth is None and key in usable and job.side in ("A", "B"):
            bases[(job.split, job.seed)][job.side] = job
    pairs = []
    for (split, seed), found in sorted(bases.items()):
        if "B" not in found:
            continue
        if found["B"].spec.input is not None:
            if split in sources:
                pairs.append(_Pair(split, seed, found["B"], source_weights=sources[split][0], source_ref=sources[split][1]))
        elif "A" in found:
            pairs.append(_Pair(split, seed, found["B"], source_job=found["A"]))
    return pairs


def probe_study(study_dir: Path, out: Path, device: str = "cpu", echo=print) -> dict[str, Any]:
    """Probe every healthy (baseA, baseB) pair of the study, and every cross-dataset target's (source,
    baseB); write the CSV and a figure per study and per cross-dataset target; return them."""
    study = Study.open(study_dir)
    records: dict[str, Any] = {}
    rows, _ = collect_rows(study.directory, records)
    usable = {r.key for r in rows if r.usable}
    pairs = _pairs(study, usable)
    if not pairs:
        raise UserError(f"{study_dir}: no split and seed with a healthy baseA and baseB (nor a cross-dataset target with a "
                        "healthy baseB and its source) to probe; train the bases first")
    started = time.perf_counter()
    table: list[dict[str, Any]] = []
    for pair in pairs:
        spec = pair.target.spec
        split = load_planned_split(spec.split, spec.split_hash)
        common = image_set_settings(spec)
        root = Path(spec.data_root) if spec.data_root else None
        train_set = load_image_set(spec.dataset, root, True, split, spec.side, **common)
        val_set = load_image_set(spec.dataset, root, False, split, spec.side, Path(spec.val_list) if spec.val_list else None,
                                 **common)
        train_batches = Batches(train_set, spec.train, torch.device(device), False, mean=input_mean(spec.input))
        val_batches = Batches(val_set, spec.train, torch.device(device), False, mean=train_batches.mean)
        model_a, model_b = pair.source_model(device), _load_model(pair.target, device)
        a_train, y_train, a_probabilities = _features(model_a, train_batches, TRAIN_IMAGES, pair.seed)
        a_val, y_val, _ = _features(model_a, val_batches, VAL_IMAGES, pair.seed)
        b_val, _, _ = _features(model_b, val_batches, VAL_IMAGES, pair.seed)
        where = {"study": study.name, "split": pair.split, "seed": pair.seed}
        for n in range(1, 8):
            values = {"probe": ridge_probe(a_train[n - 1], y_train, a_val[n - 1], y_val),
                      "logme": logme(a_train[n - 1], y_train), "cka": linear_cka(a_val[n - 1], b_val[n - 1])}
            table += [{**where, "layer": n, "measure": measure, "value": value} for measure, value in values.items()]
        table.append({**where, "layer": 8, "measure": "leep", "value": leep(a_probabilities, y_train)})
        # Where the study fine-tuned AnB+: how close its copied layer n came to baseB's. (A frozen AnB's
        # layer n is baseA's, so its CKA with baseB is the `cka` row itself.)
        for job in study.jobs.values():
            condition = job.spec.condition
            if (job.split, job.seed, job.side) == (pair.split, pair.seed, "B") and condition.kind == "transfer" \
                    and condition.fine_tune and job.spec.growth is None and job.key in usable:
                tuned_val, _, _ = _features(_load_model(job, device), val_batches, VAL_IMAGES, pair.seed)
                n = condition.n_transferred
                table.append({**where, "layer": n, "measure": "cka_anb_plus", "value": linear_cka(tuned_val[n - 1], b_val[n - 1])})
        echo(f"probed {pair.split} seed {pair.seed}")
    seconds = time.perf_counter() - started
    measured = {(r.split, r.seed, int(r.n)): r.top1_mean_best10 for r in rows
                if r.usable and r.condition == "transfer" and not int(r.fine_tune) and not r.growth
                and r.top1_mean_best10 is not None and r.target_side == "B"}
    ensure_writable_dir(out)
    atomic_write_text(out / f"{study.name}-probes.csv", table_csv(table))
    # One figure and one agreement per study, and per cross-dataset target: curves of different
    # targets are never averaged together.
    parts: dict[str, dict[str, Any]] = {}
    for part in dict.fromkeys(pair.part for pair in pairs):
        name = study.name if part is None else f"{study.name}-{part}"
        splits = {pair.split for pair in pairs if pair.part == part}
        rows_of = [row for row in table if row["split"] in splits]
        measured_of = {key: value for key, value in measured.items() if key[0] in splits}
        agreement = _agreement(rows_of, measured_of)
        parts[name] = {"agreement": agreement, "figure": _figure(name, rows_of, measured_of, agreement, out),
                       "leep": [row["value"] for row in rows_of if row["measure"] == "leep"]}
    first = next(iter(parts.values()))
    return {"table": table, "parts": parts, "agreement": first["agreement"], "seconds": seconds,
            "csv": out / f"{study.name}-probes.csv", "figure": first["figure"],
            "training_seconds": training_seconds(study, records)}


def training_seconds(study: Study, records: dict[str, Any]) -> float:
    """The wall time the study's networks took to train: a fused group's members each record the
    group's time, so each process (one manifest job id or pid) is counted once."""
    manifest = study.manifest()
    per_process: dict[Any, float] = {}
    for key, record in records.items():
        entry = manifest.get(key)
        process = (entry.executor, entry.job_id or entry.pid, entry.attempt) if entry and (entry.job_id or entry.pid) else key
        per_process[process] = max(per_process.get(process, 0.0), record.wall_time_s)
    return sum(per_process.values())


def _agreement(table: list[dict[str, Any]], measured: dict[tuple, float]) -> dict[str, dict[str, float]]:
    """Kendall's tau of each per-layer measure with the measured AnB curve, per split and seed,
    and the mean with its 95% bootstrap interval over them."""
    from scipy import stats

    curves: dict[tuple, dict[int, float]] = defaultdict(dict)
    for row in table:
        if row["measure"] in LAYER_MEASURES:
            curves[(row["measure"], row["split"], row["seed"])][row["layer"]] = row["value"]
    out = {}
    for measure in LAYER_MEASURES:
        taus = []
        for (name, split, seed), curve in curves.items():
            layers = [n for n in sorted(curve) if (split, seed, n) in measured]
            if name == measure and len(layers) >= 3:
                tau = stats.kendalltau([curve[n] for n in layers], [measured[(split, seed, n)] for n in layers]).statistic
                if not np.isnan(tau):
                    taus.append(float(tau))
        low, high = bootstrap_ci(taus)
        out[measure] = {"tau": float(np.mean(taus)) if taus else float("nan"), "low": low, "high": high, "pairs": len(taus)}
    return out


def _figure(study: str, table, measured, agreement, out: Path) -> Path:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"probe": "linear probe top-1 on baseA's layer n", "logme": "LogME of baseA's layer n",
              "cka": "linear CKA, baseA vs baseB, layer n"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    anb: dict[int, list[float]] = defaultdict(list)
    for (_split, _seed, n), value in measured.items():
        anb[n].append(value)
    for ax, measure in zip(axes, LAYER_MEASURES):
        by_layer: dict[int, list[float]] = defaultdict(list)
        for row in table:
            if row["measure"] == measure:
                by_layer[row["layer"]].append(row["value"])
        layers = sorted(by_layer)
        ax.plot(layers, [np.mean(by_layer[n]) for n in layers], marker="o", color="#1f77b4", label=measure)
        if measure == "cka":
            trained: dict[int, list[float]] = defaultdict(list)
            for row in table:
                if row["measure"] == "cka_anb_plus":
                    trained[row["layer"]].append(row["value"])
            if trained:
                ns = sorted(trained)
                ax.plot(ns, [np.mean(trained[n]) for n in ns], marker="s", ls="--", color="#17becf",
                        label="fine-tuned AnB+ vs baseB")
                ax.legend(fontsize=7, loc="lower left")
        ax.set_xlabel("layer n")
        ax.set_ylabel(measure, color="#1f77b4")
        ax.set_xticks(range(1, 8))
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        if anb:
            ns = sorted(anb)
            twin.plot(ns, [np.mean(anb[n]) for n in ns], marker="D", color="#d62728", label="measured AnB")
            twin.set_ylabel("measured AnB top-1 (mean)", color="#d62728")
        result = agreement[measure]
        tau = (f"Kendall tau {result['tau']:+.2f}" + (f" [{result['low']:+.2f}, {result['high']:+.2f}]"
                                                      if not np.isnan(result["low"]) else "")
               + f" over {result['pairs']} splits/seeds") if result["pairs"] else "no measured AnB curve to compare"
        ax.set_title(f"{titles[measure]}\n{tau}", fontsize=9)
    fig.suptitle(f"{study}: per-layer probes (blue) beside the measured transfer (red)", fontsize=10)
    fig.tight_layout()
    path = out / f"{study}-probes.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    plt.close(fig)
    return path
