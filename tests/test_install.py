"""Installed, not only checked out: the wheel carries what a user needs at run time, and works
from an empty folder in a fresh virtual environment (torch and the rest from this Python's
site-packages: nothing is downloaded)."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.conftest import REPO


def run(command, cwd, timeout=600):
    done = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_wheel_carries_the_shipped_files_and_works_from_an_empty_folder(tmp_path):
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "wheel", REPO], REPO)
    [wheel] = (tmp_path / "wheel").glob("transferbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, pattern in (("splits", "*.json"), ("configs", "*.toml")):
        expected = {f"transferbench/shipped/{folder}/{p.name}" for p in (REPO / folder).glob(pattern)}
        assert expected and expected <= names, sorted(expected - names)
    assert "transferbench/shipped/results/yosinski2014.csv" in names
    assert {"transferbench/presets/demo.toml", "transferbench/data/imagenet1k_classes.tsv"} <= names
    assert not any(name.startswith(("tests/", "splits/", "results/", "configs/")) for name in names)

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", venv], tmp_path)
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    where = run([venv / "bin" / "python", "-c", "import transferbench; print(transferbench.__file__)"], empty)
    assert where.startswith(str(venv)), where  # the installed wheel, not the checkout
    tool = venv / "bin" / "transferbench"
    assert "yosinski2014 " in run([tool, "plan", "--list"], empty)
    assert "planned 170 jobs" in run([tool, "plan", "yosinski2014"], empty)
    plotted = run([tool, "plot", "--reference", "yosinski2014", "--out", "figures"], empty)
    assert "+0.016 [+0.011, +0.021]" in plotted and (empty / "figures" / "yosinski2014-fig2.png").is_file()
    demo = run([tool, "demo", "--set", "train.iterations=6", "--set", "train.eval_every=3", "--set", "study.seeds=[0]",
                "--out", "demo"], empty)
    assert "done in" in demo and (empty / "demo" / "results" / "demo.csv").is_file()
    assert sorted(p.name for p in empty.iterdir()) == ["demo", "figures", "jobs"]  # nothing written elsewhere
