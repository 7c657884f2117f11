"""`transferbench splits`: make the class splits that define every task."""

from __future__ import annotations

import argparse
from pathlib import Path

from transferbench.cli.types import seed

from transferbench.errors import UserError


DESCRIPTION = """\
Make class splits: which classes form task A and task B.  Each split is written as one
self-describing JSON file (classes per side with index, wnid and name; method; parameters;
WordNet version; content hash).  With --list, a Caffe-style image list ('<file> <class
index>' per line) is also split into one list per side, labels renumbered 0..n-1 in
increasing original index, byte-for-byte as the authors' scripts wrote them.

  random      the paper's random halves: np.random.seed([seed]) + choice(..., replace=False)
  stratified  random halves balanced within every WordNet cluster (|A-B| <= 1 for each)
  natman      natural vs man-made by a WordNet rule (a preset of roots and overrides)
  reduced     every class capped to its first k images (the paper's data-size study)
  chain       a random partition into tasks A, B, C, ... for chains of transfers
  paper       regenerate every split committed under splits/
  table       regenerate a shipped class table (needs WordNet)
"""


def _add_common(parser: argparse.ArgumentParser, dataset: bool = True, classes: bool = True, layouts: bool = True) -> None:
    if dataset:
        from transferbench.schema.spec import LAYOUTS

        choices = ("imagenet1k", "cifar100", "fashion-mnist", "synthetic", *(LAYOUTS if layouts else ()))
        parser.add_argument("--dataset", default="imagenet1k", choices=choices,
                            help="whose classes to split (default: imagenet1k)" + (
                                "; cub200, mit67, sun397, caltech101 and folder are read from --data-root" if layouts else ""))
    if dataset and layouts:
        parser.add_argument("--data-root", type=Path, metavar="DIR",
                            help="a dataset read from its layout: the folder it unpacked to (its classes come from there)")
        parser.add_argument("--background", action="store_true",
                            help="caltech101: keep BACKGROUND_Google as a class (left out by default)")
    if classes:
        parser.add_argument("--classes", type=Path, metavar="FILE",
                            help="split only these classes: a file with one wnid per line (default: all classes)")
    parser.add_argument("--out", type=Path, default=Path("splits"), metavar="DIR",
                        help="folder for the split files (default: splits/)")
    parser.add_argument("--list", type=Path, metavar="FILE", dest="image_list",
                        help="also split this Caffe-style image list ('<file> <class index>' per line)")
    parser.add_argument("--list-out", type=Path, metavar="DIR",
                        help="folder for the split image lists (default: the --out folder)")
    parser.add_argument("--name", help="name of the split file (default: <dataset>-<method><seed>)")


def _add_wordnet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wordnet-dir", metavar="DIR",
                        help="a WordNet 3.0 database folder, e.g. /usr/share/wordnet from Debian's wordnet-base "
                             "(default: $TRANSFERBENCH_WORDNET_DIR, then nltk's data path)")


