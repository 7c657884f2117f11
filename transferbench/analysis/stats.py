"""Statistics of results rows: paired effects with intervals whose coverage holds at 2-10
replicates, tests corrected for the n they scan, the trend over n, the lingering-boost table and
the developmental table. No drawing here: ``figures`` draws these, ``reading`` words them.

Pairing. A network trained on side B of a split with seed s is read against *its own* partner:
baseB of that split and seed (or, for specificity, BnB of the same split, seed, side and n).
Replicates are not pairs. One split trained with one seed is one independent replicate (a
*unit*): its bases are trained once, and every network of the unit copies from or is compared
with them, so the pairs of one unit share their errors. Every interval and test is over units:
the pairs of a unit are averaged first, then

    mean ± t(0.975, units - 1) · sd(unit means) / sqrt(units),   p from the same t statistic,

a one-sample t-test on the unit means. Why t and not a bootstrap or a sign-flip: for normal
unit means the t-interval's coverage is exactly 95% at any number of units from 2 up (the
percentile bootstrap covers 49% with 2 and 77% with 3: ``benchmarks/interval_coverage.py``),
and unlike an exact sign-flip test, which cannot reach p < 0.05 with fewer than 6 units, it
can show a consistent effect with the 2-4 replicates a study of this kind affords. With one
unit there is no interval (NaN), and nothing is shown.

Families. Each claim belongs to a family of tests made together (fig2's four effects at every
n; fig3's; the trends; the boost table; the developmental table). Within a family the
p-values are Holm-adjusted, and an effect is *shown* only where its adjusted p < 0.05: under
no effect at all, the chance that a family shows anything is at most 5%
(``tests/test_stats.py`` measures it). A shown effect has a direction; the reading says when it
is the other sign than the paper's.

Health. Networks that failed (stalled, diverged, built on one) are left out (``Row.usable``); a
frozen network at chance is a finding and counts (``schema/health.py``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
from scipy import stats

from transferbench.schema.notation import parse_network
from transferbench.schema.record import Row

ALPHA = 0.05
BOOT = 2000  # resamples of the paper's pooled, unpaired table (``pooled_boost_table``)

# The paper's groups of Fig. 2 (and the random frozen networks of Fig. 3): name -> (condition, fine_tune)
GROUPS = {"base": ("base", 0), "selffer": ("selffer", 0), "selffer+": ("selffer", 1), "transfer": ("transfer", 0),
          "transfer+": ("transfer", 1), "random": ("random_init", 0)}
SOURCED = ("selffer", "transfer", "preserved")  # conditions that copy layers from a base


@dataclass(frozen=True)
class EffectSpec:
    """One effect of the paper's reading: ``group`` minus ``against`` at the same n (or against the
    base at n = 0), the sign the paper found, and the family of tests it is judged in."""

    name: str
    group: str
    against: str
    sign: int
    family: str
    splits: str = "random"  # "random": the similar splits (and cross-dataset blocks); "natman": the dissimilar split


EFFECTS = {spec.name: spec for spec in (
    EffectSpec("co-adaptation loss", "selffer", "base", -1, "fig2"),  # BnB below its base
    EffectSpec("specificity", "transfer", "selffer", -1, "fig2"),  # AnB below BnB
    EffectSpec("fine-tuning recovers", "selffer+", "selffer", +1, "fig2"),  # BnB+ above BnB
    EffectSpec("lingering boost", "transfer+", "base", +1, "fig2"),  # AnB+ above its base
    EffectSpec("random frozen features", "random", "base", -1, "fig3"),  # Rn below the base
    EffectSpec("learned beat random", "selffer", "random", +1, "fig3"),  # BnB above Rn
    EffectSpec("dissimilar transfer", "transfer", "base", -1, "fig3", "natman"),  # AnB (man-made/natural) below its base
)}
FIG2 = tuple(name for name, spec in EFFECTS.items() if spec.family == "fig2")
TRENDS = ("co-adaptation loss", "specificity")  # the paper's "the higher the layer, the more specific"
BOOST_RANGES = (1, 3, 5)  # the boost table's n ranges: 1-L, 3-L, 5-L (L = 7 for the 8-layer networks)


def top_n(rows) -> int:
    """L of the study's architecture: the largest n of its classic networks (7 when none says)."""
    return max((int(r.n) for r in rows if r.n is not None and not is_developmental(r)), default=7) or 7


