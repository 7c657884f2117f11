"""The paper's figures and tables from results CSVs (``transferbench plot``).

Per study (the CSV's ``study`` column) this writes, as PNG and PDF:

* ``<study>-fig2``: top-1 vs n for every network on the random splits (base at n=0, BnB,
  BnB+, AnB, AnB+), and each group against its own base (mean over independent replicates,
  95% t-interval), with a region shaded and named only where the effects table shows the
  paper's effect (Holm-adjusted over the figure's tests);
* ``<study>-fig3``: man-made/natural transfer, random-init frozen layers, and all three
  relative to their base networks on one axis;
* ``<study>-reduced``: top-1 vs training images per class;
* ``<study>-preserved``: the preserved-layers conditions, when the study has them;
* ``<study>-effects.csv``: every effect per n, pooled over n-ranges, as a trend over n, and the
  developmental comparisons: mean, interval, p, Holm-adjusted p, shown, pairs, bases, units
  (``analysis/stats.py``); the figures, the boost table and the reading are drawn from it;
* ``<study>-boost.csv`` and a printed table: the lingering boost of each AnB+ over its own base
  and over BnB+, for n in 1..7, 3..7 and 5..7; ``<study>-boost-pooled.csv``: the paper's own
  pooled, unpaired table, for comparison with the published numbers only;
* ``<study>-developmental`` and ``<study>-developmental.csv`` (when the study has grown
  networks or chains): each grown network against the classic network of its split and seed
  (paired differences with their intervals: the bars are what the text reads).

Markers stand at the measured n only, and lines join only neighbouring measured n (no line
crosses an n that was not measured). A mean from a single replicate has no interval and is
drawn hollow. Networks left out of means (stalled, diverged) are drawn hollow and dashed;
frozen networks at chance are marked with a cross and count.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from transferbench.analysis.results import health_lines, table_csv
from transferbench.analysis.stats import (EFFECTS, FIG2, top_n, Effects, Pairs, _means, _random, bar_entries, boost_table,
                                          counted, developmental_table, effects_csv, effects_table, estimate,
                                          format_boost, format_developmental, format_pooled_boost, group_of,
                                          group_values, is_developmental, pooled_boost_table, reference_network)
from transferbench.errors import UserError
from transferbench.fileio import atomic_write_bytes, atomic_write_text, ensure_writable_dir
from transferbench.schema.notation import parse_network
from transferbench.schema.record import Row

STYLES = {  # group -> (label, colour, marker)
    "base": ("base networks (n=0)", "white", "o"),
    "selffer": ("selffer BnB", "#1f4fd8", "o"),
    "selffer+": ("selffer BnB$^+$", "#7fa3ff", "o"),
    "transfer": ("transfer AnB", "#d62728", "D"),
    "transfer+": ("transfer AnB$^+$", "#ff9896", "D"),
}
# The per-network value each figure can show, and how its axis names it.
METRICS = {
    "top1_mean_best10": "top-1, mean of the 10 best evaluations (the paper's; chosen on the validation images)",
    "top1_final": "top-1 of the final network (selection-free)",
    "top1_holdout": "top-1 at the evaluation chosen on held-out training images (selection-free)",
    "class_top1_final": "mean per-class top-1 of the final network (selection-free)",
}
EFFECT_COLOURS = {"co-adaptation loss": "#1f4fd8", "specificity": "#d62728", "fine-tuning recovers": "#2ca02c",
                  "lingering boost": "#ff7f0e"}


def _save(fig, out: Path, name: str, written: list[Path]) -> None:
    for suffix in ("png", "pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix, dpi=150, bbox_inches="tight")
        atomic_write_bytes(out / f"{name}.{suffix}", buffer.getvalue())
        written.append(out / f"{name}.{suffix}")


UNUSABLE_LABEL = "hollow, dashed: stalled or diverged (left out of means)"
AT_CHANCE_LABEL = "x: frozen features at chance (a finding, kept in means)"


def _scatter(ax, xs, ys, rows, colour, marker, label, edge=None, size=28):
    """Networks as markers: filled where they count, hollow with a dashed edge where they are left
    out of means, crossed where frozen features left them at chance."""
    kept = [(x, y) for x, y, r in zip(xs, ys, rows) if r.usable]
    left = [(x, y) for x, y, r in zip(xs, ys, rows) if not r.usable]
    chance = [(x, y) for x, y, r in zip(xs, ys, rows) if r.health == "at_chance"]
    if kept:
        ax.scatter(*zip(*kept), s=size, marker=marker, facecolors=colour, edgecolors=edge or colour, linewidths=0.8,
                   label=label, zorder=3)
    if left:
        ax.scatter(*zip(*left), s=size, marker=marker, facecolors="none", edgecolors="grey" if colour == "white" else colour,
                   linewidths=1.2, linestyles="--", label=None if kept else label, zorder=3)
    if chance:
        ax.scatter(*zip(*chance), s=size * 1.6, marker="x", color="black", linewidths=0.8, zorder=4)


def _segments(ns: list[int]) -> list[list[int]]:
    """Runs of neighbouring measured n (1, 2, 3 and 5, 6 from 1, 2, 3, 5, 6): a line joins only these."""
    runs: list[list[int]] = []
    for n in sorted(ns):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return runs


def _curve(ax, points: dict[int, Any], colour: str, marker: str, label: str | None, offset: float = 0.0) -> None:
    """Means (with their 95% intervals) at the measured n: a marker each, filled where it has an
    interval and hollow where it rests on a single replicate, lines only between neighbours
    (``offset``: a small shift along n, so that the groups' intervals do not hide each other)."""
    for run in _segments(list(points)):
        if len(run) > 1:
            ax.plot([n + offset for n in run], [points[n].mean for n in run], color=colour, lw=1.5, zorder=2)
    for n, e in points.items():
        filled = e.has_interval
        if filled:
            ax.errorbar([n + offset], [e.mean], yerr=[[max(0.0, e.mean - e.low)], [max(0.0, e.high - e.mean)]],
                        color=colour, capsize=2, lw=1, zorder=2)
        ax.scatter([n + offset], [e.mean], marker=marker, s=30, facecolors=colour if filled else "white",
                   edgecolors=colour, linewidths=1.3, zorder=3)
    ax.plot([], [], color=colour, marker=marker, label=label)


def plot_fig2(rows, reference, study, metric, effects: Effects, out, written, missing, plt, keep_flagged=False) -> list[str]:
    """Fig. 2; returns the effects of the paper's reading that are shown (the shaded, labelled regions)."""
    groups = group_values(rows, metric, keep_flagged)
    present = [g for g in STYLES if groups[g]]
    if not present:
        missing.append("fig2: no usable networks on random splits")
        return []
    for name in STYLES:
        if not groups[name]:
            missing.append(f"fig2: no {STYLES[name][0].replace('$^+$', '+')} networks")
    pairs = Pairs(rows, metric, keep_flagged=keep_flagged)
    relative = {}
    for name in STYLES:
        by_n: dict[int, list] = defaultdict(list)
        for pair in pairs.pairs(name, "base") if name != "base" else []:
            by_n[pair.n].append(pair)
        if by_n:
            relative[name] = {n: estimate(members) for n, members in sorted(by_n.items())}
    if relative:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(10.5, 9.5), sharex=True)
    else:  # no network has its own base among the results: the lower panel would be empty
        fig, top = plt.subplots(1, 1, figsize=(10.5, 4.8))
        missing.append("fig2: lower panel not drawn: no network has its own base (the base of its split, seed and side)")
    offsets = {"base": 0, "selffer": -0.15, "selffer+": -0.05, "transfer": 0.05, "transfer+": 0.15}
    members = defaultdict(list)  # every network of the random splits, counted or not: those left out are drawn hollow
    for row in _random(rows):
        group = group_of(row)
        if group in STYLES and row.value(metric) is not None and not is_developmental(row):
            members[group].append(row)
    left, at_chance = False, False
    for name in STYLES:
        label, colour, marker = STYLES[name]
        nets = members[name]
        left |= any(not r.usable for r in nets)
        at_chance |= any(r.health == "at_chance" for r in nets)
        if name == "base":  # base A and base B side by side at n = 0, told apart
            for side, shift, fill in (("A", -0.1, "white"), ("B", 0.1, "#bbbbbb")):
                of_side = [r for r in nets if (r.target_side or "B") == side]
                _scatter(top, [shift] * len(of_side), [r.value(metric) for r in of_side], of_side, fill, marker,
                         f"base {side} (n=0)", edge="black")
            continue
        _scatter(top, [int(r.n) + offsets[name] for r in nets], [r.value(metric) for r in nets], nets, colour, marker,
                 label, edge=colour)
    if left:
        top.scatter([], [], s=28, facecolors="none", edgecolors="grey", linestyles="--", label=UNUSABLE_LABEL)
    if at_chance:
        top.scatter([], [], s=40, marker="x", color="black", label=AT_CHANCE_LABEL)
    if reference:
        ref = group_values(reference, metric)
        ref_label = "published means (Yosinski et al., ImageNet)"
        for name in STYLES:
            if ref[name]:
                ns, means = _means(ref, name)
                top.plot(ns, means, color=STYLES[name][1] if name != "base" else "grey", lw=1, ls="--", zorder=1,
                         alpha=0.7, label=f"{ref_label}: {STYLES[name][0]}")
    top.set_ylabel(METRICS[metric].split(" (")[0] + " (higher is better)")
    top.set_title(f"{study}: transfer of layers 1..n (one marker per network; {METRICS[metric]})", fontsize=9)
    top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: it never covers a network
    top.grid(alpha=0.3)
    if not relative:
        top.set_xlabel("layer n at which the network is chopped and retrained")
        top.set_xticks(range(0, top_n(rows) + 1))
        _save(fig, out, f"{study}-fig2", written)
        plt.close(fig)
        return []
    # Lower panel: every group against its own base (same split, seed and side), over replicates.
    bottom.axhline(0, color="black", lw=0.8, ls=":")
    for name, points in relative.items():
        label, colour, marker = STYLES[name]
        _curve(bottom, points, colour, marker, label, offsets[name])
    if any(not e.has_interval for points in relative.values() for e in points.values()):
        bottom.scatter([], [], facecolors="white", edgecolors="grey",
                       label="hollow: no interval (one replicate, or every replicate the same difference)")
    series = {"base": defaultdict(float), **{name: {n: e.mean for n, e in points.items()} for name, points in relative.items()}}
    shown = _shade(bottom, effects, series)
    bottom.set_xlabel("layer n at which the network is chopped and retrained")
    bottom.set_ylabel("minus its own base (mean over replicates, 95% t-interval)")
    bottom.set_title("each network against the base of its own split, seed and side; a region is shaded and named only "
                     "where the effect is shown\n(Holm-adjusted p < 0.05 over every test of this figure, the paper's sign)",
                     fontsize=8)
    bottom.set_xticks(range(0, top_n(rows) + 1))
    bottom.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    bottom.grid(alpha=0.3)
    _save(fig, out, f"{study}-fig2", written)
    plt.close(fig)
    return shown


