"""`transferbench splits ...` end to end: outputs, one-line errors, nothing half-written."""

from __future__ import annotations

import subprocess
import sys

import pytest

from transferbench.cli import build_parser, main
from tests.conftest import REPO


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("transferbench: error: "), err
    for fragment in fragments:
        assert fragment in err, err


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    for argv in (["--help"], ["splits", "--help"], *[["splits", m, "--help"] for m in ("random", "stratified", "natman", "reduced", "paper")],
                 ["splits", "table", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 0
        assert "usage: transferbench" in capsys.readouterr().out


def test_random_with_image_list_writes_split_and_lists(capsys, tmp_path, reference):
    code, out, _ = run(capsys, "splits", "random", "--seed", "0", "1", "--out", str(tmp_path),
                       "--list", str(reference / "ilsvrc12" / "whole_valid_files.txt"))
    assert code == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted([f"imagenet1k-random{s}{x}" for s in (0, 1)
                              for x in (".json", "_A_whole_valid_files.txt", "_B_whole_valid_files.txt")])
    assert (tmp_path / "imagenet1k-random0.json").read_bytes() == (REPO / "splits" / "imagenet1k-random0.json").read_bytes()
    assert sum(1 for _ in open(tmp_path / "imagenet1k-random1_B_whole_valid_files.txt")) == 25000
    assert "A (random half): 500 classes" in out


def test_stratified_prints_the_cluster_table(capsys, tmp_path):
    code, out, _ = run(capsys, "splits", "stratified", "--seed", "0", "--out", str(tmp_path))
    assert code == 0
    assert "feline.n.01" in out and "dog.n.01" in out and "terrier.n.01" in out
    assert "stratified max |A-B| 1," in out
    assert (tmp_path / "imagenet1k-stratified0.json").read_bytes() == (REPO / "splits" / "imagenet1k-stratified0.json").read_bytes()


def test_natman_lists_disagreements(capsys, tmp_path, wordnet, monkeypatch):
    monkeypatch.setenv("TRANSFERBENCH_WORDNET_DIR", wordnet.root.path if hasattr(wordnet.root, "path") else str(wordnet.root))
    code, out, _ = run(capsys, "splits", "natman", "--out", str(tmp_path))
    assert code == 0
    assert "mashed potato: rule says natural, preset says man-made" in out
    assert "potato.n.01" in out
    assert (tmp_path / "imagenet1k-natman.json").read_bytes() == (REPO / "splits" / "imagenet1k-natman.json").read_bytes()


def test_reduced_caps_a_list(capsys, tmp_path):
    listing = tmp_path / "train.txt"
    listing.write_text("".join(f"n/{i}.JPEG {i % 3}\n" for i in range(30)))
    code, _, _ = run(capsys, "splits", "reduced", "--dataset", "fashion-mnist", "--k", "2", "--out", str(tmp_path / "o"),
                     "--list", str(listing))
    assert code == 0
    assert (tmp_path / "o" / "fashion-mnist-reduced0002_all_train.txt").read_text() == \
        "n/0.JPEG 0\nn/1.JPEG 1\nn/2.JPEG 2\nn/3.JPEG 0\nn/4.JPEG 1\nn/5.JPEG 2\n"


@pytest.mark.parametrize("case", ["unknown-wnid", "duplicate", "odd", "missing-list", "malformed-list", "missing-classes",
                                  "unwritable", "bad-preset", "no-wordnet", "name-with-seeds"])
def test_bad_inputs_fail_in_one_line_and_write_nothing(case, capsys, tmp_path, monkeypatch):
    out = tmp_path / "out"
    classes = tmp_path / "classes.txt"
    listing = tmp_path / "list.txt"
    common = ["--out", str(out)]
    if case == "unknown-wnid":
        classes.write_text("n01440764\nn99999999\n")
        argv, expect = ["splits", "random", "--classes", str(classes)], ["unknown class 'n99999999'"]
    elif case == "duplicate":
        classes.write_text("n01440764\nn01443537\nn01440764\nn01484850\n")
        argv, expect = ["splits", "stratified", "--classes", str(classes)], ["duplicate class n01440764"]
    elif case == "odd":
        classes.write_text("n01440764\nn01443537\nn01484850\n")
        argv, expect = ["splits", "random", "--classes", str(classes)], ["3 classes cannot be halved", "--size-a"]
    elif case == "missing-list":
        argv, expect = ["splits", "random", "--list", str(tmp_path / "nope.txt")], ["image list", "does not exist"]
    elif case == "malformed-list":
        listing.write_text("a.JPEG 1\nb.JPEG one\n")
        argv, expect = ["splits", "random", "--list", str(listing)], ["list.txt:2: expected '<image> <class index>'"]
    elif case == "missing-classes":
        argv, expect = ["splits", "random", "--classes", str(tmp_path / "nope.txt")], ["class list", "does not exist"]
    elif case == "unwritable":
        blocker = tmp_path / "file"
        blocker.write_text("not a folder")
        common = ["--out", str(blocker / "sub")]
        argv, expect = ["splits", "random"], ["cannot create output folder", "choose a writable folder"]
    elif case == "bad-preset":
        preset = tmp_path / "p.toml"
        preset.write_text('name = "x"\ndataset = "imagenet1k"\nnatural_root = ["organism.n.01"]\n')
        argv, expect = ["splits", "natman", "--preset", str(preset)], ["unknown key 'natural_root'", "natural_roots"]
    elif case == "no-wordnet":
        argv, expect = ["splits", "natman", "--wordnet-dir", str(tmp_path / "nowhere")], ["nltk.downloader wordnet", "--wordnet-dir"]
    else:
        argv, expect = ["splits", "random", "--seed", "0", "1", "--name", "mine"], ["--name names one split"]
    code, _, err = run(capsys, *argv, *common)
    assert_one_line_error(code, err, *expect)
    assert not out.exists() or not any(out.iterdir())


def test_console_script_exit_code(tmp_path):
    result = subprocess.run([sys.executable, "-m", "transferbench", "splits", "random", "--dataset", "cifar100", "--size-a", "0",
                             "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == "transferbench: error: --size-a 0 must be between 1 and 99 for 100 classes\n"
    assert list(tmp_path.iterdir()) == []
