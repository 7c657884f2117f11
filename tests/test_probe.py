"""The per-layer probes on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from transferbench.probe.measures import leep, linear_cka, logme, ridge_probe


def test_linear_cka_is_one_for_itself_and_invariant_to_rotation_and_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12))
    rotation, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.5 * x @ rotation) == pytest.approx(1.0)
    assert linear_cka(x, x + 7.0) == pytest.approx(1.0)  # centring
    assert linear_cka(x, rng.normal(size=(200, 12))) < 0.2  # unrelated representations


def blobs(n=300, classes=3, separation=4.0, dims=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = rng.normal(size=(classes, dims)) * separation
    return centres[labels] + rng.normal(size=(n, dims)), labels


def test_logme_prefers_features_that_explain_the_labels():
    informative, labels = blobs(separation=4.0)
    weak, _ = blobs(separation=0.3)
    noise = np.random.default_rng(1).normal(size=informative.shape)
    assert logme(informative, labels) > logme(weak, labels) > logme(noise, labels) - 0.05


def test_leep_prefers_a_source_classifier_that_tells_the_target_classes_apart():
    labels = np.arange(300) % 3
    aligned = np.full((300, 5), 0.02)
    aligned[np.arange(300), labels] = 0.92  # source class k fires on target class k
    uniform = np.full((300, 5), 0.2)
    assert leep(aligned, labels) > leep(uniform, labels)
    assert leep(uniform, labels) == pytest.approx(np.log(1 / 3))  # knows nothing: the target prior


def test_the_linear_probe_separates_separable_data():
    x, y = blobs(n=600, separation=5.0)
    assert ridge_probe(x[:400], y[:400], x[400:], y[400:]) > 0.97
    noise = np.random.default_rng(2).normal(size=x.shape)
    assert ridge_probe(noise[:400], y[:400], noise[400:], y[400:]) < 0.5


def test_probe_a_trained_study_writes_every_layer_and_compares_with_the_measured_curve(tmp_path, monkeypatch):
    import csv
    import subprocess
    import sys

    from tests import conftest
    from transferbench.study.submit import submit

    study_dir = conftest.tiny_study(tmp_path, "probed", ["baseB", "AnB", "AnB+"], [1, 3, 5], iterations=200, every=10,
                                    lr=0.005, data=conftest.make_fashion_mnist(tmp_path / "data", 400, 200),
                                    template=conftest.LEARNING_STUDY)
    submit(study_dir, "debug", echo=lambda *_: None)
    run = subprocess.run([sys.executable, "-m", "transferbench", "probe", str(study_dir), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "probed-probes.csv").open()))
    per_base = [r for r in rows if r["measure"] != "cka_anb_plus"]
    assert len(per_base) == 7 * 6 + 1 and {r["measure"] for r in per_base} == {
        "probe", "logme", "cka", "cka_debiased", "random_probe", "depth", "leep"}
    tuned = {r["layer"] for r in rows if r["measure"] == "cka_anb_plus"}  # the healthy fine-tuned AnB+
    assert tuned and tuned <= {"1", "3", "5"}
    assert (tmp_path / "out" / "probed-probes.png").is_file()
    assert "random_probe" in run.stdout and "leep          of baseA's classifier on side B" in run.stdout
    agreement = list(csv.DictReader((tmp_path / "out" / "probed-probe-agreement.csv").open()))
    assert {(r["measure"], r["curve"]) for r in agreement} >= {("probe", "absolute"), ("depth", "relative")}

    # Where the budget per class exceeds the floor (ImageNet's 500 classes), the fine-tuned AnB+ is
    # read on the same validation images as baseB, or their CKA would compare different images.
    from transferbench.probe import run as probe_run

    monkeypatch.setattr(probe_run, "VAL_IMAGES", 20)  # 5 classes x VAL_PER_CLASS 10 = 50 images, above the floor
    again = probe_run.probe_study(study_dir, tmp_path / "again", echo=lambda *_: None)
    assert {row["layer"] for row in again["table"] if row["measure"] == "cka_anb_plus"} == {int(n) for n in tuned}


def test_agreement_is_kendalls_tau_per_split_with_an_interval_and_depth_beside_it():
    from transferbench.probe.run import _agreement

    table, absolute = [], {}
    for seed, flip in ((0, 1), (1, 1), (2, -1)):
        for n in range(1, 8):
            table.append({"split": "random0", "seed": seed, "layer": n, "measure": "probe", "value": flip * n})
            table.append({"split": "random0", "seed": seed, "layer": n, "measure": "depth", "value": -n})
            absolute[("random0", seed, n)] = 0.9 - 0.01 * n  # falls with n
    lines = _agreement(table, {"absolute": absolute, "relative": {}})
    probe = next(line for line in lines if line["measure"] == "probe" and line["curve"] == "absolute")
    depth = next(line for line in lines if line["measure"] == "depth" and line["curve"] == "absolute")
    assert probe["units"] == 3 and probe["tau"] == pytest.approx((-1 - 1 + 1) / 3)
    assert depth["tau"] == pytest.approx(1.0) and probe["vs_depth"] == pytest.approx((-2 - 2 + 0) / 3)
    assert probe["p_per_unit"].split() == ["0.000397"] * 3  # an exact permutation p: 2 of 5040 orderings are as extreme
    relative = next(line for line in lines if line["measure"] == "probe" and line["curve"] == "relative")
    assert relative["units"] == 0
    # A tau is at most 1 and a difference of two at most 2: the t-interval over 3 units is cut there.
    assert (probe["low"], probe["high"], probe["vs_depth_low"]) == (-1.0, 1.0, -2.0) and probe["vs_depth_high"] < 2.0
    assert np.isnan(depth["low"]) and np.isnan(depth["high"])  # every unit gave tau 1: equal taus are no interval


def test_debiased_cka_is_about_zero_for_unrelated_features_at_any_width():
    from transferbench.probe.measures import debiased_cka

    rng = np.random.default_rng(0)
    for width in (16, 512):
        x, y = np.maximum(rng.normal(size=(400, width)), 0), np.maximum(rng.normal(size=(400, width)), 0)
        assert abs(debiased_cka(x, y)) < 0.02 and linear_cka(x, y) > 0.05 * (width > 100)
    x = rng.normal(size=(300, 20))
    assert debiased_cka(x, 2 * x) == pytest.approx(1.0)


def test_a_cross_dataset_target_is_probed_with_the_blocks_source_as_base_a(tmp_path):
    from tests import conftest
    from transferbench.probe.run import probe_study
    from transferbench.study.submit import submit
    source, study_dir = conftest.cross_study(
        tmp_path, "x", "other", 'dataset = "fashion-mnist"\ndata_root = "{data}"\nsplit = "random0"\nside = "B"',
        ["baseB", "AnB"], [1, 3, 5], iterations=120, every=20, lr=0.01, batch=16)
    submit(source, "debug", echo=lambda *_: None)
    submit(study_dir, "debug", echo=lambda *_: None)
    result = probe_study(study_dir, tmp_path / "out", echo=lambda *_: None)
    assert list(result["parts"]) == ["x-fm-other"]  # the target's own figure and agreement
    rows = [row for row in result["table"] if row["split"] == "fm-other"]
    assert len(rows) == 7 * 6 + 1 and (tmp_path / "out" / "x-fm-other-probes.png").is_file()
    # The source is the other study's network: its layer-1 probe reads the same features as its A1B.
    [probe] = [line for line in result["parts"]["x-fm-other"]["agreement"]
               if line["measure"] == "probe" and line["curve"] == "absolute"]
    assert probe["units"] == 1


def test_a_measure_is_judged_against_depth_by_the_interval_of_the_difference():
    from transferbench.probe.run import agreement_lines

    def line(low, high):  # (no interval: every split and seed gave the same difference)
        return {"measure": "cka", "curve": "absolute", "units": 6, "tau": 0.3, "low": 0.1, "high": 0.5, "p_per_unit": "0.1",
                "vs_depth": -0.2 if np.isnan(low) else (low + high) / 2, "vs_depth_low": low, "vs_depth_high": high}
    verdicts = [text.rsplit(": ", 1)[1] for text in agreement_lines([line(0.1, 0.4), line(-0.2, 0.3), line(-0.7, -0.1),
                                                                       line(float("nan"), float("nan"))])]
    assert verdicts == ["beyond depth", "no better than depth", "worse than depth", "not judged"]  # ("no interval: ...")


def test_the_measured_curve_reads_the_metric_asked_for():
    from transferbench.probe.run import measured_curves
    from transferbench.schema.record import Row

    def net(network, condition, best10, final):
        return Row(study="s", source="transferbench", key=f"random0/{network}/seed0", dataset="synthetic", split="random0",
                   network=network, condition=condition, n=3, fine_tune=0, source_side=network[0], target_side="B", seed=0,
                   top1_mean_best10=best10, top1_final=final, health="healthy")
    rows = [net("A3B", "transfer", 0.50, 0.70), net("B3B", "selffer", 0.60, 0.90)]
    assert measured_curves(rows)["absolute"] == {("random0", 0, 3): 0.50}
    final = measured_curves(rows, "top1_final")
    assert final["absolute"] == {("random0", 0, 3): 0.70} and final["relative"][("random0", 0, 3)] == pytest.approx(-0.20)
