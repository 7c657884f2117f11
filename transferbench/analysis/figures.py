"""The paper's figures and tables from results CSVs (``transferbench plot``).

Per study (the CSV's ``study`` column) this writes, as PNG and PDF:

* ``<study>-fig2``: top-1 vs n for every network on the random splits (base at n=0, BnB,
  BnB+, AnB, AnB+), and the per-layer means with 95% bootstrap intervals and the shaded
  regions that carry the paper's reading;
* ``<study>-fig3``: man-made/natural transfer, random-init frozen layers, and all three
  relative to their base networks on one axis;
* ``<study>-reduced``: top-1 vs training images per class;
* ``<study>-preserved``: the preserved-layers conditions, when the study has them;
* ``<study>-boost.csv`` and a printed table: the lingering boost of AnB+ over the bases and
  over BnB+, for n in 1..7, 3..7 and 5..7, with 95% bootstrap intervals;
* ``<study>-developmental`` and ``<study>-developmental.csv`` (when the study has grown
  networks or chains): target top-1 per variant and S against classic fine-tuning (A7B+),
  the normalisation/scaling ablation, the fine-tuning scopes, the source accuracy kept
  (forgetting), and the chain of tasks, each grown network paired with the classic network
  of its split and seed (``A7B+WA128-fc7`` with ``A7B+``, ``A7B7C+WA128`` with ``A7B7C+``).

The Yosinski figures use the classic networks only: grown networks and later chain steps
are left out of them.

Each value is a network's mean of its 10 best top-1 evaluations (the paper's statistic) or,
with ``metric="top1_final"``, its last evaluation. Networks without a value (no log, no
evaluation) are left out and counted in the "missing" lines.
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from transferbench.analysis.results import health_lines, table_csv
from transferbench.analysis.stats import (EFFECTS, Pairs, _group_of, _means, _random, bar_entries, boost_table, bootstrap_ci,
                                          developmental_table, effects, format_boost, format_developmental, group_values,
                                          is_developmental, paired_entries, pooled_boost_table, reference_network,
                                          versus_selffer_plus)
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


def _save(fig, out: Path, name: str, written: list[Path]) -> None:
    for suffix in ("png", "pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix, dpi=150, bbox_inches="tight")
        atomic_write_bytes(out / f"{name}.{suffix}", buffer.getvalue())
        written.append(out / f"{name}.{suffix}")


UNUSABLE_LABEL = "hollow, dashed: stalled or diverged (left out of means)"


def _scatter(ax, xs, ys, usable, colour, marker, label, edge=None, size=28):
    """Networks as markers: filled where they count, hollow with a dashed edge where they are left out of means."""
    kept = [(x, y) for x, y, ok in zip(xs, ys, usable) if ok]
    left = [(x, y) for x, y, ok in zip(xs, ys, usable) if not ok]
    if kept:
        ax.scatter(*zip(*kept), s=size, marker=marker, facecolors=colour, edgecolors=edge or colour, linewidths=0.8,
                   label=label, zorder=3)
    if left:
        ax.scatter(*zip(*left), s=size, marker=marker, facecolors="none", edgecolors="grey" if colour == "white" else colour,
                   linewidths=1.2, linestyles="--", label=None if kept else label, zorder=3)


def plot_fig2(rows, reference, study, metric, out, written, missing, plt) -> list[str]:
    """Fig. 2; returns the effects of the paper's reading that the data show (the shaded, labelled regions)."""
    groups = group_values(rows, metric)
    present = [g for g in STYLES if groups[g]]
    if not present:
        missing.append("fig2: no usable networks on random splits")
        return []
    for name in STYLES:
        if not groups[name]:
            missing.append(f"fig2: no {STYLES[name][0].replace('$^+$', '+')} networks")
    pairs = Pairs(rows, metric)
    relative = {name: diffs for name in STYLES if name != "base" and (diffs := pairs.differences(name, "base"))}
    if relative:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(10.5, 9.5), sharex=True)
    else:  # no network has its own base among the results: the lower panel would be empty
        fig, top = plt.subplots(1, 1, figsize=(10.5, 4.8))
        missing.append("fig2: lower panel not drawn: no network has its own base (the base of its split, seed and side)")
    offsets = {"base": 0, "selffer": -0.15, "selffer+": -0.05, "transfer": 0.05, "transfer+": 0.15}
    members = defaultdict(list)  # every network of the random splits, usable or not: those left out are drawn hollow
    for row in _random(rows):
        group = _group_of(row)
        if group and row.value(metric) is not None:
            members[group].append(row)
    any_left = False
    for name in STYLES:
        label, colour, marker = STYLES[name]
        nets = members[name]
        any_left |= any(not r.usable for r in nets)
        _scatter(top, [int(r.n) + offsets[name] for r in nets], [r.value(metric) for r in nets], [r.usable for r in nets],
                 colour, marker, label, edge="black" if name == "base" else colour)
    if any_left:
        top.scatter([], [], s=28, facecolors="none", edgecolors="grey", linestyles="--", label=UNUSABLE_LABEL)
    if reference:
        ref = group_values(reference, metric)
        for name in STYLES:
            if ref[name]:
                ns, means = _means(ref, name)
                top.plot(ns, means, color="grey", lw=1, ls="--", zorder=1)
        top.plot([], [], color="grey", ls="--", label="published means (Yosinski et al.)")
    top.set_ylabel("top-1 accuracy (higher is better)")
    top.set_title(f"{study}: transfer of layers 1..n (one marker per network)")
    top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: it never covers a network
    top.grid(alpha=0.3)

    if not relative:
        top.set_xlabel("layer n at which the network is chopped and retrained")
        top.set_xticks(range(0, 8))
        _save(fig, out, f"{study}-fig2", written)
        plt.close(fig)
        return []
    # Lower panel: every network against its own base (same split, seed and side), paired.
    series = {"base": {n: 0.0 for n in range(0, 8)}}
    bottom.axhline(0, color="black", lw=0.8, ls=":")
    for name, diffs in relative.items():
        ns = [0, *diffs]
        means = [0.0, *(float(np.mean(v)) for v in diffs.values())]
        intervals = [(0.0, 0.0), *(bootstrap_ci(v) for v in diffs.values())]
        series[name] = dict(zip(ns, means))
        low = [m - lo for m, (lo, _) in zip(means, intervals)]
        high = [hi - m for m, (_, hi) in zip(means, intervals)]
        label, colour, marker = STYLES[name]
        bottom.errorbar(ns, means, yerr=[np.nan_to_num(low), np.nan_to_num(high)], color=colour, marker=marker, ms=4,
                        lw=1.5, capsize=2, label=label)
    shown: list[str] = []
    labelled_at: set[int] = set()
    colours = {"co-adaptation loss": "#1f4fd8", "specificity": "#d62728", "fine-tuning recovers": "#2ca02c",
               "lingering boost": "#ff7f0e"}
    explained = versus_selffer_plus(rows, metric)[2] < 0  # AnB+ below BnB+: the "boost" is the longer training
    for effect_name, per_n in effects(rows, metric).items():
        group, against, _sign = EFFECTS[effect_name]
        if not any(e.shown for e in per_n) or group not in series or against not in series:
            continue
        if effect_name == "lingering boost" and explained:
            continue
        shown.append(effect_name)  # the summary names it even where the curves lack a point to label
        # Shade the runs of n where the means lean the paper's way and that hold a shown n.
        measured = sorted(set(series[group]) & set(series[against]))  # neighbours are adjacent measured n, e.g. 1, 4, 7
        lean = {e.n: e for e in per_n if e.leans and e.n in measured}
        runs, run = [], []
        for n in sorted(lean):
            if run and measured.index(n) != measured.index(run[-1]) + 1:
                runs.append(run)
                run = []
            run.append(n)
        runs.append(run)
        for run in runs:
            if not any(lean[n].shown for n in run):
                continue
            xs = run if len(run) > 1 else [run[0] - 0.2, run[0] + 0.2]
            a = [series[group][n] for n in run] if len(run) > 1 else [series[group][run[0]]] * 2
            b = [series[against][n] for n in run] if len(run) > 1 else [series[against][run[0]]] * 2
            bottom.fill_between(xs, a, b, color=colours[effect_name], alpha=0.18, lw=0)
        # The label goes at the strongest shown n that no other label took.
        candidates = sorted((e for e in per_n if e.shown and e.n in series[group] and e.n in series[against]),
                            key=lambda e: -abs(e.mean))
        if not candidates:
            continue
        n = next((e.n for e in candidates if e.n not in labelled_at), candidates[0].n)
        labelled_at.add(n)
        bottom.annotate(effect_name.replace(" ", "\n", 1), (n, (series[group][n] + series[against][n]) / 2), fontsize=7,
                        ha="center", va="center")
    bottom.set_xlabel("layer n at which the network is chopped and retrained")
    bottom.set_ylabel("top-1 minus its own base (mean of pairs, 95% interval)")
    bottom.set_title("each network against the base of its own split, seed and side; a region is shaded and named only "
                     "where\nthe 95% interval shows the paper's effect", fontsize=8)
    bottom.set_xticks(range(0, 8))
    bottom.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    bottom.grid(alpha=0.3)
    _save(fig, out, f"{study}-fig2", written)
    plt.close(fig)
    return shown


