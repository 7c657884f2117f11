"""Developmental networks: growth keeps the old units, γ learns, scopes freeze what they say,
the planner's patterns, and forgetting measured end to end."""

from __future__ import annotations

import json

import pytest
import torch

from transferbench.errors import UserError
from transferbench.study.submit import submit
from transferbench.study.study import Study
from transferbench.worker.grow import VARIANTS, Growth, GrownNet, apply_growth
from transferbench.worker.models import ModelConfig, TransferNet
from transferbench.schema.spec import Condition
from transferbench.study.plan import build_plan
from transferbench.schema.spec import JobSpec, TrainConfig
from transferbench.worker.steps import build_optimizer
from tests.conftest import tiny_study

CONFIG = ModelConfig.small(5, 1, conv_widths=(4, 4, 6, 6, 4), fc_width=16)


def source_network(seed: int = 0) -> TransferNet:
    torch.manual_seed(seed)
    net = TransferNet(CONFIG)
    with torch.no_grad():  # non-trivial biases, so "equal" means something
        for layer in net.layers.values():
            layer.bias.uniform_(-0.5, 0.5)
    return net.eval()


def grown_from(source: TransferNet, growth: Growth) -> GrownNet:
    torch.manual_seed(1)
    net = GrownNet(CONFIG, growth)
    apply_growth(net, source.state_dict())
    return net.eval()


def fc7_output(net: TransferNet, x: torch.Tensor) -> torch.Tensor:
    seen = {}
    hook = net.layers["fc7"].register_forward_hook(lambda _m, _i, out: seen.setdefault("fc7", out.clone()))
    logits = net(x)
    hook.remove()
    return seen["fc7"], logits


@pytest.mark.parametrize("variant", VARIANTS)
def test_zeroed_new_units_leave_the_old_units_as_they_were(variant):
    source = source_network()
    x = torch.randn(6, 1, 28, 28)
    old_fc7, old_logits = fc7_output(source, x)
    for normalize in (True, False):
        net = grown_from(source, Growth(variant, (8,), normalize=normalize))
        new_fc7, _ = fc7_output(net, x)
        assert torch.equal(new_fc7, old_fc7)  # copied, not re-drawn: the new units change nothing below them
        with torch.no_grad():
            for layer in net.grown.values():
                layer.weight.zero_()
                layer.bias.zero_()
            if variant in ("WA", "WWA") and not normalize:
                # The classifier reads [fc7, fc7_1]; with fc7_1 silent and the old columns set to the
                # source's classifier, the grown network is the source network.
                net.layers["fc8"].weight.normal_()
                net.layers["fc8"].weight[:, :16] = source.layers["fc8"].weight
                net.layers["fc8"].bias.copy_(source.layers["fc8"].bias)
        zeroed_fc7, logits = fc7_output(net, x)
        assert torch.equal(zeroed_fc7, old_fc7)
        if variant in ("WA", "WWA") and not normalize:
            torch.testing.assert_close(logits, old_logits, rtol=0, atol=1e-6)


def test_the_scale_is_learned_at_the_new_rate():
    net = grown_from(source_network(), Growth("WA", (8,), scale_init=20.0, new_lr_mult=10.0))
    net.train()
    optimizer = build_optimizer(net, TrainConfig(lr=0.01, weight_decay=5e-4))
    scale = net.norms["fc8"].scale
    group = next(g for g in optimizer.param_groups if any(p is scale for p in g["params"]))
    assert group["lr_mult"] == 10.0 and group["weight_decay"] == 0.0
    before = scale.detach().clone()
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 5, (16,))
    for _ in range(3):
        for g in optimizer.param_groups:
            g["lr"] = 0.01 * g["lr_mult"]
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        assert scale.grad is not None and scale.grad.abs().sum() > 0
        optimizer.step()
    assert torch.equal(before, torch.full_like(before, 20.0))
    assert not torch.allclose(scale.detach(), before)
    old = next(g for g in optimizer.param_groups if any(p is net.layers["fc7"].weight for p in g["params"]))
    assert old["lr_mult"] == 1.0


EXPECTED_TRAINABLE = {  # scope -> the pre-trained layers that train (WWA: fc6_1, fc7_1 and the classifier always do)
    "new": set(),
    "fc7": {"fc7"},
    "fc6": {"fc6", "fc7"},
    "all": {"conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"},
}