def _shade(ax, effects: Effects, series: dict[str, dict[int, float]]) -> list[str]:
    """Shade and name each fig2 effect where it is shown with the paper's sign: between its two
    curves over neighbouring shown n, a narrow band at a lone one."""
    shown = []
    boost_explained = (row := effects.pooled("AnB+ vs BnB+ (same n)")) is not None and row.shown \
        and row.direction < 0  # AnB+ below BnB+: the "boost" is the longer training
    labelled: set[int] = set()
    for name in FIG2:
        spec = EFFECTS[name]
        cells = {r.n: r for r in effects.per_n(name) if r.agrees and r.n in series.get(spec.group, {})
                 and (spec.against == "base" or r.n in series.get(spec.against, {}))}
        if not cells or (name == "lingering boost" and boost_explained):
            continue
        shown.append(name)
        for run in _segments(list(cells)):
            xs = run if len(run) > 1 else [run[0] - 0.2, run[0] + 0.2]
            points = run if len(run) > 1 else [run[0], run[0]]
            ax.fill_between(xs, [series[spec.group][n] for n in points], [series[spec.against][n] for n in points],
                            color=EFFECT_COLOURS[name], alpha=0.18, lw=0)
        n = next((n for n in sorted(cells, key=lambda n: -abs(cells[n].estimate.mean)) if n not in labelled),
                 max(cells, key=lambda n: abs(cells[n].estimate.mean)))
        labelled.add(n)
        ax.annotate(name.replace(" ", "\n", 1), (n, (series[spec.group][n] + series[spec.against][n]) / 2), fontsize=7,
                    ha="center", va="center")
    return shown


