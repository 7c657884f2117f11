"""The Caffe-log importer (on the authors' real logs), collect, and every figure and table on a small CSV."""

from __future__ import annotations

import gzip
import subprocess
import sys

import pytest

from tests.conftest import REPO
from transferbench.analysis.caffe import parse_folder_name, read_log, read_network
from transferbench.errors import UserError
from transferbench.analysis.figures import plot_all
from transferbench.analysis.stats import Pairs, boost_table, developmental_table, effects_table, pooled_boost_table
import dataclasses

from transferbench.analysis.results import caffe_rows, read_csv, to_csv
from transferbench.schema.record import SCHEMA, Row


def test_restarted_network_merges_its_logs_newest_line_wins(reference):
    folder = reference / "logs" / "half0A"
    net = read_network(folder)
    assert net.logs == 4 and len(net.evaluations) == 450 and net.evaluations[-1][0] == 450_000 and not net.notes
    first, _, _ = read_log(folder / "140403_063910_half0A.o227963.gz")
    second, _, _ = read_log(folder / "140403_063910_half0A.o239566.gz")
    overlap = {it for _, it, _, _ in first} & {it for _, it, _, _ in second}
    assert overlap == set(range(281_000, 287_000, 1000))  # the restart re-ran 281k-286k
    newer = {it: top1 for _, it, top1, _ in second}
    merged = dict((it, top1) for it, top1, _ in net.evaluations)
    assert all(merged[it] == newer[it] for it in overlap)
    assert any(top1 != newer[it] for _, it, top1, _ in first if it in overlap)  # so the choice matters


def test_names_and_prototxts_give_the_condition(reference):
    assert parse_folder_name("transfer-ft1B1A_1_6") == dict(split="random1", network="B6A+", condition="transfer", n=6,
                                                             fine_tune=True, source_side="B", target_side="A")
    assert parse_folder_name("transfer2A2A_1_3")["condition"] == "selffer"
    assert parse_folder_name("reduced-0025")["split"] == "reduced0025"
    with pytest.raises(UserError, match="not a network of the published study"):
        parse_folder_name("half9Z")
    frozen = read_network(reference / "logs" / "transfer0A0B_1_3")
    assert frozen.network == "A3B" and not frozen.notes  # conv1-3 at lr 0, conv4-new .. fc8-new
    empty = read_network(reference / "logs" / "transfer-ft1A1A_1_1")
    assert empty.logs == 0 and empty.evaluations == []


def test_committed_csv_holds_every_published_network(reference):
    rows = read_csv(REPO / "results" / "yosinski2014.csv")
    assert len(rows) == 170 and list(rows[0].to_csv_dict()) == list(SCHEMA)
    no_log = [r.key for r in rows if r.notes == "no log"]
    assert len(no_log) == 22 and all(k.endswith("+/seed0") for k in no_log)
    by_key = {r.key: r for r in rows}
    base = by_key["random0/baseA/seed0"]
    net = read_network(reference / "logs" / "half0A")
    assert base.evaluations == 450 and base.last_iteration == 450_000 and base.complete == 1
    assert base.top1_final == pytest.approx(net.evaluations[-1][1], abs=1e-6)
    # Health: the authors' runs that sat at chance (1000 classes, 50,000 validation images) are flagged.
    stalled = sorted(r.key for r in rows if r.health == "stalled")
    assert stalled == [f"reduced{k:04d}/base/seed0" for k in (5, 10, 25, 50, 100)]
    assert [r.key for r in rows if r.health == "at_chance"] == ["all/R3/seed0"]  # the paper's finding: kept
    assert {r.health for r in rows if r.key not in stalled and r.key != "all/R3/seed0"} == {"healthy", None}  # None: no log


def test_unfinished_and_corrupt_logs(tmp_path):
    folder = tmp_path / "logs" / "transfer0A0B_1_2"
    folder.mkdir(parents=True)
    (folder / "imagenet_solver.prototxt").write_text("max_iter: 450000\ntest_interval: 1000\n")
    log = ("I0401 10:00:00.000000 1 solver.cpp:96] Iteration 1000, Testing net\n"
           "I0401 10:01:00.000000 1 solver.cpp:123] Test score #0: 0.25\n"
           "I0401 10:01:00.000001 1 solver.cpp:123] Test score #1: 4.0\n"
           "I0401 12:00:00.000000 1 solver.cpp:96] Iteration 2000, Testing net\n")  # killed mid-test: no scores
    with gzip.open(folder / "140401_100000_transfer0A0B.o1.gz", "wt") as handle:
        handle.write(log)
    rows = caffe_rows(tmp_path / "logs", "t")
    assert rows[0].evaluations == 1 and rows[0].last_iteration == 1000 and rows[0].complete == 0
    assert "unfinished: last evaluation at 1000 of 450000" in rows[0].notes
    assert "no imagenet_train.prototxt" in rows[0].notes
    assert rows[0].gpu_hours == 2.0
    (folder / "140401_100000_transfer0A0B.o2.gz").write_bytes(b"\x1f\x8b broken gzip")
    with pytest.raises(UserError, match="corrupt or truncated"):
        caffe_rows(tmp_path / "logs", "t")