# ---------------------------------------------------------------------------- inference over units

@dataclass(frozen=True)
class Pair:
    """One network read against its partner."""

    n: int
    value: float  # the network's metric minus its partner's
    unit: tuple  # the independent replicate it belongs to: (split, seed)
    bases: frozenset  # the base networks it rests on: (split, seed, side) of its and its partner's base
    flags: tuple = ()  # keys of not-converged bases it rests on


@dataclass(frozen=True)
class Estimate:
    """A mean difference over units with its 95% t-interval and two-sided p-value."""

    mean: float
    low: float
    high: float
    p: float
    pairs: int
    units: int
    bases: int
    flags: tuple = ()  # not-converged bases behind it

    @property
    def has_interval(self) -> bool:
        return not math.isnan(self.low)


def t_interval(values: Iterable[float]) -> tuple[float, float, float, float]:
    """(mean, low, high, p) of a one-sample t-test of ``values`` (NaN bounds and p for fewer than 2)."""
    data = np.asarray(sorted(values), dtype=float)  # sorted: the order of the rows never changes a number
    if len(data) == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean = float(data.mean())
    if len(data) < 2:
        return mean, math.nan, math.nan, math.nan
    sd = float(data.std(ddof=1))
    if sd == 0.0:
        # Every unit gave the same difference. Top-1 takes discrete values (k of the validation
        # images), so a tie among a few replicates happens by chance; a sample sd of 0 does not
        # make the spread 0, and a t-test of it would call any such effect certain. No interval.
        return mean, math.nan, math.nan, math.nan
    se = sd / math.sqrt(len(data))
    critical = float(stats.t.ppf(1 - ALPHA / 2, len(data) - 1))
    p = float(2 * stats.t.sf(abs(mean / se), len(data) - 1))
    return mean, mean - critical * se, mean + critical * se, p


def estimate(pairs: list[Pair]) -> Estimate:
    """The effect over units: each unit's pairs averaged, then a t-interval over the unit means."""
    by_unit: dict[tuple, list[float]] = defaultdict(list)
    for pair in pairs:
        by_unit[pair.unit].append(pair.value)
    mean, low, high, p = t_interval(float(np.mean(values)) for values in by_unit.values())
    bases = frozenset().union(*(pair.bases for pair in pairs)) if pairs else frozenset()
    flags = tuple(sorted({flag for pair in pairs for flag in pair.flags}))
    return Estimate(mean, low, high, p, len(pairs), len(by_unit), len(bases), flags)


def trend(pairs: list[Pair]) -> Estimate | None:
    """The slope of the effect over n, per layer: a least-squares slope within each unit that has
    two or more n, then a t-interval over the units' slopes. None without such a unit."""
    by_unit: dict[tuple, list[Pair]] = defaultdict(list)
    for pair in pairs:
        by_unit[pair.unit].append(pair)
    slopes = []
    for members in by_unit.values():
        ns = np.array([p.n for p in members], dtype=float)
        if len(set(ns)) < 2:
            continue
        values = np.array([p.value for p in members])
        slopes.append(float(np.polyfit(ns, values, 1)[0]))
    if not slopes:
        return None
    mean, low, high, p = t_interval(slopes)
    used = [pair for unit, members in by_unit.items() for pair in members if len({m.n for m in members}) > 1]
    bases = frozenset().union(*(pair.bases for pair in used))
    return Estimate(mean, low, high, p, len(used), len(slopes), len(bases), tuple(sorted({f for p in used for f in p.flags})))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment (NaN p-values, tests that could not be made, are left NaN)."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (len(indexed) - rank) * p))
        adjusted[i] = running
    return adjusted


# ---------------------------------------------------------------------------- pairing

def _random(rows: list[Row]) -> list[Row]:
    """The networks of the similar (random or stratified) splits, and of cross-dataset blocks (the
    figures draw each target on its own)."""
    return [r for r in rows if r.cross_dataset or str(r.split).startswith("random") or str(r.split).startswith("stratified")]


