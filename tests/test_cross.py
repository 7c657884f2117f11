"""Cross-dataset transfer: a pretrained source (an imported .caffemodel, or another study's network)
transferred to target datasets in their genuine layouts, planned, checked and trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests import conftest
from tests.formats import make_cub200, make_folder, make_mit67, write_caffemodel
from transferbench.cli import main
from transferbench.fileio import file_sha256
from transferbench.schema.plan import PlanFile
from transferbench.schema.spec import ModelConfig
from transferbench.worker.inputs import input_mean
from transferbench.study.submit import submit
from transferbench.study.plan import build_plan, write_plan
from transferbench.study.study import Study
from transferbench.study.status import status_table
from transferbench.worker.models import TransferNet

TINY_CAFFENET = ModelConfig(num_classes=10, conv_widths=(8, 16, 16, 16, 16), fc_width=32)

CAFFE_STUDY = """
[study]
name = "gab"
dataset = "imagenet1k"
seeds = [0]

[train]
lr = 0.001
batch_size = 4
iterations = 4
eval_every = 2
checkpoint_every = 2

[growth]
scale_init = 10.0

[source.caffenet]
weights = "net.caffemodel"

[target.cub]
dataset = "cub200"
data_root = "cub"

[target.mit]
dataset = "mit67"
data_root = "mit"

[[block]]
name = "cub"
source = "caffenet"
targets = ["cub"]
networks = ["AnB", "A7B+", "A7B+WA", "A7B+DA-nonorm", "RnB", "baseB"]
n = [3]
units = [8]