def _own_bases(rows, metric, keep_flagged=False) -> dict[tuple, float]:
    """(split, seed, target side) -> the top-1 of that base network."""
    return {(r.split, r.seed, r.target_side): r.value(metric) for r in counted(rows, keep_flagged)
            if r.condition == "base" and r.value(metric) is not None}


def plot_fig3(rows, study, metric, out, written, missing, plt, keep_flagged=False) -> None:
    """Fig. 3: man-made/natural transfer, random frozen features, and both relative to their own
    bases beside the random-split transfer. Panels without networks are not drawn."""
    natman = [r for r in rows if r.split == "natman" and r.value(metric) is not None]
    nolearn = [r for r in rows if r.condition == "random_init" and r.value(metric) is not None]
    bases = _own_bases(rows, metric, keep_flagged)
    if not natman:
        missing.append("fig3: no man-made/natural networks")
    if not nolearn:
        missing.append("fig3: no random-init networks")
    if not natman and not nolearn:
        return
    curves = {}
    for label, splits, group in (("AnB, random splits", "random", "transfer"), ("AnB, man-made/natural", "natman", "transfer"),
                                 ("random, frozen layers 1..n", "random", "random")):
        by_n: dict[int, list] = defaultdict(list)
        for pair in Pairs(rows, metric, splits, keep_flagged).pairs(group, "base"):
            by_n[pair.n].append(pair)
        if by_n:
            curves[label] = {n: estimate(members) for n, members in sorted(by_n.items())}
    if all(r.cross_dataset for r in rows) and "AnB, random splits" in curves:
        curves["AnB from the source"] = curves.pop("AnB, random splits")
    panels = (["natman"] if natman else []) + (["random"] if nolearn else []) + (["relative"] if curves else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False)
    axes = dict(zip(panels, axes[0]))
    if natman:
        ax = axes["natman"]
        for side, colour, kind in (("A", "#2ca02c", "natural"), ("B", "#9467bd", "man-made")):
            own = [v for (split, _, target), v in bases.items() if split == "natman" and target == side]
            if own:
                ax.scatter([0] * len(own), own, color=colour, edgecolors="black", zorder=3)
            nets = [r for r in natman if r.condition != "base" and r.target_side == side]
            if nets:
                _scatter(ax, [int(r.n) for r in nets], [r.value(metric) for r in nets], nets, colour, "D",
                         f"transfer to side {side} ({kind}); its base at n=0")
        ax.set_title("man-made / natural split")
    if nolearn:
        ax = axes["random"]
        _scatter(ax, [int(r.n) for r in nolearn], [r.value(metric) for r in nolearn], nolearn, "#8c564b", "s",
                 "random, frozen layers 1..n")
        own = sorted({bases[key] for r in nolearn if (key := (r.split, r.seed, r.target_side)) in bases})
        if own:
            ax.scatter([0] * len(own), own, color="white", edgecolors="black", zorder=3, label="its base (same split, seed, side)")
        learned = [r for r in counted(rows, keep_flagged) if r.condition == "selffer" and not int(r.fine_tune or 0)
                   and r.value(metric) is not None
                   and any((r.split, r.seed, r.target_side, int(r.n)) == (q.split, q.seed, q.target_side, int(q.n)) for q in nolearn)]
        if learned:
            _scatter(ax, [int(r.n) for r in learned], [r.value(metric) for r in learned], learned, "#1f4fd8", "o",
                     "learned, frozen layers 1..n (BnB)")
        ax.set_title("random-init frozen features")
    for name in ("natman", "random"):
        if name in axes:
            axes[name].set_xlabel("layer n")
            axes[name].set_ylabel(METRICS[metric].split(" (")[0], fontsize=8)
            axes[name].set_xticks(range(0, top_n(rows) + 1))
            axes[name].grid(alpha=0.3)
            axes[name].legend(fontsize=7)
    if curves:
        rel = axes["relative"]
        colours = {"AnB, random splits": "#d62728", "AnB from the source": "#d62728", "AnB, man-made/natural": "#2ca02c",
                   "random, frozen layers 1..n": "#8c564b"}
        markers = {"random, frozen layers 1..n": "s"}
        for label, points in curves.items():
            _curve(rel, points, colours[label], markers.get(label, "D"), f"{label} (mean over replicates)")
        rel.axhline(0, color="black", lw=0.8, ls=":")
        rel.set_title("relative to each network's own base (95% t-intervals)")
        rel.set_xlabel("layer n")
        rel.set_ylabel("minus its base")
        rel.set_xticks(range(0, top_n(rows) + 1))
        rel.grid(alpha=0.3)
        rel.legend(fontsize=7)
    notes = ([UNUSABLE_LABEL] if any(not r.usable for r in natman + nolearn) else []) + \
        ([AT_CHANCE_LABEL] if any(r.health == "at_chance" for r in natman + nolearn) else [])
    if notes:
        fig.text(0.01, 0.01, "; ".join(notes), fontsize=7)
    fig.suptitle(study)
    fig.tight_layout()
    _save(fig, out, f"{study}-fig3", written)
    plt.close(fig)