def _own_bases(rows, metric) -> dict[tuple, float]:
    """(split, seed, target side) -> the top-1 of that usable base network."""
    return {(r.split, r.seed, r.target_side): r.value(metric) for r in rows
            if r.condition == "base" and r.usable and r.value(metric) is not None}


def plot_fig3(rows, study, metric, out, written, missing, plt) -> None:
    """Fig. 3: man-made/natural transfer, random frozen features, and both relative to their own
    bases beside the random-split transfer. Panels without networks are not drawn."""
    natman = [r for r in rows if r.split == "natman" and r.value(metric) is not None]
    nolearn = [r for r in rows if r.condition == "random_init" and r.value(metric) is not None]
    bases = _own_bases(rows, metric)
    if not natman:
        missing.append("fig3: no man-made/natural networks")
    if not nolearn:
        missing.append("fig3: no random-init networks")
    if not natman and not nolearn:
        return
    transfer = Pairs(rows, metric).differences("transfer", "base")
    by_n = defaultdict(list)
    for r in natman:
        own = bases.get(("natman", r.seed, r.target_side))
        if r.condition != "base" and r.usable and own is not None:
            by_n[int(r.n)].append(r.value(metric) - own)
    random_pairs = sorted((int(r.n), r.value(metric) - bases[key], r.usable) for r in nolearn
                          if (key := (r.split, r.seed, r.target_side)) in bases)
    relative = bool((natman or nolearn) and (by_n or random_pairs))
    panels = (["natman"] if natman else []) + (["random"] if nolearn else []) + (["relative"] if relative else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False)
    axes = dict(zip(panels, axes[0]))
    directions = (("A", "#2ca02c", "natural"), ("B", "#9467bd", "man-made"))
    if natman:
        ax = axes["natman"]
        for side, colour, kind in directions:
            own = [v for (split, _, target), v in bases.items() if split == "natman" and target == side]
            if own:
                ax.scatter([0] * len(own), own, color=colour, edgecolors="black", zorder=3)
            nets = [r for r in natman if r.condition != "base" and r.target_side == side]
            if nets:
                _scatter(ax, [int(r.n) for r in nets], [r.value(metric) for r in nets], [r.usable for r in nets], colour,
                         "D", f"transfer to side {side} ({kind}); its base at n=0")
        ax.set_title("man-made / natural split")
    if nolearn:
        ax = axes["random"]
        _scatter(ax, [int(r.n) for r in nolearn], [r.value(metric) for r in nolearn], [r.usable for r in nolearn],
                 "#8c564b", "s", "random, frozen layers 1..n")
        own = sorted({bases[key] for r in nolearn if (key := (r.split, r.seed, r.target_side)) in bases})
        if own:
            ax.scatter([0] * len(own), own, color="white", edgecolors="black", zorder=3, label="its base (same split, seed, side)")
        learned = [r for r in rows if r.condition == "selffer" and not int(r.fine_tune or 0) and r.usable
                   and r.value(metric) is not None
                   and any((r.split, r.seed, r.target_side, int(r.n)) == (q.split, q.seed, q.target_side, int(q.n)) for q in nolearn)]
        if learned:
            ax.scatter([int(r.n) for r in learned], [r.value(metric) for r in learned], color="#1f4fd8", marker="o",
                       label="learned, frozen layers 1..n (BnB)", zorder=3)
        ax.set_title("random-init frozen features")
    for name in ("natman", "random"):
        if name in axes:
            axes[name].set_xlabel("layer n")
            axes[name].set_ylabel("top-1 accuracy")
            axes[name].set_xticks(range(0, 8))
            axes[name].grid(alpha=0.3)
            axes[name].legend(fontsize=7)
    if relative:
        _relative_panel(axes["relative"], transfer, by_n, random_pairs, all(r.cross_dataset for r in rows))
    if any(not r.usable for r in natman + nolearn):
        fig.text(0.01, 0.01, UNUSABLE_LABEL, fontsize=7)
    fig.suptitle(study)
    fig.tight_layout()
    _save(fig, out, f"{study}-fig3", written)
    plt.close(fig)


