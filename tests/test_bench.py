"""`transferbench bench` on the CPU with tiny settings: every row is measured and reported."""

from __future__ import annotations

import json

import pytest

from transferbench.bench import BenchConfig, run_bench
from transferbench.errors import UserError


def test_bench_measures_every_row_and_writes_json(tmp_path):
    config = BenchConfig("cpu", batch_size=4, iterations=1, warmup=1, images=12, workers=2, archs=("small",))
    messages = []
    rows = run_bench(config, out=tmp_path / "bench.json", echo=messages.append)
    assert [row.group for row in rows] == ["model"] * 5 + ["data"] * 3 + ["train"] * 3
    assert all(row.images_per_s > 0 for row in rows)
    assert any("transferbench / reference =" in m for m in messages)
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["device"].startswith("CPU") and len(written["rows"]) == 11
    with pytest.raises(UserError, match="no .JPEG/.jpg files found"):
        run_bench(config, images=tmp_path)
    with pytest.raises(UserError, match="fewer than one batch"):
        run_bench(BenchConfig("cpu", batch_size=64, iterations=1, warmup=0, images=8, archs=()))
