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


def _mean(rows, condition: str, fine_tune: int, ns) -> float | None:
    from transferbench.analysis.stats import is_developmental

    values = [r.top1_mean_best10 for r in rows if r.condition == condition and int(r.fine_tune) == fine_tune
              and int(r.n) in ns and r.top1_mean_best10 is not None and not is_developmental(r)]
    return float(np.mean(values)) if values else None


# How far one network's top-1 moves with nothing changed but the CPU thread count, measured on
# the synthetic data at demo scale (benchmarks/RESULTS.md): single-network differences below
# it are not findings.
SINGLE_NETWORK_SPREAD = 0.05


def _developmental_lines(rows) -> list[str]:
    from transferbench.analysis.stats import developmental_table

    lines = []
    for row in developmental_table(rows):
        if not row["growth"] or row["vs_reference"] is None:
            continue
        kept = (f"; the source task's top-1 with its own classifier went {row['source_top1_before']:.3f} -> "
                f"{row['source_top1_after']:.3f}" if row["source_top1_after"] is not None else "")
        difference = row["vs_reference"]
        if row["networks"] > 1 and not np.isnan(row["ci_low"]):
            helped, worse = row["ci_low"] > 0, row["ci_high"] < 0
            unclear = f"the 95% interval over {row['networks']} networks includes no difference"
        else:
            helped, worse = difference > SINGLE_NETWORK_SPREAD, difference < -SINGLE_NETWORK_SPREAD
            unclear = (f"one network each, and single networks here vary by about {SINGLE_NETWORK_SPREAD} from run to run: "
                       "more seeds would tell")
        lines.append(f"grown {row['network']} ({row['growth']}: new units, {'normalised and scaled' if row['normalize'] else 'raw'}"
                     f"): {row['top1']:.3f}, {difference:+.3f} vs classic fine-tuning {row['reference']}{kept}: "
                     + ("added capacity helped" if helped else
                        "the grown network did worse than classic fine-tuning" if worse else unclear))
    return lines


def reading(rows) -> list[str]:
    """A few sentences on what the numbers show, in the paper's terms."""
    base = _mean(rows, "base", 0, {0})
    if base is None:
        return ["no base network finished, so there is nothing to compare against"]
    lines = [f"base networks: mean top-1 {base:.3f} (mean of each network's 10 best evaluations)"]
    anb_low, anb_high = _mean(rows, "transfer", 0, {1}), _mean(rows, "transfer", 0, {7})
    bnb_high = _mean(rows, "selffer", 0, {7})
    if anb_low is not None and anb_high is not None:
        gap = f", {anb_high - bnb_high:+.3f} vs BnB at n=7" if bnb_high is not None else ""
        lines.append(f"AnB (frozen transfer): {anb_low:.3f} at n=1 -> {anb_high:.3f} at n=7{gap}: "
                     + ("the higher the layers, the more specific to task A they are" if anb_high < anb_low - 0.01 else
                        "no clear drop with depth in this run"))
    bnb = [(n, v) for n in range(1, 8) if (v := _mean(rows, "selffer", 0, {n})) is not None]
    if bnb:
        worst = min(bnb, key=lambda item: item[1])
        if worst[1] < base - 0.01:
            lines.append(f"BnB (frozen selffer): lowest {worst[1]:.3f} at n={worst[0]} ({worst[1] - base:+.3f} vs base): "
                         "fragile co-adaptation between the layers that were cut apart")
        else:
            lines.append(f"BnB (frozen selffer) never falls below the bases (lowest {worst[1]:.3f} at n={worst[0]}): the "
                         "bases are short of convergence at this scale and BnB trains on from them, so compare transfer "
                         "with BnB rather than with the bases")
    plus, selffer_plus = _mean(rows, "transfer", 1, set(range(1, 8))), _mean(rows, "selffer", 1, set(range(1, 8)))
    if plus is not None and selffer_plus is not None:
        lines.append(f"AnB+ (transfer, fine-tuned): mean {plus:.3f}, {plus - selffer_plus:+.3f} vs BnB+ with the same "
                     "training: " + ("features from A still help after fine-tuning (the lingering boost)"
                                     if plus > selffer_plus + 0.005 else "no lingering boost at this scale"))
    random_init = _mean(rows, "random_init", 0, set(range(1, 8)))
    if random_init is not None:
        lines.append(f"random frozen layers (RnB): mean {random_init:.3f}: learned features beat random ones"
                     if random_init < base else f"random frozen layers (RnB): mean {random_init:.3f}")
    return lines + _developmental_lines(rows)


def run_demo(dataset: str = "synthetic", out: Path = Path("transferbench-demo"), workers: int | None = None,
             data_root: str | None = None, echo=print) -> dict:
    from transferbench.analysis.figures import plot_all
    from transferbench.analysis.results import collect_rows, write_rows
    from transferbench.study.executors import submit
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
    plan = build_plan(config, out / "jobs", {"data_root": data_root} if data_root else None)
    write_plan(plan, echo)
    echo(plan.summary().rstrip())
    try:
        import torch

        gpus = torch.cuda.device_count()
    except Exception:  # noqa: BLE001
        gpus = 0
    workers = workers or (gpus if gpus else max(1, min(2, os.cpu_count() or 1)))
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
    return {"rows": rows, "figures": figures, "seconds": elapsed, "csv": csv_path}
