"""The built-in synthetic dataset and the demo pipeline (on a shortened preset: the real one is timed by hand)."""

from __future__ import annotations

import numpy as np
import torch

import transferbench.demo as demo
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
    short = demo.preset_text("synthetic").replace("iterations = 400", "iterations = 6").replace("eval_every = 20", "eval_every = 3")
    short = short.replace('networks = ["baseA", "baseB", "BnB", "BnB+", "AnB", "AnB+"]\nn = [1, 4, 7]',
                          'networks = ["baseA", "baseB", "BnB", "AnB", "AnB+"]\nn = [1, 7]')
    short = short.replace('networks = ["RnB"]\nn = [3]', 'networks = ["RnB"]\nn = [1]')
    monkeypatch.setattr(demo, "preset_text", lambda dataset: short)
    messages = []
    outcome = demo.run_demo("synthetic", tmp_path / "demo", workers=2, echo=messages.append)
    assert len(outcome["rows"]) == 10 and outcome["csv"].is_file()
    assert (tmp_path / "demo" / "figures" / "demo-fig2.png").is_file()
    assert (tmp_path / "demo" / "figures" / "demo-developmental.png").is_file()
    text = "\n".join(messages)
    assert "not natural images" in text and "what it shows:" in text and "AnB (frozen transfer):" in text
    assert "grown A7B+WA64 (WA64: new units, normalised and scaled)" in text and "vs classic fine-tuning A7B+" in text
    # A second run resumes: nothing is trained again.
    messages.clear()
    demo.run_demo("synthetic", tmp_path / "demo", workers=2, echo=messages.append)
    assert any(m.startswith("nothing to submit (10 done") for m in messages)


def test_developmental_verdict_needs_more_than_the_single_network_spread():
    from transferbench.schema.record import Row

    def rows(differences):
        out = []
        for seed, difference in enumerate(differences):
            for network, value, growth in (("A7B+", 0.80, None), ("A7B+WA8", 0.80 + difference, "WA8")):
                out.append(Row(study="demo", source="transferbench", key=f"random0/{network}/seed{seed}", dataset="synthetic",
                               split="random0", network=network, condition="transfer", n=7, fine_tune=1, seed=seed,
                               top1_mean_best10=value, growth=growth, growth_mode=growth and "grown",
                               scope=growth and "all", normalize=growth and 1))
        return demo._developmental_lines(out)[0]

    assert rows([0.03]).endswith("more seeds would tell")
    assert rows([0.06]).endswith("added capacity helped") and rows([-0.06]).endswith("did worse than classic fine-tuning")
    assert rows([0.03, 0.02, 0.04]).endswith("added capacity helped")  # the interval over 3 networks excludes 0
    assert rows([0.03, -0.02, 0.01]).endswith("includes no difference")
