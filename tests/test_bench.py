"""`transferbench bench` on the CPU with tiny settings: every row is measured and reported."""

from __future__ import annotations

import json

import pytest
import torch

from transferbench.bench import BenchConfig, run_bench
from transferbench.errors import UserError


def test_bench_measures_every_row_and_writes_json(tmp_path):
    config = BenchConfig("cpu", batch_size=4, iterations=1, warmup=1, images=12, workers=2, archs=("small",))
    messages = []
    rows = run_bench(config, out=tmp_path / "bench.json", echo=messages.append)
    assert [row.group for row in rows] == ["model"] * 5 + ["data"] * 3 + ["train"] * 3  # fused: CaffeNet only
    assert all(row.images_per_s > 0 for row in rows)
    assert any("transferbench / reference =" in m for m in messages)
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["device"].startswith("CPU") and len(written["rows"]) == 11
    with pytest.raises(UserError, match="no .JPEG/.jpg files found"):
        run_bench(config, images=tmp_path)
    with pytest.raises(UserError, match="fewer than one batch"):
        run_bench(BenchConfig("cpu", batch_size=64, iterations=1, warmup=0, images=8, archs=()))


def test_multiply_adds_are_caffenet_s_and_fusing_the_seven_anb_saves_what_the_issue_predicts():
    from transferbench.bench import fused_flops, layer_multiply_adds, training_flops

    macs = layer_multiply_adds("caffenet")
    assert [round(m / 1e6, 1) for m in macs] == [105.4, 223.9, 149.5, 112.1, 74.8, 37.7, 16.8, 2.0]
    assert round(sum(macs) / 1e9, 2) == 0.72  # CaffeNet's forward with a 500-way head
    assert training_flops(macs, 0) == 2 * (3 * sum(macs) - macs[0])  # no gradient for the image
    assert training_flops(macs, 7) == 2 * (sum(macs[:7]) + 2 * macs[7])
    separate = sum(training_flops(macs, n) for n in range(1, 8))
    assert round(fused_flops(macs, list(range(1, 8))) / separate, 2) == 0.61


def test_resident_pack_and_jpeg_pack_give_the_pack_path_s_batches(tmp_path):
    """The pack held on the device gives exactly the memory-mapped pack's batches; the compact
    JPEG pack (decoded here on the CPU; nvJPEG on CUDA) gives them up to JPEG's loss."""
    from transferbench.bench import compact_jpegs, nvjpeg_batches, our_batches, write_jpegs
    from transferbench.worker.data import pack_images

    config, device = BenchConfig("cpu", batch_size=4, workers=1), torch.device("cpu")
    files = write_jpegs(tmp_path / "jpegs", 6, echo=lambda _: None)
    pack = pack_images([(path, 0) for path in files], tmp_path / "pack", "bench")
    for _ in range(2):  # the second batch wraps around the six images
        mapped, resident = our_batches(None, config, device, 227, pack), our_batches(None, config, device, 227, pack, resident=True)
        jpeg = nvjpeg_batches(compact_jpegs(pack), pack.mean, config, device, 227)
        for (x, y), (x2, y2), (x3, y3) in zip([next(mapped), next(mapped)], [next(resident), next(resident)],
                                              [next(jpeg), next(jpeg)]):
            assert torch.equal(x, x2) and torch.equal(y, y2) and torch.equal(y, y3)
            assert x.shape == x3.shape == (4, 3, 227, 227)
            assert 0 < (x - x3).abs().mean() < 4  # q90 JPEG of pixels in 0..255


def test_matrix_adds_every_precision_and_a_failing_variant_is_reported(monkeypatch):
    import torch as real_torch

    def no_compiler(model):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(real_torch, "compile", no_compiler)
    config = BenchConfig("cpu", batch_size=2, iterations=1, warmup=0, images=4, workers=1, archs=("caffenet",), matrix=True,
                         groups=("model", "fused"))
    messages = []
    rows = run_bench(config, echo=messages.append)
    model = [row for row in rows if row.group == "model"]
    assert len(model) == 5 * 4  # the configured one (fp32, NCHW) and three more precisions/layouts
    assert {row.note for row in model} == {"fp32, NCHW", "fp32, channels_last", "bf16, NCHW", "bf16, channels_last"}
    assert all(row.tflops and row.tflops > 0 for row in model)
    fused = [row for row in rows if row.group == "fused"]
    assert len(fused) == 2 and "counted FLOPs 0.610" in fused[1].note and all(row.images_per_s > 0 for row in fused)
    assert sum("failed: RuntimeError: no compiler here" in m for m in messages) == 2  # compiled train and eval


def test_multiply_adds_of_the_other_architectures_are_their_known_counts():
    from transferbench.bench import layer_multiply_adds

    resnet = layer_multiply_adds("resnet50")  # 500 classes: torchvision's 4.09 GMACs less half its 2.05 MMAC head
    assert len(resnet) == 18 and round(sum(resnet) / 1e9, 2) == 4.09
    vgg = layer_multiply_adds("vgg16")
    assert len(vgg) == 16 and round(sum(vgg) / 1e9, 1) == 15.5
    vit = layer_multiply_adds("vit_b16")  # 17.6 GMACs at 224 px, with the attention products
    assert len(vit) == 14 and round(sum(vit) / 1e9, 1) == 17.6


def test_plan_estimates_device_hours_from_a_bench_file(tmp_path):
    from pathlib import Path

    from transferbench.study.estimate import hours_summary, job_hours, read_rates
    from transferbench.study.plan import build_plan

    rows = [{"group": "model", "name": "resnet50 224px full training", "images_per_s": 1000.0},
            {"group": "model", "name": "resnet50 224px frozen blocks 1..3", "images_per_s": 2000.0},
            {"group": "model", "name": "resnet50 224px evaluation", "images_per_s": 4000.0},
            {"group": "data", "name": "jpeg", "images_per_s": 1.0}]
    (tmp_path / "bench.json").write_text(json.dumps({"device": "a test GPU", "rows": rows}))
    device, rates = read_rates(tmp_path / "bench.json")
    assert device == "a test GPU" and rates == {"resnet50": {"train": 1000.0, "frozen3": 2000.0, "eval": 4000.0}}
    plan = build_plan(Path(__file__).parents[1] / "configs" / "yosinski2014-resnet50.toml", tmp_path / "jobs")
    base, frozen4 = plan.jobs["random0/baseA/seed0"].spec, plan.jobs["random0/A4B/seed0"].spec
    iterations = -(-90 * 500 * 1281 // 256)  # 90 epochs of a 500-class half, batch 256
    evaluations = iterations // base.train.eval_every + 1
    assert job_hours(base, rates["resnet50"]) == pytest.approx((iterations * 256 / 1000 + evaluations * 25000 / 4000) / 3600)
    assert job_hours(frozen4, rates["resnet50"]) == pytest.approx((iterations * 256 / 2000 + evaluations * 25000 / 4000) / 3600)
    text = hours_summary(plan.jobs.values(), (device, rates), tmp_path / "bench.json")
    assert "device-hours at the model rates measured on a test GPU" in text and "transfer AnB " in text
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UserError, match="is not a `transferbench bench --out` file"):
        read_rates(tmp_path / "bad.json")