def is_developmental(row: Row) -> bool:
    """A grown or wide network, or a later step of a chain of transfers (A7B7C+)."""
    return bool(row.growth) or row.name.developmental


def counted(rows: list[Row], keep_flagged: bool = False) -> list[Row]:
    """The networks that count: usable ones (every one with ``keep_flagged``, for a look at what the
    left-out networks would change)."""
    return [r for r in rows if keep_flagged or r.usable]


def group_of(row: Row) -> str | None:
    for name, (condition, fine_tune) in GROUPS.items():
        if row.condition == condition and int(row.fine_tune or 0) == fine_tune:
            return name
    return None


def base_of(row: Row) -> tuple | None:
    """The base network a row rests on: its own identity for a base, its source for a network that
    copies layers, none for random frozen layers."""
    if row.condition == "base":
        return (row.split, row.seed, row.target_side)
    if row.condition in SOURCED:
        return (row.split, row.seed, row.source_side)
    return None


class Pairs:
    """Classic networks of some splits, indexed for pairing: a network with its own base (same
    split, seed and target side) and with the network of another group at the same split, seed,
    side and n."""

    def __init__(self, rows: list[Row], metric: str, splits: str = "random", keep_flagged: bool = False) -> None:
        self.metric = metric
        chosen = _random(rows) if splits == "random" else [r for r in rows if r.split == splits]
        self.by_group: dict[str, list[Row]] = defaultdict(list)
        self.index: dict[tuple, Row] = {}
        for row in counted(chosen, keep_flagged):
            group, value = group_of(row), row.value(metric)
            if group is None or value is None or is_developmental(row):
                continue
            self.by_group[group].append(row)
            self.index[(group, row.split, row.seed, row.target_side, int(row.n))] = row
        self.unconverged = {base_of(r): r.key for r in counted(chosen, keep_flagged)
                            if r.condition == "base" and r.health == "not_converged"}

    def partner(self, group: str, row: Row, n: int | None = None) -> Row | None:
        """``group``'s network on the same split, seed and side as ``row`` (at ``n``; 0 for the base)."""
        return self.index.get((group, row.split, row.seed, row.target_side, int(row.n) if n is None else n))

    def value(self, group: str, row: Row, n: int | None = None) -> float | None:
        found = self.partner(group, row, n)
        return found.value(self.metric) if found is not None else None

    def pairs(self, group: str, against: str) -> list[Pair]:
        """Every network of ``group`` minus its partner in ``against`` (the base: at n = 0), sorted."""
        out = []
        for row in self.by_group[group]:
            partner = self.partner(against, row, 0 if against == "base" else None)
            if partner is None:
                continue
            bases = frozenset(b for b in (base_of(row), base_of(partner)) if b is not None)
            flags = tuple(sorted(self.unconverged[b] for b in bases if b in self.unconverged))
            out.append(Pair(int(row.n), row.value(self.metric) - partner.value(self.metric), (row.split, row.seed), bases,
                            flags))
        return sorted(out, key=lambda p: (p.n, str(p.unit), p.value))

    def differences(self, group: str, against: str) -> dict[int, list[float]]:
        """{n: [paired differences]} (for drawing the networks one by one)."""
        out: dict[int, list[float]] = defaultdict(list)
        for pair in self.pairs(group, against):
            out[pair.n].append(pair.value)
        return dict(sorted(out.items()))


def group_values(rows: list[Row], metric: str, keep_flagged: bool = False) -> dict[str, dict[int, list[float]]]:
    """{group: {n: [values]}} of the networks that count on the random (or stratified) splits."""
    out: dict[str, dict[int, list[float]]] = {g: defaultdict(list) for g in GROUPS}
    for row in counted(_random(rows), keep_flagged):
        value, group = row.value(metric), group_of(row)
        if value is not None and group is not None and not is_developmental(row):
            out[group][int(row.n)].append(value)
    return out


# ---------------------------------------------------------------------------- the effects table

