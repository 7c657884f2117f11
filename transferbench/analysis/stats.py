"""Statistics of results rows: the paper's per-layer groups, bootstrap intervals, the
lingering-boost table, the effects behind the paper's reading, and the developmental table
(each grown network paired with the classic network of its split and seed). No drawing
here: ``figures`` draws these.

Pairing. A network trained on side B of a split with seed s is read against *its own base*:
baseB of that split and seed (and a transfer against the selffer of the same split, seed,
side and n). Differences are taken pair by pair, and intervals are over the pairs. The
paper pooled every base of both sides (its random halves are alike: bases 0.615-0.634);
that table stays available as ``pooled_boost_table`` so the published table reproduces.

Only networks that count (``Row.usable``: not stalled, diverged or built on such a network)
enter any mean, interval or table here.

Bootstrap intervals come from ``scipy.stats.bootstrap`` (percentile method, 2000 resamples,
a seeded generator, so a table is the same every time it is made).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
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
    """The networks of the similar (random or stratified) splits, and of cross-dataset blocks (the
    figures draw each target of those on its own)."""
    return [r for r in rows if r.cross_dataset or str(r.split).startswith("random") or str(r.split).startswith("stratified")]


def is_developmental(row: Row) -> bool:
    """A grown or wide network, or a later step of a chain of transfers (A7B7C+)."""
    return bool(row.growth) or row.name.developmental


def _classic(rows: list[Row]) -> list[Row]:
    """The usable classic networks of the random (or stratified) splits."""
    return [r for r in _random(rows) if r.usable and not is_developmental(r)]


def group_values(rows: list[Row], metric: str) -> dict[str, dict[int, list[float]]]:
    """{group: {n: [values]}} of the usable networks on the random (or stratified) splits."""
    out: dict[str, dict[int, list[float]]] = {g: defaultdict(list) for g in GROUPS}
    for row in _classic(rows):
        value = row.value(metric)
        if value is None:
            continue
        for name, (condition, fine_tune, *_rest) in GROUPS.items():
            if row.condition == condition and int(row.fine_tune or 0) == fine_tune:
                out[name][int(row.n)].append(value)
    return out


def _group_of(row: Row) -> str | None:
    for name, (condition, fine_tune) in GROUPS.items():
        if row.condition == condition and int(row.fine_tune or 0) == fine_tune:
            return name
    return None


class Pairs:
    """Every usable classic network of the random splits, indexed for pairing: a network with
    its own base (same split, seed and target side) and with the network of another group at
    the same split, seed, side and n."""

    def __init__(self, rows: list[Row], metric: str) -> None:
        self.metric = metric
        self.by_group: dict[str, list[Row]] = defaultdict(list)
        self.index: dict[tuple, float] = {}
        for row in _classic(rows):
            group, value = _group_of(row), row.value(metric)
            if group is None or value is None:
                continue
            self.by_group[group].append(row)
            self.index[(group, row.split, row.seed, row.target_side, int(row.n))] = value

    def value(self, group: str, row: Row, n: int | None = None) -> float | None:
        """``group``'s value on the same split, seed and side as ``row`` (at ``n``; 0 for the base)."""
        return self.index.get((group, row.split, row.seed, row.target_side, int(row.n) if n is None else n))

    def differences(self, group: str, against: str) -> dict[int, list[float]]:
        """{n: [network of ``group`` minus its partner in ``against``]} (the base: at n = 0)."""
        out: dict[int, list[float]] = defaultdict(list)
        for row in self.by_group[group]:
            partner = self.value(against, row, 0 if against == "base" else None)
            if partner is not None:
                out[int(row.n)].append(row.value(self.metric) - partner)
        return dict(sorted(out.items()))


# The paper's reading of Fig. 2: effect -> (group, the group it is read against, the sign the paper found)
EFFECTS = {
    "co-adaptation loss": ("selffer", "base", -1),  # BnB below its base
    "specificity": ("transfer", "selffer", -1),  # AnB below BnB
    "fine-tuning recovers": ("selffer+", "selffer", +1),  # BnB+ above BnB
    "lingering boost": ("transfer+", "base", +1),  # AnB+ above its base
}


@dataclass(frozen=True)
class Effect:
    """One effect at one n: the mean paired difference, its 95% interval, how many pairs, and
    whether the interval shows the paper's sign (it excludes zero on that side)."""

    n: int
    mean: float
    low: float
    high: float
    pairs: int
    sign: int

    @property
    def shown(self) -> bool:
        return self.pairs >= 2 and (self.low > 0 if self.sign > 0 else self.high < 0)

    @property
    def leans(self) -> bool:
        """The mean has the paper's sign (shown or not)."""
        return self.mean * self.sign > 0


