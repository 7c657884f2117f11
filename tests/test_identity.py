"""A job is what it computes: moving a study, its data or its splits changes no job; changing a
split's content changes exactly the jobs that read it; a legacy plan keeps its finished work."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO, TINY_STUDY, make_fashion_mnist
from transferbench.errors import UserError
from transferbench.study.submit import submit
from transferbench.study.plan import build_plan, write_plan
from transferbench.study.study import Study
from transferbench.study.status import states, status_table

QUIET = {"echo": lambda *_: None}


def _config(tmp_path, data, splits=None, networks=("baseA", "AnB"), split_names=("random0",)) -> "Path":
    text = TINY_STUDY.format(name="moved", data=data, lr=0.05, iterations=8, every=4, networks=json.dumps(list(networks)),
                             n="[1, 3]", extra="").replace('splits = ["random0"]', f"splits = {json.dumps(list(split_names))}")
    if splits is not None:
        text = text.replace('seeds = [0]', f'seeds = [0]\nsplit_dir = "{splits}"')
    config = tmp_path / "moved.toml"
    config.write_text(text)
    return config


def test_moving_a_study_and_its_data_changes_no_job(tmp_path):
    data = make_fashion_mnist(tmp_path / "data")
    config = _config(tmp_path, data)
    plan = build_plan(config, tmp_path / "scratch")
    write_plan(plan, **QUIET)
    submit(plan.study_dir, "debug", **QUIET)
    hashes = {key: job.config_hash for key, job in plan.jobs.items()}
    # the study moves from scratch to project space, and the data with it
    shutil.move(tmp_path / "scratch", tmp_path / "project")
    shutil.move(tmp_path / "data", tmp_path / "data2")
    moved = tmp_path / "project" / "moved"
    study = Study.open(moved)  # a moved study reads as it was: its paths are relative to its folder
    assert {state for state, _ in states(study).values()} == {"done"}
    assert study.jobs["random0/A3B/seed0"].spec.source_checkpoint == str(moved / "runs/random0/baseA/seed0/model.pt")
    config.write_text(config.read_text().replace(str(data), str(tmp_path / "data2")))
    messages = []
    changes = write_plan(build_plan(config, tmp_path / "project"), echo=messages.append)
    assert changes == {"added": [], "removed": [], "changed": []}, messages
    assert {key: job.config_hash for key, job in Study.open(moved).jobs.items()} == hashes
    table, totals = status_table(moved)
    assert totals["done"] == len(hashes) and not totals["failed"], table


def test_a_split_regenerated_with_new_content_changes_exactly_its_jobs(tmp_path):
    splits = tmp_path / "splits"
    splits.mkdir()
    for name in ("random0", "random1"):
        shutil.copy(REPO / "splits" / f"fashion-mnist-{name}.json", splits)
    config = _config(tmp_path, make_fashion_mnist(tmp_path / "data"), splits, split_names=("random0", "random1"))
    plan = build_plan(config, tmp_path / "jobs")
    write_plan(plan, **QUIET)

    def regenerate(seed: int) -> None:
        subprocess.run([sys.executable, "-m", "transferbench", "splits", "random", "--dataset", "fashion-mnist", "--seed",
                        str(seed), "--name", "fashion-mnist-random0", "--out", str(splits)], check=True, capture_output=True)

    regenerate(0)  # the same content written again: nothing changes
    assert write_plan(build_plan(config, tmp_path / "jobs"), **QUIET) == {"added": [], "removed": [], "changed": []}
    before = Study.open(plan.study_dir).jobs
    regenerate(7)  # new content under the same name: exactly the jobs on random0
    changes = write_plan(build_plan(config, tmp_path / "jobs"), **QUIET)
    assert changes["changed"] == sorted(key for key in before if key.startswith("random0/")) and not changes["added"]
    assert changes["changed"] and all(not key.startswith("random1/") for key in changes["changed"])


def test_a_job_refuses_a_split_that_changed_after_it_was_planned(tmp_path):
    splits = tmp_path / "splits"
    splits.mkdir()
    shutil.copy(REPO / "splits" / "fashion-mnist-random0.json", splits)
    config = _config(tmp_path, make_fashion_mnist(tmp_path / "data"), splits, networks=("baseA",))
    plan = build_plan(config, tmp_path / "jobs")
    write_plan(plan, **QUIET)
    subprocess.run([sys.executable, "-m", "transferbench", "splits", "random", "--dataset", "fashion-mnist", "--seed", "7",
                    "--name", "fashion-mnist-random0", "--out", str(splits)], check=True, capture_output=True)
    from transferbench.worker.train import run_job

    with pytest.raises(UserError, match="changed since this job was planned.*plan` again"):
        run_job(plan.jobs["random0/baseA/seed0"].spec, progress=False)


def test_a_legacy_study_keeps_its_networks_after_moving_and_planning_again(tmp_path):
    """A study planned and trained by the legacy format (hashes over absolute paths, elsewhere on
    disk): planned again here, every job is kept, its files carry the new identity, status says
    done, and a new transfer copies from a migrated base (whose weights now carry it)."""
    data = make_fashion_mnist(tmp_path / "data")
    study_dir = tmp_path / "jobs" / "legacy"
    shutil.copytree(REPO / "tests" / "reference" / "legacy-study", study_dir, ignore=shutil.ignore_patterns("*.toml"))
    config = tmp_path / "legacy.toml"
    config.write_text((REPO / "tests" / "reference" / "legacy-study" / "legacy.toml").read_text()
                      .replace("/tmp/legacy/old-place/data", str(data)))
    with pytest.raises(UserError, match="older transferbench.*plan"):
        Study.open(study_dir)
    messages = []
    plan = build_plan(config, tmp_path / "jobs")
    changes = write_plan(plan, echo=messages.append)
    assert changes == {"added": [], "removed": [], "changed": []}, messages
    assert messages[0].startswith("6 jobs of a plan written by an older transferbench"), messages
    table, totals = status_table(study_dir)
    assert totals["done"] == 6, table
    config.write_text(config.read_text().replace('"BnB+"]', '"BnB+", "AnB+"]'))
    messages.clear()
    changes = write_plan(build_plan(config, tmp_path / "jobs"), echo=messages.append)
    assert changes["added"] == ["random0/A1B+/seed0", "random0/A3B+/seed0"] and not changes["changed"], messages
    submit(study_dir, "debug", **QUIET)
    _, totals = status_table(study_dir)
    assert totals["done"] == 8
    record = json.loads((study_dir / "runs/random0/A3B+/seed0/result.json").read_text())
    assert record["source"]["config_hash"] == Study.open(study_dir).jobs["random0/baseA/seed0"].config_hash