EFFECT_COLUMNS = ("effect", "family", "statistic", "n", "pairs", "bases", "units", "mean", "low", "high", "p", "p_adjusted",
                  "shown", "direction", "paper_sign", "unconverged_bases")


@dataclass
class EffectRow:
    """One line of ``<study>-effects.csv``: an effect at one n (``statistic`` "per n"), pooled over a
    range of n ("pooled"), as a slope over n ("trend"), or a developmental comparison."""

    effect: str
    family: str
    statistic: str  # "per n", "pooled n 3-7", "slope per layer", "grown vs classic"
    n: int | None
    estimate: Estimate
    paper_sign: int  # +1 or -1: the direction the paper found (0: none claimed)
    p_adjusted: float = math.nan
    network: str | None = None  # the developmental network compared

    @property
    def shown(self) -> bool:
        return not math.isnan(self.p_adjusted) and self.p_adjusted < ALPHA

    @property
    def direction(self) -> int:
        return 0 if self.estimate.mean == 0 or math.isnan(self.estimate.mean) else (1 if self.estimate.mean > 0 else -1)

    @property
    def agrees(self) -> bool:
        """Shown with the paper's sign."""
        return self.shown and self.direction == self.paper_sign

    def to_csv_dict(self) -> dict[str, Any]:
        e = self.estimate
        return {"effect": self.effect if self.network is None else f"{self.effect}: {self.network}", "family": self.family,
                "statistic": self.statistic, "n": self.n, "pairs": e.pairs, "bases": e.bases, "units": e.units,
                "mean": e.mean, "low": e.low, "high": e.high, "p": e.p, "p_adjusted": self.p_adjusted,
                "shown": int(self.shown), "direction": {1: "+", -1: "-", 0: ""}[self.direction],
                "paper_sign": {1: "+", -1: "-", 0: ""}[self.paper_sign], "unconverged_bases": " ".join(e.flags)}


@dataclass
class Effects:
    """Every effect a study's rows support, in families, Holm-adjusted within each family."""

    rows: list[EffectRow] = field(default_factory=list)

    def family(self, name: str) -> list[EffectRow]:
        return [r for r in self.rows if r.family == name]

    def per_n(self, effect: str) -> list[EffectRow]:
        return [r for r in self.rows if r.effect == effect and r.statistic == "per n"]

    def find(self, effect: str, statistic: str) -> EffectRow | None:
        return next((r for r in self.rows if r.effect == effect and r.statistic == statistic), None)

    def pooled(self, effect: str, low: int = 1) -> EffectRow | None:
        """A boost effect pooled over n from ``low`` to the top (L): ``pooled n 1-7`` for the 8-layer networks."""
        return next((r for r in self.rows if r.effect == effect and r.statistic.startswith(f"pooled n {low}-")), None)

    def shown_effects(self, family: str = "fig2") -> list[str]:
        """The effects of a family shown with the paper's sign at some n."""
        return list(dict.fromkeys(r.effect for r in self.family(family) if r.agrees))


def effects_table(rows: list[Row], metric: str = "top1_mean_best10", keep_flagged: bool = False) -> Effects:
    """Every effect of the paper's reading, per n and as trends, the lingering boost over n-ranges
    and the developmental comparisons, each family Holm-adjusted."""
    table = Effects()
    pairs_of = {splits: Pairs(rows, metric, splits, keep_flagged) for splits in ("random", "natman")}
    for spec in EFFECTS.values():
        by_n: dict[int, list[Pair]] = defaultdict(list)
        for pair in pairs_of[spec.splits].pairs(spec.group, spec.against):
            by_n[pair.n].append(pair)
        for n, members in sorted(by_n.items()):
            table.rows.append(EffectRow(spec.name, spec.family, "per n", n, estimate(members), spec.sign))
        if spec.name in TRENDS:
            slope = trend(pairs_of[spec.splits].pairs(spec.group, spec.against))
            if slope is not None:  # the paper: the effect grows with n (more negative higher up)
                table.rows.append(EffectRow(spec.name, "trend", "slope per layer", None, slope, spec.sign))
    random_pairs = pairs_of["random"]
    for against, name in (("base", "lingering boost"), ("selffer+", "AnB+ vs BnB+ (same n)")):
        members = random_pairs.pairs("transfer+", against)
        top = max((p.n for p in members), default=7)
        for low in BOOST_RANGES:
            chosen = [p for p in members if p.n >= low]
            if chosen and low <= top:
                table.rows.append(EffectRow(name, "boost", f"pooled n {low}-{top}", None, estimate(chosen), +1))
    for name, reference, members in developmental_pairs(rows, metric, keep_flagged):
        table.rows.append(EffectRow("grown vs classic", "developmental", f"vs {reference}", None, estimate(members), 0,
                                    network=name))
    for family in dict.fromkeys(r.family for r in table.rows):
        members = table.family(family)
        for row, adjusted in zip(members, holm([r.estimate.p for r in members])):
            row.p_adjusted = adjusted
    return table


