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

from transferbench.analysis.results import table_csv
from transferbench.analysis.stats import (_means, bar_entries, boost_table, bootstrap_ci, developmental_table,
                                          format_boost, format_developmental, group_values, is_developmental,
                                          paired_entries, reference_network)
from transferbench.errors import UserError
from transferbench.fileio import atomic_write_bytes, atomic_write_text, ensure_writable_dir
from transferbench.schema.notation import parse_network
from transferbench.schema.record import Row

STYLES = {  # group -> (label, colour, marker)
    "base": ("baseB (n=0)", "white", "o"),
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


def plot_fig2(rows, reference, study, metric, out, written, missing, plt) -> None:
    groups = group_values(rows, metric)
    present = [g for g in STYLES if groups[g]]
    if not present:
        missing.append("fig2: no networks on random splits")
        return
    for name in STYLES:
        if not groups[name]:
            missing.append(f"fig2: no {STYLES[name][0].replace('$^+$', '+')} networks")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 9), sharex=True)
    offsets = {"base": 0, "selffer": -0.15, "selffer+": -0.05, "transfer": 0.05, "transfer+": 0.15}
    for name in STYLES:
        label, colour, marker = STYLES[name]
        xs = [n + offsets[name] for n, vals in groups[name].items() for _ in vals]
        ys = [v for vals in groups[name].values() for v in vals]
        if ys:
            top.scatter(xs, ys, s=28, marker=marker, facecolors=colour, edgecolors="black" if name == "base" else colour,
                        linewidths=0.8, label=label, zorder=3)
    if reference:
        ref = group_values(reference, metric)
        for name in STYLES:
            if ref[name]:
                ns, means = _means(ref, name)
                top.plot(ns, means, color="grey", lw=1, ls="--", zorder=1)
        top.plot([], [], color="grey", ls="--", label="published means (Yosinski et al.)")
    top.set_ylabel("top-1 accuracy (higher is better)")
    top.set_title(f"{study}: transfer of layers 1..n (one marker per network)")
    top.legend(fontsize=8, loc="lower left")
    top.grid(alpha=0.3)

    base_mean = float(np.mean(groups["base"][0])) if groups["base"].get(0) else None
    series = {}
    for name in STYLES:
        if not groups[name]:
            continue
        ns, means = _means(groups, name)
        if name != "base" and base_mean is not None:
            ns, means = [0, *ns], [base_mean, *means]
        series[name] = dict(zip(ns, means))
        intervals = [bootstrap_ci(groups[name][n]) if n in groups[name] else (np.nan, np.nan) for n in ns]
        low = [m - lo for m, (lo, _) in zip(means, intervals)]
        high = [hi - m for m, (_, hi) in zip(means, intervals)]
        label, colour, marker = STYLES[name]
        bottom.errorbar(ns, means, yerr=[np.nan_to_num(low), np.nan_to_num(high)], color="black" if name == "base" else colour,
                        marker=marker, ms=4, lw=1.5, capsize=2, label=label)

    def shade(lower, upper, colour, text, where):
        if lower in series and upper in series:
            ns = sorted(set(series[lower]) & set(series[upper]))
            a = [series[lower][n] for n in ns]
            b = [series[upper][n] for n in ns]
            bottom.fill_between(ns, a, b, color=colour, alpha=0.18, lw=0)
            if ns:
                n = ns[min(where, len(ns) - 1)]
                bottom.annotate(text, (n, (series[lower][n] + series[upper][n]) / 2), fontsize=7, ha="center")

    if base_mean is not None:
        series["base-line"] = dict.fromkeys(range(0, 8), base_mean)
        bottom.axhline(base_mean, color="black", lw=0.8, ls=":")
    shade("selffer", "base-line", "#1f4fd8", "co-adaptation\nloss", 4)
    shade("transfer", "selffer", "#d62728", "specificity", 6)
    shade("selffer", "selffer+", "#2ca02c", "fine-tuning\nrecovers", 5)
    shade("base-line", "transfer+", "#ff7f0e", "lingering\nboost", 2)
    bottom.set_xlabel("layer n at which the network is chopped and retrained")
    bottom.set_ylabel("mean top-1 (95% bootstrap interval)")
    bottom.set_xticks(range(0, 8))
    bottom.legend(fontsize=8, loc="lower left")
    bottom.grid(alpha=0.3)
    _save(fig, out, f"{study}-fig2", written)
    plt.close(fig)