@pytest.mark.parametrize("scope", list(EXPECTED_TRAINABLE))
def test_scopes_freeze_exactly_what_they_say(scope):
    net = grown_from(source_network(), Growth("WWA", (8,), scope=scope))
    net.train()
    trainable = {key.split(".")[1] for key, p in net.named_parameters() if p.requires_grad}
    assert trainable == EXPECTED_TRAINABLE[scope] | {"fc6_1", "fc7_1", "fc8"}
    before = {key: p.detach().clone() for key, p in net.named_parameters()}
    optimizer = build_optimizer(net, TrainConfig(lr=0.05))
    for g in optimizer.param_groups:
        g["lr"] = 0.05 * g["lr_mult"]
    torch.manual_seed(0)
    torch.nn.functional.cross_entropy(net(torch.randn(16, 1, 28, 28)), torch.randint(0, 5, (16,))).backward()
    optimizer.step()
    for key, p in net.named_parameters():
        assert torch.equal(p, before[key]) != p.requires_grad, key


def test_chains_copy_the_earlier_growth_and_reject_wrong_sources():
    source = source_network()
    step1 = grown_from(source, Growth("WA", (8,)))
    torch.manual_seed(2)
    step2 = GrownNet(CONFIG, Growth("WA", (8, 8)))
    keys = apply_growth(step2, step1.state_dict())
    assert "grown.fc7_1.weight" in keys["copied"] and "norms.fc7_1.scale" not in keys["copied"]  # WA normalises at fc8 only
    assert keys["new"] == ["grown.fc7_2.bias", "grown.fc7_2.weight", "norms.fc8.scale"]
    assert torch.equal(step2.grown["fc7_1"].weight, step1.grown["fc7_1"].weight)
    assert set(keys["reinitialised"]) == {"grown.fc7_2.bias", "grown.fc7_2.weight", "layers.fc8.weight", "layers.fc8.bias",
                                          "norms.fc8.scale"}
    with pytest.raises(UserError, match="lacks grown.fc7_1"):
        apply_growth(GrownNet(CONFIG, Growth("WA", (8, 8))), source.state_dict())
    with pytest.raises(UserError, match="no place for"):
        apply_growth(GrownNet(CONFIG, Growth("WA", (8,))), step1.state_dict())
    with pytest.raises(UserError, match="one step only"):
        Growth("DWA", (8, 8))
    with pytest.raises(UserError, match="needs a source"):
        apply_growth(GrownNet(CONFIG, Growth("DA", (8,))), None)


def test_planner_expands_developmental_patterns(tmp_path):
    study = tiny_study(tmp_path, "dev", ["AnB+", "A7B+WA", "A7B+DA-nonorm", "A7B+WWA-fc7", "A7B+WA-wide", "baseB-WA"], [7],
                       extra="units = [8, 12]\n")
    jobs = Study.open(study).jobs
    assert set(jobs) == {f"random0/{net}/seed0" for net in (
        "baseA", "A7B+", "A7B+WA8", "A7B+WA12", "A7B+DA8-nonorm", "A7B+DA12-nonorm", "A7B+WWA8-fc7", "A7B+WWA12-fc7",
        "baseA-WA8", "baseA-WA12", "A7B+WA8-wide", "A7B+WA12-wide", "baseB-WA8", "baseB-WA12")}
    grown = jobs["random0/A7B+WWA12-fc7/seed0"]
    assert grown.depends == ("random0/baseA/seed0",)
    assert grown.spec.to_dict()["growth"] == {"variant": "WWA", "units": (12,), "new": True, "normalize": True, "scale_init": 10.0,
                                       "scope": "fc7", "new_lr_mult": 10.0}
    assert grown.spec.to_dict()["forgetting_side"] == "A"
    assert jobs["random0/A7B+WA8-wide/seed0"].depends == ("random0/baseA-WA8/seed0",)
    for wide in ("random0/A7B+WA8-wide/seed0", "random0/baseA-WA8/seed0"):  # plain wider networks: no normalisation
        growth = Growth(**jobs[wide].spec.to_dict()["growth"])
        assert not growth.new and not growth.normalize and len(GrownNet(CONFIG, growth).norms) == 0
    assert "growth" not in jobs["random0/A7B+/seed0"].spec.to_dict() and "forgetting_side" not in jobs["random0/baseA/seed0"].spec.to_dict()

    chain = tmp_path / "chain.toml"
    text = (tmp_path / "dev.toml").read_text().replace('splits = ["random0"]', 'splits = ["chain0"]')
    for networks, message in ((["A7B7C+WA-wide"], "-wide is one grown transfer"), (["A7B7C+DWA"], "one step only"),
                              (["A7B+WA-nonorm-nonorm"], "repeats an option"), (["A7B+-nonorm"], "add a variant"),
                              (["A7B7D+WA"], "no side D"), (["baseA-WA-fc7"], "takes no options"),
                              (["baseA-WA-nonorm"], "drop -nonorm"), (["A7B+WA-nonorm-wide"], "drop -nonorm")):
        chain.write_text(text.replace('"AnB+", "A7B+WA"', ", ".join(f'"{n}"' for n in networks)).split("networks =")[0]
                         + f"networks = {json.dumps(networks)}\nn = [7]\nunits = [8]\n")
        with pytest.raises(UserError, match=message):
            build_plan(chain, tmp_path / "jobs")
    chain.write_text(text.split("networks =")[0] + 'networks = ["A7B+-new", "A7B+-fc7", "A7B+-fc6"]\n')
    scoped = build_plan(chain, tmp_path / "jobs")
    conditions = {key.split("/")[1]: job.spec.condition for key, job in scoped.jobs.items()}
    # Classic fine-tuning by scope is Yosinski's A7B, A6B^1 and A5B^2, named by scope.
    assert conditions == {"baseA": Condition(), "A7B+-new": Condition("transfer", 7, False),
                          "A7B+-fc7": Condition("preserved", 6, False, 1), "A7B+-fc6": Condition("preserved", 5, False, 2)}
    assert "classic A7B+, scope fc7" in scoped.summary()
    chain.write_text(text.split("networks =")[0] + 'networks = ["A7B7C+", "A7B7C+WA"]\nunits = [8]\n')
    chain_jobs = build_plan(chain, tmp_path / "jobs").jobs
    step2 = chain_jobs["chain0/A7B7C+WA8/seed0"]
    assert step2.depends == ("chain0/A7B+WA8/seed0",) and step2.spec.growth.units == (8, 8)
    assert step2.spec.forgetting_side == "B" and step2.side == "C"
    assert chain_jobs["chain0/A7B7C+/seed0"].depends == ("chain0/A7B+/seed0",)


