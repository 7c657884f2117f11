"""What a study's numbers show, in the paper's words: a few sentences drawn from the effects table.

Every sentence rests on a line of ``<study>-effects.csv`` and says how much stands behind it:
the mean difference, its 95% interval over independent replicates, the Holm-adjusted p of its
family, and how many pairs, replicates (units) and base networks it comes from. An effect is
claimed only where it is *shown* (Holm-adjusted p < 0.05); an effect shown with the other sign
than the paper's is said as such, and a base that had not converged is named beside every
effect that rests on it.
"""

from __future__ import annotations

import numpy as np

from transferbench.analysis.stats import EFFECTS, FIG2, TRENDS, EffectRow, Effects, Estimate, _random, interval_text
from transferbench.schema.record import Row

# What each effect means, in the paper's words: (the comparison, what the paper's sign means, what the other sign means)
EFFECT_TEXT = {
    "co-adaptation loss": ("BnB (frozen selffer) against its own base",
                           "BnB below its base: fragile co-adaptation between the layers cut apart",
                           "BnB above its base: the base had not finished learning, and the selffer's extra training helps "
                           "it (the paper's bases were trained to their plateau first)"),
    "specificity": ("AnB (frozen transfer) against BnB", "AnB below BnB: the features of layers 1..n are specific to task A",
                    "AnB above BnB: A's features serve B better than B's own"),
    "fine-tuning recovers": ("BnB+ (fine-tuned selffer) against BnB", "BnB+ above BnB: fine-tuning recovers what freezing lost",
                             "BnB+ below BnB"),
    "lingering boost": ("AnB+ (fine-tuned transfer) against its own base",
                        "AnB+ above its base: features from A still help after fine-tuning (the lingering boost)",
                        "AnB+ below its base: transfer hurt after fine-tuning"),
    "random frozen features": ("random frozen layers 1..n (Rn) against their base", "Rn below the base",
                               "Rn above the base"),
    "learned beat random": ("learned frozen layers (BnB) against random ones (Rn)", "learned features beat random ones",
                            "random frozen features beat learned ones"),
    "dissimilar transfer": ("AnB on the man-made/natural split against its base",
                            "transfer between dissimilar tasks loses accuracy", "transfer between dissimilar tasks gains"),
}


def _support(e: Estimate, row: EffectRow | None = None) -> str:
    """``+0.021 [+0.004, +0.038], p_adj 0.012; 7 pairs, 3 replicates, 2 bases``."""
    adjusted = f", p_adj {row.p_adjusted:.3g}" if row is not None and not np.isnan(row.p_adjusted) else ""
    flags = f"; not-converged bases: {', '.join(e.flags)}" if e.flags else ""
    return (f"{e.mean:+.3f} {interval_text(e)}{adjusted}; {_count(e.pairs, 'pair')}, {_count(e.units, 'replicate')}, "
            f"{_count(e.bases, 'base')}{flags}")


def _at(cells: list[EffectRow]) -> str:
    strongest = max(cells, key=lambda r: abs(r.estimate.mean))
    ns = ", ".join(str(r.n) for r in cells)
    return f"at n={ns} (strongest n={strongest.n}: {_support(strongest.estimate, strongest)})"


def effect_lines(effects: Effects, names=FIG2) -> list[str]:
    lines = []
    co_adaptation_lost = any(r.agrees for r in effects.per_n("co-adaptation loss"))
    for name in names:
        cells = effects.per_n(name)
        if not cells:
            continue
        what, meaning, opposite = EFFECT_TEXT[name]
        agreeing = [r for r in cells if r.agrees]
        against = [r for r in cells if r.shown and not r.agrees]
        if name == "fine-tuning recovers" and not co_adaptation_lost:
            meaning = "BnB+ above BnB: fine-tuning adds to what the frozen selffer reached (freezing lost nothing here)"
        caveat = _against_selffer_plus(effects) if name == "lingering boost" and agreeing else ""
        if agreeing:
            lines.append(f"shown: {meaning}, {_at(agreeing)}{caveat}")
        if against:
            lines.append(f"shown with the other sign than the paper's: {opposite}, {_at(against)}")
        if not agreeing and not against:
            nearest = max(cells, key=lambda r: r.estimate.mean * EFFECTS[name].sign)
            if all(r.estimate.units < 2 for r in cells):
                lines.append(f"not shown: {what}; one replicate per condition has no interval (nearest: n={nearest.n}, "
                             f"{_support(nearest.estimate, nearest)}): train more seeds")
            else:
                lines.append(f"not shown: {what} (no n with Holm-adjusted p < 0.05; nearest the paper's sign: "
                             f"n={nearest.n}, {_support(nearest.estimate, nearest)})")
    return lines


