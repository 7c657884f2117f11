"""The splitters: the paper's splits reproduced exactly, the stratified property, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from transferbench.tasks.classes import load_table
from transferbench.errors import UserError
from transferbench.tasks.splits import (
    cluster_balance, load_natman_preset, load_split, natman_split, random_split, read_image_list,
    reduced_split, split_image_list, stratified_split,
)
from tests.conftest import REPO

SPLITS = REPO / "splits"


def test_random_split_is_the_authors_global_generator_draw():
    table = load_table("imagenet1k")
    for seed in range(4):
        state = np.random.get_state()
        np.random.seed([seed])  # exactly what the authors' script did
        expected = sorted(np.random.choice(np.arange(1000), 500, replace=False))
        np.random.set_state(state)
        split = random_split(table, seed)
        assert [c.index for c in split.sides["A"]] == expected
        assert sorted(c.index for c in split.sides["A"] + split.sides["B"]) == list(range(1000))
    # Seeding with the bare integer gives another split: the one-element list matters.
    bare = sorted(np.random.RandomState(0).choice(np.arange(1000), 500, replace=False))
    assert [c.index for c in random_split(table, 0).sides["A"]] != bare


def test_random_split_does_not_touch_numpy_global_state():
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    random_split(load_table("imagenet1k"), 0)
    assert np.random.random() == before


@pytest.mark.parametrize("name", [f"imagenet1k-random{s}" for s in range(4)] + [f"imagenet1k-stratified{s}" for s in range(4)]
                         + [f"{d}-{m}{s}" for d in ("cifar100", "fashion-mnist") for m in ("random", "stratified") for s in range(4)])
def test_committed_splits_regenerate_byte_for_byte(name):
    dataset, _, rest = name.rpartition("-")
    method, seed = rest.rstrip("0123456789"), int(rest[-1])
    maker = random_split if method == "random" else stratified_split
    assert maker(load_table(dataset), seed).to_json() == (SPLITS / f"{name}.json").read_text()
    assert load_split(SPLITS / f"{name}.json").to_json() == (SPLITS / f"{name}.json").read_text()


def test_natman_preset_reproduces_the_published_lists(reference, wordnet):
    split, disagreements = natman_split(load_natman_preset("yosinski2014"), wordnet)
    published_natural = [int(x) for x in (reference / "ilsvrc12" / "half_nat_idx.txt").read_text().split()]
    published_man_made = [int(x) for x in (reference / "ilsvrc12" / "half_man_idx.txt").read_text().split()]
    assert [c.index for c in split.sides["A"]] == published_natural
    assert [c.index for c in split.sides["B"]] == published_man_made
    assert (len(split.sides["A"]), len(split.sides["B"])) == (449, 551)
    assert [(d.info.short_name, d.rule_side, d.preset_side) for d in disagreements] == [("mashed potato", "natural", "man-made")]
    assert "potato.n.01" in disagreements[0].hypernym_path
    assert split.to_json() == (SPLITS / "imagenet1k-natman.json").read_text()


def test_small_dataset_natman_presets(wordnet):
    cifar, _ = natman_split(load_natman_preset("cifar100"), wordnet)
    natural = {c.short_name for c in cifar.sides["A"]}
    assert {"sea", "cloud", "forest", "plain", "mountain", "maple_tree", "baby", "apple"} <= natural
    assert not natural & {"road", "bridge", "bus", "skyscraper", "castle", "keyboard"}
    assert cifar.to_json() == (SPLITS / "cifar100-natman.json").read_text()
    fashion, _ = natman_split(load_natman_preset("fashion-mnist"), wordnet)
    assert [c.short_name for c in fashion.sides["B"]] == ["Sandal", "Sneaker", "Bag", "Ankle boot"]
    assert fashion.side_names == {"A": "clothing", "B": "footwear and bags"}
    assert fashion.to_json() == (SPLITS / "fashion-mnist-natman.json").read_text()


@pytest.mark.parametrize("dataset", ["imagenet1k", "cifar100", "fashion-mnist"])
@pytest.mark.parametrize("seed", range(4))
def test_stratified_split_balances_every_cluster(dataset, seed):
    table = load_table(dataset)
    split = stratified_split(table, seed)
    assert len(split.sides["A"]) == len(split.sides["B"]) == len(table) // 2
    balances = cluster_balance(split)
    assert balances, "no clusters checked"
    assert all(abs(b.imbalance) <= 1 for b in balances), [b for b in balances if abs(b.imbalance) > 1][:3]
    # Check one named cluster independently of cluster_balance: the felids.
    if dataset == "imagenet1k":
        felids = [c for c in table.classes if "feline.n.01" in c.path]
        assert len(felids) == 13
        in_a = sum(c in split.sides["A"] for c in felids)
        assert in_a in (6, 7)


def test_plain_random_split_is_not_balanced():
    # The property the stratified splitter adds is not a property every split has.
    balances = cluster_balance(random_split(load_table("imagenet1k"), 0))
    assert max(abs(b.imbalance) for b in balances) > 1


def test_same_seed_same_bytes_other_seed_other_split():
    table = load_table("imagenet1k")
    for maker in (random_split, stratified_split):
        assert maker(table, 7).to_json() == maker(table, 7).to_json()
        assert maker(table, 7).sides["A"] != maker(table, 8).sides["A"]


def test_subset_of_classes(tmp_path):
    table = load_table("imagenet1k")
    wnids = [c.wnid for c in table.classes[:20]]
    split = stratified_split(table, 0, wnids)
    assert sorted(c.index for c in split.sides["A"] + split.sides["B"]) == list(range(20))
    with pytest.raises(UserError, match="cannot be halved"):
        random_split(table, 0, wnids[:19])
    assert len(random_split(table, 0, wnids[:19], size_a=9).sides["B"]) == 10
    with pytest.raises(UserError, match="duplicate class n01440764"):
        random_split(table, 0, wnids + [wnids[0]])
    with pytest.raises(UserError, match="unknown class 'n99999999'"):
        stratified_split(table, 0, wnids[:19] + ["n99999999"])


def test_split_image_list_renumbers_like_the_authors(reference):
    images = read_image_list(reference / "ilsvrc12" / "whole_valid_files.txt", 1000)
    split = random_split(load_table("imagenet1k"), 0)
    in_a = [c.index for c in split.sides["A"]]
    text = split_image_list(images, split, "A")
    # The authors' relabelling, written independently: rank of the class among A's indices.
    expected = "".join(f"{name} {in_a.index(label)}\n" for name, label in images.entries if label in in_a)
    assert text == expected
    assert text.count("\n") == 25000  # 50 validation images per class
    # The first validation image is class 65, which is in A0 with 39 classes of A below it.
    assert 65 in in_a and sum(index < 65 for index in in_a) == 39
    assert text.startswith("ILSVRC2012_val_00000001.JPEG 39\n")


def test_reduced_split_caps_each_class_in_list_order(tmp_path):
    listing = tmp_path / "train.txt"
    listing.write_text("".join(f"img{i}_{c}.JPEG {c}\n" for i in range(5) for c in (3, 1, 0)))
    images = read_image_list(listing, 10)
    split = reduced_split(load_table("fashion-mnist"), 2)
    lines = split_image_list(images, split, "all").splitlines()
    assert lines == ["img0_3.JPEG 3", "img0_1.JPEG 1", "img0_0.JPEG 0", "img1_3.JPEG 3", "img1_1.JPEG 1", "img1_0.JPEG 0"]
    with pytest.raises(UserError, match="at least 1"):
        reduced_split(load_table("fashion-mnist"), 0)


def test_load_split_rejects_edited_files(tmp_path):
    text = (SPLITS / "imagenet1k-random0.json").read_text()
    data = json.loads(text)
    data["sides"]["A"], data["sides"]["B"] = data["sides"]["B"], data["sides"]["A"]
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    with pytest.raises(UserError, match="content hash"):
        load_split(edited)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_split(tmp_path / "bad.json")
    with pytest.raises(UserError, match="does not exist"):
        load_split(tmp_path / "missing.json")


def test_malformed_image_lists(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("a.JPEG 1\nb.JPEG\n")
    with pytest.raises(UserError, match=r"bad.txt:2: expected"):
        read_image_list(bad, 10)
    bad.write_text("a.JPEG 10\n")
    with pytest.raises(UserError, match="out of range"):
        read_image_list(bad, 10)
    bad.write_text("")
    with pytest.raises(UserError, match="empty"):
        read_image_list(bad, 10)


def test_every_wordnet_cluster_on_every_path_is_balanced_not_only_the_canonical_tree():
    table = load_table("imagenet1k")
    split = stratified_split(table, 0)
    balances = cluster_balance(split)
    assert len(balances) == 472  # every hypernym with 2+ classes, on any path of the DAG
    assert max(abs(b.imbalance) for b in balances) == 1
    instrumentality = next(b for b in balances if b.synset == "instrumentality.n.03")
    on_the_tree = sum("instrumentality.n.03" in c.path for c in table.classes)
    assert instrumentality.size == 358 and on_the_tree < 358  # other paths reach it: the canonical tree undercounts it
    assert abs(instrumentality.imbalance) <= 1
    assert sum(abs(b.imbalance) > 1 for b in cluster_balance(random_split(table, 0))) == 230


def test_clusters_that_no_split_balances_are_named_and_the_tree_is_the_fallback():
    from transferbench.tasks.classes import ClassInfo, ClassTable

    # a, b, c pairwise share a cluster (x = {a, b}, y = {b, c}, z = {a, c}): no half split puts
    # each pair on both sides (an odd cycle), whatever the seed.
    ancestors = {"a": ("x.n.01", "z.n.01"), "b": ("x.n.01", "y.n.01"), "c": ("y.n.01", "z.n.01"), "d": ("w.n.01",)}
    classes = tuple(ClassInfo(i, f"n{i:08d}", f"{name}.n.01", name, ("root.n.01", f"{name}.n.01"), ("root.n.01", *extra))
                    for i, (name, extra) in enumerate(ancestors.items()))
    split = stratified_split(ClassTable("toy", classes), 0)
    assert split.params["cluster_rule"] == "every node of the canonical WordNet hypernym tree"
    assert set(split.params["unbalanceable"]) <= {"x.n.01", "y.n.01", "z.n.01"} and len(split.params["unbalanceable"]) == 1
    assert len(split.sides["A"]) == 2


def test_a_dataset_read_from_its_layout_is_split_at_random_and_by_wordnet(tmp_path, wordnet, capsys):
    from tests.formats import make_caltech101, make_folder
    from transferbench.cli import main

    make_caltech101(tmp_path / "caltech")
    dir_args = ["--data-root", str(tmp_path / "caltech"), "--out", str(tmp_path / "splits"), "--wordnet-dir", str(wordnet.root)]
    assert main(["splits", "stratified", "--dataset", "caltech101", *dir_args]) == 0  # the shipped Caltech-101 mapping
    split = load_split(tmp_path / "splits" / "caltech101-stratified0.json")
    assert sorted(c.name for c in split.sides["A"] + split.sides["B"]) == ["Faces", "accordion", "anchor", "ant"]
    make_folder(tmp_path / "pets", classes=("cat", "dog", "fox", "eel"))
    pets = ["--dataset", "folder", "--data-root", str(tmp_path / "pets"), "--out", str(tmp_path / "splits")]
    assert main(["splits", "random", *pets]) == 0
    capsys.readouterr()
    assert main(["splits", "stratified", *pets, "--wordnet-dir", str(wordnet.root)]) == 2
    error = capsys.readouterr().err
    assert "4 of the 4 classes of folder have no WordNet synset (cat, dog, eel, fox)" in error and "--wordnet-map" in error
    mapping = tmp_path / "pets.tsv"
    mapping.write_text("cat\tcat.n.01\ndog\tdog.n.01\nfox\tfox.n.01\neel\teel.n.02\n")
    assert main(["splits", "stratified", *pets, "--wordnet-map", str(mapping), "--wordnet-dir", str(wordnet.root)]) == 0
    pet_split = load_split(tmp_path / "splits" / "folder-stratified0.json")
    carnivores = {c.name for c in pet_split.sides["A"]} & {"cat", "dog", "fox"}
    assert len(carnivores) in (1, 2)  # the three carnivores are divided, not put on one side


def test_chain_splits_are_the_legacy_generators_permutation_cut_in_parts():
    """A chain's tasks are RandomState([seed]).permutation of the classes cut into near-equal parts:
    the draw is part of every chain study's identity, so it must not move."""
    import numpy as np

    from transferbench.tasks.splits import chain_split

    table = load_table("imagenet1k")
    split = chain_split(table, 3, 3)
    order = np.random.RandomState([3]).permutation(1000)
    assert [len(split.sides[side]) for side in "ABC"] == [334, 333, 333]
    assert [c.index for c in split.sides["A"]] == sorted(order[:334].tolist())
    assert [c.index for c in split.sides["C"]][:5] == sorted(order[667:].tolist())[:5]
    assert split.content_hash() == chain_split(table, 3, 3).content_hash() != chain_split(table, 4, 3).content_hash()