def plot_fig3(rows, study, metric, out, written, missing, plt) -> None:
    natman = [r for r in rows if r.split == "natman" and r.value(metric) is not None]
    nolearn = [r for r in rows if r.condition == "random_init" and r.value(metric) is not None]
    full_base = [r.value(metric) for r in rows if r.split == "all" and r.condition == "base"
                 and r.value(metric) is not None]
    groups = group_values(rows, metric)
    if not natman:
        missing.append("fig3: no man-made/natural networks")
    if not nolearn:
        missing.append("fig3: no random-init networks")
    if not natman and not nolearn:
        return
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    natman_base = {r.target_side: r.value(metric) for r in natman if r.condition == "base"}
    for direction, colour in (("A", "#2ca02c"), ("B", "#9467bd")):
        nets = [r for r in natman if r.condition != "base" and r.target_side == direction]
        if direction in natman_base:
            axes[0].scatter([0], [natman_base[direction]], color=colour, edgecolors="black", zorder=3)
        axes[0].scatter([int(r.n) for r in nets], [r.value(metric) for r in nets], color=colour, marker="D",
                        label=f"transfer to side {direction}" + (" (natural)" if direction == "A" else " (man-made)"))
    axes[0].set_title("man-made / natural split")
    axes[1].scatter([int(r.n) for r in nolearn], [r.value(metric) for r in nolearn], color="#8c564b", marker="s",
                    label="random, frozen layers 1..n")
    if full_base:
        axes[1].scatter([0] * len(full_base), full_base, color="white", edgecolors="black", label="base (all classes)", zorder=3)
    axes[1].set_title("random-init frozen features")
    for ax in axes[:2]:
        ax.set_xlabel("layer n")
        ax.set_ylabel("top-1 accuracy")
        ax.set_xticks(range(0, 8))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    # All three relative to their base networks.
    rel = axes[2]
    if groups["transfer"] and groups["base"].get(0):
        base = float(np.mean(groups["base"][0]))
        ns, means = _means(groups, "transfer")
        rel.plot([0, *ns], [0, *[m - base for m in means]], marker="D", color="#d62728", label="AnB, random splits")
    if natman and natman_base:
        by_n = defaultdict(list)
        for r in natman:
            if r.condition != "base" and r.target_side in natman_base:
                by_n[int(r.n)].append(r.value(metric) - natman_base[r.target_side])
        ns = sorted(by_n)
        rel.plot([0, *ns], [0, *[float(np.mean(by_n[n])) for n in ns]], marker="D", color="#2ca02c",
                 label="AnB, man-made/natural")
    if nolearn and full_base:
        base = float(np.mean(full_base))
        pairs = sorted((int(r.n), r.value(metric) - base) for r in nolearn)
        rel.plot([0, *[n for n, _ in pairs]], [0, *[v for _, v in pairs]], marker="s", color="#8c564b",
                 label="random features, frozen")
    rel.set_title("relative to the base network")
    rel.set_xlabel("layer n")
    rel.set_ylabel("top-1 minus base top-1")
    rel.set_xticks(range(0, 8))
    rel.grid(alpha=0.3)
    rel.legend(fontsize=8)
    fig.suptitle(study)
    _save(fig, out, f"{study}-fig3", written)
    plt.close(fig)


def plot_reduced(rows, study, metric, out, written, missing, plt) -> None:
    points = sorted((int(str(r.split)[len("reduced"):]), r.value(metric)) for r in rows
                    if str(r.split).startswith("reduced") and r.value(metric) is not None)
    if not points:
        missing.append("reduced: no reduced-data networks")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([k for k, _ in points], [v for _, v in points], marker="o")
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
        missing: list[str] = []
        without = sum(1 for r in all_rows if r.value(metric) is None)
        if without:
            missing.append(f"{without} of {len(all_rows)} networks have no {metric} (no log or no evaluation)")
        if any(is_developmental(r) for r in all_rows):
            plot_developmental(all_rows, study, metric, out, written, echo, plt)
        study_rows = [r for r in all_rows if not is_developmental(r)]
        plot_fig2(study_rows, reference, study, metric, out, written, missing, plt)
        plot_fig3(study_rows, study, metric, out, written, missing, plt)
        plot_reduced(study_rows, study, metric, out, written, missing, plt)
        plot_preserved(study_rows, study, metric, out, written, missing, plt)
        table = boost_table(study_rows, metric)
        atomic_write_text(out / f"{study}-boost.csv", table_csv(table))
        written.append(out / f"{study}-boost.csv")
        echo(format_boost(table, study))
        for line in missing:
            echo(f"  missing in {study}: {line}")
    return written


