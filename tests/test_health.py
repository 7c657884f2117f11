"""Network health: a network that failed to learn is flagged in its record, status, the CSV and
the figures, and left out of every mean; a healthy one is not. Readings pair each network
with its own base."""

from __future__ import annotations

import json
import math

import pytest

from tests import conftest
from transferbench.analysis.figures import plot_all
from transferbench.analysis.results import collect_rows, read_csv, to_csv
from transferbench.analysis.reading import reading
from transferbench.analysis.stats import Pairs, boost_table, effects_table, group_values, pooled_boost_table
from transferbench.errors import UserError
from transferbench.schema.health import HealthSettings, judge
from transferbench.schema.record import Row
from transferbench.study.submit import submit
from transferbench.study.study import Study, read_record
from transferbench.study.status import judge_study, status_table

CURVE = [(i, min(0.9, 0.2 + 0.01 * i)) for i in range(10, 210, 10)]  # learns, then flat at 0.9


def losses(value: float, until: int = 200) -> list[tuple[int, float]]:
    return [(i, value) for i in range(1, until + 1)]


def test_judge_on_curves_with_known_answers():
    assert judge(CURVE, losses(0.4), 5, 100).state == "healthy"
    at_chance = [(i, 0.2) for i, _ in CURVE]
    stalled = judge(at_chance, losses(0.4), 5, 100)
    assert stalled.state == "stalled" and "no better than guessing (chance 0.2000: 1 of 5 classes" in stalled.reason
    # Frozen layers at chance are a finding, kept in means; a network whose every layer trains failed.
    assert judge(at_chance, losses(0.4), 5, 100, frozen=True).state == "at_chance"
    # The loss never overrules a top-1 clearly above chance (the paper's R7: its loss sits at ln 1000).
    assert judge(CURVE, losses(math.log(5)), 5, 100).state == "healthy"
    rising = [(i, 0.2 + 0.003 * i) for i, _ in CURVE]
    assert judge(rising, losses(0.4), 5, 100).state == "not_converged"
    assert judge(CURVE, losses(0.4), 5, 100, failure="diverged: loss is nan at iteration 3").state == "diverged"
    # The chance line widens with fewer validation images: 0.30 of 5 classes on 25 images is noise.
    assert judge([(i, 0.3) for i, _ in CURVE], losses(0.4), 5, 25).state == "stalled"
    # Chance is the majority class: collapsed onto a class that holds 60% of the images is at chance.
    assert judge([(i, 0.6) for i, _ in CURVE], losses(0.4), 5, 2000, chance=0.6).state == "stalled"
    # Never learned: flat from its first evaluation and its loss unchanged (a learning rate too small to move it),
    # though above chance (a class imbalance the network reproduces from the start).
    flat_loss = [(i, 1.93) for i in range(1, 201)]
    never = judge([(i, 0.23) for i, _ in CURVE], flat_loss, 6, 1000, chance=0.17)
    assert never.state == "stalled" and never.reason.startswith("never learned") and "recipe" in never.reason
    # ... but learning before the first evaluation is learning: the loss fell.
    fell = [(i, 1.9 if i < 10 else 0.4) for i in range(1, 201)]
    assert judge([(i, 0.9) for i, _ in CURVE], fell, 6, 1000).state == "healthy"


def test_health_settings_are_checked_at_plan(tmp_path):
    with pytest.raises(UserError, match="health.chance_sigmas must be a number >= 0"):
        HealthSettings(chance_sigmas=-1.0)
    extra = "\n[health]\nwindow = 0\n"
    with pytest.raises(UserError, match=r"\[health\].*window must be at least 1|window must be at least 1"):
        conftest.tiny_study(tmp_path, "badhealth", ["AnB"], [2], extra=extra.replace("[health]", "[health]"))


# A second block trains its own base on another split with an absurd weight decay: every step
# shrinks the weights by a quarter, the network's output goes flat and it guesses.
ABSURD = '\n[[block]]\nname = "absurd"\nsplits = ["random1"]\nnetworks = ["baseA"]\ntrain = {weight_decay = 5.0, lr = 0.05}\n'


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("health")
    study_dir = conftest.tiny_study(tmp_path, "health", ["baseB", "AnB"], [2], iterations=200, every=10, lr=0.005,
                                    data=conftest.make_fashion_mnist(tmp_path / "data", 400, 200), extra=ABSURD,
                                    template=conftest.LEARNING_STUDY)
    submit(study_dir, "debug", echo=lambda *_: None)
    return study_dir


