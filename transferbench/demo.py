"""`transferbench demo`: the whole pipeline on built-in data, in minutes, with nothing downloaded.

plan (presets/demo.toml) -> submit with the local executor -> collect -> plot, then a few
lines that read the result. Running it again resumes: finished networks are not retrained.
"""

from __future__ import annotations

import os
import time
from importlib import resources
from pathlib import Path

import numpy as np

from transferbench.errors import UserError

PRESETS = {"synthetic": "demo.toml", "fashion-mnist": "demo-fashion-mnist.toml"}


def preset_text(dataset: str) -> str:
    return resources.files("transferbench").joinpath(f"presets/{PRESETS[dataset]}").read_text(encoding="utf-8")


def _developmental_lines(rows) -> list[str]:
    from transferbench.analysis.stats import developmental_table

    lines = []
    for row in developmental_table(rows):
        if not row["growth"] or row["vs_reference"] is None:
            continue
        kept = (f"; the source task's top-1 with its own classifier went {row['source_top1_before']:.3f} -> "
                f"{row['source_top1_after']:.3f}" if row["source_top1_after"] is not None else "")
        difference = row["vs_reference"]
        # Claimed only from the interval over pairs: single networks vary with the seed and the CPU's float order.
        paired = not np.isnan(row["ci_low"])
        helped, worse = paired and row["ci_low"] > 0, paired and row["ci_high"] < 0
        unclear = (f"the 95% interval [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}] over {row['networks']} pairs includes "
                   "no difference" if paired else "one pair only, and single networks vary with the seed: more seeds would tell")
        lines.append(f"grown {row['network']} ({row['growth']}: new units, {'normalised and scaled' if row['normalize'] else 'raw'}"
                     f"): {row['top1']:.3f}, {difference:+.3f} vs classic fine-tuning {row['reference']}{kept}: "
                     + ("added capacity helped" if helped else
                        "the grown network did worse than classic fine-tuning" if worse else unclear))
    return lines


# What each effect of the paper's reading means, in its words.
EFFECT_TEXT = {
    "co-adaptation loss": ("BnB (frozen selffer) below its own base", "fragile co-adaptation between the layers cut apart"),
    "specificity": ("AnB (frozen transfer) below BnB", "the higher the layers, the more specific to task A they are"),
    "fine-tuning recovers": ("BnB+ (fine-tuned selffer) above BnB", "fine-tuning recovers what freezing lost"),
    "lingering boost": ("AnB+ (fine-tuned transfer) above its own base",
                        "features from A still help after fine-tuning (the lingering boost)"),
}


def _interval(low: float, high: float) -> str:
    return f"[{low:+.3f}, {high:+.3f}]" if not np.isnan(low) else "[no interval: one pair]"


def _against_selffer_plus(rows, meaning: str) -> str:
    """The paper also beat BnB+, which trains as long as AnB+: without that, a boost over the base
    may be the extra training rather than A's features."""
    from transferbench.analysis.stats import versus_selffer_plus

    diffs, low, high = versus_selffer_plus(rows)
    if len(diffs) < 2:
        return meaning + " (no BnB+ on the same split, seed and side to rule out the longer training)"
    versus = f"{np.mean(diffs):+.3f} {_interval(low, high)} vs BnB+ of the same n over {len(diffs)} pairs"
    if low > 0:
        return f"{meaning}; and {versus}, so it is A's features, not the longer training"
    if high < 0:
        return (f"but AnB+ is {versus}: BnB+ trains as long and does better, so the gain over the base is the longer "
                "training, not a lingering boost from A's features")
    return f"{meaning}, though against BnB+ of the same n it is {versus}: the longer training may explain it"