def test_forgetting_is_measured_against_the_source(tmp_path):
    """'before' is the base network on its own validation set, so it must equal the base's own
    last evaluation; with scope new every pre-trained layer is frozen, so nothing is forgotten."""
    study = tiny_study(tmp_path, "forget", ["A7B+WA-new", "A7B+DA"], [7], iterations=8, every=4, extra="units = [8]\n")
    submission = submit(study, "debug", echo=lambda *_: None)
    assert not submission.skipped
    runs = study / "runs" / "random0"
    base = json.loads((runs / "baseA" / "seed0" / "result.json").read_text())
    frozen = json.loads((runs / "A7B+WA8-new" / "seed0" / "result.json").read_text())
    tuned = json.loads((runs / "A7B+DA8" / "seed0" / "result.json").read_text())
    for record in (frozen, tuned):
        assert record["forgetting_side"] == "A"
        assert record["source_top1_before"] == base["top1_final"]
    assert frozen["source_top1_after"] == frozen["source_top1_before"]
    assert len(frozen["layers"]["frozen"]) == 14 and not tuned["layers"]["frozen"]
    state = torch.load(runs / "A7B+WA8-new" / "seed0" / "model.pt", weights_only=True)["model"]
    base_state = torch.load(runs / "baseA" / "seed0" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(state[key], base_state[key]) for key in base_state if not key.startswith("layers.fc8"))


def test_a_transfers_new_classifier_learns_at_its_own_rate():
    """classifier_lr_mult: Caffe's fine-tuning gives the re-initialised classifier 10x the rate;
    at 1 (the default, Yosinski et al.'s recipe) the groups are those of every earlier checkpoint."""
    net = grown_from(source_network(), Growth("WA", (8,), scale_init=20.0, new_lr_mult=10.0))
    config = TrainConfig(lr=0.01, classifier_lr_mult=10.0)

    def mult(optimizer, parameter):
        return next(g["lr_mult"] for g in optimizer.param_groups if any(p is parameter for p in g["params"]))

    optimizer = build_optimizer(net, config, new_classifier=True)
    assert mult(optimizer, net.layers["fc8"].weight) == 10.0 and mult(optimizer, net.layers["fc8"].bias) == 20.0
    assert mult(optimizer, net.layers["fc7"].weight) == 1.0  # transferred: the base rate
    plain = build_optimizer(net, TrainConfig(lr=0.01), new_classifier=True)
    assert mult(plain, net.layers["fc8"].weight) == 1.0
    assert [len(g["params"]) for g in plain.param_groups] == \
        [len(g["params"]) for g in build_optimizer(net, TrainConfig(lr=0.01)).param_groups]
    base = build_optimizer(net, config, new_classifier=False)  # trained from scratch: nothing is new
    assert mult(base, net.layers["fc8"].weight) == 1.0
    assert "classifier_lr_mult" not in JobSpec(key="k", dataset="synthetic", split=None, side=None, out_dir="o").to_dict()["train"]