def test_a_stalled_network_is_flagged_everywhere_and_left_out_of_means(trained, tmp_path):
    study = Study.open(trained)
    stalled_key = "random1/baseA/seed0"
    record = read_record(study.jobs[stalled_key])
    assert record.status == "done" and record.health["state"] == "stalled"  # the record says so
    for key in ("random0/baseA/seed0", "random0/baseB/seed0", "random0/A2B/seed0"):
        assert read_record(study.jobs[key]).health["state"] in ("healthy", "not_converged")  # these learned
    table, totals = status_table(trained)
    assert f"{stalled_key}" in table and "stalled (left out of means)" in table and totals["health:stalled"] == 1
    assert "--retry-stalled" in table
    rows, _ = collect_rows(trained)
    path = tmp_path / "health.csv"
    path.write_text(to_csv(rows))
    by_key = {r.key: r for r in read_csv(path)}
    assert by_key[stalled_key].health == "stalled" and not by_key[stalled_key].usable
    assert "guessing" in by_key[stalled_key].health_reason
    assert sum(r.usable for r in by_key.values()) == 3
    # Left out of the means: the base group holds the two healthy bases only.
    assert sorted(group_values(list(by_key.values()), "top1_mean_best10")["base"][0]) == sorted(
        by_key[k].top1_mean_best10 for k in ("random0/baseA/seed0", "random0/baseB/seed0"))
    messages = []
    plot_all(list(by_key.values()), tmp_path / "figures", echo=messages.append)
    assert any(stalled_key in m and "left out of means" in m for m in messages)
    assert any("left out of every mean" in line and stalled_key in line for line in reading(list(by_key.values())))


def test_retry_stalled_trains_again_from_other_random_streams_and_keeps_both_attempts(trained):
    messages = []
    submit(trained, "debug", retry_stalled=True, echo=messages.append)
    assert messages[0].startswith("training 1 stalled networks again from other random streams (random1/baseA/seed0)")
    job = Study.open(trained).jobs["random1/baseA/seed0"]
    record = read_record(job)
    assert record.retry == 1 and record.seed_used is None and len(record.attempts) == 1
    assert record.random_streams == "seedsequence/1"
    first = record.attempts[0]
    assert first["why"] == "stalled" and first["health"] == "stalled" and first["seed"] == 0 and first["retry"] == 0
    assert (job.out_dir / "attempt1" / "result.json").is_file()
    assert json.loads((job.out_dir / "attempt1" / "result.json").read_text())["health"]["state"] == "stalled"
    rows, _ = collect_rows(trained)
    row = next(r for r in rows if r.key == "random1/baseA/seed0")
    assert "attempt 2, random streams of retry 1" in row.notes and row.seed == 0  # the key keeps its seed


def test_a_network_built_on_a_stalled_base_is_source_unhealthy(tmp_path):
    study_dir = conftest.tiny_study(tmp_path, "source", ["AnB"], [2])
    study = Study.open(study_dir)
    records = {}
    for key, job in study.jobs.items():
        data = json.loads(conftest.record_text(job.spec))
        top1 = 0.2 if key.endswith("baseA/seed0") else 0.9  # 5 classes: baseA guesses
        data["evaluations"] = [{"iteration": i, "top1": top1, "top5": 1.0, "loss": 1.0} for i in (4, 8, 12)]
        data["train_loss"], data["val_images"] = [[i, 1.0] for i in range(1, 13)], 400
        job.out_dir.mkdir(parents=True, exist_ok=True)
        (job.out_dir / "result.json").write_text(json.dumps(data))
        records[key] = read_record(job)
    verdicts = judge_study(study, records)
    assert verdicts["random0/baseA/seed0"].state == "stalled"
    assert verdicts["random0/A2B/seed0"].state == "source_unhealthy" and "random0/baseA/seed0" in verdicts["random0/A2B/seed0"].reason
    retrain = __import__("transferbench.study.submit", fromlist=["stalled_retrains"]).stalled_retrains(study, verdicts)
    assert retrain == {"random0/baseA/seed0": "stalled", "random0/A2B/seed0": "source retrained"}