def reading(rows) -> list[str]:
    """A few sentences on what the numbers show, in the paper's terms: each effect is claimed only
    where the 95% interval of its paired differences shows it with the paper's sign."""
    from transferbench.analysis.stats import Pairs, bootstrap_ci, effects

    lines = []
    left = [r for r in rows if not r.usable]
    if left:
        lines.append(f"{len(left)} networks left out of every mean (stalled or diverged, or built on one): "
                     + ", ".join(f"{r.key} ({r.health.replace('_', ' ')})" for r in left[:4]) + (" ..." if len(left) > 4 else ""))
    bases = [r for r in rows if r.condition == "base" and r.usable and r.value("top1_mean_best10") is not None]
    if not bases:
        return lines + ["no usable base network, so there is nothing to compare against"]
    by_side = {side: [r.top1_mean_best10 for r in bases if r.target_side == side] for side in sorted({r.target_side or "" for r in bases})}
    lines.append("base networks (mean of each network's 10 best evaluations): "
                 + ", ".join(f"base{side or ''} {np.mean(v):.3f} ({len(v)} seeds)" for side, v in by_side.items())
                 + "; every network below is read against the base of its own split, seed and side")
    for name, per_n in effects(rows).items():
        what, meaning = EFFECT_TEXT[name]
        if not per_n:
            continue
        shown = [e for e in per_n if e.shown]
        strongest = max(shown or per_n, key=lambda e: e.mean * e.sign)
        figures = (f"{strongest.mean:+.3f} {_interval(strongest.low, strongest.high)} at n={strongest.n} over "
                   f"{strongest.pairs} pair{'s' if strongest.pairs != 1 else ''}")
        if shown:
            where = ", ".join(str(e.n) for e in shown)
            if name == "lingering boost":
                meaning = _against_selffer_plus(rows, meaning)
            lines.append(f"{what} at n={where} ({figures}): {meaning}")
        elif all(e.pairs < 2 for e in per_n):
            lines.append(f"not seen: {what} (nearest: {figures}); one network per condition cannot show it: train more seeds")
        else:
            lines.append(f"not seen: {what}; the 95% intervals include no difference or the other sign (nearest: {figures})")
    pairs = Pairs(rows, "top1_mean_best10")
    random_rows = [r for r in rows if r.condition == "random_init" and r.usable and r.value("top1_mean_best10") is not None]
    for n in sorted({int(r.n) for r in random_rows}):
        members = [r for r in random_rows if int(r.n) == n]
        versus_base = [r.top1_mean_best10 - b for r in members if (b := pairs.value("base", r, 0)) is not None]
        versus_learned = [r.top1_mean_best10 - b for r in members if (b := pairs.value("selffer", r, n)) is not None]
        if not versus_base:
            continue
        low, high = bootstrap_ci(versus_base)
        sentence = f"random frozen layers 1..{n} (R{n}): {np.mean(versus_base):+.3f} {_interval(low, high)} vs their own base"
        if versus_learned:
            l_low, l_high = bootstrap_ci(versus_learned)
            sentence += f", {np.mean(versus_learned):+.3f} {_interval(l_low, l_high)} vs learned frozen layers (B{n}B)"
            low, high = l_low, l_high
        lines.append(sentence + (": one network each: more seeds would tell" if np.isnan(high) else
                                 ": learned features beat random ones" if high < 0 else
                                 ": not seen that learned features beat random ones (the interval includes no difference)"))
    return lines + _developmental_lines(rows)


def run_demo(dataset: str = "synthetic", out: Path = Path("transferbench-demo"), workers: int | None = None,
             data_root: str | None = None, echo=print, first_seed: int = 0, settings: list[str] | None = None) -> dict:
    from transferbench.analysis.figures import plot_all
    from transferbench.analysis.results import collect_rows, write_rows
    from transferbench.study.submit import submit
    from transferbench.study.plan import build_plan, write_plan
    from transferbench.study.status import status_table

    if dataset not in PRESETS:
        raise UserError(f"unknown demo dataset {dataset!r}; choose one of {', '.join(PRESETS)}")
    started = time.perf_counter()
    out = Path(out).resolve()
    config = out / PRESETS[dataset]
    text = preset_text(dataset)
    from transferbench.fileio import atomic_write_text

    atomic_write_text(config, text)
    if dataset == "synthetic":
        echo("transferbench demo: the built-in synthetic dataset (procedurally generated 32x32 images of 12 classes in "
             "4 families; not natural images)")
    else:
        from transferbench.worker.data import find_fashion_mnist

        find_fashion_mnist(Path(data_root) if data_root else None)  # a clear error now rather than in every job
        echo("transferbench demo: the real Fashion-MNIST")
    if first_seed < 0:
        raise UserError(f"--first-seed must be >= 0, got {first_seed}")
    import tomllib

    preset_seeds = tomllib.loads(text)["study"]["seeds"]
    seeds = [f"study.seeds=[{', '.join(str(first_seed + s) for s in preset_seeds)}]"]
    plan = build_plan(config, out / "jobs", {"data_root": data_root} if data_root else None, seeds + list(settings or []))
    write_plan(plan, echo)
    echo(plan.summary().rstrip())
    try:
        import torch

        gpus = torch.cuda.device_count()
    except Exception:  # noqa: BLE001
        gpus = 0
    # The demo's networks are small: on a GPU one leaves it mostly idle, so several share each GPU.
    workers = workers or (max(gpus, min(8, os.cpu_count() or 1)) if gpus else max(1, min(2, os.cpu_count() or 1)))
    submit(plan.study_dir, "local", workers=workers, echo=echo)
    table, totals = status_table(plan.study_dir)
    if totals["failed"] or totals["blocked"]:
        echo(table.rstrip())
        raise UserError(f"{totals['failed'] + totals['blocked']} demo networks failed (see above); fix the cause and run the demo again")
    rows, _ = collect_rows(plan.study_dir)
    csv_path = out / "results" / f"{plan.study}.csv"
    write_rows(csv_path, rows)
    figures = plot_all(rows, out / "figures", echo=echo)
    elapsed = time.perf_counter() - started
    echo("")
    echo(f"done in {elapsed:.0f} s: {len(rows)} networks, results in {csv_path}")
    for path in figures:
        if path.suffix in (".png", ".csv"):
            echo(f"  {path}")
    echo("what it shows:")
    for line in reading(rows):
        echo(f"  - {line}")
    if any(r.health == "stalled" for r in rows):
        echo(f"stalled networks can be trained again from other random streams: transferbench submit {plan.study_dir} "
             "--executor local --retry-stalled, then run the demo again")
    return {"rows": rows, "figures": figures, "seconds": elapsed, "csv": csv_path}
