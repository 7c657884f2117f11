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

import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from transferbench.errors import UserError
from transferbench.fileio import atomic_write_bytes, atomic_write_text, ensure_writable_dir

GROUPS = {  # name -> (condition, fine_tune, label, colour, marker)
    "base": ("base", 0, "baseB (n=0)", "white", "o"),
    "selffer": ("selffer", 0, "selffer BnB", "#1f4fd8", "o"),
    "selffer+": ("selffer", 1, "selffer BnB$^+$", "#7fa3ff", "o"),
    "transfer": ("transfer", 0, "transfer AnB", "#d62728", "D"),
    "transfer+": ("transfer", 1, "transfer AnB$^+$", "#ff9896", "D"),
}
BOOT = 2000


def bootstrap_ci(values: list[float], seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean (networks resampled with replacement)."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), (BOOT, len(data)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _diff_ci(a: list[float], b: list[float], seed: int = 0) -> tuple[float, float]:
    if len(a) < 2 or len(b) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    a_, b_ = np.asarray(a), np.asarray(b)
    diffs = a_[rng.integers(0, len(a_), (BOOT, len(a_)))].mean(1) - b_[rng.integers(0, len(b_), (BOOT, len(b_)))].mean(1)
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def _value(row: dict[str, Any], metric: str) -> float | None:
    value = row.get(metric)
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else float(value)


def _random(rows):
    return [r for r in rows if str(r["split"]).startswith("random") or str(r["split"]).startswith("stratified")]


def is_developmental(row: dict[str, Any]) -> bool:
    """A grown or wide network, or a later step of a chain of transfers (A7B7C+)."""
    return bool(row.get("growth")) or bool(re.match(r"[A-Z](?:7[A-Z]){2,}\+", str(row["network"])))


def group_values(rows: list[dict[str, Any]], metric: str) -> dict[str, dict[int, list[float]]]:
    """{group: {n: [values]}} on the random (or stratified) splits."""
    out: dict[str, dict[int, list[float]]] = {g: defaultdict(list) for g in GROUPS}
    for row in _random(rows):
        value = _value(row, metric)
        if value is None or is_developmental(row):
            continue
        for name, (condition, fine_tune, *_rest) in GROUPS.items():
            if row["condition"] == condition and int(row["fine_tune"] or 0) == fine_tune:
                out[name][int(row["n"])].append(value)
    return out


def boost_table(rows: list[dict[str, Any]], metric: str = "top1_mean_best10") -> list[dict[str, Any]]:
    """Mean top-1 of AnB+ over n-ranges minus the bases' mean, and minus BnB+ over the same n."""
    groups = group_values(rows, metric)
    bases = groups["base"].get(0, [])
    table = []
    for low in (1, 3, 5):
        plus = [v for n in range(low, 8) for v in groups["transfer+"].get(n, [])]
        selffer = [v for n in range(low, 8) for v in groups["selffer+"].get(n, [])]
        row = {"layers": f"{low}-7", "anb_plus_networks": len(plus), "anb_plus_mean": np.mean(plus) if plus else None}
        row["vs_base"] = np.mean(plus) - np.mean(bases) if plus and bases else None
        row["vs_base_ci_low"], row["vs_base_ci_high"] = _diff_ci(plus, bases)
        row["vs_selffer_plus"] = np.mean(plus) - np.mean(selffer) if plus and selffer else None
        row["vs_selffer_plus_ci_low"], row["vs_selffer_plus_ci_high"] = _diff_ci(plus, selffer)
        row["base_networks"], row["selffer_plus_networks"] = len(bases), len(selffer)
        table.append(row)
    return table


def format_boost(table: list[dict[str, Any]], study: str) -> str:
    def fmt(value, low, high):
        if value is None:
            return "     n/a              "
        interval = f"[{low:+.3f}, {high:+.3f}]" if not np.isnan(low) else "[   n/a   ]"
        return f"{value:+.3f} {interval}"

    lines = [f"lingering boost, {study} (mean of AnB+ minus mean of ...; 95% bootstrap interval)",
             f"  {'layers':7s} {'AnB+ nets':>9s}  {'vs base networks':24s} {'vs BnB+ (same n)':24s}"]
    for row in table:
        lines.append(f"  {row['layers']:7s} {row['anb_plus_networks']:9d}  "
                     f"{fmt(row['vs_base'], row['vs_base_ci_low'], row['vs_base_ci_high']):24s} "
                     f"{fmt(row['vs_selffer_plus'], row['vs_selffer_plus_ci_low'], row['vs_selffer_plus_ci_high']):24s}")
    return "\n".join(lines)


def _save(fig, out: Path, name: str, written: list[Path]) -> None:
    import io

    for suffix in ("png", "pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix, dpi=150, bbox_inches="tight")
        atomic_write_bytes(out / f"{name}.{suffix}", buffer.getvalue())
        written.append(out / f"{name}.{suffix}")


def _means(groups, name):
    ns = sorted(groups[name])
    return ns, [float(np.mean(groups[name][n])) for n in ns]


def plot_fig2(rows, reference, study, metric, out, written, missing, plt) -> None:
    groups = group_values(rows, metric)
    present = [g for g in GROUPS if groups[g]]
    if not present:
        missing.append("fig2: no networks on random splits")
        return
    for name in GROUPS:
        if not groups[name]:
            missing.append(f"fig2: no {GROUPS[name][2].replace('$^+$', '+')} networks")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 9), sharex=True)
    offsets = {"base": 0, "selffer": -0.15, "selffer+": -0.05, "transfer": 0.05, "transfer+": 0.15}
    for name in GROUPS:
        _, _, label, colour, marker = GROUPS[name]
        xs = [n + offsets[name] for n, vals in groups[name].items() for _ in vals]
        ys = [v for vals in groups[name].values() for v in vals]
        if ys:
            top.scatter(xs, ys, s=28, marker=marker, facecolors=colour, edgecolors="black" if name == "base" else colour,
                        linewidths=0.8, label=label, zorder=3)
    if reference:
        ref = group_values(reference, metric)
        for name in GROUPS:
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
    for name in GROUPS:
        if not groups[name]:
            continue
        ns, means = _means(groups, name)
        if name != "base" and base_mean is not None:
            ns, means = [0, *ns], [base_mean, *means]
        series[name] = dict(zip(ns, means))
        intervals = [bootstrap_ci(groups[name][n]) if n in groups[name] else (np.nan, np.nan) for n in ns]
        low = [m - lo for m, (lo, _) in zip(means, intervals)]
        high = [hi - m for m, (_, hi) in zip(means, intervals)]
        _, _, label, colour, marker = GROUPS[name]
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
    natman = [r for r in rows if r["split"] == "natman" and _value(r, metric) is not None]
    nolearn = [r for r in rows if r["condition"] == "random_init" and _value(r, metric) is not None]
    full_base = [_value(r, metric) for r in rows if r["split"] == "all" and r["condition"] == "base"
                 and _value(r, metric) is not None]
    groups = group_values(rows, metric)
    if not natman:
        missing.append("fig3: no man-made/natural networks")
    if not nolearn:
        missing.append("fig3: no random-init networks")
    if not natman and not nolearn:
        return
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    natman_base = {r["target_side"]: _value(r, metric) for r in natman if r["condition"] == "base"}
    for direction, colour in (("A", "#2ca02c"), ("B", "#9467bd")):
        nets = [r for r in natman if r["condition"] != "base" and r["target_side"] == direction]
        if direction in natman_base:
            axes[0].scatter([0], [natman_base[direction]], color=colour, edgecolors="black", zorder=3)
        axes[0].scatter([int(r["n"]) for r in nets], [_value(r, metric) for r in nets], color=colour, marker="D",
                        label=f"transfer to side {direction}" + (" (natural)" if direction == "A" else " (man-made)"))
    axes[0].set_title("man-made / natural split")
    axes[1].scatter([int(r["n"]) for r in nolearn], [_value(r, metric) for r in nolearn], color="#8c564b", marker="s",
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
            if r["condition"] != "base" and r["target_side"] in natman_base:
                by_n[int(r["n"])].append(_value(r, metric) - natman_base[r["target_side"]])
        ns = sorted(by_n)
        rel.plot([0, *ns], [0, *[float(np.mean(by_n[n])) for n in ns]], marker="D", color="#2ca02c",
                 label="AnB, man-made/natural")
    if nolearn and full_base:
        base = float(np.mean(full_base))
        pairs = sorted((int(r["n"]), _value(r, metric) - base) for r in nolearn)
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
    points = sorted((int(str(r["split"])[len("reduced"):]), _value(r, metric)) for r in rows
                    if str(r["split"]).startswith("reduced") and _value(r, metric) is not None)
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
    preserved = [r for r in rows if r["condition"] == "preserved" and _value(r, metric) is not None]
    if not preserved:
        missing.append("preserved: no preserved-layers networks")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    by_k = defaultdict(list)
    for r in preserved:
        match = re.search(r"\^(\d+)", str(r["network"]))
        by_k[int(match.group(1)) if match else 0].append((int(r["n"]), _value(r, metric)))
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


def plot_all(rows: list[dict[str, Any]], out: Path, reference: list[dict[str, Any]] | None = None,
             metric: str = "top1_mean_best10", echo=print) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if metric not in ("top1_mean_best10", "top1_final"):
        raise UserError(f"unknown metric {metric!r}; choose top1_mean_best10 (the paper's) or top1_final")
    ensure_writable_dir(out)
    studies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        studies[row["study"]].append(row)
    if not studies:
        raise UserError("no rows to plot; collect a study first (`transferbench collect jobs/STUDY`)")
    written: list[Path] = []
    for study, all_rows in studies.items():
        missing: list[str] = []
        without = sum(1 for r in all_rows if _value(r, metric) is None)
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
        header = list(table[0])
        lines = [",".join(header)] + [",".join("" if row[h] is None else (f"{row[h]:.6g}" if isinstance(row[h], float)
                                                                           else str(row[h])) for h in header) for row in table]
        atomic_write_text(out / f"{study}-boost.csv", "\n".join(lines) + "\n")
        written.append(out / f"{study}-boost.csv")
        echo(format_boost(table, study))
        for line in missing:
            echo(f"  missing in {study}: {line}")
    return written


# ---------------------------------------------------------------------------- developmental networks

def reference_network(network: str) -> str | None:
    """The classic network a developmental one is compared with: A7B+WA128-fc7 -> A7B+,
    A7B7C+WA128 -> A7B7C+, baseB-WA128 -> baseB; None for a classic network."""
    match = re.fullmatch(r"(base[A-Z]?|[A-Z](?:7[A-Z])+\+)((?:DA|WA|DWA|WWA)\d+.*|-(?:DA|WA|DWA|WWA)\d+.*)", network)
    return match.group(1) if match else None


def developmental_table(rows: list[dict[str, Any]], metric: str = "top1_mean_best10") -> list[dict[str, Any]]:
    """One line per network name (over splits and seeds): top-1, the paired difference from its
    classic reference with a 95% bootstrap interval, and the source accuracy before and after."""
    by_key = {(r["split"], r["network"], r["seed"]): r for r in rows}
    all_names = [str(n) for n in dict.fromkeys(r["network"] for r in rows)]
    references = {reference_network(n) for n in all_names} - {None}
    names = [n for n in all_names if reference_network(n) or n in references or re.fullmatch(r"[A-Z](?:7[A-Z]){2,}\+", n)]
    table = []
    for name in names:
        members = [r for r in rows if r["network"] == name and _value(r, metric) is not None]
        if not members:
            continue
        reference = reference_network(name)
        pairs = [(_value(r, metric), paired) for r in members
                 if (paired := _paired_value(by_key, r, metric)) is not None]
        diffs = [a - b for a, b in pairs]
        low, high = bootstrap_ci(diffs) if diffs else (float("nan"), float("nan"))
        before = [_value(r, "source_top1_before") for r in members if _value(r, "source_top1_before") is not None]
        after = [_value(r, "source_top1_after") for r in members if _value(r, "source_top1_after") is not None]
        first = members[0]
        table.append({"network": name, "growth": first.get("growth") or "", "growth_mode": first.get("growth_mode") or "",
                      "scope": first.get("scope") or "", "normalize": first.get("normalize"), "networks": len(members),
                      "top1": float(np.mean([_value(r, metric) for r in members])), "reference": reference or "",
                      "vs_reference": float(np.mean(diffs)) if diffs else None, "ci_low": low, "ci_high": high,
                      "source_top1_before": float(np.mean(before)) if before else None,
                      "source_top1_after": float(np.mean(after)) if after else None})
    return table


def format_developmental(table: list[dict[str, Any]], study: str, metric: str) -> str:
    lines = [f"developmental networks, {study} ({metric}; difference from the classic network of the same split "
             "and seed, 95% bootstrap interval; source top-1 before -> after)",
             f"  {'network':24s} {'nets':>4s} {'top-1':>7s}  {'vs classic':26s} {'source top-1':>16s}"]
    for row in table:
        if row["vs_reference"] is None:
            versus = "(classic)" if not row["reference"] else f"no {row['reference']} to pair with"
        else:
            interval = f" [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]" if not np.isnan(row["ci_low"]) else ""
            versus = f"{row['vs_reference']:+.3f} vs {row['reference']}{interval}"
        source = (f"{row['source_top1_before']:.3f} -> {row['source_top1_after']:.3f}"
                  if row["source_top1_after"] is not None else "")
        lines.append(f"  {row['network']:24s} {row['networks']:4d} {row['top1']:7.4f}  {versus:26s} {source:>16s}")
    return "\n".join(lines)


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


def _paired_value(by_key: dict[tuple, dict[str, Any]], row: dict[str, Any], metric: str) -> float | None:
    """``metric`` of the classic network ``row`` is compared with, on the same split and seed."""
    paired = by_key.get((row["split"], reference_network(str(row["network"])), row["seed"]))
    return _value(paired, metric) if paired is not None else None


def bar_entries(rows: list[dict[str, Any]], select: Callable[[dict[str, Any]], Any],
                value: Callable[[dict[str, Any]], float | None], reference: Callable[[dict[str, Any]], float | None],
                label: Callable[[str], str] = lambda name: name,
                order: Callable[[str], Any] = lambda name: name) -> list[tuple[str, list[float], list[float]]]:
    """(label, values, reference values) per network of the selected rows: a bar and, row by
    row, the level to read it against."""
    grouped: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for r in rows:
        if select(r) and value(r) is not None:
            values, references = grouped[str(r["network"])]
            values.append(value(r))
            if reference(r) is not None:
                references.append(reference(r))
    return [(label(name), *grouped[name]) for name in sorted(grouped, key=order)]


def paired_entries(rows: list[dict[str, Any]], metric: str, select: Callable[[dict[str, Any]], Any],
                   label: Callable[[str], str] = lambda name: name,
                   order: Callable[[str], Any] = lambda name: name) -> list[tuple[str, list[float], list[float]]]:
    """Bars of ``metric``, each read against its classic reference network on the same splits and seeds."""
    by_key = {(r["split"], r["network"], r["seed"]): r for r in rows}
    return bar_entries(rows, select, lambda r: _value(r, metric), lambda r: _paired_value(by_key, r, metric), label, order)


def plot_developmental(rows, study, metric, out, written, echo, plt) -> None:
    table = developmental_table(rows, metric)
    header = list(table[0]) if table else ["network"]
    lines = [",".join(header)] + [",".join("" if row[h] is None else (f"{row[h]:.6g}" if isinstance(row[h], float)
                                                                       else str(row[h])) for h in header) for row in table]
    atomic_write_text(out / f"{study}-developmental.csv", "\n".join(lines) + "\n")
    written.append(out / f"{study}-developmental.csv")
    echo(format_developmental(table, study, metric))

    def entries(select, label=lambda name: name, order=lambda name: name) -> list[tuple[str, list[float], list[float]]]:
        return paired_entries(rows, metric, select, label, order)

    single = lambda r: not re.match(r"[A-Z](?:7[A-Z]){2,}", str(r["network"]))  # noqa: E731  (not a chain's later step)
    transfer = lambda r: single(r) and r.get("growth") and str(r["network"])[0] != "b"  # noqa: E731  (not a wide base)
    classic = "classic fine-tuning A7B+, same splits and seeds"
    fig, axes = plt.subplots(1, 5, figsize=(22, 4.6))
    _bars(axes[0], entries(lambda r: transfer(r) and r.get("scope") == "all"
                           and (r.get("normalize") == 1 or r.get("growth_mode") == "wide")),
          classic, "target: variant and S (wide = as wide from the start)")
    nonorm = {str(r["network"]).removesuffix("-nonorm") for r in rows if str(r["network"]).endswith("-nonorm")}
    _bars(axes[1], entries(lambda r: transfer(r) and r.get("growth_mode") == "grown" and r.get("scope") == "all"
                           and str(r["network"]).removesuffix("-nonorm") in nonorm,
                           label=lambda name: name if name.endswith("-nonorm") else f"{name} norm+scale"),
          classic, "normalisation + scaling ablation")
    scope_order = {"new": 0, "fc7": 1, "fc6": 2}
    _bars(axes[2], entries(lambda r: transfer(r) and r.get("growth_mode") == "grown" and r.get("normalize") == 1,
                           order=lambda name: (re.sub(r"-(new|fc7|fc6)", "", name), scope_order.get(name.rsplit("-", 1)[-1], 3))),
          classic, "fine-tuning scope (new, fc7, fc6, all)")
    _bars(axes[3], bar_entries(rows, single, lambda r: _value(r, "source_top1_after"), lambda r: _value(r, "source_top1_before")),
          "the source network before the transfer", "forgetting: source top-1 after transfer", "source top-1")
    _bars(axes[4], entries(lambda r: not single(r), order=lambda name: (bool(reference_network(name)), name)),
          "the fixed network along the same chain", "chain of tasks: last task, grown at every step")
    fig.suptitle(f"{study}: developmental networks ({metric})", fontsize=10)
    fig.tight_layout()
    _save(fig, out, f"{study}-developmental", written)
    plt.close(fig)
