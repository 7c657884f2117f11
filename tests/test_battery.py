"""The battery of bad inputs: every one ends in one line that says what to fix, exit status 2, and
nothing half-written. It grows with each fault found: add a case, watch it fail, then fix it."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from tests import conftest
from tests.conftest import REPO
from transferbench.analysis.results import to_csv
from transferbench.cli import main
from transferbench.schema.record import Row


def row(**changes) -> Row:
    values = dict(study="s", source="transferbench", key="random0/baseB/seed0", dataset="synthetic", split="random0",
                  network="baseB", condition="base", n=0, fine_tune=0, target_side="B", seed=0, top1_mean_best10=0.5,
                  top1_final=0.5)
    return Row(**{**values, **changes})


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A folder with a planned tiny study, a good results CSV and a few broken files; cwd is there."""
    monkeypatch.chdir(tmp_path)
    study = conftest.tiny_study(tmp_path, "tiny", ["AnB"], [2])
    (tmp_path / "good.csv").write_text(to_csv([row()]))
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "bad.toml").write_text("[study\nname = ")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "spec.json").write_text(json.dumps({"key": "x"}))
    return {"study": str(study), "tmp": tmp_path}


CASES = [
    # (argv with {study} and {tmp}, what the line must say)
    (["plan", "--jobs-dir", "/proc/x", "{tmp}/tiny.toml"], "/proc/x"),
    (["plan", "--jobs-dir", "{tmp}/a_file/jobs", "{tmp}/tiny.toml"], "a_file"),
    (["plan", "{tmp}/bad.toml"], "is not valid TOML"),
    (["plan", "{tmp}/missing.toml"], "does not exist"),
    (["plan", "no-such-preset"], "not a preset"),
    (["plan", "{tmp}/tiny.toml", "--set", "train.lr=fast"], "lr must be a number"),
    (["plan", "{tmp}/tiny.toml", "--set", "train.holdout=0.7"], "holdout must be in [0, 0.5)"),
    (["plan", "{tmp}/tiny.toml", "--set", "scratch.iterations=-1"], "iterations must be at least 1"),
    (["plan", "{tmp}/tiny.toml", "--bogus"], "unrecognized arguments: --bogus"),
    (["plan"], "give a study config"),
    (["splits", "random", "--seed", "-1", "--out", "{tmp}/s"], "a seed is 0 to 4294967295"),
    (["splits", "random", "--seed", str(2 ** 40), "--out", "{tmp}/s"], "a seed is 0 to 4294967295"),
    (["splits", "random", "--dataset", "nope"], "invalid choice"),
    (["submit", "{study}", "--executor", "local", "--workers", "-2"], "must be at least 1, got -2"),
    (["submit", "{study}", "--executor", "local", "--workers", "0"], "must be at least 1, got 0"),
    (["submit", "{tmp}/nowhere"], "does not exist; run `transferbench plan"),
    (["submit", "{study}", "--executor", "cloud"], "invalid choice"),
    (["demo", "--workers", "-2", "--out", "{tmp}/d"], "must be at least 1"),
    (["demo", "--first-seed", "-1", "--out", "{tmp}/d"], "a seed is 0 to"),
    (["status", "{tmp}/nowhere"], "does not exist"),
    (["collect", "{study}"], "has finished yet"),
    (["collect", "{tmp}/nowhere"], "does not exist"),
    (["plot", "{tmp}/good.csv", "{tmp}/good.csv", "--out", "{tmp}/f"], "is given twice"),
    (["plot", "{tmp}/missing.csv", "--out", "{tmp}/f"], "does not exist"),
    (["plot", "{tmp}/good.csv", "--metric", "top1_holdout", "--out", "{tmp}/f"], "needs train.holdout"),
    (["plot", "{tmp}/bad.toml", "--out", "{tmp}/f"], "is not a transferbench results CSV"),
    (["train", "{tmp}/missing.json"], "does not exist"),
    (["import-caffe", "{tmp}/nowhere"], "is not a folder of Caffe logs"),
    (["import-weights", "{tmp}/a_file"], ""),
    (["probe", "{study}", "--out", "{tmp}/p"], "no split and seed with a healthy baseA and baseB"),
    (["probe", "{tmp}/nowhere"], "does not exist"),
    (["plan", "{tmp}/tiny.toml", "--set", "nonsense"], "TABLE.KEY=VALUE"),
    (["plan", "{tmp}/tiny.toml", "--set", "train.nope=1"], "nope"),
    (["plan", "{tmp}/tiny.toml", "--set", "train.batch_size=0"], "batch_size"),
    (["plan", "{tmp}/tiny.toml", "--set", "model.arch=vgg"], "vgg"),
    (["plan", "{tmp}/tiny.toml", "--set", "study.seeds=[-1]"], "seed"),
    (["plan", "{tmp}/tiny.toml", "--jobs-dir", "{tmp}/a_file"], "a_file"),
    (["plan", "yosinski2014", "--jobs-dir", "{tmp}/j", "--set", "train.crop=224"], "set train.crop = 227"),
    (["splits", "random", "--out", "{tmp}/a_file/s"], "a_file"),
    (["splits", "nope"], "invalid choice"),
    (["status", "{tmp}/a_file"], "a_file"),
    (["status", "{study}", "--bogus"], "unrecognized arguments"),
    (["collect", "{tmp}/a_file"], "a_file"),
    (["plot", "{tmp}/good.csv", "--out", "{tmp}/a_file/f"], "a_file"),
    (["plot", "{tmp}/good.csv", "--reference", "nope", "--out", "{tmp}/f"], "nope"),
    (["plot", "{tmp}/empty.csv", "--out", "{tmp}/f"], "empty.csv"),
    (["plot", "{tmp}/good.csv", "--metric", "top5", "--out", "{tmp}/f"], "invalid choice"),
    (["train", "{tmp}/bad.toml"], "does not parse as JSON"),
    (["train", "{tmp}/spec.json"], "spec.json"),
    (["import-caffe", "{tmp}/a_file"], "a_file"),
    (["import-weights", "{tmp}/missing.pt"], "does not exist"),
    (["import-weights", "{tmp}/good.csv", "--format", "caffe"], "is not a Caffe model"),
    (["import-weights", "{tmp}/good.csv"], "good.csv"),
    (["import-weights", "{tmp}/good.csv", "--std", "a,b"], "--std"),
    (["import-weights", "{tmp}/good.csv", "--mean", "1,x"], "--mean"),
    (["import-weights", "{tmp}/good.csv", "--resize", "crop"], "invalid choice"),
    (["demo", "--out", "{tmp}/a_file/d"], "a_file"),
    (["demo", "--set", "train.lr=fast", "--out", "{tmp}/d"], "lr must be a number"),
    (["demo", "--dataset", "fashion-mnist", "--data-root", "{tmp}/nowhere", "--out", "{tmp}/d"], "nowhere"),
    (["bench", "--iterations", "0", "--device", "cpu"], "at least 1"),
    (["bench", "--device", "tpu"], "tpu"),
    (["pack", "{tmp}/nowhere"], "does not exist"),
]


