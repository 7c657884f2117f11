"""Statistics of results rows: the paper's per-layer groups, bootstrap intervals, the
lingering-boost table, and the developmental table (each grown network paired with the
classic network of its split and seed). No drawing here: ``figures`` draws these.

Bootstrap intervals come from ``scipy.stats.bootstrap`` (percentile method, 2000 resamples,
a seeded generator, so a table is the same every time it is made).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

import numpy as np
from scipy import stats

from transferbench.schema.notation import parse_network
from transferbench.schema.record import Row

# The paper's groups of Fig. 2: name -> (condition, fine_tune)
GROUPS = {"base": ("base", 0), "selffer": ("selffer", 0), "selffer+": ("selffer", 1), "transfer": ("transfer", 0),
          "transfer+": ("transfer", 1)}
BOOT = 2000


def bootstrap_ci(values: list[float], seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean (networks resampled with replacement); NaN for fewer than 2."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2 or np.ptp(data) == 0:
        return (float("nan"), float("nan")) if len(data) < 2 else (float(data[0]), float(data[0]))
    result = stats.bootstrap((data,), np.mean, n_resamples=BOOT, method="percentile", vectorized=True,
                             random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def diff_ci(a: list[float], b: list[float], seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of mean(a) - mean(b), each group resampled on its own."""
    if len(a) < 2 or len(b) < 2:
        return float("nan"), float("nan")
    result = stats.bootstrap((np.asarray(a, dtype=float), np.asarray(b, dtype=float)),
                             lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis), n_resamples=BOOT,
                             method="percentile", vectorized=True, random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    if np.isnan(low):  # every resample gave the same difference
        low = high = float(np.mean(a) - np.mean(b))
    return float(low), float(high)


def _random(rows: list[Row]) -> list[Row]:
    return [r for r in rows if str(r.split).startswith("random") or str(r.split).startswith("stratified")]


def is_developmental(row: Row) -> bool:
    """A grown or wide network, or a later step of a chain of transfers (A7B7C+)."""
    return bool(row.growth) or row.name.developmental


def group_values(rows: list[Row], metric: str) -> dict[str, dict[int, list[float]]]:
    """{group: {n: [values]}} on the random (or stratified) splits."""
    out: dict[str, dict[int, list[float]]] = {g: defaultdict(list) for g in GROUPS}
    for row in _random(rows):
        value = row.value(metric)
        if value is None or is_developmental(row):
            continue
        for name, (condition, fine_tune, *_rest) in GROUPS.items():
            if row.condition == condition and int(row.fine_tune or 0) == fine_tune:
                out[name][int(row.n)].append(value)
    return out


def boost_table(rows: list[Row], metric: str = "top1_mean_best10") -> list[Row]:
    """Mean top-1 of AnB+ over n-ranges minus the bases' mean, and minus BnB+ over the same n."""
    groups = group_values(rows, metric)
    bases = groups["base"].get(0, [])
    table = []
    for low in (1, 3, 5):
        plus = [v for n in range(low, 8) for v in groups["transfer+"].get(n, [])]
        selffer = [v for n in range(low, 8) for v in groups["selffer+"].get(n, [])]
        row = {"layers": f"{low}-7", "anb_plus_networks": len(plus), "anb_plus_mean": np.mean(plus) if plus else None}
        row["vs_base"] = np.mean(plus) - np.mean(bases) if plus and bases else None
        row["vs_base_ci_low"], row["vs_base_ci_high"] = diff_ci(plus, bases)
        row["vs_selffer_plus"] = np.mean(plus) - np.mean(selffer) if plus and selffer else None
        row["vs_selffer_plus_ci_low"], row["vs_selffer_plus_ci_high"] = diff_ci(plus, selffer)
        row["base_networks"], row["selffer_plus_networks"] = len(bases), len(selffer)
        table.append(row)
    return table


def format_boost(table: list[Row], study: str) -> str:
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


def _means(groups, name):
    ns = sorted(groups[name])
    return ns, [float(np.mean(groups[name][n])) for n in ns]


def reference_network(network: str) -> str | None:
    """The classic network a developmental one is compared with (see NetworkName.classic_reference)."""
    return parse_network(network).classic_reference


def developmental_table(rows: list[Row], metric: str = "top1_mean_best10") -> list[Row]:
    """One line per network name (over splits and seeds): top-1, the paired difference from its
    classic reference with a 95% bootstrap interval, and the source accuracy before and after."""
    by_key = {(r.split, r.network, r.seed): r for r in rows}
    all_names = [str(n) for n in dict.fromkeys(r.network for r in rows)]
    references = {reference_network(n) for n in all_names} - {None}
    names = [n for n in all_names if reference_network(n) or n in references or parse_network(n).later_chain_step]
    table = []
    for name in names:
        members = [r for r in rows if r.network == name and r.value(metric) is not None]
        if not members:
            continue
        reference = reference_network(name)
        pairs = [(r.value(metric), paired) for r in members
                 if (paired := _paired_value(by_key, r, metric)) is not None]
        diffs = [a - b for a, b in pairs]
        low, high = bootstrap_ci(diffs) if diffs else (float("nan"), float("nan"))
        before = [r.value("source_top1_before") for r in members if r.value("source_top1_before") is not None]
        after = [r.value("source_top1_after") for r in members if r.value("source_top1_after") is not None]
        first = members[0]
        table.append({"network": name, "growth": first.growth or "", "growth_mode": first.growth_mode or "",
                      "scope": first.scope or "", "normalize": first.normalize, "networks": len(members),
                      "top1": float(np.mean([r.value(metric) for r in members])), "reference": reference or "",
                      "vs_reference": float(np.mean(diffs)) if diffs else None, "ci_low": low, "ci_high": high,
                      "source_top1_before": float(np.mean(before)) if before else None,
                      "source_top1_after": float(np.mean(after)) if after else None})
    return table


def format_developmental(table: list[Row], study: str, metric: str) -> str:
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


def _paired_value(by_key: dict[tuple, Row], row: Row, metric: str) -> float | None:
    """``metric`` of the classic network ``row`` is compared with, on the same split and seed."""
    paired = by_key.get((row.split, reference_network(row.network), row.seed))
    return paired.value(metric) if paired is not None else None


def bar_entries(rows: list[Row], select: Callable[[Row], Any],
                value: Callable[[Row], float | None], reference: Callable[[Row], float | None],
                label: Callable[[str], str] = lambda name: name,
                order: Callable[[str], Any] = lambda name: name) -> list[tuple[str, list[float], list[float]]]:
    """(label, values, reference values) per network of the selected rows: a bar and, row by
    row, the level to read it against."""
    grouped: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for r in rows:
        if select(r) and value(r) is not None:
            values, references = grouped[str(r.network)]
            values.append(value(r))
            if reference(r) is not None:
                references.append(reference(r))
    return [(label(name), *grouped[name]) for name in sorted(grouped, key=order)]


def paired_entries(rows: list[Row], metric: str, select: Callable[[Row], Any],
                   label: Callable[[str], str] = lambda name: name,
                   order: Callable[[str], Any] = lambda name: name) -> list[tuple[str, list[float], list[float]]]:
    """Bars of ``metric``, each read against its classic reference network on the same splits and seeds."""
    by_key = {(r.split, r.network, r.seed): r for r in rows}
    return bar_entries(rows, select, lambda r: r.value(metric), lambda r: _paired_value(by_key, r, metric), label, order)


