"""`transferbench probe jobs/STUDY`: per block 1..L (layers 1..7 of the 8-layer networks), cheap predictions of how well base A's
features transfer to side B, beside the measured AnB curve of the same split and seed.

For every split and seed whose baseA and baseB finished healthy, on side B's images (and for
every target of a cross-dataset block with a healthy baseB, with the block's source network
as base A, on the target's images brought to the source's input as its jobs see them):

| measure       | from                                                              | predicts         |
|---------------|-------------------------------------------------------------------|------------------|
| probe         | the linear probe (``measures.ridge_probe``, penalty chosen by cross-validation on the training images) on baseA's layer-n features | AnB top-1 |
| logme         | LogME of baseA's layer-n features for side B's labels             | AnB top-1        |
| cka           | linear CKA (the biased estimator) of baseA's and baseB's layer-n features | how general layer n is |
| cka_debiased  | the same from the unbiased HSIC estimator (about 0 for unrelated features at any width) | how general layer n is |
| random_probe  | the linear probe on a randomly initialised network's layer-n features: a null | what needs no learning |
| depth         | -n: deeper layers transfer worse, the paper's headline: a null    | what depth alone predicts |
| cka_anb_plus  | linear CKA of a fine-tuned AnB+'s and baseB's layer-n features (where the study has AnB+) | (described, not a predictor) |
| leep          | LEEP of baseA's classifier on side B (layer 8 only: it needs a source head) | the whole transfer |

Features: each learned layer's output after its ReLU (and pooling and LRN where the network
has them); conv maps are averaged over space to one value per channel (conv5's pooled map is
kept as the network flattens it). A seeded choice of ``TRAIN_PER_CLASS`` training and
``VAL_PER_CLASS`` validation images per class of side B (at least ``TRAIN_IMAGES`` and
``VAL_IMAGES``), centre-cropped as the network is evaluated. Forward passes only.

Agreement. For every split and seed, Kendall's tau between each predictor and the measured
curve over the layers both have: the absolute AnB curve, and the relative one (AnB - BnB of the
same split, seed and n: what transfer costs beyond the layer's own training), with its exact
permutation p-value (the layers' order shuffled). Over splits and seeds: the mean tau with a
95% t-interval, and the mean difference from the depth-only predictor with its interval: a
measure predicts the curve *beyond depth* only where that difference is above 0.
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
from transferbench.analysis.stats import t_interval
from transferbench.errors import UserError
from transferbench.fileio import atomic_write_bytes, atomic_write_text, ensure_writable_dir
from transferbench.probe.measures import debiased_cka, leep, linear_cka, logme, ridge_probe
from transferbench.study.study import Study
from transferbench.worker.data import load_image_set
from transferbench.worker.grow import build_model
from transferbench.worker.inputs import Batches, image_set_settings, input_mean, input_std, load_planned_split
from transferbench.worker.transfer import check_source

TRAIN_IMAGES, VAL_IMAGES, BATCH = 2000, 1000, 256
TRAIN_PER_CLASS, VAL_PER_CLASS = 20, 10  # the image budget grows with the classes: ImageNet's half takes 10,000 and 5,000
LAYER_MEASURES = ("probe", "logme", "cka", "cka_debiased", "random_probe", "depth")
CURVES = ("absolute", "relative")  # AnB's top-1; AnB minus BnB at the same n
LEGEND_BELOW = {"fontsize": 7, "loc": "upper center", "bbox_to_anchor": (0.5, -0.14), "ncol": 2, "frameon": False}


def _features(model, batches: Batches, count: int, seed: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Per block 1..L the (pooled) features, the labels, and the network's class probabilities."""
    order = torch.randperm(len(batches.set), generator=torch.Generator().manual_seed(seed))[:count].sort().values.tolist()
    blocks = model.config.architecture.blocks(model.config.blocks)
    ends = {block[-1]: number for number, block in enumerate(blocks)}  # a block's features: after its last unit
    layers: list[list[np.ndarray]] = [[] for _ in blocks]
    labels, probabilities = [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), BATCH):
            x, y = batches.prepare(order[start:start + BATCH], None)
            for name in model.units + (model.head,):
                x = model._layer_block(name, x)
                if name in ends:  # maps averaged over space; a ViT's tokens read at the class token
                    pooled = x.mean((2, 3)) if x.dim() == 4 else x[:, 0] if x.dim() == 3 else x
                    layers[ends[name]].append(pooled.float().cpu().numpy())
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
        head = self.target.spec.model.architecture.head
        config = dataclasses.replace(self.target.spec.model, num_classes=int(weights[f"layers.{head}.bias"].shape[0]))
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


