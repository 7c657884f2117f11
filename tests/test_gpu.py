"""Smoke tests of the CUDA paths; they run wherever a CUDA device is visible (marked ``gpu``;
skipped elsewhere, see conftest.py)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_spec
from transferbench.schema.spec import Condition

pytestmark = pytest.mark.gpu


def test_a_network_trains_on_the_gpu_and_resumes_there(tmp_path, fashion_root):
    from transferbench.worker.train import run_job

    base = run_job(tiny_spec(tmp_path, fashion_root, iterations=8), device="cuda", progress=False)
    assert base.status == "done" and "cpu" not in base.device.lower()
    transfer = run_job(tiny_spec(tmp_path, fashion_root, "A2B", "B", Condition("transfer", 2), str(tmp_path / "base" / "model.pt"),
                                 iterations=8, amp=True, channels_last=True), device="cuda", progress=False)
    assert transfer.status == "done" and transfer.layers["frozen"]


def test_the_gather_crop_on_the_gpu_equals_the_cpu_slices(fashion_root):
    from transferbench.schema.spec import TrainConfig
    from transferbench.worker.data import load_image_set
    from transferbench.worker.inputs import Batches

    images = load_image_set("fashion-mnist", fashion_root, True, None, None)
    config = TrainConfig(crop=28, pad=2, batch_size=16)
    generator = torch.Generator().manual_seed(0)
    cpu, gpu = Batches(images, config, torch.device("cpu"), True), Batches(images, config, torch.device("cuda"), True)
    fetched = cpu.fetch(list(range(16)), generator)
    x_cpu, _ = cpu.to_device(fetched)
    x_gpu, _ = gpu.to_device(fetched)
    assert torch.allclose(x_cpu, x_gpu.cpu())
