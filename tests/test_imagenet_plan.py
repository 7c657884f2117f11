"""Missing ImageNet data fails at `plan` (or `submit`), in one line, before anything is queued: on a
generated folder in ILSVRC-2012's layout (1000 wnid folders; val/ flat with a Caffe-style list)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO
from transferbench.errors import UserError
from transferbench.study.submit import submit
from transferbench.study.plan import build_plan, write_plan
from transferbench.tasks.classes import load_table

WNIDS = [c.wnid for c in load_table("imagenet1k").classes]


@pytest.fixture()
def imagenet(tmp_path):
    """ILSVRC-2012's layout with one (unread) file per class and 2 validation images per class."""
    root = tmp_path / "ILSVRC2012"
    lines = []
    (root / "val").mkdir(parents=True)
    for index, wnid in enumerate(WNIDS):
        (root / "train" / wnid).mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_1.JPEG").write_bytes(b"")
        for k in range(2):
            name = f"ILSVRC2012_val_{2 * index + k + 1:08d}.JPEG"
            (root / "val" / name).write_bytes(b"")
            lines.append(f"{name} {index}")
    (root / "val.txt").write_text("\n".join(lines) + "\n")
    return root


def plan(tmp_path, root, val_list):
    return build_plan(REPO / "configs" / "yosinski2014.toml", tmp_path / "jobs",
                      {"data_root": str(root), "val_list": str(val_list)})


def test_a_complete_folder_plans(tmp_path, imagenet):
    assert len(plan(tmp_path, imagenet, imagenet / "val.txt").jobs) == 170


def test_missing_class_folders_fail_at_plan_naming_them(tmp_path, imagenet):
    for wnid in WNIDS[10:13]:
        shutil.rmtree(imagenet / "train" / wnid)
    with pytest.raises(UserError, match=rf"3 of the 1000 class folders the study uses are missing from .*train: "
                                        rf"{WNIDS[10]}, {WNIDS[11]}, {WNIDS[12]}$"):
        plan(tmp_path, imagenet, imagenet / "val.txt")


def test_a_wrong_validation_list_fails_at_plan(tmp_path, imagenet):
    with pytest.raises(UserError, match="val_list .*nope.txt does not exist"):
        plan(tmp_path, imagenet, imagenet / "nope.txt")
    (imagenet / "other.txt").write_text("".join(f"elsewhere_{i}.JPEG {i}\n" for i in range(1000)))
    with pytest.raises(UserError, match=r"50 of 50 sampled files of val_list .*other.txt are not in .*val "
                                        r"\(e.g. elsewhere_\d+.JPEG\); is val_list for this data_root\?"):
        plan(tmp_path, imagenet, imagenet / "other.txt")
    (imagenet / "short.txt").write_text("ILSVRC2012_val_00000001.JPEG 0\n")
    with pytest.raises(UserError, match="val_list .*short.txt has no image of 999 classes the study uses"):
        plan(tmp_path, imagenet, imagenet / "short.txt")


def test_without_a_data_root_the_grid_plans_and_submit_refuses(tmp_path):
    planned = build_plan(REPO / "configs" / "yosinski2014.toml", tmp_path / "jobs")
    assert "no ImageNet data_root" in planned.summary()
    write_plan(planned, echo=lambda *_: None)
    with pytest.raises(UserError, match="ImageNet needs its folder: set \\[study\\] data_root or `plan --data-root DIR`"):
        submit(planned.study_dir, "local", echo=lambda *_: None)


def test_plan_cli_takes_data_root_val_list_and_pack_dir_relative_to_where_it_runs(tmp_path, imagenet):
    run = subprocess.run([sys.executable, "-m", "transferbench", "plan", "yosinski2014", "--data-root", imagenet.name,
                          "--val-list", f"{imagenet.name}/val.txt", "--pack-dir", "pack"], cwd=tmp_path,
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    spec = build_plan(REPO / "configs" / "yosinski2014.toml", tmp_path / "jobs",
                      {"data_root": str(imagenet), "val_list": str(imagenet / "val.txt"),
                       "pack_dir": str(tmp_path / "pack")}).jobs["random0/baseA/seed0"].spec
    import json

    written = json.loads((tmp_path / "jobs" / "yosinski2014" / "plan.json").read_text())
    first = next(job for job in written["jobs"] if job["key"] == "random0/baseA/seed0")["spec"]
    assert (first["data_root"], first["val_list"], first["pack_dir"]) == (spec.data_root, spec.val_list, spec.pack_dir)


def test_a_cross_dataset_sources_imagenet_is_checked_at_plan_and_measures_forgetting(tmp_path, imagenet, monkeypatch):
    from tests.formats import growing_a_brain_files

    settings = growing_a_brain_files(tmp_path) + [f"source.caffenet.data_root={imagenet}",
                                                   f"source.caffenet.val_list={imagenet / 'val.txt'}"]
    planned = build_plan(REPO / "configs" / "growing-a-brain.toml", tmp_path / "jobs", settings=settings)
    grown = planned.jobs["caffenet-sun397/A7B+WA2048/seed0"].spec
    assert (grown.forgetting_data.dataset, grown.forgetting_data.data_root) == ("imagenet1k", str(imagenet))
    wide = planned.jobs["caffenet/baseA-WA2048/seed0"].spec
    assert (wide.dataset, wide.data_root, wide.model.num_classes) == ("imagenet1k", str(imagenet), 1000)
    retrained = planned.jobs["caffenet-sun397/A7B+WA2048-onA/seed0"].spec  # Table 4: trains on ImageNet's training set
    assert (retrained.dataset, retrained.data_root, retrained.forgetting_data) == ("imagenet1k", str(imagenet), None)
    assert "no ImageNet data_root" not in planned.summary() and "forgetting is not measured" not in planned.summary()
    shutil.rmtree(imagenet / "train" / WNIDS[3])
    with pytest.raises(UserError, match=f"1 of the 1000 class folders the study uses are missing .*{WNIDS[3]}"):
        build_plan(REPO / "configs" / "growing-a-brain.toml", tmp_path / "jobs", settings=settings)
