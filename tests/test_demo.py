"""The built-in synthetic dataset and the demo pipeline (on a shortened preset: the real one is timed by hand)."""

from __future__ import annotations

import numpy as np
import torch

import transferbench.demo as demo
from transferbench.analysis.results import read_curves
from transferbench.worker.synthetic import FAMILIES, PER_FAMILY, class_templates, load_synthetic, render


def test_synthetic_data_is_seeded_and_hierarchical():
    first = render(np.arange(12), np.random.default_rng(5))
    again = render(np.arange(12), np.random.default_rng(5))
    assert first.dtype == np.uint8 and first.shape == (12, 3, 32, 32) and np.array_equal(first, again)
    templates, colours = class_templates()
    for family in range(FAMILIES):
        members = templates[family * PER_FAMILY:(family + 1) * PER_FAMILY]
        shared = (members == members[0]).all(0) & (members[0] >= 0)
        assert shared.sum() >= 6  # the family's common parts
        assert len({tuple(m) for m in members}) == PER_FAMILY  # but every class differs
    images, labels = load_synthetic(False)
    assert images.shape == (1200, 3, 32, 32) and torch.bincount(labels).tolist() == [100] * 12


def test_demo_pipeline_plans_trains_collects_and_reads(tmp_path, monkeypatch):
    preset = demo.preset_text("synthetic")
    assert "iterations = 300" in preset and "seeds = [0, 1, 2, 3]" in preset
    short = preset.replace("iterations = 300", "iterations = 6").replace("eval_every = 50", "eval_every = 3")
    short = short.replace("seeds = [0, 1, 2, 3]", "seeds = [0]").replace("warmup = 20", "warmup = 2")
    short = short.replace('networks = ["baseA", "baseB", "BnB", "BnB+", "AnB", "AnB+"]\nn = [2, 6]',
                          'networks = ["baseA", "baseB", "BnB", "AnB", "AnB+"]\nn = [1, 6]')
    monkeypatch.setattr(demo, "preset_text", lambda dataset: short)
    messages = []
    outcome = demo.run_demo("synthetic", tmp_path / "demo", workers=2, echo=messages.append)
    assert len(outcome["rows"]) == 11 and outcome["csv"].is_file()
    text = "\n".join(messages)
    # A figure is written only where some network counts: six iterations teach (almost) nothing.
    usable = [r for r in outcome["rows"] if r.usable and not r.growth and r.condition != "random_init"]
    assert (tmp_path / "demo" / "figures" / "demo-fig2.png").is_file() == bool(usable)
    assert (tmp_path / "demo" / "figures" / "demo-effects.csv").is_file()
    # The grown network's original and added units, each read alone, at every evaluation (figure 6).
    assert {"both", "fc7", "fc7_1"} == {row["readout"] for row in read_curves(tmp_path / "demo" / "results" / "demo-curves.csv")}
    if not usable:
        assert "missing in demo: fig2: no usable networks on random splits" in text
    assert "not natural images" in text and "what it shows:" in text
    # Six iterations teach nothing: every network is judged, none is shown to do anything (one replicate).
    rows = outcome["rows"]
    assert all(r.health for r in rows)
    reading = text.split("what it shows:")[1]
    assert "\n  - shown" not in reading
    stalled = [r for r in rows if r.health in ("stalled", "source_unhealthy")]
    assert stalled and "left out of every mean" in reading and "--retry-stalled" in reading
    # A second run resumes: nothing is trained again.
    messages.clear()
    demo.run_demo("synthetic", tmp_path / "demo", workers=2, echo=messages.append)
    assert any(m.startswith("nothing to submit (11 done") for m in messages)


def test_developmental_verdict_needs_an_interval_over_replicates():
    from transferbench.analysis.reading import developmental_lines
    from transferbench.analysis.stats import effects_table
    from transferbench.schema.record import Row

    def rows(differences):
        out = []
        for seed, difference in enumerate(differences):
            for network, value, growth in (("A7B+", 0.80, None), ("A7B+WA8", 0.80 + difference, "WA8")):
                out.append(Row(study="demo", source="transferbench", key=f"random0/{network}/seed{seed}", dataset="synthetic",
                               split="random0", network=network, condition="transfer", n=7, fine_tune=1, seed=seed,
                               source_side="A", target_side="B", top1_mean_best10=value, growth=growth,
                               growth_mode=growth and "grown", scope=growth and "all", normalize=growth and 1))
        return developmental_lines(effects_table(out))[0]

    # One replicate never decides, however large the difference: single networks move with the seed and the CPU.
    assert rows([0.03]).endswith("more seeds would tell") and rows([0.2]).endswith("more seeds would tell")
    assert rows([0.06, 0.07, 0.05]).endswith("added capacity helped")
    assert rows([-0.06, -0.05, -0.07]).endswith("did worse than classic fine-tuning")
    assert rows([0.06, -0.05, 0.01]).endswith("no difference shown")
    assert rows([0.03, 0.02, 0.04]).endswith("added capacity helped")  # the t-interval over 3 replicates excludes 0
    assert rows([0.03, -0.02, 0.01]).endswith("no difference shown")


def test_the_demo_runs_on_a_small_resnet_and_a_tiny_vit(tmp_path, monkeypatch):
    """`transferbench demo --set model.arch=...`: the same grid, n over the architecture's units,
    fused training, forgetting, the grown network and the figures, end to end (a few iterations)."""
    preset = demo.preset_text("synthetic")
    short = preset.replace("iterations = 300", "iterations = 4").replace("eval_every = 50", "eval_every = 2")
    short = short.replace("seeds = [0, 1, 2, 3]", "seeds = [0]").replace("warmup = 20", "warmup = 2")
    monkeypatch.setattr(demo, "preset_text", lambda dataset: short)
    for arch, depth in (("resnet_small", 9), ("vit_tiny", 7)):
        outcome = demo.run_demo("synthetic", tmp_path / arch, workers=2, echo=lambda *_: None, settings=[f"model.arch={arch}"])
        networks = {row.network for row in outcome["rows"]}
        assert {f"A{depth}B+", f"A{depth}B+WA64", "A6B+", "R6B"} <= networks and len(networks) == 13, arch
        grown = next(row for row in outcome["rows"] if row.network == f"A{depth}B+WA64")
        assert grown.source_top1_after is not None  # forgetting, measured with the source's own head
        assert (tmp_path / arch / "results" / "demo-curves.csv").is_file()
