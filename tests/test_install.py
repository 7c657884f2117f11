"""Installed, not only checked out: the wheel carries what a user needs at run time, and works
from an empty folder in a fresh virtual environment (torch and the rest from the site-packages of
the Python that runs the tests, a virtual environment or not: nothing is downloaded)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from tests.conftest import REPO

# The environment of the commands run in the new virtual environment: no PYTHONPATH that could
# put a checkout before the installed wheel.
CLEAN_ENV = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}


def run(command, cwd, timeout=600):
    done = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False, env=CLEAN_ENV)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_wheel_carries_the_shipped_files_and_works_from_an_empty_folder(tmp_path):
    # Built as pip builds it for a user: in an isolated environment with the build backend
    # pyproject.toml names (from the package index), so the test runs the same in any environment.
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "wheel", REPO], REPO)
    [wheel] = (tmp_path / "wheel").glob("transferbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, pattern in (("splits", "*.json"), ("configs", "*.toml")):
        expected = {f"transferbench/shipped/{folder}/{p.name}" for p in (REPO / folder).glob(pattern)}
        assert expected and expected <= names, sorted(expected - names)
    assert "transferbench/shipped/results/yosinski2014.csv" in names
    assert {"transferbench/presets/demo.toml", "transferbench/data/imagenet1k_classes.tsv"} <= names
    assert not any(name.startswith(("tests/", "splits/", "results/", "configs/")) for name in names)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    metadata = next(zipfile.ZipFile(wheel).read(n) for n in names if n.endswith(".dist-info/METADATA")).decode()
    assert "Requires-Dist: Pillow" in metadata and "License-Expression: MIT" in metadata

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path)
    # torch, numpy, ... from the tests' own Python (--system-site-packages would give a venv made
    # inside a venv the base interpreter's packages instead). A path in a .pth file is searched
    # after the venv's own site-packages, and its own .pth files (an editable checkout) are not run.
    own = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    paths = dict.fromkeys(path for path in sys.path if os.path.basename(path) in ("site-packages", "dist-packages"))
    (own / "tests-site-packages.pth").write_text("".join(f"{path}\n" for path in paths))
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
