"""What `transferbench splits ...` does: make splits, write them and their image lists, report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from transferbench.tasks.classes import CIFAR100_SYNSETS, FASHION_MNIST_SYNSETS, ClassTable, build_table, load_table, read_synset_words
from transferbench.errors import UserError
from transferbench.fileio import atomic_write_text, ensure_writable_dir
from transferbench.tasks.splits import (
    ImageList, NatmanDisagreement, Split, cluster_balance, load_natman_preset, natman_split, random_split,
    split_image_list, stratified_split, tightest_clusters,
)

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Outputs:
    """Where to write: split files into ``out_dir``; split image lists into ``list_dir``."""

    out_dir: Path
    image_list: ImageList | None = None
    list_dir: Path | None = None


def read_wnid_list(path: Path | None) -> list[str] | None:
    """A class subset: one wnid per line (the first word; the rest of the line is ignored)."""
    if path is None:
        return None
    return [wnid for wnid, _ in read_synset_words(path)]


def write_splits(splits: Sequence[Split], outputs: Outputs, echo: Echo) -> list[Path]:
    """Write every split (and its image-list sides) only after all of them were built.

    Nothing is written when any input is bad: the splits are computed before this is
    called, the folders are checked for writability first, and each file is atomic.
    """
    ensure_writable_dir(outputs.out_dir)
    files: dict[Path, str] = {outputs.out_dir / f"{split.name}.json": split.to_json() for split in splits}
    if outputs.image_list is not None:
        list_dir = outputs.list_dir or outputs.out_dir
        ensure_writable_dir(list_dir)
        stem = Path(outputs.image_list.source).stem
        for split in splits:
            for side in split.sides:
                files[list_dir / f"{split.name}_{side}_{stem}.txt"] = split_image_list(outputs.image_list, split, side)
    for path, text in files.items():
        atomic_write_text(path, text)
        echo(f"wrote {path}")
    return list(files)


def describe(split: Split) -> str:
    sizes = ", ".join(f"{side} ({split.side_names[side]}): {len(classes)} classes" for side, classes in split.sides.items())
    return f"{split.name}: {sizes}"


# Clusters the paper names (13 felids, >100 dogs): always shown when the class set has them.
NAMED_CLUSTERS = ("feline.n.01", "dog.n.01")


def balance_report(stratified: Split, plain: Split, min_cluster: int, top: int = 15) -> str:
    """How the tightest WordNet clusters (and the named ones) were divided by both splits."""
    strat = cluster_balance(stratified)
    plain_by_synset = {b.synset: b for b in cluster_balance(plain)}
    shown = tightest_clusters(strat, stratified, min_cluster)[:top]
    shown += [b for b in strat if b.synset in NAMED_CLUSTERS and b not in shown]
    lines = [f"WordNet clusters (nodes with >= {min_cluster} classes and no child that large), "
             f"A/B counts: {stratified.name} vs {plain.name}",
             f"  {'cluster':32s} {'size':>5s}  {'stratified':>10s}  {'random':>10s}"]
    for b in shown:
        p = plain_by_synset[b.synset]
        lines.append(f"  {b.synset:32s} {b.size:5d}  {b.in_a:4d}/{b.size - b.in_a:<5d}  {p.in_a:4d}/{p.size - p.in_a:<5d}")

    def summary(balances) -> str:
        worst = max(abs(b.imbalance) for b in balances)
        off = sum(abs(b.imbalance) > 1 for b in balances)
        mean = sum(abs(b.imbalance) for b in balances) / len(balances)
        return f"max |A-B| {worst}, mean |A-B| {mean:.2f}, clusters with |A-B| > 1: {off}"

    lines.append(f"  all {len(strat)} clusters with 2+ classes: stratified {summary(strat)}")
    lines.append(f"  {'':{len(str(len(strat))) + 31}s}random     {summary(plain_by_synset.values())}")
    return "\n".join(lines)


def disagreement_report(split: Split, disagreements: Sequence[NatmanDisagreement]) -> str:
    if not disagreements:
        return f"{split.name}: the plain WordNet rule and the preset agree on every class"
    lines = [f"{split.name}: {len(disagreements)} class(es) where the preset overrides the plain WordNet rule:"]
    for d in disagreements:
        lines.append(f"  {d.info.index:4d} {d.info.wnid} {d.info.short_name}: rule says {d.rule_side}, preset says {d.preset_side}")
        lines.append(f"       path: {' > '.join(d.hypernym_path)}")
        lines.append(f"       reason: {d.reason}")
    return "\n".join(lines)


def dataset_table(dataset: str, data_root: Path | None = None, wordnet_map: Path | None = None, wordnet_dir: str | None = None,
                  need_wordnet: bool = False, background: bool = False) -> ClassTable:
    """The class table to split: a shipped one, or, for a dataset read from its layout, its classes
    on disk with their WordNet synsets where a mapping names them (``wordnet_map``, else the one
    that ships for the dataset). ``need_wordnet``: every class must map (a WordNet-based split);
    the ones that do not are listed, not guessed."""
    from transferbench.schema.spec import LAYOUTS, DataOptions

    if dataset not in LAYOUTS:
        if data_root is not None or wordnet_map is not None:
            raise UserError(f"--data-root and --wordnet-map are for datasets read from their layout; {dataset}'s classes ship "
                            "with transferbench")
        return load_table(dataset)
    from transferbench.tasks.classes import layout_table, read_wordnet_map, shipped_wordnet_map, unmapped
    from transferbench.tasks.layout import read_layout

    if data_root is None:
        raise UserError(f"{dataset}: give --data-root, the folder it unpacked to (its classes are read from there)")
    # the class list alone: it does not depend on the draw of training images (train_per_class)
    names = read_layout(dataset, data_root, DataOptions(train_per_class=1, background=background), check_files=False).classes
    mapping = read_wordnet_map(wordnet_map) if wordnet_map else shipped_wordnet_map(dataset)
    wordnet = None
    if mapping and need_wordnet:
        from transferbench.tasks.wordnet import load_wordnet

        wordnet = load_wordnet(wordnet_dir)
    table = layout_table(dataset, names, mapping, wordnet)
    if need_wordnet:
        missing = unmapped(table)
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise UserError(f"{len(missing)} of the {len(table)} classes of {dataset} have no WordNet synset ({shown}); give "
                            "--wordnet-map FILE ('<class name><TAB><synset>' per line) for them, or split at random")
    return table


def make_table(dataset: str, synset_words: Path | None, wordnet) -> ClassTable:
    """Regenerate a shipped class table from its source list and WordNet."""
    if dataset == "imagenet1k":
        if synset_words is None:
            raise UserError("regenerating the imagenet1k table needs --synset-words (ILSVRC-2012 synset_words.txt)")
        entries = read_synset_words(synset_words)
        if len(entries) != 1000:
            raise UserError(f"{synset_words} lists {len(entries)} classes; ILSVRC-2012 has 1000")
    elif dataset == "cifar100":
        entries = list(CIFAR100_SYNSETS)
    elif dataset == "fashion-mnist":
        entries = list(FASHION_MNIST_SYNSETS)
    else:
        load_table(dataset)  # raises the list of valid datasets
        raise AssertionError(dataset)
    return build_table(dataset, entries, wordnet)


# The splits committed under splits/: the paper's study on ImageNet-1k and the small datasets'.
PAPER_SEEDS = (0, 1, 2, 3)


def paper_splits(wordnet, echo: Echo) -> list[Split]:
    imagenet = load_table("imagenet1k")
    splits = [random_split(imagenet, seed) for seed in PAPER_SEEDS]
    splits += [stratified_split(imagenet, seed) for seed in PAPER_SEEDS]
    for preset in ("yosinski2014", "cifar100", "fashion-mnist"):
        split, disagreements = natman_split(load_natman_preset(preset), wordnet)
        echo(disagreement_report(split, disagreements))
        splits.append(split)
    for dataset in ("cifar100", "fashion-mnist"):
        table = load_table(dataset)
        splits += [random_split(table, seed) for seed in PAPER_SEEDS]
        splits += [stratified_split(table, seed) for seed in PAPER_SEEDS]
    return splits