MIN_SPAN = 0.2  # the least range of accuracy a bar panel shows


def _bars(ax, entries: list[tuple[str, list[float], list[float]]], reference_label: str, title: str,
          ylabel: str = "top-1 accuracy") -> None:
    """Mean (and 95% bootstrap interval) of each entry as a bar, and over each bar, dashed, the
    mean of its own reference values (the classic network of the same splits and seeds, or the
    source network before the transfer), so that no bar is read against another split's level."""
    ax.set_title(title, fontsize=9)
    if not entries:
        ax.text(0.5, 0.5, "no networks of this kind", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        ax.set_xticks([])
        return
    means = [float(np.mean(v)) for _, v, _ in entries]
    errors = np.array([[m - lo, hi - m] if not np.isnan(lo) else [0, 0]
                       for m, (lo, hi) in zip(means, (bootstrap_ci(v) for _, v, _ in entries))]).T
    ax.bar(range(len(entries)), means, yerr=errors, color="#ff9896", edgecolor="black", capsize=3)
    ax.set_xticks(range(len(entries)), [label for label, _, _ in entries], rotation=60, ha="right", fontsize=7)
    values = [x for _, v, _ in entries for x in v]
    labelled = False
    for position, (_, _, refs) in enumerate(entries):
        if refs:
            ax.hlines(float(np.mean(refs)), position - 0.45, position + 0.45, colors="#d62728", linestyles="--",
                      label=None if labelled else reference_label)
            labelled = True
            values += refs
    if labelled:
        ax.legend(fontsize=7, loc="lower right")
    # The axis spans at least 0.2 of accuracy, so that a difference of 0.02 between single
    # networks does not fill the panel.
    low, high = min(values), max(values)
    pad = 0.1 * max(high - low, MIN_SPAN)
    ax.set_ylim(max(0.0, min(low, high - MIN_SPAN) - pad), min(1.0, high + pad))
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def plot_developmental(rows, study, metric, out, written, echo, plt) -> None:
    table = developmental_table(rows, metric)
    atomic_write_text(out / f"{study}-developmental.csv", table_csv(table, None if table else ["network"]))
    written.append(out / f"{study}-developmental.csv")
    echo(format_developmental(table, study, metric))

    def entries(select, label=lambda name: name, order=lambda name: name) -> list[tuple[str, list[float], list[float]]]:
        return paired_entries(rows, metric, select, label, order)

    single = lambda r: not r.name.later_chain_step  # noqa: E731
    transfer = lambda r: single(r) and r.growth and r.condition != "base"  # noqa: E731  (not a wide base)
    classic = "classic fine-tuning A7B+, same splits and seeds"
    fig, axes = plt.subplots(1, 5, figsize=(22, 4.6))
    _bars(axes[0], entries(lambda r: transfer(r) and r.scope == "all"
                           and (r.normalize == 1 or r.growth_mode == "wide")),
          classic, "target: variant and S (wide = as wide from the start)")
    nonorm = {str(r.network).removesuffix("-nonorm") for r in rows if str(r.network).endswith("-nonorm")}
    _bars(axes[1], entries(lambda r: transfer(r) and r.growth_mode == "grown" and r.scope == "all"
                           and str(r.network).removesuffix("-nonorm") in nonorm,
                           label=lambda name: name if name.endswith("-nonorm") else f"{name} norm+scale"),
          classic, "normalisation + scaling ablation")
    scope_order = {"new": 0, "fc7": 1, "fc6": 2}
    _bars(axes[2], entries(lambda r: transfer(r) and r.growth_mode == "grown" and r.normalize == 1,
                           order=lambda name: (name.replace(f"-{parse_network(name).scope}", ""), scope_order.get(name.rsplit("-", 1)[-1], 3))),
          classic, "fine-tuning scope (new, fc7, fc6, all)")
    _bars(axes[3], bar_entries(rows, single, lambda r: r.value("source_top1_after"), lambda r: r.value("source_top1_before")),
          "the source network before the transfer", "forgetting: source top-1 after transfer", "source top-1")
    _bars(axes[4], entries(lambda r: not single(r), order=lambda name: (bool(reference_network(name)), name)),
          "the fixed network along the same chain", "chain of tasks: last task, grown at every step")
    fig.suptitle(f"{study}: developmental networks ({metric})", fontsize=10)
    fig.tight_layout()
    _save(fig, out, f"{study}-developmental", written)
    plt.close(fig)
