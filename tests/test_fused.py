"""Fused training: one data stream, shared frozen layers, and records bit for bit those of separate jobs."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tests.conftest import stop_during
from tests.conftest import tiny_spec
from transferbench.schema.spec import Condition
from transferbench.worker.fused import prefix_chains, train_together
from transferbench.worker.running import StopRequested
from transferbench.worker.train import Trainer, run_job

# Frozen transfers that share base A's layers 1..3, 1..6 and 1..7 (A6B takes fc6's output, after
# its dropout, from A7B's pass: the random state must be A7B's after fc6), a fine-tuned
# transfer, a frozen selffer on base B, a random-init network and a plain base.
MEMBERS = [("A3B", Condition("transfer", 3), "A"), ("A7B", Condition("transfer", 7), "A"), ("A6B", Condition("transfer", 6), "A"),
           ("A3B+", Condition("transfer", 3, fine_tune=True), "A"), ("B2B", Condition("selffer", 2), "B"),
           ("R2B", Condition("random_init", 2), None), ("baseB", Condition(), None)]


def _specs(folder, root, sources, iterations=12):
    return [tiny_spec(folder, root, name, "B", condition, sources.get(side), iterations=iterations)
            for name, condition, side in MEMBERS]


def _fused(specs):
    lead = Trainer(specs[0], progress=False)
    return [lead] + [Trainer(spec, progress=False, shared=lead) for spec in specs[1:]]


def _weights(spec):
    return torch.load(os.path.join(spec.out_dir, "model.pt"))["model"]


def test_a_fused_group_trains_exactly_the_separate_networks_and_resumes_exactly(tmp_path, fashion_root):  # noqa: F811
    sources = {side: str(tmp_path / f"base{side}" / "model.pt") for side in "AB"}
    for side in "AB":
        assert run_job(tiny_spec(tmp_path, fashion_root, f"base{side}", side), progress=False).status == "done"
    separate = [run_job(spec, progress=False) for spec in _specs(tmp_path / "separate", fashion_root, sources)]

    fused_specs = _specs(tmp_path / "fused", fashion_root, sources)
    trainers = _fused(fused_specs)
    chains = prefix_chains([(t.model, t.frozen_prefix) for t in trainers])
    assert chains[0] == chains[1][:3] and len(chains[1]) == 7  # A3B's frozen layers are A7B's first three
    assert chains[2] == chains[1][:6]
    assert chains[4] and chains[4][0] != chains[0][0]  # base B's conv1 is not base A's
    assert chains[3] == () and chains[6] == ()  # nothing frozen
    fused = train_together(trainers)
    for alone, together, spec_alone, spec_together in zip(separate, fused, _specs(tmp_path / "separate", fashion_root, sources),
                                                          fused_specs):
        assert together.status == "done" and together.key == alone.key
        assert together.evaluations == alone.evaluations and together.train_loss == alone.train_loss
        mine, theirs = _weights(spec_together), _weights(spec_alone)
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
        assert together.images_seen == alone.images_seen and together.health == alone.health

    # Killed mid-run (a stop at iteration 6 checkpoints every member) and resumed: the same again.
    resumed_specs = _specs(tmp_path / "resumed", fashion_root, sources)
    with stop_during(5), pytest.raises(StopRequested):
        train_together(_fused(resumed_specs))
    assert all(not os.path.exists(os.path.join(spec.out_dir, "result.json")) for spec in resumed_specs)
    resumed = train_together(_fused(resumed_specs))
    for alone, again, spec_alone, spec_again in zip(separate, resumed, _specs(tmp_path / "separate", fashion_root, sources),
                                                    resumed_specs):
        assert again.evaluations == alone.evaluations and again.train_loss == alone.train_loss
        assert again.resumed_at == [6]  # the stop checkpoints at once
        mine, theirs = _weights(spec_again), _weights(spec_alone)
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_a_diverging_member_fails_alone_and_the_others_finish(tmp_path, fashion_root):  # noqa: F811
    specs = [tiny_spec(tmp_path, fashion_root, "ok", "B"), tiny_spec(tmp_path, fashion_root, "ok2", "B")]
    trainers = _fused(specs)
    with torch.no_grad():  # the second one's classifier blows up: its loss is inf from the first step
        trainers[1].model.layers["fc8"].weight.fill_(float("inf"))
    records = train_together(trainers)
    assert records[0].status == "done" and records[0].iterations == 12
    assert records[1].status == "failed" and "diverged" in records[1].reason
    assert not os.path.exists(os.path.join(specs[1].out_dir, "model.pt"))
    alone = run_job(tiny_spec(tmp_path / "alone", fashion_root, "ok", "B"), progress=False)
    assert records[0].evaluations == alone.evaluations


def test_only_one_stream_can_be_fused(tmp_path, fashion_root):  # noqa: F811
    lead = Trainer(tiny_spec(tmp_path, fashion_root, "a", "B"), progress=False)
    with pytest.raises(ValueError, match="training streams differ"):
        Trainer(tiny_spec(tmp_path, fashion_root, "b", "B", seed=1), progress=False, shared=lead)
    with pytest.raises(ValueError, match="one stream"):
        train_together([lead, Trainer(tiny_spec(tmp_path, fashion_root, "c", "B"), progress=False)])


# ---------------------------------------------------------------------------- planning and executors

def test_the_paper_grid_fuses_by_stream_and_depth_and_splits_groups_by_memory(tmp_path):
    from tests.conftest import REPO
    from transferbench.study.fuse import depths, fuse_jobs
    from transferbench.study.plan import build_plan
    from transferbench.study.study import order_jobs

    jobs = build_plan(REPO / "configs" / "yosinski2014.toml", tmp_path).jobs
    order = order_jobs(jobs)
    units = fuse_jobs(jobs, order, 40.0)
    assert sorted(key for unit in units for key in unit) == sorted(jobs)
    depth, seen = depths(jobs), set()
    for unit in units:
        assert len({jobs[key].spec.stream() for key in unit}) == 1 and len({depth[key] for key in unit}) == 1
        assert all(dep in seen for key in unit for dep in jobs[key].depends)  # its bases' units came first
        assert sum(jobs[key].spec.memory_estimate() for key in unit) <= 40e9
        seen |= set(unit)
    assert len(units) == 35 and max(map(len, units)) == 14
    # The seven AnB of a split and side stay together; a limit below two CaffeNets fuses nothing.
    anb = next(unit for unit in units if "random0/A1B/seed0" in unit)
    assert {f"random0/A{n}B/seed0" for n in range(1, 8)} <= set(anb)
    assert all(len(unit) == 1 for unit in fuse_jobs(jobs, order, 5.0))


def test_a_fused_study_runs_on_the_local_and_debug_executors_with_the_separate_study_s_results(tmp_path):
    from tests.conftest import tiny_study
    from transferbench.study.submit import submit
    from transferbench.study.study import Study
    from transferbench.study.status import status_table

    separate = tiny_study(tmp_path / "separate", "g", ["AnB", "AnB+", "BnB", "RnB"], [2, 7])
    fused = tiny_study(tmp_path / "fused", "g", ["AnB", "AnB+", "BnB", "RnB"], [2, 7])
    plan = json.loads((fused / "plan.json").read_text())
    plan["config"]["study"]["fuse"] = True  # as `plan --fuse` writes it
    (fused / "plan.json").write_text(json.dumps(plan))
    messages = []
    ran = submit(fused, "local", workers=2, echo=messages.append)
    assert ran.units < sum(len(keys) for _, keys in ran.arrays)
    assert any("jobs as" in m and "fused groups" in m for m in messages)
    submit(separate, "local", workers=2, echo=lambda *_: None)  # the same threads per worker: the same float order
    study = Study.open(fused)
    for key, job in study.jobs.items():
        mine = json.loads((job.out_dir / "result.json").read_text())
        theirs = json.loads((Study.open(separate).jobs[key].out_dir / "result.json").read_text())
        assert mine["status"] == "done" and mine["evaluations"] == theirs["evaluations"], key
        assert mine["train_loss"] == theirs["train_loss"]
    table, totals = status_table(fused)
    assert totals["done"] == len(study.jobs)
    # the debug executor runs the groups too
    debug = tiny_study(tmp_path / "debug", "g", ["AnB", "BnB"], [2, 7])
    plan = json.loads((debug / "plan.json").read_text())
    plan["config"]["study"]["fuse"] = True
    (debug / "plan.json").write_text(json.dumps(plan))
    done = submit(debug, "debug", echo=lambda *_: None)
    assert done.units < len(Study.open(debug).jobs)
    assert status_table(debug)[1]["done"] == len(Study.open(debug).jobs)
