"""The planner: the paper's grid, idempotent re-planning, config errors; the debug and local executors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter

import pytest

from tests import conftest
from tests.conftest import REPO
from tests.formats import growing_a_brain_files, growing_a_brain_vgg16_files
from transferbench.errors import UserError
from transferbench.study.submit import submit
from transferbench.study.study import Study
from transferbench.study.status import states, status_table
from transferbench.study.plan import build_plan, category, write_plan
from transferbench.analysis.results import collect_rows


def test_paper_grid_matches_the_published_logs(tmp_path):
    """SPEC: 170 networks, 10+1+12 bases, 56+14 AnB, 28 BnB, 28 AnB+, 14 BnB+, 7 random-init."""
    plan = build_plan(REPO / "configs" / "yosinski2014.toml", tmp_path)
    counts = Counter(category(job) for job in plan.jobs.values())
    assert len(plan.jobs) == 170
    assert counts == {"base": 23, "transfer AnB": 70, "selffer BnB": 28, "transfer AnB+": 28, "selffer BnB+": 14,
                      "random-init": 7}
    blocks = Counter((job.block, category(job)) for job in plan.jobs.values())
    assert blocks[("random", "base")] == 8 and blocks[("natman", "base")] == 2 and blocks[("natman", "transfer AnB")] == 14
    assert blocks[("random", "transfer AnB")] == 56 and blocks[("reduced", "base")] == 12
    job = plan.jobs["random0/A3B+/seed0"]
    assert job.depends == ("random0/baseA/seed0",) and job.side == "B" and job.spec.condition.label() == "transfer3+"
    assert job.spec.source_checkpoint == str(tmp_path / "yosinski2014" / "runs" / "random0" / "baseA" / "seed0" / "model.pt")
    assert job.spec.model.num_classes == 500 and plan.jobs["natman/A1B/seed0"].spec.model.num_classes == 551
    assert plan.jobs["all/R4/seed0"].spec.condition.kind == "random_init" and plan.jobs["all/base/seed0"].spec.split is None
    assert plan.jobs["reduced0010/base/seed0"].spec.model.num_classes == 1000
    # Every base appears once, however many jobs copy from it.
    assert sum(1 for key in plan.jobs if key.startswith("random0/baseA/")) == 1
    full = build_plan(REPO / "configs" / "yosinski2014-full.toml", tmp_path)
    assert Counter(category(j) for j in full.jobs.values())["transfer AnB+"] == 5 * 2 * 7


def test_replanning_is_idempotent_and_reports_changes(tmp_path):
    config = tmp_path / "study.toml"
    text = (REPO / "configs" / "fashion-mnist.toml").read_text()
    config.write_text(text)
    plan = build_plan(config, tmp_path / "jobs")
    write_plan(plan, echo=lambda *_: None)
    files = {p: p.stat().st_mtime_ns for p in plan.study_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    messages = []
    write_plan(build_plan(config, tmp_path / "jobs"), echo=messages.append)
    assert messages == [f"{plan.study_dir}: plan unchanged (77 jobs); nothing written"]
    assert files == {p: p.stat().st_mtime_ns for p in plan.study_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    # A changed recipe for one block changes exactly its jobs; their old outputs are moved aside.
    out_dir = plan.study_dir / "runs" / "natman" / "A1B" / "seed0"
    out_dir.mkdir(parents=True)
    (out_dir / "checkpoint.pt").write_bytes(b"old")
    config.write_text(text.replace('name = "natman"\n', 'name = "natman"\ntrain = { lr = 0.02 }\n'))
    messages.clear()
    changes = write_plan(build_plan(config, tmp_path / "jobs"), echo=messages.append)
    assert len(changes["changed"]) == 10 and all(k.startswith("natman/") for k in changes["changed"])
    assert not out_dir.exists() and list(out_dir.parent.glob("seed0.old-*"))
    assert messages[0].startswith("10 jobs changed: natman/")


@pytest.mark.parametrize("edit, message", [
    ('dataset = "fashion-mnist"', "dataset 'mnist' is not one of fashion-mnist, cifar100, imagenet1k"),
    ('networks = ["baseA", "baseB", "BnB", "BnB+", "AnB", "AnB+"]', "unknown network 'A2B'; choose from baseA, base,"),
    ('splits = ["random0", "random1"]', "unknown split 'random9' for fashion-mnist; choose one of: chain0, natman, random0"),
    ("lr = 0.01", "unknown key 'learning_rate' in [train]; valid keys: amp, batch_size"),
    ("gpus = 0", "unknown key 'gpu' in [slurm]; valid keys: account"),
    ("[[block]]", "[[blocks]]"),
])
def test_config_errors_list_the_valid_choices(tmp_path, edit, message):
    replacement = {'dataset = "fashion-mnist"': 'dataset = "mnist"',
                   'networks = ["baseA", "baseB", "BnB", "BnB+", "AnB", "AnB+"]': 'networks = ["A2B"]',
                   'splits = ["random0", "random1"]': 'splits = ["random9"]', "lr = 0.01": "learning_rate = 0.01",
                   "gpus = 0": "gpu = 0", "[[block]]": "[[blocks]]"}[edit]
    config = tmp_path / "bad.toml"
    config.write_text((REPO / "configs" / "fashion-mnist.toml").read_text().replace(edit, replacement, 1))
    expected = "unknown key 'blocks' in [top level]" if edit == "[[block]]" else message
    with pytest.raises(UserError, match=re.escape(expected)):
        build_plan(config, tmp_path)
    assert not (tmp_path / "fashion-mnist").exists()


def tiny_study(tmp_path, lr: float = 0.05):
    return conftest.tiny_study(tmp_path, "tiny", ["AnB", "AnB+"], [2], iterations=8, every=4, lr=lr)


def test_debug_executor_runs_the_graph_and_status_reads_the_files(tmp_path):
    study_dir = tiny_study(tmp_path)
    assert {s for s, _ in states(Study.open(study_dir)).values()} == {"planned"}
    dry = submit(study_dir, "debug", dry_run=True, echo=lambda *_: None)
    assert [keys for _, keys in dry.arrays] == [["random0/baseA/seed0"], ["random0/A2B/seed0", "random0/A2B+/seed0"]]
    submit(study_dir, "debug", echo=lambda *_: None)
    table, totals = status_table(study_dir)
    assert totals["done"] == 3 and "totals: done 3" in table
    record = json.loads((study_dir / "runs" / "random0" / "A2B+" / "seed0" / "result.json").read_text())
    assert record["spec"]["source_checkpoint"].endswith("runs/random0/baseA/seed0/model.pt") and record["status"] == "done"
    rows, missing = collect_rows(study_dir)
    assert missing == [] and [r.network for r in rows] == ["baseA", "A2B", "A2B+"]
    plus = rows[2]
    assert (plus.condition, plus.n, plus.fine_tune, plus.source_side, plus.target_side) == ("transfer", 2, 1, "A", "B")
    assert plus.top1_mean_best10 == record["top1_mean_best10"] and plus.commit == record["git_commit"]
    assert plus.class_top1_final == record["evaluations"][-1]["class_top1"] and 0 <= plus.class_top1_final <= 1
    (study_dir / "runs" / "random0" / "A2B" / "seed0" / "result.json").unlink()
    rows, missing = collect_rows(study_dir)  # a partly finished study collects what is done
    assert len(rows) == 2 and missing == ["random0/A2B/seed0"]


def test_diverging_base_fails_its_dependents_and_retry_runs_them(tmp_path):
    study_dir = tiny_study(tmp_path, lr=1e30)
    submit(study_dir, "debug", echo=lambda *_: None)
    current = states(Study.open(study_dir))
    assert current["random0/baseA/seed0"][0] == "failed" and current["random0/baseA/seed0"][1].startswith("diverged")
    assert current["random0/A2B/seed0"][0] == "planned"  # never started: its base failed
    assert "random0/A2B/seed0" not in Study.open(study_dir).manifest()
    skipped = submit(study_dir, "debug", dry_run=True, echo=lambda *_: None).skipped
    assert "use --retry-failed" in skipped["random0/baseA/seed0"]
    retry = submit(study_dir, "debug", retry_failed=True, dry_run=True, echo=lambda *_: None)
    assert sum(len(keys) for _, keys in retry.arrays) == 3


def test_cli_plan_and_local_executor(tmp_path):
    study_dir = tiny_study(tmp_path)
    config = tmp_path / "tiny.toml"
    run = subprocess.run([sys.executable, "-m", "transferbench", "plan", str(config), "--jobs-dir", str(tmp_path / "jobs")],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0 and "plan unchanged (3 jobs)" in run.stdout and "transfer AnB+" in run.stdout
    local = subprocess.run([sys.executable, "-m", "transferbench", "submit", str(study_dir), "--executor", "local",
                            "--workers", "2"], capture_output=True, text=True, check=False)
    assert local.returncode == 0, local.stderr
    assert "ran 3 jobs with the local executor" in local.stdout and "totals: done 3" in local.stdout
    log = (study_dir / "runs" / "random0" / "A2B" / "seed0" / "log.txt").read_text()
    assert "random0/A2B/seed0: starting at iteration 0 of 8" in log and "iteration 8/8: top-1" in log  # not empty
    assert "random0/A2B/seed0: done: top-1" in log
    again = subprocess.run([sys.executable, "-m", "transferbench", "submit", str(study_dir), "--executor", "local"],
                           capture_output=True, text=True, check=False)
    assert "nothing to submit (3 done)" in again.stdout
    bad = subprocess.run([sys.executable, "-m", "transferbench", "status", str(tmp_path / "nope")],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().endswith("run `transferbench plan CONFIG.toml` first")


def _synthetic_source(tmp_path) -> list[str]:
    """The study whose network cross-synthetic-fashion transfers from, planned beside it."""
    write_plan(build_plan(REPO / "configs" / "synthetic-source.toml", tmp_path), echo=lambda *_: None)
    return []


EXTERNAL_FILES = {"growing-a-brain.toml": growing_a_brain_files,  # presets whose files a user gives
                  "growing-a-brain-vgg16.toml": growing_a_brain_vgg16_files,
                  "cross-synthetic-fashion.toml": _synthetic_source}


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "configs").glob("*.toml")))
def test_every_shipped_config_plans(config, tmp_path):
    """A planner change must not break a preset a user runs as documented."""
    settings = EXTERNAL_FILES[config](tmp_path) if config in EXTERNAL_FILES else None
    plan = build_plan(REPO / "configs" / config, tmp_path, settings=settings)
    assert plan.jobs and all(set(job.depends) <= set(plan.jobs) for job in plan.jobs.values())


def test_a_job_whose_base_changed_is_changed_too(tmp_path):
    """A transfer rests on its base: its identity covers the base's (source_id), and a re-plan
    marks it changed when only the base changed, even if its own spec did not record that."""
    import dataclasses

    study_dir = conftest.tiny_study(tmp_path, "bases", ["AnB"], [2])
    plan = build_plan(tmp_path / "bases.toml", tmp_path / "jobs")
    base, transfer = plan.jobs["random0/baseA/seed0"], plan.jobs["random0/A2B/seed0"]
    assert transfer.spec.source_id == base.config_hash
    changed_base = dataclasses.replace(base, spec=dataclasses.replace(base.spec, train=dataclasses.replace(base.spec.train, lr=0.01)))
    plan.jobs[base.key] = changed_base  # the transfer's spec is left as it was: only the dependency says it rests on the base
    changes = write_plan(plan, echo=lambda *_: None)
    assert changes["changed"] == ["random0/A2B/seed0", "random0/baseA/seed0"]
    assert Study.open(study_dir).jobs[base.key].spec.train.lr == 0.01


def test_the_architecture_presets_plan_n_over_stages_with_fused_groups_that_fit(tmp_path):
    resnet = build_plan(REPO / "configs" / "yosinski2014-resnet50.toml", tmp_path)
    assert len(resnet.jobs) == 46 and {"random1/A5B+/seed0", "random0/A5B+WA1024/seed0"} <= set(resnet.jobs)
    assert resnet.jobs["random0/A3B/seed0"].spec.model.units_of(3) == ("stem", "layer1_0", "layer1_1", "layer1_2",
                                                                       "layer2_0", "layer2_1", "layer2_2", "layer2_3")
    assert "20 fused groups of 2 networks" in resnet.summary()
    vit = build_plan(REPO / "configs" / "yosinski2014-vit-b16.toml", tmp_path)
    assert "jobs share data streams, but no two fit under fuse_memory_gb = 70" in vit.summary()
    with pytest.raises(UserError, match="n_transferred 6 must be 1..5: resnet50 \\(stages\\) has 5 blocks"):
        build_plan(REPO / "configs" / "yosinski2014-resnet50.toml", tmp_path, settings=["block.1.n=[6]"])
    with pytest.raises(UserError, match="copies 7 blocks, but resnet50 \\(stages\\) has 5.*write 'A5B\\+WA'"):
        build_plan(REPO / "configs" / "yosinski2014-resnet50.toml", tmp_path, settings=['block.2.networks=["A7B+WA"]'])