@pytest.mark.parametrize("argv, fragment", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_a_bad_input_ends_in_one_line_and_writes_nothing(world, capsys, argv, fragment):
    argv = [a.format(**world) for a in argv]
    before = sorted(p for p in world["tmp"].rglob("*") if ".lock" not in p.name)
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse's own errors
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("transferbench: error: "), err
    assert fragment in err, err
    after = sorted(p for p in world["tmp"].rglob("*") if ".lock" not in p.name)
    assert after == before, sorted(set(after) - set(before))


@pytest.mark.parametrize("value", ["7.5", "-3", "nan", "inf"])
def test_an_impossible_accuracy_is_refused_with_its_network(world, capsys, value):
    text = to_csv([row()]).replace(",0.5,0.5,", f",{value},0.5,", 1)
    (world["tmp"] / "odd.csv").write_text(text)
    code = main(["plot", str(world["tmp"] / "odd.csv"), "--out", str(world["tmp"] / "f")])
    err = capsys.readouterr().err
    assert code == 2 and "random0/baseB/seed0 has top1_final" in err and "no accuracy can be" in err, err
    assert not (world["tmp"] / "f").exists()


def test_a_copy_under_results_is_not_pooled_twice(world, capsys):
    (world["tmp"] / "results").mkdir()
    (world["tmp"] / "results" / "a.csv").write_text(to_csv([row()]))
    (world["tmp"] / "results" / "copy.csv").write_text(to_csv([row()]))
    code = main(["plot", "--out", str(world["tmp"] / "f")])
    err = capsys.readouterr().err
    assert code == 2 and "random0/baseB/seed0 is in" in err and "copy.csv" in err, err


@pytest.mark.parametrize("command", ["plan", "collect", "plot"])
def test_a_full_disk_is_one_line_naming_the_file(world, capsys, monkeypatch, command):
    from transferbench import fileio

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(fileio, "atomic_write_bytes", full)
    for module in ("transferbench.study.plan", "transferbench.analysis.results", "transferbench.analysis.figures"):
        if hasattr(__import__(module, fromlist=["x"]), "atomic_write_bytes"):
            monkeypatch.setattr(f"{module}.atomic_write_bytes", full)
    monkeypatch.setattr("transferbench.fileio.atomic_write_text", lambda path, text: full(path, text.encode()))
    for module in ("transferbench.study.plan", "transferbench.analysis.results", "transferbench.analysis.figures",
                   "transferbench.study.study"):
        monkeypatch.setattr(f"{module}.atomic_write_text", lambda path, text: full(path, text.encode()), raising=False)
    argv = {"plan": ["plan", str(world["tmp"] / "tiny.toml"), "--jobs-dir", str(world["tmp"] / "elsewhere")],
            "collect": ["collect", world["study"], "--out", str(world["tmp"] / "x.csv")],
            "plot": ["plot", str(world["tmp"] / "good.csv"), "--out", str(world["tmp"] / "f")]}[command]
    if command == "collect":
        conftest_record = conftest.record_text
        from transferbench.study.study import Study

        for job in Study.open(Path(world["study"])).jobs.values():
            job.out_dir.mkdir(parents=True, exist_ok=True)
            with open(job.out_dir / "result.json", "w") as handle:  # (not through the patched writer)
                handle.write(conftest_record(job.spec))
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "No space left on device:" in err and "free space" in err, err


def test_a_worker_that_cannot_write_names_the_file_in_its_error(tmp_path, monkeypatch):
    """A job that fails on a full disk writes (where it can) an error.json whose reason names the path."""
    from transferbench.study.run import _write_error
    from transferbench.study.study import Study

    study = Study.open(conftest.tiny_study(tmp_path, "w", ["baseA"], [1]))
    job = study.jobs["random0/baseA/seed0"]
    _write_error(job, OSError(errno.ENOSPC, "No space left on device", str(job.out_dir / "checkpoint.pt")))
    reason = json.loads((job.out_dir / "error.json").read_text())["reason"]
    assert reason.startswith(f"No space left on device: {job.out_dir / 'checkpoint.pt'}; free space")


@pytest.mark.parametrize("error", [errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_no_traceback_reaches_the_user_for_a_folder_that_cannot_be_made(world, capsys, monkeypatch, error):
    """A read-only file system, a folder without permission, a quota: one line naming the path.
    (The error is raised by os.mkdir itself: root writes into read-only folders, so the test
    cannot rely on permissions.)"""
    def refuse(path, *args, **kwargs):
        raise OSError(error, os.strerror(error), str(path))

    monkeypatch.setattr(os, "mkdir", refuse)
    code = main(["plan", str(world["tmp"] / "tiny.toml"), "--jobs-dir", str(world["tmp"] / "elsewhere")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(world["tmp"] / "elsewhere") in err, err
    assert os.strerror(error) in err, err


def test_the_help_of_every_command_carries_an_example(capsys):
    from transferbench.cli import COMMANDS, build_parser

    parser = build_parser()
    listed = [name for name in parser._subparsers._group_actions[0].choices if name != "task"]
    for name in listed:
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
        text = capsys.readouterr().out
        assert f"transferbench {name}" in text.split("options:")[0] + text.split("options:")[-1], name
    assert len(listed) == len(COMMANDS) - 1
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    top = capsys.readouterr().out
    assert top.count("  plan ") == 1 and "Subcommands:" not in top  # listed once, by argparse


def test_presets_given_by_name_resolve_relative_paths_where_plan_runs(tmp_path, monkeypatch):
    from transferbench.study.plan import read_config

    monkeypatch.chdir(tmp_path)
    config = read_config(Path("growing-a-brain"))
    assert config.directory == tmp_path
    assert read_config(REPO / "configs" / "growing-a-brain.toml").directory == REPO / "configs"
