"""Coverage of the intervals and the null "shown" rate of a whole figure, old rule against new.

    python benchmarks/interval_coverage.py [--draws 4000] [--figures 1000]

Old rule (before the effects table): a 95% percentile bootstrap over the pairs (2000
resamples) at each n; an effect "shown" at n when its interval excludes 0 on the paper's side;
a fig2 region shaded when any of its n is shown; every effect of the figure judged on its own.
New rule (``transferbench.analysis.stats``): a t-interval over independent replicates; an
effect shown at n when its Holm-adjusted p over every test of the figure is below 0.05.

Coverage: normal pairs with a true mean of 0.3 and sd 1, 2-10 pairs (one pair per replicate).
Null rate: a study of the demo's shape (four effects at n = 1, 4, 7, three pairs of sides per
replicate, each replicate with its own bases) with no effect at all; how often the figure
shows (shades) anything. Seeded: the same numbers on every machine.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_stats import study_rows  # noqa: E402  (the null study the tests use)
from transferbench.analysis.stats import EFFECTS, FIG2, Pairs, effects_table, t_interval  # noqa: E402


def old_bootstrap(values, seed: int = 0) -> tuple[float, float]:
    """The old interval: 95% percentile bootstrap of the mean over the pairs."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2 or np.ptp(data) == 0:
        return (math.nan, math.nan) if len(data) < 2 else (float(data[0]), float(data[0]))
    result = scipy_stats.bootstrap((data,), np.mean, n_resamples=2000, method="percentile", vectorized=True,
                                   random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def coverage(draws: int) -> None:
    rng = np.random.default_rng(0)
    print(f"coverage of a 95% interval of the mean, {draws} simulated studies each (normal pairs, true mean 0.3):")
    print(f"  {'pairs':>5s}  {'old: bootstrap over pairs':>26s}  {'new: t over replicates':>23s}")
    for pairs in (2, 3, 5, 10):
        data = rng.normal(0.3, 1.0, (draws, pairs))
        old = new = 0
        for row in data:
            low, high = old_bootstrap(row)
            old += low <= 0.3 <= high
            _, low, high, _ = t_interval(row)
            new += low <= 0.3 <= high
        print(f"  {pairs:5d}  {old / draws:26.3f}  {new / draws:23.3f}")


def old_figure_shows(rows) -> bool:
    pairs = Pairs(rows, "top1_mean_best10")
    for name in FIG2:
        spec = EFFECTS[name]
        for values in pairs.differences(spec.group, spec.against).values():
            low, high = old_bootstrap(values)
            if len(values) >= 2 and (low > 0 if spec.sign > 0 else high < 0):
                return True
    return False


def null_rates(figures: int) -> None:
    print(f"\nunder no effect at all, how often a whole fig2 shows (shades) an effect, {figures} simulated studies each:")
    print(f"  {'replicates':>10s}  {'old rule':>9s}  {'new rule':>9s}")
    for replicates in (2, 3, 5, 10):
        rng = np.random.default_rng(replicates)
        old = new = 0
        for _ in range(figures):
            rows = study_rows(rng, replicates)
            old += old_figure_shows(rows)
            new += any(r.agrees for r in effects_table(rows).family("fig2"))
        print(f"  {replicates:10d}  {old / figures:9.3f}  {new / figures:9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4000, help="simulated studies per row of the coverage table")
    parser.add_argument("--figures", type=int, default=1000, help="simulated null studies per row of the null table")
    args = parser.parse_args()
    started = time.perf_counter()
    coverage(args.draws)
    null_rates(args.figures)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
