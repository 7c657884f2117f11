"""`transferbench demo`: the whole pipeline on built-in data, in minutes, with nothing downloaded.

plan (presets/demo.toml) -> submit with the local executor -> collect -> plot, then a few
lines that read the result. Running it again resumes: finished networks are not retrained.
"""

from __future__ import annotations

import os
import shutil
import time
from importlib import resources
from pathlib import Path

from transferbench.errors import UserError

PRESETS = {"synthetic": "demo.toml", "fashion-mnist": "demo-fashion-mnist.toml"}
# The demo's networks train for a few hundred iterations with a handful of evaluations, too few
# for the paper's mean of the 10 best: its figures and reading use the final network's top-1.
DEMO_METRIC = "top1_final"


def preset_text(dataset: str) -> str:
    return resources.files("transferbench").joinpath(f"presets/{PRESETS[dataset]}").read_text(encoding="utf-8")


def run_demo(dataset: str = "synthetic", out: Path = Path("transferbench-demo"), workers: int | None = None,
             data_root: str | None = None, echo=print, first_seed: int = 0, settings: list[str] | None = None) -> dict:
    from transferbench.analysis.figures import plot_all, plot_units
    from transferbench.analysis.reading import reading
    from transferbench.analysis.results import collect_rows, curve_rows, curves_path, write_curves, write_rows
    from transferbench.study.submit import submit
    from transferbench.study.plan import build_plan, write_plan
    from transferbench.study.status import status_table

    if dataset not in PRESETS:
        raise UserError(f"unknown demo dataset {dataset!r}; choose one of {', '.join(PRESETS)}")
    if first_seed < 0:
        raise UserError(f"--first-seed must be >= 0, got {first_seed}")
    started = time.perf_counter()
    out = Path(out).resolve()
    config = out / PRESETS[dataset]
    text = preset_text(dataset)
    if dataset == "synthetic":
        echo("transferbench demo: the built-in synthetic dataset (procedurally generated 32x32 images of 12 classes in "
             "4 families; not natural images)")
    else:
        from transferbench.worker.data import find_fashion_mnist

        find_fashion_mnist(Path(data_root) if data_root else None)  # a clear error now rather than in every job
        echo("transferbench demo: the real Fashion-MNIST")
    from transferbench.fileio import atomic_write_text
    from transferbench.schema.loader import read_toml  # tomllib, or tomli on Python 3.10

    preset_seeds = read_toml(text, PRESETS[dataset])["study"]["seeds"]
    seeds = [f"study.seeds=[{', '.join(str(first_seed + s) for s in preset_seeds)}]"]
    new_out, had_config = not out.exists(), config.exists()
    atomic_write_text(config, text)
    try:
        plan = build_plan(config, out / "jobs", {"data_root": data_root} if data_root else None, seeds + list(settings or []))
    except BaseException:  # a refused setting leaves nothing behind
        if new_out:
            shutil.rmtree(out, ignore_errors=True)
        elif not had_config:
            config.unlink(missing_ok=True)
        raise
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
    records: dict = {}
    rows, _ = collect_rows(plan.study_dir, records)
    csv_path = out / "results" / f"{plan.study}.csv"
    write_rows(csv_path, rows)
    figures = plot_all(rows, out / "figures", metric=DEMO_METRIC, echo=echo)
    curves = curve_rows(records, rows)  # the grown network's original and added units, read alone (figure 6)
    if curves:
        write_curves(curves_path(csv_path), curves)
        figures += plot_units(curves, out / "figures", echo=echo)
    elapsed = time.perf_counter() - started
    echo("")
    echo(f"done in {elapsed:.0f} s: {len(rows)} networks, results in {csv_path}")
    for path in figures:
        if path.suffix in (".png", ".csv"):
            echo(f"  {path}")
    echo("what it shows:")
    for line in reading(rows, DEMO_METRIC):
        echo(f"  - {line}")
    if any(r.health == "stalled" for r in rows):
        echo(f"stalled networks can be trained again from other random streams: transferbench submit {plan.study_dir} "
             "--executor local --retry-stalled, then run the demo again")
    return {"rows": rows, "figures": figures, "seconds": elapsed, "csv": csv_path}