def plot_reduced(rows, study, metric, out, written, missing, plt) -> None:
    networks = sorted((r for r in rows if str(r.split).startswith("reduced") and r.value(metric) is not None),
                      key=lambda r: int(str(r.split)[len("reduced"):]))
    if not networks:
        missing.append("reduced: no reduced-data networks")
        return
    points = [(int(str(r.split)[len("reduced"):]), r.value(metric), r.usable) for r in networks]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([k for k, _, _ in points], [v for _, v, _ in points], color="#1f77b4", lw=1)
    _scatter(ax, [k for k, _, _ in points], [v for _, v, _ in points], networks, "#1f77b4", "o",
             "base network, all classes")
    if not all(ok for _, _, ok in points):
        ax.scatter([], [], facecolors="none", edgecolors="grey", linestyles="--", label="hollow, dashed: stalled (at chance)")
    ax.legend(fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("training images per class")
    ax.set_ylabel(METRICS[metric].split(" (")[0], fontsize=8)
    ax.set_title(f"{study}: accuracy vs data")
    ax.grid(alpha=0.3, which="both")
    _save(fig, out, f"{study}-reduced", written)
    plt.close(fig)


def plot_preserved(rows, study, metric, out, written, missing, plt) -> None:
    preserved = [r for r in rows if r.condition == "preserved" and r.value(metric) is not None]
    if not preserved:
        missing.append("preserved: no preserved-layers networks")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    by_k = defaultdict(list)
    for r in preserved:
        by_k[r.name.k].append((int(r.n), r.value(metric)))
    for k, points in sorted(by_k.items()):
        points.sort()
        ax.plot([n for n, _ in points], [v for _, v in points], marker="o", ls="none",
                label=f"AnB, next {k} layers copied and fine-tuned")
    groups = group_values(rows, metric)
    if groups["transfer"]:
        ns, means = _means(groups, "transfer")
        ax.plot(ns, means, color="#d62728", marker="D", ls="none", label="AnB (mean)")
    ax.set_xlabel("layers 1..n frozen")
    ax.set_ylabel(METRICS[metric].split(" (")[0], fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, out, f"{study}-preserved", written)
    plt.close(fig)




def plot_all(rows: list[Row], out: Path, reference: list[Row] | None = None, metric: str = "top1_mean_best10", echo=print,
             keep_flagged: bool = False) -> list[Path]:
    """Every figure and table of every study in ``rows``. ``keep_flagged``: the networks left out
    of means (stalled, diverged, built on one) are put back, to see what leaving them out changed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    studies: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        studies[row.study].append(row)
    if not studies:
        raise UserError("no rows to plot; collect a study first (`transferbench collect jobs/STUDY`)")
    if not any(row.value(metric) is not None for row in rows):
        raise UserError(f"no network has a value of {metric}" + (" (it needs train.holdout > 0 in the study's recipe)"
                                                                   if metric == "top1_holdout" else ""))
    ensure_writable_dir(out)  # only once the inputs are known to be good: a refused plot leaves no folder
    written: list[Path] = []
    if reference:
        theirs = sorted({r.dataset for r in reference})
        for study, all_rows in studies.items():
            ours = sorted({r.dataset for r in all_rows})
            if ours != theirs:
                echo(f"  warning: {study} is on {', '.join(ours)} and the reference on {', '.join(theirs)}: the reference's "
                     "lines share the axis for their shape only; their accuracies are not comparable with this study's")
    for study, all_rows in studies.items():
        # A cross-dataset study draws each target on its own (its split names source and targets):
        # networks of different targets are never pooled into one mean.
        parts: dict[str, list[Row]] = defaultdict(list)
        for row in all_rows:
            parts[f"{study}-{row.split}" if row.cross_dataset else study].append(row)
        for name, rows_of in parts.items():
            if name != study and not any(r.target_side not in (None, "A") for r in rows_of):
                # networks trained on the source's own data (a wide base): read with the targets that fine-tune them
                echo(f"  {name}: {len(rows_of)} networks trained on the source's own data, drawn with the targets they "
                     "are fine-tuned to")
                for line in health_lines(rows_of):
                    echo(f"  {name}: {line}")
                continue
            _plot_part(rows_of, name, name != study, reference, metric, out, written, echo, plt, keep_flagged)
    return written


def _plot_part(all_rows: list[Row], study: str, cross: bool, reference, metric: str, out: Path, written: list[Path],
               echo, plt, keep_flagged: bool = False) -> None:
    """The figures and tables of one study, or of one target of a cross-dataset study (named ``study``)."""
    missing: list[str] = []
    without = sum(1 for r in all_rows if r.value(metric) is None)
    if without:
        missing.append(f"{without} of {len(all_rows)} networks have no {metric} (no log or no evaluation)")
    few = sum(1 for r in all_rows if r.evaluations is not None and r.evaluations < 20)
    if metric == "top1_mean_best10" and few > len(all_rows) / 2:
        echo(f"  {study}: warning: {few} of {len(all_rows)} networks have fewer than 20 evaluations, so their mean of the "
             "10 best reaches back into training; --metric top1_final reads the final networks")
    effects = effects_table(all_rows, metric, keep_flagged)
    atomic_write_text(out / f"{study}-effects.csv", effects_csv(effects))
    written.append(out / f"{study}-effects.csv")
    if any(is_developmental(r) for r in all_rows):
        plot_developmental(all_rows, study, metric, effects, out, written, echo, plt, keep_flagged)
    study_rows = [r for r in all_rows if not is_developmental(r)]
    shown: list[str] = []
    curves = not cross or any(int(r.n) for r in study_rows)  # a target with layers transferred: the paper's curves
    if curves:
        shown = plot_fig2(study_rows, None if cross else reference, study, metric, effects, out, written, missing, plt,
                          keep_flagged)
        optional = [] if cross else missing  # a target has no man-made/natural split, and random-init or preserved by choice
        plot_fig3(study_rows, study, metric, out, written, optional, plt, keep_flagged)
        plot_preserved(study_rows, study, metric, out, written, optional, plt)
    if not cross:
        plot_reduced(study_rows, study, metric, out, written, missing, plt)
    paired = boost_table(effects)
    if not cross or any(line["vs_base"] is not None for line in paired):  # a target without AnB+ below n = 7: no boost
        atomic_write_text(out / f"{study}-boost.csv", table_csv(paired))
        written.append(out / f"{study}-boost.csv")
        echo(format_boost(paired, study))
        pooled = pooled_boost_table(study_rows, metric)
        atomic_write_text(out / f"{study}-boost-pooled.csv", table_csv(pooled))
        written.append(out / f"{study}-boost-pooled.csv")
        echo(format_pooled_boost(pooled, study))
    if curves and any(group_values(study_rows, metric, keep_flagged).values()):
        unseen = [name for name in FIG2 if name not in shown]
        echo(f"  {study} fig2: " + (f"shaded and named: {', '.join(shown)}" if shown else "no effect of the paper's "
                                    "reading is shown (Holm-adjusted p < 0.05 over the figure)")
             + (f"; not shown (not shaded): {', '.join(unseen)}" if unseen and shown else ""))
    left = [r for r in all_rows if not r.usable]
    if left:
        echo(f"  {study}: {len(left)} networks " + ("put back into every mean (--keep-flagged)" if keep_flagged else
                                                    "left out of every mean (--keep-flagged puts them back)"))
    for line in health_lines(all_rows):
        echo(f"  {study}: {line}")
    for line in missing:
        echo(f"  missing in {study}: {line}")


MIN_SPAN = 0.1  # the least range a bar panel shows


def _bars(ax, entries: list[tuple[str, Any]], title: str, ylabel: str) -> None:
    """Paired differences as bars with their 95% t-intervals over replicates (hollow: one
    replicate, no interval), against a line at zero."""
    ax.set_title(title, fontsize=9)
    means = [e.mean for _, e in entries]
    errors = np.array([[max(0.0, e.mean - e.low), max(0.0, e.high - e.mean)] if e.has_interval else [0.0, 0.0]
                       for _, e in entries]).T
    colours = ["#ff9896" if e.has_interval else "white" for _, e in entries]
    ax.bar(range(len(entries)), means, yerr=errors, color=colours, edgecolor="black", capsize=3, width=0.6)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(entries)), [label for label, _ in entries], rotation=60, ha="right", fontsize=7)
    ax.set_xlim(-0.75, len(entries) - 0.25)
    values = [0.0] + [v for _, e in entries for v in (e.low, e.high, e.mean) if not math.isnan(v)]
    low, high = min(values), max(values)
    pad = 0.1 * max(high - low, MIN_SPAN)
    ax.set_ylim(low - pad, high + pad)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def plot_developmental(rows, study, metric, effects: Effects, out, written, echo, plt, keep_flagged=False) -> None:
    table = developmental_table(rows, effects, metric, keep_flagged)
    atomic_write_text(out / f"{study}-developmental.csv", table_csv(table, None if table else ["network"]))
    written.append(out / f"{study}-developmental.csv")
    echo(format_developmental(table, study, metric))
    compared = {row.network: row.estimate for row in effects.family("developmental")}

    def entries(select, label=lambda name: name, order=lambda name: name):
        names = sorted({str(r.network) for r in counted(rows, keep_flagged) if select(r) and str(r.network) in compared},
                       key=order)
        return [(label(name), compared[name]) for name in names]

    single = lambda r: not r.name.later_chain_step  # noqa: E731
    transfer = lambda r: single(r) and r.growth and r.condition != "base"  # noqa: E731  (not a wide base)
    nonorm = {str(r.network).removesuffix("-nonorm") for r in rows if str(r.network).endswith("-nonorm")}
    scope_order = {"new": 0, "fc7": 1, "fc6": 2}
    forgetting = []
    present = {str(r.network) for r in rows}
    references = {reference_network(str(q.network), present) for q in rows if q.growth}
    for name, values, befores in bar_entries(rows, lambda r: single(r) and (r.growth or r.network in references),
                                             lambda r: r.value("source_top1_after"), lambda r: r.value("source_top1_before"),
                                             keep_flagged=keep_flagged):
        if len(values) == len(befores):
            from transferbench.analysis.stats import Pair

            forgetting.append((name, estimate([Pair(0, a - b, (i,), frozenset()) for i, (a, b) in enumerate(zip(values, befores))])))
    versus = f"minus the classic network of the same split and seed ({metric.replace('_', ' ')})"
    panels = [
        (entries(lambda r: transfer(r) and r.scope == "all" and (r.normalize == 1 or r.growth_mode == "wide")),
         "target: variant and S (wide = as wide from the start)", versus),
        (entries(lambda r: transfer(r) and r.growth_mode == "grown" and r.scope == "all"
                 and str(r.network).removesuffix("-nonorm") in nonorm,
                 label=lambda name: name if name.endswith("-nonorm") else f"{name} norm+scale"),
         "normalisation + scaling ablation", versus),
        (entries(lambda r: transfer(r) and r.growth_mode == "grown" and r.normalize == 1,
                 order=lambda name: (name.replace(f"-{parse_network(name).scope}", ""),
                                     scope_order.get(name.rsplit("-", 1)[-1], 3))),
         "fine-tuning scope (new, fc7, fc6, all)", versus),
        (forgetting, "forgetting: the source's own task", "source top-1 after transfer minus before"),
        (entries(lambda r: not single(r)), "chain of tasks: last task, grown at every step",
         "minus the fixed network along the same chain"),
    ]
    drawn: list[tuple] = []  # a panel without bars is not drawn, nor one that repeats an earlier panel's bars
    for panel in panels:
        if panel[0] and all(panel[0] != other[0] for other in drawn):
            drawn.append(panel)
    if not drawn:
        echo(f"  {study}: no developmental network has a value to draw; no developmental figure written")
        return
    fig, axes = plt.subplots(1, len(drawn), figsize=(4.4 * len(drawn) + 1, 5.2), squeeze=False)
    for ax, (bars, title, ylabel) in zip(axes[0], drawn):
        _bars(ax, bars, title, ylabel)
    fig.suptitle(f"{study}: developmental networks, paired differences with 95% t-intervals over replicates "
                 "(hollow: no interval: one replicate, or every replicate the same difference)", fontsize=10)
    fig.tight_layout()
    _save(fig, out, f"{study}-developmental", written)
    plt.close(fig)


# ---------------------------------------------------------------------------- units' learning curves

def plot_units(curves: list[dict], out: Path, echo=print, keep_flagged: bool = False) -> list[Path]:
    """Growing a Brain's figure 6 from a curves CSV (``collect``): per grown network, the top-1 over
    training of its old units alone (fc7), its new units alone (fc7_1, ...) and both (the network),
    each replicate thin, their mean thick. One figure per study and split (a cross-dataset target)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from transferbench.schema.record import EXCLUDED

    kept = [c for c in curves if keep_flagged or c["health"] not in EXCLUDED]
    left = len({c["key"] for c in curves}) - len({c["key"] for c in kept})
    parts: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for curve in kept:
        # a cross-dataset study draws each target on its own, as plot_all does; splits of one dataset are replicates
        parts[f"{curve['study']}-{curve['split']}" if curve["cross_dataset"] else curve["study"]][curve["network"]].append(curve)
    written: list[Path] = []
    if left:
        echo(f"  units' curves: {left} grown networks left out (stalled, diverged or built on one; --keep-flagged draws them)")
    if not parts:
        return written
    ensure_writable_dir(out)
    colours = {"both": "black", "fc7": "tab:blue"}
    for part, networks in parts.items():
        fig, axes = plt.subplots(1, len(networks), figsize=(4.2 * len(networks) + 0.5, 3.8), squeeze=False, sharey=True)
        for ax, (network, members) in zip(axes[0], sorted(networks.items())):
            by_readout: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
            for curve in members:
                by_readout[curve["readout"]][curve["key"]].append((curve["iteration"], curve["top1"]))
            for readout in sorted(by_readout, key=lambda r: (r != "both", r != "fc7", r)):
                colour = colours.get(readout, "tab:orange" if readout.endswith("_1") else None)
                label = {"both": "both (the network)", "fc7": "fc7 alone (the original units)"}.get(
                    readout, f"{readout} alone (the added units)")
                series = [sorted(points) for points in by_readout[readout].values()]
                for points in series:
                    ax.plot(*zip(*points), color=colour, alpha=0.25, linewidth=0.8)
                iterations = sorted(set.intersection(*(set(i for i, _ in points) for points in series)))
                if iterations:
                    mean = [np.mean([dict(points)[i] for points in series]) for i in iterations]
                    ax.plot(iterations, mean, color=colour, linewidth=2, label=f"{label}, mean of {len(series)}")
            ax.set_title(network, fontsize=9)
            ax.set_xlabel("iteration", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("top-1 on the target's test images", fontsize=8)
        fig.suptitle(f"{part}: learning curves of the original units, the added units and both (the classifier on each block alone)",
                     fontsize=10)
        fig.tight_layout()
        _save(fig, out, f"{part}-units", written)
        plt.close(fig)
        echo(f"  {part}: units' learning curves of {', '.join(sorted(networks))}")
    return written