def _relative_panel(rel, transfer, by_n, random_pairs, cross: bool = False) -> None:
    """Transfer on random splits (or to a cross-dataset target), on man-made/natural, and random frozen
    features, each relative to its own base."""
    if transfer:
        rel.plot([0, *transfer], [0, *(float(np.mean(v)) for v in transfer.values())], marker="D", color="#d62728",
                 label="AnB from the source (mean of pairs)" if cross else "AnB, random splits (mean of pairs)")
    if by_n:
        ns = sorted(by_n)
        rel.plot([0, *ns], [0, *(float(np.mean(by_n[n])) for n in ns)], marker="D", color="#2ca02c",
                 label="AnB, man-made/natural")
    if random_pairs:
        means = defaultdict(list)
        for n, value, ok in random_pairs:
            if ok:
                means[n].append(value)
        ns = sorted(means)
        rel.plot([0, *ns], [0, *(float(np.mean(means[n])) for n in ns)], color="#8c564b", lw=1)  # through the means
        _scatter(rel, [n for n, _, _ in random_pairs], [v for _, v, _ in random_pairs], [ok for _, _, ok in random_pairs],
                 "#8c564b", "s", "random features, frozen (each network; line: mean)")
    rel.axhline(0, color="black", lw=0.8, ls=":")
    rel.set_title("relative to each network's own base")
    rel.set_xlabel("layer n")
    rel.set_ylabel("top-1 minus its base's top-1")
    rel.set_xticks(range(0, 8))
    rel.grid(alpha=0.3)
    rel.legend(fontsize=7)