def _against_selffer_plus(effects: Effects) -> str:
    """What follows a boost over the base: the paper also beat BnB+, which trains as long as AnB+;
    without that, a boost over the base may be the extra training rather than A's features."""
    row = effects.pooled("AnB+ vs BnB+ (same n)")
    if row is None:
        return "; no BnB+ of the same split, seed and side rules out the longer training"
    versus = f"against BnB+ of the same n, pooled over n {row.statistic.removeprefix('pooled n ')}: {_support(row.estimate, row)}"
    if row.shown and row.direction > 0:
        return f"; and {versus}, so it is A's features, not the longer training"
    if row.shown and row.direction < 0:
        return (f"; but {versus}: BnB+ trains as long and does better, so the gain over the base is the longer "
                "training, not a lingering boost from A's features")
    return f"; {versus}, not shown: the longer training may explain it"


def trend_lines(effects: Effects) -> list[str]:
    lines = []
    for name in TRENDS:
        row = effects.find(name, "slope per layer")
        if row is None:
            continue
        what = EFFECT_TEXT[name][0]
        slope = f"slope per layer {_support(row.estimate, row)}"
        cells = effects.per_n(name)
        other_side = cells and all(r.estimate.mean * EFFECTS[name].sign < 0 for r in cells)
        if row.agrees and other_side:  # the slope has the paper's sign, but every n sits on the other side of zero
            lines.append(f"shown as a trend: {what} falls with n, but from the other side of zero at every measured n "
                         f"(a difference of the other sign that shrinks with depth, not a loss that grows), {slope}")
        elif row.agrees:
            lines.append(f"shown as a trend: {what} grows with n (the higher the layer, the larger the loss), {slope}")
        elif row.shown:
            lines.append(f"shown as a trend of the other sign: {what} shrinks with n, {slope}")
        else:
            lines.append(f"not shown as a trend over n: {what}, {slope}")
    return lines


def developmental_lines(effects: Effects) -> list[str]:
    lines = []
    for row in effects.family("developmental"):
        e = row.estimate
        verdict = ("added capacity helped" if row.shown and e.mean > 0 else
                   "the grown network did worse than classic fine-tuning" if row.shown else
                   "no difference shown" if e.has_interval or e.units > 1 else "one replicate: more seeds would tell")
        lines.append(f"grown {row.network} {row.statistic}: {_support(e, row)}: {verdict}")
    return lines


def reading(rows: list[Row], metric: str = "top1_mean_best10", keep_flagged: bool = False) -> list[str]:
    """A few sentences on what the numbers show, in the paper's terms (see the module docstring)."""
    from transferbench.analysis.stats import effects_table

    lines = []
    left = [r for r in rows if not r.usable]
    if left:
        lines.append(f"{_count(len(left), 'network')} {'put back into' if keep_flagged else 'left out of'} every mean (stalled or "
                     "diverged, or built on one): " + _first([f"{r.key} ({r.health.replace('_', ' ')})" for r in left]))
    chance = [r for r in rows if r.health == "at_chance"]
    if chance:
        lines.append(f"{_count(len(chance), 'frozen network')} at chance, counted as results (their frozen features carry nothing "
                     "the new layers can use): " + _first([r.key for r in chance]))
    bases = [r for r in _random(rows) if r.condition == "base" and (r.usable or keep_flagged) and r.value(metric) is not None
             and not r.growth]
    if not bases:
        return lines + ["no usable base network on a random split, so there is nothing to compare against"]
    by_side = {side: [r.value(metric) for r in bases if (r.target_side or "") == side]
               for side in sorted({r.target_side or "" for r in bases})}
    unconverged = [r.key for r in bases if r.health == "not_converged"]
    lines.append("base networks: " + ", ".join(f"base{side or ''} {np.mean(v):.3f} ({_count(len(v), 'replicate')})"
                                               for side, v in by_side.items())
                 + "; every network is read against the base of its own split, seed and side, and intervals and tests "
                   "are over independent replicates (a split trained with one seed), Holm-adjusted within each figure"
                 + (f"; not converged (still learning at the end, which favours every network built on them): "
                    f"{', '.join(unconverged)}" if unconverged else ""))
    effects = effects_table(rows, metric, keep_flagged)
    return (lines + effect_lines(effects) + trend_lines(effects) + boost_lines(effects)
            + effect_lines(effects, [name for name, spec in EFFECTS.items() if spec.family == "fig3"])
            + developmental_lines(effects))


def boost_lines(effects: Effects) -> list[str]:
    """The lingering boost pooled over n 1-L (1-7 for the 8-layer networks), as the boost table has it (its own family)."""
    row = effects.pooled("lingering boost")
    if row is None:
        return []
    verdict = ("shown" if row.agrees else "shown with the other sign" if row.shown else "not shown")
    line = f"{verdict}: AnB+ against its own base pooled over n {row.statistic.removeprefix('pooled n ')} (the paired boost table): {_support(row.estimate, row)}"
    versus = effects.pooled("AnB+ vs BnB+ (same n)")
    if versus is not None:
        line += f"; against BnB+ of the same n: {_support(versus.estimate, versus)}" + (" (shown)" if versus.shown else "")
    return [line]


def _first(names: list[str], shown: int = 4) -> str:
    """The first ``shown`` names, and an ellipsis where there are more."""
    return ", ".join(names[:shown]) + (" ..." if len(names) > shown else "")


def _count(number: int, noun: str) -> str:
    """'1 replicate', '4 replicates'."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