def effects_csv(effects: Effects) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EFFECT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in effects.rows:
        writer.writerow({key: ("" if value is None or (isinstance(value, float) and math.isnan(value)) else
                               f"{value:.6g}" if isinstance(value, float) else value)
                         for key, value in row.to_csv_dict().items()})
    return buffer.getvalue()


# ---------------------------------------------------------------------------- tables

def interval_text(e: Estimate) -> str:
    if e.has_interval:
        return f"[{e.low:+.3f}, {e.high:+.3f}]"
    return "[no interval: one replicate]" if e.units < 2 else "[no interval: every replicate gave the same difference]"


def boost_table(effects: Effects) -> list[dict[str, Any]]:
    """The lingering boost, each AnB+ against its own base and against BnB+ of the same split, seed,
    side and n, over n-ranges (the boost family of the effects table)."""
    table = []
    pooled = [row.statistic for row in effects.family("boost") if row.statistic.startswith("pooled n ")]
    top = max((int(statistic.rsplit("-", 1)[1]) for statistic in pooled), default=7)
    for low in (low for low in BOOST_RANGES if low <= top):
        line: dict[str, Any] = {"layers": f"{low}-{top}"}
        for prefix, name in (("vs_base", "lingering boost"), ("vs_selffer_plus", "AnB+ vs BnB+ (same n)")):
            row = effects.find(name, f"pooled n {low}-{top}")
            e = row.estimate if row else None
            line.update({prefix: e.mean if e else None, f"{prefix}_ci_low": e.low if e else math.nan,
                         f"{prefix}_ci_high": e.high if e else math.nan, f"{prefix}_p_adjusted": row.p_adjusted if row else math.nan,
                         f"{prefix}_pairs": e.pairs if e else 0, f"{prefix}_units": e.units if e else 0,
                         f"{prefix}_bases": e.bases if e else 0, f"{prefix}_shown": int(row.shown) if row else 0})
        table.append(line)
    return table


def format_boost(table: list[dict[str, Any]], study: str) -> str:
    def cell(line, prefix):
        if line[prefix] is None:
            return "     n/a"
        interval = (f"[{line[prefix + '_ci_low']:+.3f}, {line[prefix + '_ci_high']:+.3f}]"
                    if not math.isnan(line[prefix + "_ci_low"]) else "[no interval]")
        mark = " *" if line[prefix + "_shown"] else ""
        return (f"{line[prefix]:+.3f} {interval} {line[prefix + '_pairs']}p/{line[prefix + '_units']}u/"
                f"{line[prefix + '_bases']}b{mark}")

    lines = [f"lingering boost, {study}: each AnB+ against its own; mean of unit means, 95% t-interval over units "
             "(p pairs / u independent units / b bases; * shown: Holm-adjusted p < 0.05 over the table)",
             f"  {'layers':7s} {'vs its own base':44s} {'vs BnB+ (same split, seed, n)':44s}"]
    for line in table:
        lines.append(f"  {line['layers']:7s} {cell(line, 'vs_base'):44s} {cell(line, 'vs_selffer_plus'):44s}")
    return "\n".join(lines)