def sided_rows() -> list[Row]:
    """Sides of different difficulty (baseA 0.90, baseB 0.69), three seeds: B1B sits above its own
    base, below the pooled mean of both bases; A7B sits below B7B."""
    rows = []

    def add(network, condition, n, ft, side, value, seed):
        rows.append(Row(study="sided", source="transferbench", key=f"random0/{network}/seed{seed}", dataset="synthetic",
                        split="random0", network=network, condition=condition, n=n, fine_tune=ft, target_side=side,
                        source_side=network[0] if condition != "base" else None, seed=seed, top1_mean_best10=value,
                        top1_final=value, health="healthy"))
    for seed, jitter in enumerate((0.0, 0.004, -0.003)):
        add("baseA", "base", 0, 0, "A", 0.90 + jitter, seed)
        add("baseB", "base", 0, 0, "B", 0.686 + jitter, seed)
        add("B1B", "selffer", 1, 0, "B", 0.702 + jitter + 0.001 * seed, seed)
        add("B7B", "selffer", 7, 0, "B", 0.690 + jitter, seed)
        add("A7B", "transfer", 7, 0, "B", 0.600 + jitter + 0.002 * seed, seed)
        add("A7B+", "transfer", 7, 1, "B", 0.700 + jitter + 0.001 * seed, seed)
    return rows


def test_pairing_reads_each_network_against_its_own_base(tmp_path):
    rows = sided_rows()
    found = effects_table(rows)
    # Pooled, B1B (0.702) is 0.09 below the mean of both bases (0.793); paired it is 0.017 above its own base:
    # shown, with the other sign than the paper's co-adaptation loss.
    [b1b] = [r for r in found.per_n("co-adaptation loss") if r.n == 1]
    assert b1b.estimate.mean == pytest.approx(0.017) and b1b.shown and not b1b.agrees
    assert b1b.estimate.units == 3 and b1b.estimate.pairs == 3 and b1b.estimate.bases == 3
    assert [r.n for r in found.per_n("specificity") if r.agrees] == [7]
    assert [r.n for r in found.per_n("lingering boost") if r.agrees] == [7]  # A7B+ 0.700 vs its own baseB 0.686
    assert boost_table(found)[0]["vs_base"] == pytest.approx(0.015)
    assert pooled_boost_table(rows)[0]["vs_base"] == pytest.approx(0.701 - (0.90 + 0.686) / 2, abs=1e-3)  # the paper's way
    assert Pairs(rows, "top1_mean_best10").value("base", rows[2], 0) == pytest.approx(0.686)
    text = "\n".join(reading(rows))
    assert "shown with the other sign than the paper's: BnB above its base" in text and "fragile co-adaptation" not in text
    assert "shown: AnB below BnB: the features of layers 1..n are specific to task A, at n=7" in text
    boost = next(line for line in text.splitlines() if "lingering boost" in line and line.startswith("shown"))
    assert "(the lingering boost), at n=7 (strongest n=7: +0.015" in boost  # the finding, then what may explain it
    assert boost.endswith("; no BnB+ of the same split, seed and side rules out the longer training")
    # B1B +0.017 and B7B +0.004 above their bases: a slope with the paper's sign, but no loss at any n
    assert "shown as a trend: BnB (frozen selffer) against its own base falls with n, but from the other side of zero" in text
    messages = []
    plot_all(rows, tmp_path, echo=messages.append)
    summary = next(m for m in messages if "fig2:" in m)
    assert "shaded and named: specificity, lingering boost" in summary and "not shown (not shaded): co-adaptation loss" in summary
    assert (tmp_path / "sided-effects.csv").read_text().splitlines()[0].startswith(
        "effect,family,statistic,n,pairs,bases,units,mean,low,high,p,p_adjusted,shown")


def test_the_chance_line_is_three_standard_errors_above_chance():
    """A frozen network 2.5 standard errors above guessing is still guessing; one 3.5 above is not."""
    from transferbench.schema.health import chance_line

    images, classes = 400, 5
    se = math.sqrt(0.2 * 0.8 / images)
    assert chance_line(1 / classes, images, 3.0) == pytest.approx(0.2 + 3 * se)
    flat = lambda top1: [(i, top1) for i, _ in CURVE]  # noqa: E731
    assert judge(flat(0.2 + 2.5 * se), losses(1.0), classes, images, frozen=True).state == "at_chance"
    assert judge(flat(0.2 + 3.5 * se), losses(1.0), classes, images, frozen=True).state == "healthy"


def test_published_networks_get_the_verdict_their_logs_support(reference):
    """R7 (14.6x chance, its loss at ln 1000) learned; R3 at chance is the paper's finding; the
    reduced base of 5 images per class never started."""
    from transferbench.analysis.results import caffe_rows

    rows = {r.key: r for r in caffe_rows(reference / "logs")}
    assert rows["all/R7/seed0"].health == "healthy" and rows["all/R7/seed0"].usable
    assert rows["all/R3/seed0"].health == "at_chance" and rows["all/R3/seed0"].usable
    assert rows["reduced0005/base/seed0"].health == "stalled" and not rows["reduced0005/base/seed0"].usable