def probe_study(study_dir: Path, out: Path, device: str | None = "cpu", echo=print,
                metric: str = "top1_mean_best10") -> dict[str, Any]:
    """Probe every healthy (baseA, baseB) pair of the study, and every cross-dataset target's (source,
    baseB); write the CSV and a figure per study and per cross-dataset target; return them.
    ``device`` None: CUDA when one is visible, else the CPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
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
        std = input_std(spec)
        train_batches = Batches(train_set, spec.train, torch.device(device), False, mean=input_mean(spec.input), std=std)
        val_batches = Batches(val_set, spec.train, torch.device(device), False, mean=train_batches.mean, std=std)
        model_a, model_b = pair.source_model(device), _load_model(pair.target, device)
        classes = spec.model.num_classes
        train_count, val_count = max(TRAIN_IMAGES, TRAIN_PER_CLASS * classes), max(VAL_IMAGES, VAL_PER_CLASS * classes)
        a_train, y_train, a_probabilities = _features(model_a, train_batches, train_count, pair.seed)
        a_val, y_val, _ = _features(model_a, val_batches, val_count, pair.seed)
        b_val, _, _ = _features(model_b, val_batches, val_count, pair.seed)
        random_model = _random_model(model_a, pair.seed, device)
        r_train, _, _ = _features(random_model, train_batches, train_count, pair.seed)
        r_val, _, _ = _features(random_model, val_batches, val_count, pair.seed)
        where = {"study": study.name, "split": pair.split, "seed": pair.seed}
        depth = len(a_train)
        for n in range(1, depth + 1):
            values = {"probe": ridge_probe(a_train[n - 1], y_train, a_val[n - 1], y_val),
                      "logme": logme(a_train[n - 1], y_train), "cka": linear_cka(a_val[n - 1], b_val[n - 1]),
                      "cka_debiased": debiased_cka(a_val[n - 1], b_val[n - 1]),
                      "random_probe": ridge_probe(r_train[n - 1], y_train, r_val[n - 1], y_val), "depth": float(-n)}
            table += [{**where, "layer": n, "measure": measure, "value": value} for measure, value in values.items()]
        table.append({**where, "layer": depth + 1, "measure": "leep", "value": leep(a_probabilities, y_train)})
        # Where the study fine-tuned AnB+: how close its copied layer n came to baseB's. (A frozen AnB's
        # layer n is baseA's, so its CKA with baseB is the `cka` row itself.)
        for job in study.jobs.values():
            condition = job.spec.condition
            if (job.split, job.seed, job.side) == (pair.split, pair.seed, "B") and condition.kind == "transfer" \
                    and condition.fine_tune and job.spec.growth is None and job.key in usable:
                tuned_val, _, _ = _features(_load_model(job, device), val_batches, val_count, pair.seed)  # baseB's images
                n = condition.n_transferred
                table.append({**where, "layer": n, "measure": "cka_anb_plus", "value": linear_cka(tuned_val[n - 1], b_val[n - 1])})
        echo(f"probed {pair.split} seed {pair.seed}")
    seconds = time.perf_counter() - started
    measured = measured_curves(rows, metric)
    ensure_writable_dir(out)
    atomic_write_text(out / f"{study.name}-probes.csv", table_csv(table))
    # One figure and one agreement per study, and per cross-dataset target: curves of different
    # targets are never averaged together.
    parts: dict[str, dict[str, Any]] = {}
    for part in dict.fromkeys(pair.part for pair in pairs):
        name = study.name if part is None else f"{study.name}-{part}"
        splits = {pair.split for pair in pairs if pair.part == part}
        rows_of = [row for row in table if row["split"] in splits]
        measured_of = {curve: {key: value for key, value in values.items() if key[0] in splits}
                       for curve, values in measured.items()}
        agreement = _agreement(rows_of, measured_of)
        parts[name] = {"agreement": agreement, "figure": _figure(name, rows_of, measured_of["absolute"], agreement, out, metric),
                       "leep": [row["value"] for row in rows_of if row["measure"] == "leep"]}
    agreement_rows = [{"part": name, **line} for name, part in parts.items() for line in part["agreement"]]
    atomic_write_text(out / f"{study.name}-probe-agreement.csv", table_csv(agreement_rows))
    first = next(iter(parts.values()))
    return {"table": table, "parts": parts, "agreement": first["agreement"], "seconds": seconds,
            "csv": out / f"{study.name}-probes.csv", "agreement_csv": out / f"{study.name}-probe-agreement.csv",
            "figure": first["figure"], "training_seconds": training_seconds(study, records)}


def _random_model(like, seed: int, device):
    """A network of the same architecture as ``like``, randomly initialised (the study's init scheme)."""
    from transferbench.worker import streams

    streams.seed_global(seed, "init", retry=9)  # a stream no trained network of the study starts from
    return build_model(like.config, None).to(device)


def measured_curves(rows, metric: str = "top1_mean_best10") -> dict[str, dict[tuple, float]]:
    """The measured curves per (split, seed, n), each network's ``metric``: AnB's ("absolute"), and
    AnB minus BnB of the same split, seed and n ("relative")."""
    frozen = {(r.split, r.seed, int(r.n), r.condition): r.value(metric) for r in rows
              if r.usable and r.condition in ("transfer", "selffer") and not int(r.fine_tune) and not r.growth
              and r.value(metric) is not None and r.target_side == "B"}
    absolute = {(split, seed, n): value for (split, seed, n, kind), value in frozen.items() if kind == "transfer"}
    relative = {(split, seed, n): value - frozen[(split, seed, n, "selffer")] for (split, seed, n), value in absolute.items()
                if (split, seed, n, "selffer") in frozen}
    return {"absolute": absolute, "relative": relative}


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


def _agreement(table: list[dict[str, Any]], measured: dict[str, dict[tuple, float]]) -> list[dict[str, Any]]:
    """Per predictor and curve: Kendall's tau with the measured curve per split and seed (with its
    exact permutation p), the mean over them with a 95% t-interval, and its difference from depth's."""
    curves: dict[tuple, dict[int, float]] = defaultdict(dict)
    for row in table:
        if row["measure"] in LAYER_MEASURES:
            curves[(row["measure"], row["split"], row["seed"])][row["layer"]] = row["value"]
    out = []
    for curve in CURVES:
        taus: dict[str, dict[tuple, tuple[float, float]]] = defaultdict(dict)
        for (measure, split, seed), values in curves.items():
            layers = [n for n in sorted(values) if (split, seed, n) in measured[curve]]
            if len(layers) < 3:
                continue
            tau, p = permutation_tau([values[n] for n in layers], [measured[curve][(split, seed, n)] for n in layers])
            if not np.isnan(tau):
                taus[measure][(split, seed)] = (tau, p)
        for measure in LAYER_MEASURES:
            found = taus.get(measure, {})
            mean, low, high = _bounded(t_interval(tau for tau, _ in found.values()), 1.0)
            shared = [unit for unit in found if unit in taus.get("depth", {})]
            beyond = _bounded(t_interval(found[unit][0] - taus["depth"][unit][0] for unit in shared), 2.0) \
                if measure != "depth" else (float("nan"),) * 3
            out.append({"measure": measure, "curve": curve, "units": len(found), "tau": mean, "low": low, "high": high,
                        "p_per_unit": " ".join(f"{p:.3g}" for _, p in (found[u] for u in sorted(found, key=str))),
                        "vs_depth": beyond[0], "vs_depth_low": beyond[1], "vs_depth_high": beyond[2]})
    return out


def _bounded(interval: tuple[float, float, float, float], bound: float) -> tuple[float, float, float]:
    """(mean, low, high) of a t-interval of taus (bound 1) or of differences of taus (bound 2), cut
    to the values they can take; no interval where every split and seed gave the same value (a
    tau takes few values: equal ones are no evidence of a zero spread)."""
    mean, low, high, _ = interval
    if low == high:
        return mean, float("nan"), float("nan")
    return mean, max(low, -bound), min(high, bound)


def permutation_tau(x: list[float], y: list[float]) -> tuple[float, float]:
    """Kendall's tau-b of x and y and its two-sided permutation p-value: the share of orderings of
    y (every one, up to 8 layers; 20,000 seeded ones beyond) with |tau| at least as large. Ties
    are allowed (tau-b)."""
    import itertools

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    first, second = np.triu_indices(len(x), 1)
    sign_x = np.sign(x[first] - x[second])
    ties_x, ties_y = np.sum(sign_x == 0), np.sum(np.sign(y[first] - y[second]) == 0)
    scale = np.sqrt((len(first) - ties_x) * (len(first) - ties_y))
    if scale == 0:
        return float("nan"), float("nan")
    if len(y) <= 8:
        orderings = np.array(list(itertools.permutations(range(len(y)))))
    else:
        rng = np.random.default_rng(0)
        orderings = np.array([rng.permutation(len(y)) for _ in range(20000)])
    shuffled = y[orderings]
    taus = (np.sign(shuffled[:, first] - shuffled[:, second]) @ sign_x) / scale
    observed = float(np.sign(y[first] - y[second]) @ sign_x / scale)
    return observed, float(np.mean(np.abs(taus) >= abs(observed) - 1e-12))


def agreement_lines(agreement: list[dict[str, Any]]) -> list[str]:
    """The agreement table in words, a line per predictor and curve."""
    lines = []
    for line in agreement:
        if not line["units"]:
            lines.append(f"  {line['measure']:13s} {line['curve']:8s} no measured curve of 3 or more layers to compare with")
            continue
        interval = f"[{line['low']:+.2f}, {line['high']:+.2f}]" if not np.isnan(line["low"]) else "[no interval]"
        beyond = ""
        if line["measure"] != "depth" and not np.isnan(line["vs_depth"]):
            verdict = ("no interval: not judged" if np.isnan(line["vs_depth_low"]) else "beyond depth" if line["vs_depth_low"] > 0
                       else "worse than depth" if line["vs_depth_high"] < 0 else "no better than depth")
            beyond = (f"; its tau minus depth's {line['vs_depth']:+.2f}"
                      + (f" [{line['vs_depth_low']:+.2f}, {line['vs_depth_high']:+.2f}]" if not np.isnan(line["vs_depth_low"]) else "")
                      + f": {verdict}")
        lines.append(f"  {line['measure']:13s} {line['curve']:8s} tau {line['tau']:+.2f} {interval} over {line['units']} "
                     f"splits/seeds (permutation p per split/seed: {line['p_per_unit']}){beyond}")
    return lines


def _by_layer(table, measure: str) -> dict[int, list[float]]:
    """A measure's values per layer, over every split and seed of ``table``."""
    values: dict[int, list[float]] = defaultdict(list)
    for row in table:
        if row["measure"] == measure:
            values[row["layer"]].append(row["value"])
    return values


def _figure(study: str, table, measured, agreement, out: Path, metric: str = "top1_mean_best10") -> Path:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"probe": "linear probe top-1 on baseA's layer n", "logme": "LogME of baseA's layer n",
              "cka": "CKA, baseA vs baseB, layer n"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    anb: dict[int, list[float]] = defaultdict(list)
    for (_split, _seed, n), value in measured.items():
        anb[n].append(value)
    for ax, measure in zip(axes, ("probe", "logme", "cka")):
        by_layer = _by_layer(table, measure)
        layers = sorted(by_layer)
        ax.plot(layers, [np.mean(by_layer[n]) for n in layers], marker="o", color="#1f77b4", label=measure)
        overlay = {"probe": ("random_probe", "the same on a random network (null)"),
                   "cka": ("cka_debiased", "debiased CKA (unbiased HSIC)")}.get(measure)
        if overlay:
            other = _by_layer(table, overlay[0])
            if other:
                ns = sorted(other)
                ax.plot(ns, [np.mean(other[n]) for n in ns], marker="o", ls=":", color="#7f7f7f", label=overlay[1])
                ax.legend(**LEGEND_BELOW)
        if measure == "cka":
            trained = _by_layer(table, "cka_anb_plus")
            if trained:
                ns = sorted(trained)
                ax.plot(ns, [np.mean(trained[n]) for n in ns], marker="s", ls="--", color="#17becf",
                        label="fine-tuned AnB+ vs baseB")
                ax.legend(**LEGEND_BELOW)
        ax.set_xlabel("layer n")
        ax.set_ylabel(measure, color="#1f77b4")
        ax.set_xticks(range(1, max([7, *(int(n) for n in _by_layer(table, measure))]) + 1))
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        if anb:
            ns = sorted(anb)
            twin.plot(ns, [np.mean(anb[n]) for n in ns], marker="D", color="#d62728", label="measured AnB")
            twin.set_ylabel(f"measured AnB, {metric} (mean)", color="#d62728")
        result = next(line for line in agreement if line["measure"] == measure and line["curve"] == "absolute")
        depth = next(line for line in agreement if line["measure"] == "depth" and line["curve"] == "absolute")
        tau = (f"Kendall tau {result['tau']:+.2f}" + (f" [{result['low']:+.2f}, {result['high']:+.2f}]"
                                                      if not np.isnan(result["low"]) else "")
               + f" over {result['units']} splits/seeds; depth alone {depth['tau']:+.2f}") if result["units"] else \
            "no measured AnB curve to compare"
        ax.set_title(f"{titles[measure]}\n{tau}", fontsize=9)
    fig.suptitle(f"{study}: per-layer probes (blue) beside the measured transfer (red)", fontsize=10)
    fig.tight_layout()
    path = out / f"{study}-probes.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    plt.close(fig)
    return path