def test_retrain_source_freezes_the_transferred_network_and_trains_a_new_classifier_on_the_source_side(tmp_path):
    """Forgetting as Growing a Brain measures it: the fine-tuned network (grown or not) frozen whole,
    a new classifier trained on the source's task."""
    study = tiny_study(tmp_path, "retrain", ["A7B+", "A7B+WA", "A7B+-fc7"], [7], iterations=4, every=2,
                       extra="units = [8]\nretrain_source = true\n")
    jobs = Study.open(study).jobs
    assert {key.split("/")[1] for key in jobs} == {"baseA", "A7B+", "A7B+-onA", "A7B+WA8", "A7B+WA8-onA", "A7B+-fc7",
                                                   "A7B+-fc7-onA"}
    retrained = jobs["random0/A7B+WA8-onA/seed0"]
    assert retrained.depends == ("random0/A7B+WA8/seed0",) and retrained.side == "A"
    assert retrained.spec.condition == Condition("transfer", 7, False) and retrained.spec.forgetting_side is None
    assert (retrained.spec.growth.new, retrained.spec.growth.scope) == (False, "new")
    submit(study, "debug", echo=lambda *_: None)
    for network in ("A7B+WA8", "A7B+"):
        trained = torch.load(jobs[f"random0/{network}/seed0"].out_dir / "model.pt", weights_only=True)["model"]
        again = torch.load(jobs[f"random0/{network}-onA/seed0"].out_dir / "model.pt", weights_only=True)["model"]
        body = [key for key in trained if not key.startswith(("layers.fc8.", "norms.fc8."))]
        assert body and all(torch.equal(trained[key], again[key]) for key in body), network  # frozen whole, grown units too
        assert not torch.equal(trained["layers.fc8.weight"], again["layers.fc8.weight"])  # a new classifier, trained
    record = json.loads((retrained.out_dir / "result.json").read_text())
    assert record["status"] == "done" and record["spec"]["side"] == "A"


def test_old_and_new_units_read_alone_add_up_to_the_network():
    """Figure 6's readouts: the classifier on each block alone (the others zeroed) sums to the network's logits."""
    torch.manual_seed(0)
    for growth in (Growth("WA", (8,)), Growth("WA", (8,), normalize=False), Growth("WWA", (8, 8))):
        model = GrownNet(CONFIG, growth).eval()
        images = torch.randn(5, CONFIG.in_channels, 28, 28)
        both, alone = model.readout_logits(images)
        assert list(alone) == list(model.readouts) and len(alone) == len(growth.units) + 1
        bias = model.layers["fc8"].bias
        assert torch.allclose(sum(alone.values()) - (len(alone) - 1) * bias, both, atol=1e-5) and torch.equal(both, model(images))
    assert GrownNet(CONFIG, Growth("DA", (8,))).readouts == ()  # the classifier reads the new layer alone


def test_collect_writes_the_units_curves_and_plot_draws_them(tmp_path, monkeypatch):
    from transferbench.analysis.results import read_curves
    from transferbench.cli import main

    study = tiny_study(tmp_path, "units", ["A7B+", "A7B+WA", "A7B+DA"], [7], iterations=4, every=2, extra="units = [8]\n")
    submit(study, "debug", echo=lambda *_: None)
    record = json.loads((Study.open(study).jobs["random0/A7B+WA8/seed0"].out_dir / "result.json").read_text())
    assert all({"top1_only_fc7", "top1_only_fc7_1"} <= set(e) for e in record["evaluations"])
    monkeypatch.chdir(tmp_path)
    assert main(["collect", str(study), "--out", "units.csv"]) == 0
    curves = read_curves(tmp_path / "units-curves.csv")
    assert {c["network"] for c in curves} == {"A7B+WA8"}  # DA's classifier reads one block; A7B+ has none
    assert {c["readout"] for c in curves} == {"both", "fc7", "fc7_1"} and {c["iteration"] for c in curves} == {2, 4}
    both = {c["iteration"]: c["top1"] for c in curves if c["readout"] == "both"}
    assert both == {e["iteration"]: e["top1"] for e in record["evaluations"]}
    assert main(["plot", "units.csv", "--out", "figs", "--keep-flagged"]) == 0
    assert (tmp_path / "figs" / "units-units.png").stat().st_size > 1000