def add(commands, formatter) -> None:
    splits = commands.add_parser("splits", help="make the class splits (random, stratified, natman, reduced)",
                                 description=DESCRIPTION, formatter_class=formatter)
    methods = splits.add_subparsers(dest="method", metavar="METHOD", required=True)

    random_parser = methods.add_parser(
        "random", help="the paper's random A/B halves", formatter_class=formatter,
        description="Random halves exactly as Yosinski et al. 2014 drew them: NumPy's legacy generator seeded "
                    "with [seed], A = sorted(choice(arange(N), N/2, replace=False)), B = the rest. Seeds 0-3 on "
                    "imagenet1k are the paper's four splits.")
    random_parser.add_argument("--seed", type=seed, nargs="+", default=[0], help="one or more seeds (default: 0)")
    random_parser.add_argument("--size-a", type=int, help="classes in A (default: half; an odd class count needs it)")
    _add_common(random_parser)

    stratified = methods.add_parser(
        "stratified", help="random halves balanced within every WordNet cluster", formatter_class=formatter,
        description="A random A/B split in which every WordNet cluster is divided as evenly as possible. The "
                    "clusters are all nodes of the tree formed by the classes' canonical hypernym paths, so "
                    "|A ∩ c| - |B ∩ c| is -1, 0 or 1 for the 13 felids, the dogs, the terriers and every other "
                    "group at every depth. Prints how the tightest clusters were divided and how the plain "
                    "random split with the same seed divided them.")
    stratified.add_argument("--seed", type=seed, nargs="+", default=[0], help="one or more seeds (default: 0)")
    stratified.add_argument("--min-cluster", type=int, default=10,
                            help="report clusters of at least this many classes (default: 10)")
    stratified.add_argument("--wordnet-map", type=Path, metavar="FILE",
                            help="a dataset read from its layout: '<class name><TAB><synset>' per line (default: the one "
                                 "that ships for it, if any); every class must map")
    _add_common(stratified)
    _add_wordnet(stratified)

    natman = methods.add_parser(
        "natman", help="natural vs man-made classes from a WordNet rule", formatter_class=formatter,
        description="Natural (A) vs man-made (B): a class is natural if a WordNet hypernym path reaches one of "
                    "the preset's natural roots, unless the preset overrides it. Shipped presets: yosinski2014 "
                    "(imagenet1k, reproduces the paper's 449/551 lists), cifar100, fashion-mnist (clothing vs "
                    "footwear and bags). Lists every class where the preset overrides the plain rule. Needs WordNet.")
    natman.add_argument("--preset", default="yosinski2014", help="a shipped preset name or a .toml file (default: yosinski2014)")
    _add_common(natman, dataset=False)
    _add_wordnet(natman)

    reduced = methods.add_parser(
        "reduced", help="every class capped to its first k images", formatter_class=formatter,
        description="The paper's data-size study: all classes, each with only its first k training images in "
                    "list order. With --list, writes the capped list.")
    reduced.add_argument("--k", type=int, nargs="+", required=True, metavar="K",
                         help="images per class, one or more (the paper: 1 2 5 10 25 50 100 250 500 750 1000 1300)")
    _add_common(reduced, classes=False, layouts=False)

    chain = methods.add_parser(
        "chain", help="a random partition into tasks A, B, C, ... (chains of transfers)", formatter_class=formatter,
        description="Sides A, B, C, ...: a random permutation of the classes (NumPy's legacy generator seeded with "
                    "[seed]) cut into --parts near-equal tasks, for chains such as A -> B -> C in a study's "
                    "continual-growth block (network patterns like A7B7C+ and A7B7C+WA).")
    chain.add_argument("--seed", type=seed, nargs="+", default=[0], help="one or more seeds (default: 0)")
    chain.add_argument("--parts", type=int, default=3, help="number of tasks (default: 3)")
    _add_common(chain)

    paper = methods.add_parser(
        "paper", help="regenerate every split committed under splits/", formatter_class=formatter,
        description="Writes the splits of the paper's study (imagenet1k random 0-3, stratified 0-3, natman) and "
                    "those of the small datasets (cifar100, fashion-mnist: random 0-3, stratified 0-3, natman). Needs WordNet.")
    paper.add_argument("--out", type=Path, default=Path("splits"), metavar="DIR", help="folder (default: splits/)")
    _add_wordnet(paper)

    table = methods.add_parser(
        "table", help="regenerate a shipped class table from WordNet", formatter_class=formatter,
        description="Rebuild transferbench/data/<dataset>_classes.tsv (index, wnid, synset, names, canonical "
                    "hypernym path) from the dataset's class list and WordNet 3.0.")
    table.add_argument("dataset", choices=("imagenet1k", "cifar100", "fashion-mnist"))
    table.add_argument("--synset-words", type=Path, metavar="FILE",
                       help="ILSVRC-2012 synset_words.txt (imagenet1k only)")
    table.add_argument("--out", type=Path, required=True, metavar="FILE", help="where to write the table")
    _add_wordnet(table)
    splits.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from transferbench.tasks import splitcmd
    from transferbench.tasks.classes import load_table
    from transferbench.tasks.splits import read_image_list

    echo = print
    if args.method == "table":
        from transferbench.fileio import atomic_write_text
        from transferbench.tasks.wordnet import load_wordnet

        table = splitcmd.make_table(args.dataset, args.synset_words, load_wordnet(args.wordnet_dir))
        atomic_write_text(args.out, table.to_tsv())
        echo(f"wrote {args.out} ({len(table)} classes)")
        return
    if args.method == "paper":
        from transferbench.tasks.wordnet import load_wordnet

        splits = splitcmd.paper_splits(load_wordnet(args.wordnet_dir), echo)
        for split in splits:
            echo(splitcmd.describe(split))
        splitcmd.write_splits(splits, splitcmd.Outputs(args.out), echo)
        return

    wnids = splitcmd.read_wnid_list(getattr(args, "classes", None))
    if args.method == "natman":
        from transferbench.tasks.splits import load_natman_preset, natman_split
        from transferbench.tasks.wordnet import load_wordnet

        preset = load_natman_preset(args.preset)
        split, disagreements = natman_split(preset, load_wordnet(args.wordnet_dir), wnids, args.name)
        splits = [split]
        echo(splitcmd.disagreement_report(split, disagreements))
    else:
        table = load_table(args.dataset) if args.method == "reduced" else splitcmd.dataset_table(
            args.dataset, args.data_root, getattr(args, "wordnet_map", None), getattr(args, "wordnet_dir", None),
            need_wordnet=args.method == "stratified", background=args.background)
        values = args.k if args.method == "reduced" else args.seed
        if args.name and len(values) > 1:
            raise UserError("--name names one split; give a single --seed/--k or drop --name")
        if args.method == "random":
            from transferbench.tasks.splits import random_split

            splits = [random_split(table, seed, wnids, args.size_a, args.name) for seed in args.seed]
        elif args.method == "stratified":
            from transferbench.tasks.splits import random_split, stratified_split

            splits = []
            for seed in args.seed:
                split = stratified_split(table, seed, wnids, args.name)
                echo(splitcmd.balance_report(split, random_split(table, seed, wnids), args.min_cluster))
                splits.append(split)
        elif args.method == "chain":
            from transferbench.tasks.splits import chain_split

            splits = [chain_split(table, seed, args.parts, wnids, args.name) for seed in args.seed]
        else:
            from transferbench.tasks.splits import reduced_split

            splits = [reduced_split(table, k, args.name) for k in args.k]
    image_list = None
    if args.image_list is not None:
        image_list = read_image_list(args.image_list, sum(len(classes) for classes in splits[0].sides.values()))
    for split in splits:
        echo(splitcmd.describe(split))
    splitcmd.write_splits(splits, splitcmd.Outputs(args.out, image_list, args.list_out), echo)
