"""Inference a reviewer accepts: intervals that cover at 2-10 replicates, a figure that shows
nothing under no effect at most 5% of the time, pairing by split, seed and side, and numbers
that do not move with the order of the rows. The simulations are seeded (the same numbers on
every machine) and sized so that a wrong rule fails by many standard errors."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from transferbench.analysis.stats import Pair, effects_table, estimate, holm, t_interval, trend
from transferbench.schema.record import Row


def test_the_interval_covers_95_percent_at_2_to_10_replicates():
    rng = np.random.default_rng(0)
    draws = 20000
    for units in (2, 3, 4, 5, 10):
        data = rng.normal(0.3, 1.0, (draws, units))  # true mean 0.3
        covered = 0
        for row in data:
            _, low, high, _ = t_interval(row)
            covered += low <= 0.3 <= high
        assert abs(covered / draws - 0.95) < 0.02, (units, covered / draws)  # MC error ~0.0015


def test_units_not_pairs_carry_the_degrees_of_freedom():
    """Seven pairs from one replicate are one unit: no interval, nothing shown."""
    one_unit = [Pair(n, 0.05 + 0.001 * n, ("random0", 0), frozenset({("random0", 0, "B")})) for n in range(1, 8)]
    e = estimate(one_unit)
    assert e.pairs == 7 and e.units == 1 and e.bases == 1 and math.isnan(e.low) and math.isnan(e.p)
    two_units = one_unit + [Pair(n, 0.04, ("random1", 0), frozenset({("random1", 0, "B")})) for n in range(1, 8)]
    e = estimate(two_units)
    assert e.units == 2 and e.bases == 2
    unit_means = [np.mean([0.05 + 0.001 * n for n in range(1, 8)]), 0.04]
    assert e.mean == pytest.approx(np.mean(unit_means))
    low, high = e.low, e.high
    assert (high - low) / 2 == pytest.approx(12.706 * np.std(unit_means, ddof=1) / math.sqrt(2), rel=1e-3)  # t(0.975, 1)


def test_holm_and_the_trend():
    assert holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan], nan_ok=True)
    pairs = [Pair(n, -0.01 * n + noise, (f"r{u}", 0), frozenset()) for u, noise in enumerate((0.0, 0.002, -0.001))
             for n in (1, 4, 7)]
    slope = trend(pairs)
    assert slope.units == 3 and slope.mean == pytest.approx(-0.01) and slope.high < 0


def study_rows(rng: np.random.Generator, replicates: int, effect: float = 0.0, ns=(1, 4, 7)) -> list[Row]:
    """A study like the demo's under the null (``effect`` 0): every network's top-1 is its
    replicate's level plus noise; each replicate (a split and seed) has its own bases."""
    rows = []
    for seed in range(replicates):
        split = "random0"
        level = {side: 0.6 + rng.normal(0, 0.02) for side in "AB"}

        def add(network, condition, n, ft, side, value):
            rows.append(Row(study="null", source="transferbench", key=f"{split}/{network}/seed{seed}", dataset="synthetic",
                            split=split, network=network, condition=condition, n=n, fine_tune=ft, target_side=side,
                            source_side=None if condition == "base" else network[0], seed=seed, top1_mean_best10=value,
                            health="healthy"))
        for side in "AB":
            add(f"base{side}", "base", 0, 0, side, level[side])
        for n in ns:
            add(f"A{n}A", "selffer", n, 0, "A", level["A"] + rng.normal(0, 0.01) - effect * n)
            add(f"B{n}B", "selffer", n, 0, "B", level["B"] + rng.normal(0, 0.01) - effect * n)
            add(f"B{n}B+", "selffer", n, 1, "B", level["B"] + rng.normal(0, 0.01))
            add(f"A{n}B", "transfer", n, 0, "B", level["B"] + rng.normal(0, 0.01) - 2 * effect * n)
            add(f"A{n}B+", "transfer", n, 1, "B", level["B"] + rng.normal(0, 0.01) + effect)
    return rows


@pytest.mark.parametrize("replicates", [2, 3, 5])
def test_under_no_effect_a_whole_figure_shows_nothing_95_percent_of_the_time(replicates):
    rng = np.random.default_rng(replicates)
    runs, showing = 400, 0
    for _ in range(runs):
        found = effects_table(study_rows(rng, replicates))
        showing += any(r.shown for r in found.family("fig2"))
    # At most 5%: the observed rate may exceed it by chance by 2.6 standard errors (400 runs) at most.
    assert showing / runs <= 0.05 + 2.6 * math.sqrt(0.05 * 0.95 / runs), showing / runs


def test_a_real_effect_is_shown_with_its_sign():
    found = effects_table(study_rows(np.random.default_rng(0), 6, effect=0.01))
    assert {r.n for r in found.per_n("specificity") if r.agrees} == {4, 7}
    assert found.find("specificity", "slope per layer").agrees


def test_pairing_follows_split_seed_and_side():
    """Each network is read against the base of its own split, seed and side: moving a base to
    another seed, another split or the other side changes the pairs, never pairs them anyway."""
    rows = study_rows(np.random.default_rng(1), 3)
    found = effects_table(rows)
    [coadaptation] = [r for r in found.per_n("co-adaptation loss") if r.n == 1]
    bases = {(r.seed, r.target_side): r.top1_mean_best10 for r in rows if r.condition == "base"}
    by_seed = {seed: np.mean([r.top1_mean_best10 - bases[(seed, r.target_side)] for r in rows
                              if r.network in ("A1A", "B1B") and r.seed == seed]) for seed in range(3)}
    assert coadaptation.estimate.mean == pytest.approx(np.mean(list(by_seed.values())))
    assert coadaptation.estimate.units == 3 and coadaptation.estimate.pairs == 6 and coadaptation.estimate.bases == 6
    import dataclasses

    for change in ({"side": "A"}, {"seed": 9}, {"split": "random1"}):
        moved = [dataclasses.replace(r, target_side=change.get("side", r.target_side), seed=change.get("seed", r.seed),
                                     split=change.get("split", r.split))
                 if r.network == "baseB" and r.seed == 0 else r for r in rows]
        [again] = [r for r in effects_table(moved).per_n("co-adaptation loss") if r.n == 1]
        assert again.estimate.pairs == 5, change  # seed 0's B1B lost its base: it is paired with no other


def test_the_order_of_the_rows_never_changes_a_number():
    rows = study_rows(np.random.default_rng(2), 4)
    first = [r.to_csv_dict() for r in effects_table(rows).rows]
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    assert sorted(map(str, first)) == sorted(map(str, (r.to_csv_dict() for r in effects_table(shuffled).rows)))


def test_replicates_that_tie_give_no_interval_and_show_nothing():
    """Top-1 is k of the validation images: two replicates may give the very same difference (the
    tiny ViT's demo did, -0.093 twice). Their sample sd is 0, which does not make the spread 0:
    no interval, no p, nothing shown."""
    tie = [Pair(6, -0.0933, (f"random0-{seed}", seed), frozenset({("random0", seed, "B")})) for seed in (0, 1)]
    e = estimate(tie)
    assert e.units == 2 and e.mean == pytest.approx(-0.0933) and not e.has_interval and math.isnan(e.p)
    from transferbench.analysis.stats import interval_text

    assert interval_text(e) == "[no interval: every replicate gave the same difference]"
    assert holm([e.p, 0.01]) == [pytest.approx(math.nan, nan_ok=True), 0.01]