def plot_reduced(rows, study, metric, out, written, missing, plt) -> None:
    points = sorted((int(str(r.split)[len("reduced"):]), r.value(metric), r.usable) for r in rows
                    if str(r.split).startswith("reduced") and r.value(metric) is not None)
    if not points:
        missing.append("reduced: no reduced-data networks")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([k for k, _, _ in points], [v for _, v, _ in points], color="#1f77b4", lw=1)
    _scatter(ax, [k for k, _, _ in points], [v for _, v, _ in points], [ok for _, _, ok in points], "#1f77b4", "o",
             "base network, all classes")
    if not all(ok for _, _, ok in points):
        ax.scatter([], [], facecolors="none", edgecolors="grey", linestyles="--", label="hollow, dashed: stalled (at chance)")
    ax.legend(fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("training images per class")
    ax.set_ylabel("top-1 accuracy")
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
        ax.plot([n for n, _ in points], [v for _, v in points], marker="o", label=f"AnB, next {k} layers copied and fine-tuned")
    groups = group_values(rows, metric)
    if groups["transfer"]:
        ns, means = _means(groups, "transfer")
        ax.plot(ns, means, color="#d62728", ls="--", label="AnB (mean)")
    ax.set_xlabel("layers 1..n frozen")
    ax.set_ylabel("top-1 accuracy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, out, f"{study}-preserved", written)
    plt.close(fig)


def plot_all(rows: list[Row], out: Path, reference: list[Row] | None = None,
             metric: str = "top1_mean_best10", echo=print) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if metric not in ("top1_mean_best10", "top1_final"):
        raise UserError(f"unknown metric {metric!r}; choose top1_mean_best10 (the paper's) or top1_final")
    ensure_writable_dir(out)
    studies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        studies[row.study].append(row)
    if not studies:
        raise UserError("no rows to plot; collect a study first (`transferbench collect jobs/STUDY`)")
    written: list[Path] = []
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
            _plot_part(rows_of, name, name != study, reference, metric, out, written, echo, plt)
    return written



def _plot_part(all_rows: list[Row], study: str, cross: bool, reference, metric: str, out: Path, written: list[Path],
               echo, plt) -> None:
    """The figures and tables of one study, or of one target of a cross-dataset study (named ``study``)."""
    missing: list[str] = []
    without = sum(1 for r in all_rows if r.value(metric) is None)
    if without:
        missing.append(f"{without} of {len(all_rows)} networks have no {metric} (no log or no evaluation)")
    if any(is_developmental(r) for r in all_rows):
        plot_developmental(all_rows, study, metric, out, written, echo, plt)
    study_rows = [r for r in all_rows if not is_developmental(r)]
    shown: list[str] = []
    curves = not cross or any(int(r.n) for r in study_rows)  # a target with layers transferred: the paper's curves
    if curves:
        shown = plot_fig2(study_rows, None if cross else reference, study, metric, out, written, missing, plt)
        optional = [] if cross else missing  # a target has no man-made/natural split, and random-init or preserved by choice
        plot_fig3(study_rows, study, metric, out, written, optional, plt)
        plot_preserved(study_rows, study, metric, out, written, optional, plt)
    if not cross:
        plot_reduced(study_rows, study, metric, out, written, missing, plt)
    for name, table, pooled in (("boost", boost_table(study_rows, metric), False),
                                ("boost-pooled", pooled_boost_table(study_rows, metric), True)):
        if cross and not any(line["anb_plus_networks"] for line in table):
            continue  # a target without AnB+ below n = 7: no boost to read
        atomic_write_text(out / f"{study}-{name}.csv", table_csv(table))
        written.append(out / f"{study}-{name}.csv")
        echo(format_boost(table, study, pooled))
    if curves and any(group_values(study_rows, metric).values()):
        unseen = [name for name in EFFECTS if name not in shown]
        echo(f"  {study} fig2: " + (f"shaded and named: {', '.join(shown)}" if shown else "no effect of the paper's "
                                    "reading is shown by the 95% intervals")
             + (f"; not seen in these data (not shaded): {', '.join(unseen)}" if unseen and shown else ""))
    for line in health_lines(all_rows):
        echo(f"  {study}: {line}")
    for line in missing:
        echo(f"  missing in {study}: {line}")


MIN_SPAN = 0.2  # the least range of accuracy a bar panel shows


def _bars(ax, entries: list[tuple[str, list[float], list[float]]], reference_label: str, title: str,
          ylabel: str = "top-1 accuracy") -> None:
    """Mean (and 95% bootstrap interval) of each entry as a bar, and over each bar, dashed, the
    mean of its own reference values (the classic network of the same splits and seeds, or the
    source network before the transfer), so that no bar is read against another split's level."""
    has_reference = any(refs for _, _, refs in entries)
    ax.set_title(title + (f"\n(dashed: {reference_label})" if has_reference else ""), fontsize=9)
    means = [float(np.mean(v)) for _, v, _ in entries]
    errors = np.array([[m - lo, hi - m] if not np.isnan(lo) else [0, 0]
                       for m, (lo, hi) in zip(means, (bootstrap_ci(v) for _, v, _ in entries))]).T
    errors = np.clip(errors, 0.0, None)  # identical values: the interval is the mean, up to rounding
    ax.bar(range(len(entries)), means, yerr=errors, color="#ff9896", edgecolor="black", capsize=3, width=0.6)
    ax.set_xticks(range(len(entries)), [label for label, _, _ in entries], rotation=60, ha="right", fontsize=7)
    ax.set_xlim(-0.75, len(entries) - 0.25)
    values = [x for _, v, _ in entries for x in v]
    for position, (_, _, refs) in enumerate(entries):  # the reference is named in the title: no legend over the labels
        if refs:
            ax.hlines(float(np.mean(refs)), position - 0.4, position + 0.4, colors="#d62728", linestyles="--")
            values += refs
    # The axis spans at least 0.2 of accuracy, so that a difference of 0.02 between single
    # networks does not fill the panel; where it does not start at 0 the label says so.
    low, high = min(values), max(values)
    pad = 0.1 * max(high - low, MIN_SPAN)
    bottom = max(0.0, min(low, high - MIN_SPAN) - pad)
    ax.set_ylim(bottom, min(1.0, high + pad))
    ax.set_ylabel(ylabel + (f" (axis starts at {bottom:.2f})" if bottom > 0 else ""), fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def plot_developmental(rows, study, metric, out, written, echo, plt) -> None:
    table = developmental_table(rows, metric)
    atomic_write_text(out / f"{study}-developmental.csv", table_csv(table, None if table else ["network"]))
    written.append(out / f"{study}-developmental.csv")
    echo(format_developmental(table, study, metric))

    def entries(select, label=lambda name: name, order=lambda name: name) -> list[tuple[str, list[float], list[float]]]:
        return paired_entries(rows, metric, select, label, order)

    single = lambda r: not r.name.later_chain_step  # noqa: E731
    compared = {reference_network(str(r.network)) for r in rows if r.growth}  # the classic networks grown ones face
    transfer = lambda r: single(r) and r.growth and r.condition != "base"  # noqa: E731  (not a wide base)
    classic = "classic fine-tuning A7B+, same splits and seeds"
    nonorm = {str(r.network).removesuffix("-nonorm") for r in rows if str(r.network).endswith("-nonorm")}
    scope_order = {"new": 0, "fc7": 1, "fc6": 2}
    panels = [
        (entries(lambda r: transfer(r) and r.scope == "all" and (r.normalize == 1 or r.growth_mode == "wide")),
         classic, "target: variant and S (wide = as wide from the start)", "top-1 accuracy"),
        (entries(lambda r: transfer(r) and r.growth_mode == "grown" and r.scope == "all"
                 and str(r.network).removesuffix("-nonorm") in nonorm,
                 label=lambda name: name if name.endswith("-nonorm") else f"{name} norm+scale"),
         classic, "normalisation + scaling ablation", "top-1 accuracy"),
        (entries(lambda r: transfer(r) and r.growth_mode == "grown" and r.normalize == 1,
                 order=lambda name: (name.replace(f"-{parse_network(name).scope}", ""),
                                     scope_order.get(name.rsplit("-", 1)[-1], 3))),
         classic, "fine-tuning scope (new, fc7, fc6, all)", "top-1 accuracy"),
        (bar_entries(rows, lambda r: single(r) and (r.growth or r.network in compared),
                     lambda r: r.value("source_top1_after"), lambda r: r.value("source_top1_before")),
         "the source network before the transfer", "forgetting: source top-1 after transfer", "source top-1"),
        (entries(lambda r: not single(r), order=lambda name: (bool(reference_network(name)), name)),
         "the fixed network along the same chain", "chain of tasks: last task, grown at every step", "top-1 accuracy"),
    ]
    # A panel without networks is not drawn, nor one that repeats an earlier panel's bars.
    drawn: list[tuple] = []
    for panel in panels:
        if panel[0] and all(panel[0] != other[0] for other in drawn):
            drawn.append(panel)
    if not drawn:
        echo(f"  {study}: no developmental network has a value to draw; no developmental figure written")
        return
    fig, axes = plt.subplots(1, len(drawn), figsize=(4.4 * len(drawn) + 1, 5.2), squeeze=False)
    for ax, (bars, reference_label, title, ylabel) in zip(axes[0], drawn):
        _bars(ax, bars, reference_label, title, ylabel)
    fig.suptitle(f"{study}: developmental networks ({metric})", fontsize=10)
    fig.tight_layout()
    _save(fig, out, f"{study}-developmental", written)
    plt.close(fig)
