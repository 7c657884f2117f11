"""Reference files that catch accidental changes to what the pipeline writes.

* tests/reference/yosinski2014-plan.json: the paper grid's plan (the checkout's path replaced
  by <repo>): job keys, order, specs and identities (which cover no path, so they are the same
  wherever the study is planned).
* tests/reference/yosinski2014-plan-v1.json: the same grid as the legacy plan format wrote it
  (identities over paths, here <repo> and <jobs>): re-planning it keeps every job.
* tests/reference/yosinski2014-sbatch.sh: the script of the grid's first array as submitit
  writes it (it depends on submitit's version: after an upgrade, read the diff, then
  regenerate with TRANSFERBENCH_UPDATE_REFERENCE=1).
* tests/reference/results-header.csv: the results CSV's columns.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from transferbench.analysis.results import to_csv
from transferbench.study.executors import SlurmExecutor
from transferbench.study.submit import group_arrays
from transferbench.study.plan import build_plan, write_plan
from transferbench.study.study import Study, order_jobs
from transferbench.study.status import states

REFERENCE = REPO / "tests" / "reference"


def compare(name: str, text: str) -> None:
    path = REFERENCE / name
    if os.environ.get("TRANSFERBENCH_UPDATE_REFERENCE") == "1" and name != "yosinski2014-plan.json":
        path.write_text(text, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from the reference; if the change is intended, regenerate it"


def test_paper_grid_plan_is_the_reference(tmp_path):
    plan = build_plan(REPO / "configs" / "yosinski2014.toml", tmp_path / "jobs")
    write_plan(plan, echo=lambda *_: None)
    text = (plan.study_dir / "plan.json").read_text(encoding="utf-8")
    assert str(tmp_path) not in text  # everything inside the study is written relative to it
    compare("yosinski2014-plan.json", text.replace(str(REPO), "<repo>"))


def test_a_legacy_plan_is_migrated_without_rerunning_anything(tmp_path):
    """The grid as the legacy format planned it (hashes over paths): planning it again keeps all
    170 jobs, and a finished one's files carry its new identity."""
    study_dir = tmp_path / "jobs" / "yosinski2014"
    study_dir.mkdir(parents=True)
    legacy = (REFERENCE / "yosinski2014-plan-v1.json").read_text(encoding="utf-8")
    (study_dir / "plan.json").write_text(legacy.replace("<jobs>", str(tmp_path / "jobs")).replace("<repo>", str(REPO)))
    old = {job["key"]: job["config_hash"] for job in json.loads(legacy)["jobs"]}
    run = study_dir / "runs" / "random0" / "A3B" / "seed0"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"config_hash": old["random0/A3B/seed0"], "status": "done"}))
    messages = []
    plan = build_plan(REPO / "configs" / "yosinski2014.toml", tmp_path / "jobs")
    changes = write_plan(plan, echo=messages.append)
    assert changes == {"added": [], "removed": [], "changed": []}, changes
    assert messages[0].startswith("170 jobs of a plan written by an older transferbench compute the same"), messages
    assert json.loads((run / "result.json").read_text())["config_hash"] == plan.jobs["random0/A3B/seed0"].config_hash
    assert json.loads((study_dir / "plan.json").read_text())["migrated"]["random0/A3B/seed0"] == old["random0/A3B/seed0"]
    # Once migrated, the plan is of the current format and re-planning it writes nothing.
    messages.clear()
    write_plan(build_plan(REPO / "configs" / "yosinski2014.toml", tmp_path / "jobs"), echo=messages.append)
    assert messages == [f"{study_dir}: plan unchanged (170 jobs); nothing written"]


FAKE_SBATCH = """#!/bin/sh
# stands in for Slurm's sbatch: keeps the script it is given and answers as sbatch does
count=$(ls "$CAPTURE" | wc -l)
cp "$1" "$CAPTURE/$count.sh"
echo "Submitted batch job $((7 + count))"
"""


def test_generated_sbatch_script_is_the_reference(tmp_path, monkeypatch):
    """The script submitit writes for the grid's first array that waits for a base, generated
    through submitit's public API (an sbatch on PATH that keeps the scripts it is given)."""
    plan = build_plan(REPO / "configs" / "yosinski2014.toml", tmp_path / "jobs")
    write_plan(plan, echo=lambda *_: None)
    study = Study.open(plan.study_dir)
    # every job, as submit would choose them once the plan names ImageNet's folder (without it, submit holds them)
    groups = group_arrays(study, [(key,) for key in order_jobs(study.jobs)], states(study, need_live=False))
    bin_dir, capture = tmp_path / "bin", tmp_path / "capture"
    bin_dir.mkdir()
    capture.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CAPTURE", str(capture))
    with pytest.warns(UserWarning, match="under /tmp"):
        calls = SlurmExecutor(echo=lambda *_: None).launch(study, groups[:2], {})
    waits, keys = groups[1]
    assert calls == 2 and waits == ("random0/baseA/seed0",) and len(keys) == 28
    script = (capture / "1.sh").read_text()
    assert "#SBATCH --dependency=afterok:7_0" in script
    token = next(line for line in script.splitlines() if line.startswith("#SBATCH --job-name=")).split("transferbench-")[1]
    assert len(token) == 12  # each array is named transferbench-<token>, recorded in the manifest before sbatch
    compare("yosinski2014-sbatch.sh", script.replace(str(tmp_path / "jobs"), "<jobs>").replace(sys.executable, "python")
            .replace(token, "<token>"))


def test_results_csv_header_is_the_reference():
    compare("results-header.csv", to_csv([]))