def small_rows():
    """A small study: 2 bases at 0.60/0.62, BnB, BnB+, AnB, AnB+ at n = 1, 4, 7, natman, random-init, reduced."""
    rows = []

    def add(split, network, condition, n, ft, value, side="B"):
        rows.append(Row(study="small", source="transferbench", key=f"{split}/{network}/seed0", dataset="synthetic",
                        split=split, network=network, condition=condition, n=n, fine_tune=ft, target_side=side,
                        top1_mean_best10=value, top1_final=value))
    add("random0", "baseA", "base", 0, 0, 0.60, "A")
    add("random0", "baseB", "base", 0, 0, 0.62)
    for n in (1, 4, 7):
        add("random0", f"B{n}B", "selffer", n, 0, 0.61 - 0.01 * (n == 4))
        add("random0", f"B{n}B+", "selffer", n, 1, 0.62)
        add("random0", f"A{n}B", "transfer", n, 0, 0.61 - 0.02 * n)
        add("random0", f"A{n}B+", "transfer", n, 1, 0.63)
    add("natman", "baseA", "base", 0, 0, 0.5, "A")
    add("natman", "A2B", "transfer", 2, 0, 0.45)
    add("all", "R2", "random_init", 2, 0, 0.3, None)
    add("all", "base", "base", 0, 0, 0.55, None)
    add("reduced0010", "base", "base", 0, 0, 0.2, None)
    add("reduced0100", "base", "base", 0, 0, 0.4, None)
    return rows


def test_boost_table_and_every_figure_on_a_small_csv(tmp_path):
    rows = small_rows()
    table = boost_table(effects_table(rows))
    assert [r["vs_base_pairs"] for r in table] == [3, 2, 1] and [r["vs_base_units"] for r in table] == [1, 1, 1]
    assert table[0]["vs_base"] == pytest.approx(0.63 - 0.62) and table[0]["vs_selffer_plus"] == pytest.approx(0.01)  # own baseB
    assert table[0]["vs_base_shown"] == 0  # one replicate: no interval, nothing shown
    pooled = pooled_boost_table(rows)
    assert pooled[0]["vs_base"] == pytest.approx(0.63 - 0.61) and pooled[0]["vs_selffer_plus"] == pytest.approx(0.01)
    path = tmp_path / "small.csv"
    path.write_text(to_csv(rows))
    assert read_csv(path)[0].top1_mean_best10 == 0.6
    messages = []
    written = plot_all(read_csv(path), tmp_path / "figs", reference=rows, echo=messages.append)
    names = sorted(p.name for p in written)
    assert names == ["small-boost-pooled.csv", "small-boost.csv", "small-effects.csv", "small-fig2.pdf", "small-fig2.png",
                     "small-fig3.pdf", "small-fig3.png", "small-reduced.pdf", "small-reduced.png"]
    assert all(p.stat().st_size > 1000 for p in written if p.suffix == ".png")
    assert any("preserved: no preserved-layers networks" in m for m in messages)
    assert any(m.startswith("lingering boost, small") for m in messages)