def effects(rows: list[Row], metric: str = "top1_mean_best10") -> dict[str, list[Effect]]:
    """Each effect of the paper's reading (``EFFECTS``) per n, from paired differences."""
    pairs = Pairs(rows, metric)
    out = {}
    for name, (group, against, sign) in EFFECTS.items():
        out[name] = []
        for n, diffs in pairs.differences(group, against).items():
            low, high = bootstrap_ci(diffs)
            out[name].append(Effect(n, float(np.mean(diffs)), low, high, len(diffs), sign))
    return out


def versus_selffer_plus(rows: list[Row], metric: str = "top1_mean_best10") -> tuple[list[float], float, float]:
    """AnB+ minus BnB+ of the same split, seed, side and n (every n), with its 95% interval. BnB+
    trains as long as AnB+: where AnB+ falls below it, a gain over the base is the longer
    training, not a lingering boost from A's features, and no figure or reading claims one."""
    diffs = [d for values in Pairs(rows, metric).differences("transfer+", "selffer+").values() for d in values]
    low, high = bootstrap_ci(diffs)
    return diffs, low, high


def boost_table(rows: list[Row], metric: str = "top1_mean_best10") -> list[dict[str, Any]]:
    """The lingering boost, each network against its own: AnB+ minus its own base (same split,
    seed and side), and minus BnB+ of the same split, seed, side and n, over n-ranges; 95%
    bootstrap intervals over the pairs."""
    pairs = Pairs(rows, metric)
    vs_base, vs_selffer = pairs.differences("transfer+", "base"), pairs.differences("transfer+", "selffer+")
    table = []
    for low in (1, 3, 5):
        plus = [r.value(metric) for r in pairs.by_group["transfer+"] if int(r.n) >= low]
        base_diffs = [d for n, values in vs_base.items() if n >= low for d in values]
        selffer_diffs = [d for n, values in vs_selffer.items() if n >= low for d in values]
        row: dict[str, Any] = {"layers": f"{low}-7", "anb_plus_networks": len(plus),
                               "anb_plus_mean": float(np.mean(plus)) if plus else None}
        row["vs_base"] = float(np.mean(base_diffs)) if base_diffs else None
        row["vs_base_ci_low"], row["vs_base_ci_high"] = bootstrap_ci(base_diffs)
        row["vs_selffer_plus"] = float(np.mean(selffer_diffs)) if selffer_diffs else None
        row["vs_selffer_plus_ci_low"], row["vs_selffer_plus_ci_high"] = bootstrap_ci(selffer_diffs)
        row["base_networks"], row["selffer_plus_networks"] = len(base_diffs), len(selffer_diffs)
        table.append(row)
    return table


def pooled_boost_table(rows: list[Row], metric: str = "top1_mean_best10") -> list[dict[str, Any]]:
    """The paper's table: mean top-1 of AnB+ over n-ranges minus the mean of *all* base
    networks (both sides pooled), and minus the mean of BnB+ over the same n."""
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


def format_boost(table: list[dict[str, Any]], study: str, pooled: bool = False) -> str:
    def fmt(value, low, high):
        if value is None:
            return "     n/a              "
        interval = f"[{low:+.3f}, {high:+.3f}]" if not np.isnan(low) else "[   n/a   ]"
        return f"{value:+.3f} {interval}"

    if pooled:
        lines = [f"lingering boost, {study}, pooled as in the paper (mean of AnB+ minus mean of ...; 95% bootstrap interval)",
                 f"  {'layers':7s} {'AnB+ nets':>9s}  {'vs base networks':24s} {'vs BnB+ (same n)':24s}"]
    else:
        lines = [f"lingering boost, {study}, each AnB+ against its own (mean paired difference; 95% bootstrap interval)",
                 f"  {'layers':7s} {'AnB+ nets':>9s}  {'vs its own base':24s} {'vs BnB+ (same split, n)':24s}"]
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
    rows = [r for r in rows if r.usable]
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
                  if row["source_top1_after"] is not None else "not measured" if row["reference"] else "")
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
        if r.usable and select(r) and value(r) is not None:
            values, references = grouped[str(r.network)]
            values.append(value(r))
            if reference(r) is not None:
                references.append(reference(r))
    return [(label(name), *grouped[name]) for name in sorted(grouped, key=order)]


def paired_entries(rows: list[Row], metric: str, select: Callable[[Row], Any],
                   label: Callable[[str], str] = lambda name: name,
                   order: Callable[[str], Any] = lambda name: name) -> list[tuple[str, list[float], list[float]]]:
    """Bars of ``metric``, each read against its classic reference network on the same splits and seeds."""
    by_key = {(r.split, r.network, r.seed): r for r in rows if r.usable}
    return bar_entries(rows, select, lambda r: r.value(metric), lambda r: _paired_value(by_key, r, metric), label, order)