def diff_ci(a: list[float], b: list[float], seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of mean(a) - mean(b), each group resampled on its own."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    result = stats.bootstrap((np.asarray(sorted(a), dtype=float), np.asarray(sorted(b), dtype=float)),
                             lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis), n_resamples=BOOT,
                             method="percentile", vectorized=True, random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    if np.isnan(low):  # every resample gave the same difference
        low = high = float(np.mean(a) - np.mean(b))
    return float(low), float(high)


def pooled_boost_table(rows: list[Row], metric: str = "top1_mean_best10") -> list[dict[str, Any]]:
    """The paper's own table, as the paper computed it: mean top-1 of AnB+ over n-ranges minus the
    mean of *all* base networks (both sides pooled), and minus the mean of BnB+ over the same n;
    unpaired, with a percentile bootstrap over networks. Kept so that the published numbers
    reproduce; it is not a test (its networks are not independent)."""
    groups = group_values(rows, metric)
    bases = groups["base"].get(0, [])
    table = []
    top = top_n(rows)
    for low in (low for low in BOOST_RANGES if low <= top):
        plus = [v for n in range(low, top + 1) for v in groups["transfer+"].get(n, [])]
        selffer = [v for n in range(low, top + 1) for v in groups["selffer+"].get(n, [])]
        row = {"layers": f"{low}-{top}", "anb_plus_networks": len(plus), "anb_plus_mean": np.mean(plus) if plus else None}
        row["vs_base"] = np.mean(plus) - np.mean(bases) if plus and bases else None
        row["vs_base_ci_low"], row["vs_base_ci_high"] = diff_ci(plus, bases)
        row["vs_selffer_plus"] = np.mean(plus) - np.mean(selffer) if plus and selffer else None
        row["vs_selffer_plus_ci_low"], row["vs_selffer_plus_ci_high"] = diff_ci(plus, selffer)
        row["base_networks"], row["selffer_plus_networks"] = len(bases), len(selffer)
        table.append(row)
    return table


def format_pooled_boost(table: list[dict[str, Any]], study: str) -> str:
    def fmt(value, low, high):
        if value is None:
            return "     n/a              "
        interval = f"[{low:+.3f}, {high:+.3f}]" if not np.isnan(low) else "[   n/a   ]"
        return f"{value:+.3f} {interval}"

    lines = [f"lingering boost, {study}, pooled as in the paper (mean of AnB+ minus mean of ...; the paper's unpaired "
             "statistic with a 95% bootstrap interval over networks, for comparison with the published table only)",
             f"  {'layers':7s} {'AnB+ nets':>9s}  {'vs base networks':24s} {'vs BnB+ (same n)':24s}"]
    for row in table:
        lines.append(f"  {row['layers']:7s} {row['anb_plus_networks']:9d}  "
                     f"{fmt(row['vs_base'], row['vs_base_ci_low'], row['vs_base_ci_high']):24s} "
                     f"{fmt(row['vs_selffer_plus'], row['vs_selffer_plus_ci_low'], row['vs_selffer_plus_ci_high']):24s}")
    return "\n".join(lines)


def _means(groups, name):
    ns = sorted(groups[name])
    return ns, [float(np.mean(groups[name][n])) for n in ns]


# ---------------------------------------------------------------------------- developmental networks

def reference_network(network: str, present: set[str] | None = None) -> str | None:
    """The classic network a developmental one is compared with: the first of its
    ``NetworkName.classic_references`` among the ``present`` networks (the first of all, without)."""
    references = parse_network(network).classic_references
    found = [name for name in references if present is None or name in present]
    return (found or references or (None,))[0]


def developmental_pairs(rows: list[Row], metric: str, keep_flagged: bool = False) -> list[tuple[str, str, list[Pair]]]:
    """(network name, its classic reference, the pairs) for every developmental network with one."""
    chosen = counted(rows, keep_flagged)
    by_key = {(r.split, r.network, r.seed): r for r in chosen if r.value(metric) is not None}
    present = {str(r.network) for r in chosen}
    out = []
    for name in dict.fromkeys(str(r.network) for r in chosen):
        reference = reference_network(name, present)
        if not reference:
            continue
        members = []
        for row in (r for r in chosen if r.network == name and r.value(metric) is not None):
            partner = by_key.get((row.split, reference, row.seed))
            if partner is not None:
                members.append(Pair(int(row.n), row.value(metric) - partner.value(metric), (row.split, row.seed),
                                    frozenset({(row.split, row.seed, "reference")})))
        if members:
            out.append((name, reference, members))
    return out