[[block]]
name = "chain"
source = "caffenet"
targets = ["cub", "mit"]
networks = ["A7B7C+"]
"""


def _caffe_study(tmp_path: Path, extra: str = "") -> Path:
    torch.manual_seed(0)
    write_caffemodel(tmp_path / "net.caffemodel", TransferNet(TINY_CAFFENET).state_dict())
    make_cub200(tmp_path / "cub")
    make_mit67(tmp_path / "mit")
    config = tmp_path / "gab.toml"
    config.write_text(CAFFE_STUDY + extra)
    return config


def test_a_study_planned_from_an_imported_caffemodel_has_checked_specs(tmp_path):
    config = _caffe_study(tmp_path)
    plan = build_plan(config, tmp_path / "jobs")
    jobs = plan.jobs
    assert sorted(jobs) == sorted([
        "caffenet-cub/A3B/seed0", "caffenet-cub/A7B+/seed0", "caffenet-cub/A7B+WA8/seed0", "caffenet-cub/A7B+DA8-nonorm/seed0",
        "caffenet-cub/R3B/seed0", "caffenet-cub/baseB/seed0", "caffenet-cub-mit/A7B7C+/seed0"])
    digest = file_sha256(tmp_path / "net.caffemodel")[:16]
    sources = tmp_path / "jobs" / "gab" / "sources" / "caffenet"
    for key, job in jobs.items():
        spec = job.spec
        assert spec.model.arch == "caffenet" and spec.model.conv_widths == (8, 16, 16, 16, 16)  # the source's network
        assert (spec.train.crop, spec.train.resize, spec.train.input_scale) == (227, 256, 1.0)  # the source's input
        assert (spec.input.size, spec.input.channels, spec.input.mean) == (256, 3, "source")
        assert spec.input.mean_file == str(sources / "mean.pt")
        last_target = "mit" if "-mit/" in key else "cub"
        assert spec.dataset == {"cub": "cub200", "mit": "mit67"}[last_target] and spec.model.num_classes == 4
        assert spec.data_root == str(tmp_path / last_target)
    transfer = jobs["caffenet-cub/A3B/seed0"].spec
    assert transfer.source_checkpoint == str(sources / "model.pt") and not jobs["caffenet-cub/A3B/seed0"].depends
    assert (transfer.source_ref.name, transfer.source_ref.config_hash) == ("source:caffenet", digest)
    assert jobs["caffenet-cub/baseB/seed0"].spec.source_ref is None and jobs["caffenet-cub/R3B/seed0"].spec.source_ref is None
    grown = jobs["caffenet-cub/A7B+WA8/seed0"].spec
    assert grown.growth.units == (8,) and grown.forgetting_data is None  # the source's own data is not known
    chain = jobs["caffenet-cub-mit/A7B7C+/seed0"]
    assert chain.depends == ("caffenet-cub/A7B+/seed0",) and chain.spec.source_ref is None
    # A chain's second step forgets the first target: measured on CUB's own test images.
    assert (chain.spec.forgetting_data.dataset, chain.spec.forgetting_data.data_root) == ("cub200", str(tmp_path / "cub"))
    summary = plan.summary()
    assert "source caffenet: source:caffenet (caffe, from" in summary and "227 px crop" in summary
    assert "forgetting is not measured" in summary
    assert "target cub: cub200 at" in summary and "4 classes, 8 training and 8 test images" in summary
    write_plan(plan, echo=lambda *_: None)
    assert sorted(p.name for p in sources.iterdir()) == ["mean.pt", "model.pt", "source.json"]
    # Planning again imports nothing and writes nothing; a changed weights file changes every transfer.
    before = (sources / "model.pt").stat().st_mtime_ns
    messages = []
    write_plan(build_plan(config, tmp_path / "jobs"), echo=messages.append)
    assert messages == [f"{tmp_path / 'jobs' / 'gab'}: plan unchanged (7 jobs); nothing written"]
    assert (sources / "model.pt").stat().st_mtime_ns == before
    torch.manual_seed(1)
    write_caffemodel(tmp_path / "net.caffemodel", TransferNet(TINY_CAFFENET).state_dict())
    messages = []
    write_plan(build_plan(config, tmp_path / "jobs"), echo=messages.append)
    # Every job of the blocks changes: the transfers copy other weights, and R3B and baseB subtract another mean.
    assert any(line.startswith("7 jobs changed") for line in messages), messages
    assert json.loads((sources / "source.json").read_text())["config_hash"] == file_sha256(tmp_path / "net.caffemodel")[:16]
    # A changed import setting (the mean) imports again and changes every job: the transfers copy
    # from another import, R3B and baseB subtract another mean.
    config.write_text(CAFFE_STUDY.replace('weights = "net.caffemodel"', 'weights = "net.caffemodel"\nmean = [120, 110, 100]'))
    messages = []
    write_plan(build_plan(config, tmp_path / "jobs"), echo=messages.append)
    assert any(line.startswith("7 jobs changed") for line in messages), messages
    saved = torch.load(sources / "mean.pt", weights_only=True)
    assert saved["mean"].flatten().tolist() == [120, 110, 100]
    plan = PlanFile.read(tmp_path / "jobs" / "gab")
    assert plan.jobs["caffenet-cub/baseB/seed0"].spec.input.mean_of == f"{saved['config_hash']}#1@{saved['settings']}"
    assert input_mean(plan.jobs["caffenet-cub/baseB/seed0"].spec.input).flatten().tolist() == [120, 110, 100]


def test_transfers_from_an_imported_caffemodel_train_and_copy_exactly(tmp_path):
    config = _caffe_study(tmp_path)
    plan = build_plan(config, tmp_path / "jobs", settings=["block.1.networks=[\"AnB\", \"A7B+WA\"]"])
    write_plan(plan, echo=lambda *_: None)
    keys = ["caffenet-cub/A3B/seed0", "caffenet-cub/A7B+WA8/seed0"]
    submit(plan.study_dir, "debug", echo=lambda *_: None)
    study = Study.open(plan.study_dir)
    imported = torch.load(study.jobs[keys[0]].spec.source_checkpoint, weights_only=True)
    for key in keys:
        record = json.loads((study.jobs[key].out_dir / "result.json").read_text())
        assert record["status"] == "done", record["reason"]
        assert record["source"] == {"key": "source:caffenet", "config_hash": imported["config_hash"], "attempt": 1}
        assert record["identity"]["source_side"] == "A" and record["identity"]["target_side"] == "B"
        assert record["train_images"] == 8 and record["val_images"] == 8
    frozen = torch.load(study.jobs[keys[0]].out_dir / "model.pt", weights_only=True)
    for name in ("conv1", "conv2", "conv3"):  # frozen layers 1..3 are the imported ones, bit for bit
        assert torch.equal(frozen["model"][f"layers.{name}.weight"], imported["model"][f"layers.{name}.weight"])
    assert torch.equal(frozen["mean"], imported["mean"])  # it subtracted the source's mean, not CUB's


def test_a_network_of_another_study_is_a_source_and_forgetting_is_measured_on_its_data(tmp_path):
    shapes = make_folder(tmp_path / "shapes", per_class=6)
    source_dir, study_dir = conftest.cross_study(
        tmp_path, "cross", "shapes", f'dataset = "folder"\ndata_root = "{shapes}"', ["AnB", "A7B+WA", "baseA-WA"], [2],
        iterations=4, every=2, lr=0.05, batch=4, extra="units = [4]")
    plan = Study.open(study_dir)
    job = plan.jobs["fm-shapes/A2B/seed0"]
    assert job.spec.model.in_channels == 1 and job.spec.input.size == 28 and job.spec.input.channels == 1
    assert job.spec.train.input_scale == 0.015625 and job.spec.train.crop == 28
    wide = plan.jobs["fm/baseA-WA4/seed0"]  # a wide network trained from scratch on the source's own data
    assert wide.spec.dataset == "fashion-mnist" and wide.spec.side == "A" and wide.spec.model.num_classes == 5
    assert (wide.spec.train.lr, wide.spec.train.iterations) == (0.01, 120)  # the source's recipe, not the block's (0.05, 4)
    # The source is not trained yet: submit holds the transfers, and says why.
    held = submit(study_dir, "debug", dry_run=True, echo=lambda *_: None)
    assert held.skipped["fm-shapes/A2B/seed0"].startswith("waits for its source fm:random0/baseA/seed0, which is not trained")
    assert "fm-shapes/A7B+WA4/seed0" in held.skipped and [k for _, keys in held.arrays for k in keys] == ["fm/baseA-WA4/seed0"]
    table, _ = status_table(study_dir, every=True)
    assert "waits for its source fm:random0/baseA/seed0" in table
    submit(source_dir, "debug", echo=lambda *_: None)
    submit(study_dir, "debug", echo=lambda *_: None)
    base = json.loads((Study.open(source_dir).jobs["random0/baseA/seed0"].out_dir / "result.json").read_text())
    grown = json.loads((plan.jobs["fm-shapes/A7B+WA4/seed0"].out_dir / "result.json").read_text())
    assert grown["status"] == "done" and grown["forgetting_side"] == "source"
    # Before the transfer, the source network on its own validation set with its own mean: its last evaluation.
    assert grown["source_top1_before"] == base["top1_final"]
    assert grown["source"]["key"] == "fm:random0/baseA/seed0"


def _one_line_error(capsys, argv: list[str], *fragments: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("transferbench: error: "), err
    for fragment in fragments:
        assert fragment in err, err


def test_bad_cross_dataset_inputs_fail_in_one_line_and_write_nothing(tmp_path, capsys):
    config = _caffe_study(tmp_path)
    jobs = tmp_path / "jobs"
    plan = ["plan", str(config), "--jobs-dir", str(jobs)]
    (tmp_path / "cub" / "CUB_200_2011" / "train_test_split.txt").rename(tmp_path / "split.txt")
    _one_line_error(capsys, plan, "train_test_split.txt is missing", "CUB-200-2011")
    (tmp_path / "split.txt").rename(tmp_path / "cub" / "CUB_200_2011" / "train_test_split.txt")
    (tmp_path / "mit" / "Images" / "bakery").rename(tmp_path / "bakery")
    _one_line_error(capsys, plan, "class folders that TrainImages.txt / TestImages.txt names are missing", "bakery")
    (tmp_path / "bakery").rename(tmp_path / "mit" / "Images" / "bakery")
    write_caffemodel(tmp_path / "bad.caffemodel", TransferNet(TINY_CAFFENET).state_dict(), shapes={"conv3.weight": (16, 8, 3, 3)})
    _one_line_error(capsys, [*plan, "--set", f"source.caffenet.weights={tmp_path / 'bad.caffemodel'}"], "source caffenet",
                    "layer conv3 weight has shape (16, 8, 3, 3)", "needs (16, 16, 3, 3)")
    config.write_text(config.read_text().replace('weights = "net.caffemodel"', 'job = "other:all/base/seed0"'))
    conftest.tiny_study(tmp_path, "other", ["baseA"], [1])
    _one_line_error(capsys, plan, "source caffenet: 'all/base/seed0' is not a job of other", "random0/baseA/seed0")
    config.write_text(CAFFE_STUDY.replace('targets = ["cub"]', 'targets = ["one"]')
                      + '\n[target.one]\ndataset = "folder"\ndata_root = "one"\n')
    make_folder(tmp_path / "one", classes=("only",))
    _one_line_error(capsys, plan, "target one", "has 1 class: a classifier needs at least 2")
    config.write_text(CAFFE_STUDY.replace('networks = ["AnB"', 'networks = ["A7B+WA-wide", "AnB"'))
    _one_line_error(capsys, plan, "trains on the source's own data, which is not known", "[source.caffenet] dataset")
    assert not (jobs / "gab").exists()  # nothing half-written: no plan, no import


def test_the_growing_a_brain_preset_plans_the_papers_tables(tmp_path, monkeypatch, capsys):
    from tests.formats import growing_a_brain_files

    monkeypatch.chdir(tmp_path)
    settings = growing_a_brain_files(tmp_path)
    # A relative path on the command line is relative to where plan runs, as --data-root is.
    settings[0] = "source.caffenet.weights=caffenet.caffemodel"
    code = main(["plan", "growing-a-brain", "--jobs-dir", "jobs", *sum((["--set", s] for s in settings), [])])
    assert code == 0
    study = Study.open(tmp_path / "jobs" / "growing-a-brain")
    keys = set(study.jobs)
    assert len(keys) == 54
    assert {"caffenet-sun397/A7B+-fc7/seed0", "caffenet-sun397/A7B+WA2048-onA/seed0", "caffenet/A7A+WA2048/seed0",
            "caffenet-sun397/A7B+/seed0", "caffenet-sun397/A7B+DA4096/seed0", "caffenet-sun397/A7B+WWA4096/seed0",
            "caffenet-sun397/A7B+WA2048-nonorm/seed0", "caffenet-sun397/A7B+DA2048-fc6/seed0", "caffenet-sun397/A7B+WA2048-wide/seed0",
            "caffenet/baseA-WA2048/seed0", "caffenet-mit67/A7B+WA2048/seed0", "caffenet-cub200/A7B+WWA2048/seed0",
            "caffenet-sun397-mit67/A7B7C+WA2048/seed0", "caffenet-sun397/A4B/seed0", "caffenet-sun397/baseB/seed0"} <= keys
    wwa = study.jobs["caffenet-sun397/A7B+WWA4096/seed0"].spec
    assert wwa.growth.units == (4096,) and wwa.train.lr_step_epochs == 10 and wwa.model.num_classes == 4
    # Networks trained from scratch take the from-scratch recipe, fine-tuned ones the fine-tuning one.
    for key in ("caffenet/baseA-WA2048/seed0", "caffenet-sun397/baseB/seed0"):
        train = study.jobs[key].spec.train
        assert (train.lr, train.batch_size, train.epochs, train.lr_step_epochs) == (0.01, 256, 90, 20), key
    assert (wwa.train.lr, wwa.train.batch_size, wwa.train.epochs, wwa.train.classifier_lr_mult) == (0.001, 128, 30, 10.0)
    # Without ImageNet's folder the wide network from scratch (and what fine-tunes it) is held, the rest runs.
    held = submit(study.directory, "debug", dry_run=True, echo=lambda *_: None)
    assert held.skipped["caffenet/baseA-WA2048/seed0"].startswith("trains on ImageNet, whose folder the plan does not name")
    assert "caffenet-sun397/A7B+WA2048-wide/seed0" in held.skipped
    assert held.skipped["caffenet-sun397/A7B+WA2048-onA/seed0"].startswith("trains on ImageNet")
    assert sum(len(keys) for _, keys in held.arrays) == 47
    # Table 4 as the paper measures it: the SUN-397 network frozen whole, an ImageNet classifier retrained.
    retrained = study.jobs["caffenet-sun397/A7B+WA2048-onA/seed0"]
    assert retrained.depends == ("caffenet-sun397/A7B+WA2048/seed0",) and retrained.spec.model.num_classes == 1000
    assert (retrained.spec.dataset, retrained.spec.train.lr, retrained.spec.train.classifier_lr_mult) == ("imagenet1k", 0.01, 1.0)
    summary = capsys.readouterr().out
    assert "Table 4: ImageNet top-1 of CNN-FT (A7B+-onA)" in summary and "classic A7B+, scope fc7" in summary


def test_lr_step_epochs_sets_the_step_from_the_training_set(tmp_path):
    from transferbench.worker.train import Trainer

    config = _caffe_study(tmp_path)
    plan = build_plan(config, tmp_path / "jobs", settings=["train.lr_step_epochs=2.5", "train.batch_size=3"])
    write_plan(plan, echo=lambda *_: None)
    trainer = Trainer(plan.jobs["caffenet-cub/baseB/seed0"].spec, progress=False)
    assert trainer.config.lr_step == 7  # ceil(2.5 epochs x 8 images / 3)


def test_an_unusable_source_of_another_study_holds_and_flags_its_transfers(tmp_path):
    from transferbench.analysis.results import collect_rows

    source_dir, study_dir = conftest.cross_study(
        tmp_path, "flags", "other", 'dataset = "fashion-mnist"\ndata_root = "{data}"\nsplit = "random0"\nside = "B"',
        ["AnB"], [2], iterations=4, every=2, lr=0.01, batch=8)
    submit(source_dir, "debug", echo=lambda *_: None)
    submit(study_dir, "debug", echo=lambda *_: None)
    assert {row.health for row in collect_rows(study_dir)[0]} != {"source_unhealthy"}
    # The source study judges its network stalled after all (say, a retrained attempt): what rests on it is left out.
    record_path = Study.open(source_dir).jobs["random0/baseA/seed0"].out_dir / "result.json"
    record = json.loads(record_path.read_text())
    record["health"] = {"state": "stalled", "reason": "top-1 at chance"}
    record_path.write_text(json.dumps(record))
    rows, _ = collect_rows(study_dir)
    assert [(row.network, row.health) for row in rows] == [("A2B", "source_unhealthy")] and not rows[0].usable
    assert "its source fm:random0/baseA/seed0 is stalled" in rows[0].health_reason
    (Study.open(study_dir).jobs["fm-other/A2B/seed0"].out_dir / "result.json").unlink()  # to be trained again:
    held = submit(study_dir, "debug", retry_failed=True, dry_run=True, echo=lambda *_: None)
    assert held.skipped["fm-other/A2B/seed0"].startswith("its source fm:random0/baseA/seed0 is stalled")


def test_a_crop_caffenet_cannot_take_stops_plan_in_one_line(tmp_path, capsys):
    code = main(["plan", "yosinski2014", "--jobs-dir", str(tmp_path / "jobs"), "--set", "train.crop=224"])
    error = capsys.readouterr().err.strip()
    assert code != 0 and "224 px crop leaves CaffeNet's pool5 at 5x5, but its fc6 takes 6x6; set train.crop = 227" in error
    assert len(error.splitlines()) == 1 and not (tmp_path / "jobs").exists()