def test_plot_cli_on_partial_data_and_bad_csv(tmp_path):
    rows = [r for r in small_rows() if r.condition in ("base", "transfer")]
    path = tmp_path / "partial.csv"
    path.write_text(to_csv(rows))
    run = subprocess.run([sys.executable, "-m", "transferbench", "plot", str(path), "--out", str(tmp_path / "f")],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert "missing in small: fig2: no selffer BnB networks" in run.stdout and (tmp_path / "f" / "small-fig2.png").is_file()
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    run = subprocess.run([sys.executable, "-m", "transferbench", "plot", str(bad)], capture_output=True, text=True, check=False)
    assert run.returncode == 2 and "is not a transferbench results CSV (no column split)" in run.stderr


def test_developmental_table_pairs_with_classic_and_keeps_fig2_classic(tmp_path):
    rows = small_rows()

    def grown(split, network, value, growth, scope="all", normalize=1, mode="grown", before=0.6, after=0.5, seed=0):
        rows.append(Row(
            study="small", source="transferbench", key=f"{split}/{network}/seed{seed}", dataset="synthetic", split=split,
            network=network, condition="transfer", n=7, fine_tune=1, target_side="B", seed=seed, top1_mean_best10=value,
            top1_final=value, growth=growth, growth_mode=mode, scope=scope, normalize=normalize, source_top1_before=before,
            source_top1_after=after))

    rows[:] = [dataclasses.replace(row, seed=0) for row in rows]
    rows.append(dataclasses.replace(next(r for r in rows if r.network == "A7B+"), split="random1", top1_mean_best10=0.60))
    grown("random0", "A7B+WA8", 0.66, "WA8")
    grown("random1", "A7B+WA8", 0.64, "WA8")
    grown("random0", "A7B+WA8-nonorm", 0.61, "WA8", normalize=0)
    grown("random0", "A7B+DA8-new", 0.62, "DA8", scope="new", after=0.6)
    grown("random0", "A7B+DA8-fc7", 0.64, "DA8", scope="fc7")
    # Classic fine-tuning of the new classifier alone (A7B+-new, the network A7B): the grown -new pairs with it.
    rows.append(dataclasses.replace(rows[-1], network="A7B+-new", key="random0/A7B+-new/seed0", fine_tune=0, growth=None,
                                    growth_mode=None, scope=None, normalize=None, top1_mean_best10=0.59))
    rows.append(dataclasses.replace(rows[-1], split="chain0", network="A7B+", growth=None, growth_mode=None, scope=None, normalize=None))
    rows.append(dataclasses.replace(rows[-1], network="A7B7C+", top1_mean_best10=0.5))
    grown("chain0", "A7B7C+WA8", 0.55, "WA8x2")
    effects = effects_table(rows)
    assert boost_table(effects)[2]["vs_base_pairs"] == 1  # random0's A7B+ (random1 has no base), no grown network, no chain
    table = {row["network"]: row for row in developmental_table(rows, effects)}
    assert table["A7B+WA8"]["vs_reference"] == pytest.approx(((0.66 - 0.63) + (0.64 - 0.60)) / 2)
    assert table["A7B+WA8"]["networks"] == 2 and table["A7B+WA8-nonorm"]["vs_reference"] == pytest.approx(-0.02)
    assert table["A7B7C+WA8"]["reference"] == "A7B7C+" and table["A7B7C+WA8"]["vs_reference"] == pytest.approx(0.05)
    assert table["A7B+DA8-new"]["source_top1_after"] == 0.6 and table["A7B+"]["vs_reference"] is None
    # A scope is read against classic fine-tuning of the same scope where it was trained, else against A7B+.
    assert table["A7B+DA8-new"]["reference"] == "A7B+-new" and table["A7B+DA8-new"]["vs_reference"] == pytest.approx(0.03)
    assert table["A7B+DA8-fc7"]["reference"] == "A7B+" and table["A7B+DA8-fc7"]["vs_reference"] == pytest.approx(0.01)
    assert table["A7B+-new"]["vs_reference"] is None  # listed beside the grown ones, as classic
    assert all(row.network != "A7B+-new" for row in Pairs(rows, "top1_mean_best10").by_group["transfer"])  # not fig2's A7B
    # Each grown network is read against its own classic network on the same splits and seeds: A7B+WA8
    # against A7B+ on random0 and random1 (two replicates), the chain's step against A7B7C+, never chain0's A7B+.
    compared = {row.network: row.estimate for row in effects.family("developmental")}
    assert compared["A7B+WA8"].units == 2 and compared["A7B+WA8"].has_interval
    assert compared["A7B+WA8-nonorm"].units == 1 and compared["A7B7C+WA8"].mean == pytest.approx(0.05)
    messages = []
    written = plot_all(rows, tmp_path / "figs", echo=messages.append)
    assert {"small-developmental.png", "small-developmental.csv"} <= {p.name for p in written}
    assert any(m.startswith("developmental networks, small") and "+0.035 vs A7B+" in m for m in messages)


def test_plot_reference_keeps_the_users_own_rows_of_the_same_study_from_any_folder(tmp_path):
    """The README's last two commands, from a folder that is not the checkout: the user's rows are
    named yosinski2014 like the published ones, and are told apart by their source."""
    mine = [dataclasses.replace(row, study="yosinski2014", source="transferbench") for row in small_rows()]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "mine.csv").write_text(to_csv(mine))
    run = subprocess.run([sys.executable, "-m", "transferbench", "plot", "results/mine.csv", "--reference", "yosinski2014",
                          "--out", "figures"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "figures" / "yosinski2014-fig2.png").is_file()
    assert "lingering boost, yosinski2014: each AnB+ against its own" in run.stdout
    assert "  1-7     +0.010 [no interval] 3p/1u/2b" in run.stdout  # the user's three AnB+, not the published ten