def developmental_table(rows: list[Row], effects: Effects, metric: str = "top1_mean_best10",
                        keep_flagged: bool = False) -> list[dict[str, Any]]:
    """One line per network name (over splits and seeds): top-1, the paired difference from its
    classic reference with its t-interval over units and Holm-adjusted p, and the source accuracy
    before and after."""
    chosen = counted(rows, keep_flagged)
    all_names = [str(n) for n in dict.fromkeys(r.network for r in chosen)]
    present = set(all_names)
    references = {reference_network(n, present) for n in all_names} - {None}
    names = [n for n in all_names if reference_network(n) or n in references or parse_network(n).developmental]
    compared = {row.network: row for row in effects.family("developmental")}
    table = []
    for name in names:
        members = [r for r in chosen if r.network == name and r.value(metric) is not None]
        if not members:
            continue
        row = compared.get(name)
        e = row.estimate if row else None
        before = [r.value("source_top1_before") for r in members if r.value("source_top1_before") is not None]
        after = [r.value("source_top1_after") for r in members if r.value("source_top1_after") is not None]
        first = members[0]
        table.append({"network": name, "growth": first.growth or "", "growth_mode": first.growth_mode or "",
                      "scope": first.scope or "", "normalize": first.normalize, "networks": len(members),
                      "top1": float(np.mean([r.value(metric) for r in members])), "reference": reference_network(name, present) or "",
                      "vs_reference": e.mean if e else None, "ci_low": e.low if e else math.nan,
                      "ci_high": e.high if e else math.nan, "units": e.units if e else 0,
                      "p_adjusted": row.p_adjusted if row else math.nan, "shown": int(row.shown) if row else 0,
                      "source_top1_before": float(np.mean(before)) if before else None,
                      "source_top1_after": float(np.mean(after)) if after else None})
    return table


def format_developmental(table: list[dict[str, Any]], study: str, metric: str) -> str:
    lines = [f"developmental networks, {study} ({metric}; difference from the classic network of the same split and seed, "
             "95% t-interval over units, * shown: Holm-adjusted p < 0.05 over the table; source top-1 before -> after)",
             f"  {'network':24s} {'nets':>4s} {'top-1':>7s}  {'vs classic':40s} {'source top-1':>16s}"]
    for row in table:
        if row["vs_reference"] is None:
            versus = "(classic)" if not row["reference"] else f"no {row['reference']} to pair with"
        else:
            interval = (f" [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]" if not np.isnan(row["ci_low"]) else
                        " [no interval]")
            versus = f"{row['vs_reference']:+.3f} vs {row['reference']}{interval}{' *' if row['shown'] else ''}"
        source = (f"{row['source_top1_before']:.3f} -> {row['source_top1_after']:.3f}"
                  if row["source_top1_after"] is not None else "not measured" if row["reference"] else "")
        lines.append(f"  {row['network']:24s} {row['networks']:4d} {row['top1']:7.4f}  {versus:40s} {source:>16s}")
    return "\n".join(lines)


def bar_entries(rows: list[Row], select: Callable[[Row], Any], value: Callable[[Row], float | None],
                reference: Callable[[Row], float | None], label: Callable[[str], str] = lambda name: name,
                order: Callable[[str], Any] = lambda name: name,
                keep_flagged: bool = False) -> list[tuple[str, list[float], list[float]]]:
    """(label, values, reference values) per network of the selected rows: a bar and, row by
    row, the level to read it against."""
    grouped: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for r in counted(rows, keep_flagged):
        if select(r) and value(r) is not None:
            values, references = grouped[str(r.network)]
            values.append(value(r))
            if reference(r) is not None:
                references.append(reference(r))
    return [(label(name), *grouped[name]) for name in sorted(grouped, key=order)]


def as_dict(estimate: Estimate) -> dict[str, Any]:
    return asdict(estimate)
