"""The shipped class tables match their sources and WordNet."""

from __future__ import annotations

import pytest

from transferbench.tasks.classes import build_table, load_table, read_synset_words
from transferbench.errors import UserError
from transferbench.tasks.splitcmd import make_table
from transferbench.tasks.wordnet import canonical_path, load_wordnet


def test_imagenet_table_matches_the_published_synset_list(reference):
    table = load_table("imagenet1k")
    wnids = (reference / "ilsvrc12" / "synsets.txt").read_text().split()
    assert [c.wnid for c in table.classes] == wnids
    assert table.classes[281].short_name == "tabby"
    assert table.classes[281].path[-3:] == ("cat.n.01", "domestic_cat.n.01", "tabby.n.01")


@pytest.mark.parametrize("dataset", ["imagenet1k", "cifar100", "fashion-mnist"])
def test_shipped_tables_regenerate_from_wordnet(dataset, reference, wordnet):
    synset_words = reference / "ilsvrc12" / "synset_words.txt" if dataset == "imagenet1k" else None
    assert make_table(dataset, synset_words, wordnet).to_tsv() == load_table(dataset).to_tsv()


def test_canonical_paths_form_a_tree():
    parent: dict[str, str] = {}
    for dataset in ("imagenet1k", "cifar100", "fashion-mnist"):
        for info in load_table(dataset).classes:
            for up, down in zip(info.path, info.path[1:]):
                assert parent.setdefault(down, up) == up, f"{down} has two canonical parents"


def test_table_building_errors(wordnet, tmp_path):
    with pytest.raises(UserError, match="unknown wnid n99999999"):
        build_table("x", [("n99999999", "nothing")], wordnet)
    with pytest.raises(UserError, match="duplicate class n02123045"):
        build_table("x", [("n02123045", "tabby"), ("tabby.n.01", "tabby again")], wordnet)
    with pytest.raises(UserError, match="not a wnid"):
        build_table("x", [("n0212", "short")], wordnet)
    with pytest.raises(UserError, match="does not exist"):
        read_synset_words(tmp_path / "missing.txt")
    with pytest.raises(UserError, match="unknown dataset 'mnist'"):
        load_table("mnist")


def test_wordnet_errors_name_both_ways_to_get_it(tmp_path, monkeypatch):
    import nltk

    load_wordnet.cache_clear()
    with pytest.raises(UserError) as error:
        load_wordnet(str(tmp_path / "nowhere"))
    assert "nltk.downloader wordnet" in str(error.value) and "--wordnet-dir" in str(error.value)
    with pytest.raises(UserError, match="not a WordNet database folder"):
        load_wordnet(str(tmp_path))
    monkeypatch.delenv("TRANSFERBENCH_WORDNET_DIR", raising=False)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.setenv("NLTK_DATA", str(tmp_path))
    load_wordnet.cache_clear()
    with pytest.raises(UserError, match="WordNet not found.*nltk.downloader wordnet.*--wordnet-dir"):
        load_wordnet()
    load_wordnet.cache_clear()


def test_debian_wordnet_folder_without_lexnames(wordnet, tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    source = Path("/usr/share/wordnet")
    if not (source / "data.noun").is_file():
        pytest.skip("Debian's wordnet-base is not installed")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "wn"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("lexnames", "pixmaps", "bin"))
    load_wordnet.cache_clear()
    reader = load_wordnet(str(folder))
    assert [s.name() for s in canonical_path(reader.synset("tabby.n.01"))][-2:] == ["domestic_cat.n.01", "tabby.n.01"]
    load_wordnet.cache_clear()
