"""The hand-offs (transferbench.schema): the strict loader, the notation, records and rows."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from transferbench.errors import UserError
from transferbench.schema.config import Block, SlurmSettings
from transferbench.schema.loader import apply_overrides, build, parse_override
from transferbench.schema.notation import parse_network, parse_pattern
from transferbench.schema.plan import ManifestEntry, PlanFile
from transferbench.schema.record import JobIdentity, ResultRecord, Row
from transferbench.schema.spec import Condition, Growth, JobSpec, ModelConfig, TrainConfig

FASHION = REPO / "configs" / "fashion-mnist.toml"


# ---------------------------------------------------------------------------- the loader

def test_loader_checks_types_and_keeps_values_as_written():
    train = build(TrainConfig, {"lr": 1, "iterations": 10, "mirror": False}, "train", "x.toml")
    assert train.lr == 1 and isinstance(train.lr, int)  # an integer is a valid float and hashes as written
    model = build(ModelConfig, {"conv_widths": [1, 2, 3, 4, 5]}, "model", "x.toml")
    assert model.conv_widths == (1, 2, 3, 4, 5)
    for values, message in [({"lr": "0.01"}, "[train] lr must be a number, got '0.01' (str)"),
                            ({"iterations": 2.5}, "[train] iterations must be an integer, got 2.5"),
                            ({"iterations": True}, "[train] iterations must be an integer, got True (boolean)"),
                            ({"mirror": "yes"}, "[train] mirror must be true or false"),
                            ({"lerning_rate": 1}, "unknown key 'lerning_rate' in [train]; valid keys: amp,"),
                            ({"iterations": -5}, "[train] iterations must be at least 1, got -5"),
                            ({"checkpoint_every": 0}, "[train] checkpoint_every must be at least 1, got 0"),
                            ({"momentum": 1.5}, "[train] momentum must be in [0, 1), got 1.5")]:
        with pytest.raises(UserError) as caught:
            build(TrainConfig, values, "train", "x.toml")
        assert str(caught.value).startswith("x.toml: ") and message in str(caught.value), (values, str(caught.value))
    with pytest.raises(UserError, match=r"conv_widths must be a list of 5 values"):
        build(ModelConfig, {"conv_widths": [1, 2]}, "model", "x.toml")
    with pytest.raises(UserError, match=r"\[block 1\] n must be a list of integers, got 4"):
        build(Block, {"networks": ["AnB"], "n": 4}, "block 1", "x.toml")
    with pytest.raises(UserError, match=r"n must list blocks 1..L \(1..7 for the 8-layer networks\), got \[0, 8\]"):
        build(Block, {"networks": ["AnB"], "n": [0, 8]}, "block 1", "x.toml")
    with pytest.raises(UserError, match=r"\[slurm\] cpus must be an integer, got 'lots'"):
        build(SlurmSettings, {"cpus": "lots"}, "slurm", "x.toml")


def test_overrides_are_read_as_toml_and_set_nested_values():
    assert parse_override("train.lr=0.001") == (("train", "lr"), 0.001)
    assert parse_override("study.seeds=[0, 1]") == (("study", "seeds"), [0, 1])
    assert parse_override("slurm.partition=gpu") == (("slurm", "partition"), "gpu")  # not TOML: a plain string
    config = {"train": {"lr": 0.01}, "block": [{"networks": ["AnB"]}]}
    changed = apply_overrides(config, ["train.lr=0.5", "block.1.n=[1,7]", "model.arch=small"], "x.toml")
    assert changed == {"train": {"lr": 0.5}, "model": {"arch": "small"}, "block": [{"networks": ["AnB"], "n": [1, 7]}]}
    assert config["train"]["lr"] == 0.01  # the original is untouched
    for bad, message in [("lr=1", "write TABLE.KEY=VALUE"), ("block.3.n=[1]", "has 1 blocks; give a block number 1..1"),
                         ("train.lr.x=1", "train.lr is not a table")]:
        with pytest.raises(UserError, match=message):
            apply_overrides(config, [bad], "x.toml")


# ---------------------------------------------------------------------------- notation

@pytest.mark.parametrize("name, kind, n, source, target, developmental, reference", [
    ("base", "base", 0, None, None, False, None),
    ("baseB", "base", 0, None, "B", False, None),
    ("A3B+", "transfer", 3, "A", "B", False, None),
    ("B5B", "selffer", 5, "B", "B", False, None),
    ("R2", "random_init", 2, None, None, False, None),
    ("R4B", "random_init", 4, None, "B", False, None),
    ("A3B^2+", "preserved", 3, "A", "B", False, None),
    ("A7B+WA64-fc7-nonorm", "transfer", 7, "A", "B", True, "A7B+-fc7"),  # its own scope first (A7B+ if that is absent)
    ("A7B+WA64-nonorm", "transfer", 7, "A", "B", True, "A7B+"),
    ("A7B+-fc7", "transfer", 7, "A", "B", True, None),  # classic fine-tuning by scope: out of the Yosinski figures
    ("baseA-WA64", "base", 0, None, "A", True, "baseA"),
    ("A7B7C+", "transfer", 7, "B", "C", True, None),
    ("A7B7C+WA64", "transfer", 7, "B", "C", True, "A7B7C+"),
])
def test_network_names_parse_once(name, kind, n, source, target, developmental, reference):
    parsed = parse_network(name)
    assert (parsed.kind, parsed.n, parsed.source_side, parsed.target_side) == (kind, n, source, target)
    assert parsed.developmental == developmental and parsed.classic_reference == reference


def test_patterns_name_the_networks_the_planner_writes():
    assert parse_pattern("AnB+").name(3) == "A3B+" and parse_pattern("AnB^k").name(2, 3) == "A2B^3"
    assert parse_pattern("RnB").name(4) == "R4B" and parse_pattern("Rn").name(4) == "R4"
    assert parse_pattern("A7B+WA-fc7-nonorm").name(size=64) == "A7B+WA64-fc7-nonorm"
    assert parse_pattern("A7B7C+WA").name(size=8, step=1) == "A7B+WA8"
    assert parse_pattern("baseA-WA").name(size=8) == "baseA-WA8"
    assert parse_pattern("A7B+-fc6").name() == "A7B+-fc6" and not parse_network("A7B+-new").fine_tune
    for name in ("A7B+WA64-fc7-nonorm", "A3B^2+", "R4B", "A7B7C+WA8"):  # every written name parses back
        parse_network(name)
    for bad, message in [("AnC7", "unknown network"), ("A7B+WA-wide-nonorm", "drop -nonorm"),
                         ("A7B+-nonorm", "-nonorm and -wide apply to a grown network"), ("A7B+WA-fc7-fc6", "two scopes"),
                         ("A7B7C+-fc7", "a scope alone, in one transfer"), ("A7B+-all", "a scope alone")]:
        with pytest.raises(UserError, match=message):
            parse_pattern(bad)


# ---------------------------------------------------------------------------- spec, plan, record, row

def spec(tmp_path, **changes) -> JobSpec:
    values = dict(key="random0/A7B+WA8/seed0", dataset="synthetic", split=None, side="B", out_dir=str(tmp_path),
                  condition=Condition("transfer", 7, True), source_checkpoint=str(tmp_path / "model.pt"),
                  model=ModelConfig.small(6), train=TrainConfig(iterations=4), growth=Growth("WA", (8,)))
    return JobSpec(**{**values, **changes})


def test_spec_round_trips_through_json_with_the_same_hash(tmp_path):
    original = spec(tmp_path)
    again = JobSpec.from_dict(json.loads(json.dumps(original.to_dict())))
    assert again == original and again.config_hash() == original.config_hash()
    with pytest.raises(UserError, match=r"\[spec.condition\] n_transferred must be an integer"):
        JobSpec.from_dict({**original.to_dict(), "condition": {"kind": "transfer", "n_transferred": "7"}})
    with pytest.raises(UserError, match=r"\[spec\] needs key"):
        JobSpec.from_dict({k: v for k, v in original.to_dict().items() if k != "key"})


def test_plan_file_rejects_a_wrong_shape_or_an_edited_job(tmp_path):
    job = {"key": "k", "block": "b", "split": "all", "network": "base", "pattern": "base", "side": None, "seed": 0,
           "depends": [], "spec": spec(tmp_path, condition=Condition(), growth=None, source_checkpoint=None).to_dict()}
    job.update(condition="base", n=0, out_dir=str(tmp_path), config_hash=JobSpec.from_dict(job["spec"]).config_hash())
    current = "transferbench-plan/2"
    plan = PlanFile.from_dict({"format": current, "study": "s", "config": {}, "jobs": [job]}, "p.json", tmp_path / "elsewhere")
    assert list(plan.jobs) == ["k"] and plan.jobs["k"].depends == ()
    for data, message in [([], "is not a transferbench plan"),
                          ({"format": "transferbench-plan/1", "study": "s", "config": {}, "jobs": [job]},
                           "written by an older transferbench.*plan.*again"),
                          ({"format": current, "study": "s", "config": {}, "jobs": {}}, "lacks"),
                          ({"format": current, "study": "s", "config": {}, "jobs": [dict(job, seed="0")]},
                           "seed must be an integer"),
                          ({"format": current, "study": "s", "config": {}, "jobs": [dict(job, n=3)]},
                           "edited by hand"),
                          ({"format": current, "study": "s", "config": {}, "jobs": [dict(job, config_hash="0" * 16)]},
                           "edited by hand"),
                          ({"format": current, "study": "s", "config": {}, "jobs": [dict(job, depends=["x"])]},
                           "depends on x, which is not in the plan")]:
        with pytest.raises(UserError, match=message):
            PlanFile.from_dict(data, "p.json", tmp_path / "elsewhere")
    assert ManifestEntry.from_dict({"executor": "slurm", "job_id": "3_1"}, "m.json").to_dict() == \
        {"executor": "slurm", "attempt": 1, "job_id": "3_1"}


def record(tmp_path, **changes) -> ResultRecord:
    the_spec = spec(tmp_path)
    values = dict(key=the_spec.key, status="done", reason=None, spec=the_spec.to_dict(), condition="transfer7+",
                  top1_final=0.5, top5_final=0.9, top1_mean_best10=0.45,
                  evaluations=[{"iteration": 2, "top1": 0.4, "top5": 0.8, "loss": 1.0},
                               {"iteration": 4, "top1": 0.5, "top5": 0.9, "loss": 0.9}],
                  train_loss=[[1, 1.5]], iterations=4, images_seen=64, train_images=100, val_images=50, skipped_images=0,
                  wall_time_s=12.0, resumed_at=[], started_at=1.0, finished_at=2.0, device="NVIDIA H200",
                  versions={"torch": "x"}, git_commit="abc", config_hash=the_spec.config_hash(),
                  layers={"copied": []}, identity=JobIdentity("s", "random0", "A7B+WA8", 0, "A", "B"),
                  forgetting_side="A", source_top1_before=0.7, source_top1_after=0.6)
    return ResultRecord(**{**values, **changes})


def test_a_csv_row_is_built_from_the_record_alone(tmp_path):
    result = record(tmp_path)
    again = ResultRecord.from_dict(json.loads(result.to_text()), "result.json")
    assert again.to_text() == result.to_text()
    row = Row.from_record(again)
    assert (row.study, row.split, row.network, row.source_side, row.target_side) == ("s", "random0", "A7B+WA8", "A", "B")
    assert (row.condition, row.n, row.fine_tune, row.growth, row.growth_mode, row.normalize) == ("transfer", 7, 1, "WA8", "grown", 1)
    assert row.last_iteration == 4 and row.gpu_hours == pytest.approx(12 / 3600, abs=1e-4)
    assert Row.from_csv_dict(row.to_csv_dict(), "x") == dataclasses.replace(row, gpu_hours=0.0033)
    for broken, message in [({"status": "maybe"}, "status 'maybe' is not one of done, failed")]:
        with pytest.raises(UserError, match=message):
            ResultRecord.from_dict({**json.loads(result.to_text()), **broken}, "result.json")
    with pytest.raises(UserError, match=r"\[record\] needs evaluations"):
        ResultRecord.from_dict({k: v for k, v in json.loads(result.to_text()).items() if k != "evaluations"}, "r.json")


def test_identity_from_a_planner_key(tmp_path):
    assert JobIdentity.from_key(spec(tmp_path)) == JobIdentity(None, "random0", "A7B+WA8", 0, "A", "B")
    assert JobIdentity.from_key(spec(tmp_path, key="mine")).network is None


# ---------------------------------------------------------------------------- bad configs end at plan

@pytest.mark.parametrize("edit, replacement, message", [
    ("lr = 0.01", 'lr = "0.01"', "[train] lr must be a number, got '0.01' (str)"),
    ("iterations = 500", "iterations = -5", "[train] iterations must be at least 1, got -5"),
    ("checkpoint_every = 100", "checkpoint_every = 0", "[train] checkpoint_every must be at least 1, got 0"),
    ("batch_size = 128", "batch_size = 0", "[train] batch_size must be at least 1, got 0"),
    ("cpus = 2", 'cpus = "lots"', "[slurm] cpus must be an integer, got 'lots' (str)"),
    ('splits = ["random0", "random1"]', 'splits = ["random0", "random1"]\nn = 4',
     "[block 1] n must be a list of integers, got 4 (int)"),
    ('splits = ["random0", "random1"]', 'splits = ["random0", "random1"]\nn = [0, 8]', "[block 1] n must list blocks 1..L (1..7 for the 8-layer networks), got [0, 8]"),
    ('splits = ["random0", "random1"]', 'splits = "random0"', "[block 1] splits must be a list of strings, got 'random0'"),
])
def test_bad_config_fails_plan_in_one_line_and_writes_nothing(tmp_path, edit, replacement, message):
    text = FASHION.read_text()
    assert edit in text
    config = tmp_path / "bad.toml"
    config.write_text(text.replace(edit, replacement, 1))
    run = subprocess.run([sys.executable, "-m", "transferbench", "plan", str(config), "--jobs-dir", str(tmp_path / "jobs")],
                         capture_output=True, text=True, check=False, cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith(f"transferbench: error: {config}: ") and message in run.stderr, run.stderr
    assert not (tmp_path / "jobs").exists()


def test_set_overrides_are_checked_like_the_file(tmp_path):
    def plan(*settings):
        return subprocess.run([sys.executable, "-m", "transferbench", "plan", str(FASHION), "--jobs-dir", str(tmp_path / "jobs"),
                               *[f"--set={s}" for s in settings]], capture_output=True, text=True, check=False, cwd=tmp_path)

    bad = plan("train.lr=fast")
    assert bad.returncode == 2 and "[train] lr must be a number, got 'fast' (str)" in bad.stderr
    assert not (tmp_path / "jobs").exists()
    good = plan("train.lr=0.001", "study.seeds=[3]")
    assert good.returncode == 0, good.stderr
    written = json.loads((tmp_path / "jobs" / "fashion-mnist" / "plan.json").read_text())
    assert written["config"]["train"]["lr"] == 0.001  # the resolved config is what the plan keeps
    assert {job["spec"]["train"]["lr"] for job in written["jobs"]} == {0.001}
    assert {job["seed"] for job in written["jobs"]} == {3}


def test_a_plan_of_the_wrong_shape_ends_in_one_line(tmp_path):
    study = tmp_path / "jobs" / "broken"
    study.mkdir(parents=True)
    (study / "plan.json").write_text(json.dumps({"format": "transferbench-plan/1", "study": "broken", "config": {},
                                                 "jobs": [{"key": "x"}]}))
    for command in ("status", "submit", "collect"):
        run = subprocess.run([sys.executable, "-m", "transferbench", command, str(study)], capture_output=True, text=True,
                             check=False, cwd=tmp_path)
        assert run.returncode == 2 and run.stderr.count("\n") == 1 and "plan.json" in run.stderr, (command, run.stderr)
