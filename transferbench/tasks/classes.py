"""Class tables: each dataset's classes with their WordNet identity.

A class table is a TSV shipped in ``transferbench/data/<dataset>_classes.tsv`` with the
columns ``index  wnid  synset  name  path  ancestors``:

* ``index``  the class's label in the dataset (ILSVRC-2012: line number in ``synsets.txt``);
* ``wnid``   its WordNet 3.0 id (``n02123045``);
* ``synset`` its nltk synset name (``tabby.n.01``);
* ``name``   the dataset's human-readable class names;
* ``path``   its canonical hypernym path, root first, as synset names joined by ``>``
             (see :func:`transferbench.tasks.wordnet.canonical_path`);
* ``ancestors`` every hypernym on every path (WordNet is a DAG), space-separated, sorted:
             the clusters a stratified split balances.

Shipping the table lets ImageNet-1k (and CIFAR-100, Fashion-MNIST) be split and loaded
on a machine without WordNet; only regenerating it needs WordNet.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Sequence

from transferbench.errors import UserError

TABLE_COLUMNS = ("index", "wnid", "synset", "name", "path", "ancestors")
PATH_SEPARATOR = ">"
DATASETS = ("imagenet1k", "cifar100", "fashion-mnist", "synthetic")


@dataclass(frozen=True)
class ClassInfo:
    """One class of a dataset."""

    index: int
    wnid: str
    synset: str
    name: str
    path: tuple[str, ...]  # canonical hypernym path as synset names, root first, ending in ``synset``
    ancestors: tuple[str, ...] = ()  # every hypernym on every path, sorted (not the class itself)

    @property
    def short_name(self) -> str:
        return self.name.split(",")[0].strip()


@dataclass(frozen=True)
class ClassTable:
    """All classes of one dataset, in label order."""

    dataset: str
    classes: tuple[ClassInfo, ...]

    def __len__(self) -> int:
        return len(self.classes)

    def __post_init__(self) -> None:
        # Built once: lookups by wnid happen for every class of every split.
        object.__setattr__(self, "_by_wnid", {info.wnid: info for info in self.classes})

    def by_wnid(self, wnid: str) -> ClassInfo:
        try:
            return self._by_wnid[wnid]
        except KeyError:
            raise UserError(f"unknown class {wnid!r}: not one of the {len(self)} classes of {self.dataset}") from None

    def to_tsv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(TABLE_COLUMNS)
        for info in self.classes:
            writer.writerow([info.index, info.wnid, info.synset, info.name, PATH_SEPARATOR.join(info.path),
                             " ".join(info.ancestors)])
        return buffer.getvalue()


def parse_table(text: str, dataset: str, source: str) -> ClassTable:
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if not rows or tuple(rows[0]) != TABLE_COLUMNS:
        raise UserError(f"{source} is not a class table: its header must be {' '.join(TABLE_COLUMNS)}")
    classes = []
    for line_number, row in enumerate(rows[1:], start=2):
        if len(row) != len(TABLE_COLUMNS) or not row[0].isdigit():
            raise UserError(f"{source}:{line_number}: expected {len(TABLE_COLUMNS)} tab-separated columns starting with an index")
        classes.append(ClassInfo(int(row[0]), row[1], row[2], row[3], tuple(row[4].split(PATH_SEPARATOR)),
                                 tuple(row[5].split())))
    if [info.index for info in classes] != list(range(len(classes))):
        raise UserError(f"{source}: class indices must run 0..{len(classes) - 1} in order")
    return ClassTable(dataset, tuple(classes))


@lru_cache(maxsize=None)
def load_table(dataset: str) -> ClassTable:
    """The shipped class table of ``dataset`` (one of :data:`DATASETS`)."""
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    text = resources.files("transferbench").joinpath(f"data/{dataset}_classes.tsv").read_text(encoding="utf-8")
    return parse_table(text, dataset, f"{dataset}_classes.tsv")


def build_table(dataset: str, entries: list[tuple[str, str]], wordnet) -> ClassTable:
    """Build a table from ``(wnid or synset name, readable name)`` pairs in label order, with WordNet."""
    from transferbench.tasks.wordnet import canonical_path, synset_from_wnid, wnid

    classes = []
    seen: dict[str, int] = {}
    for index, (identifier, name) in enumerate(entries):
        if identifier[:1] in "nvar" and identifier[1:].isdigit():
            synset = synset_from_wnid(wordnet, identifier)
        else:
            try:
                synset = wordnet.synset(identifier)
            except Exception as exc:
                raise UserError(f"unknown synset {identifier!r} for class {index} ({name}); name a WordNet 3.0 synset such as dog.n.01") from exc
        class_wnid = wnid(synset)
        if class_wnid in seen:
            raise UserError(f"duplicate class {class_wnid} ({synset.name()}) at positions {seen[class_wnid]} and {index}; each class may appear once")
        seen[class_wnid] = index
        path = tuple(s.name() for s in canonical_path(synset))
        classes.append(ClassInfo(index, class_wnid, synset.name(), name, path, ancestor_names(synset)))
    return ClassTable(dataset, tuple(classes))


def ancestor_names(synset) -> tuple[str, ...]:
    """Every hypernym of ``synset`` on every path, sorted (not the synset itself)."""
    from transferbench.tasks.wordnet import all_ancestors

    return tuple(sorted(s.name() for s in all_ancestors(synset) if s != synset))


def read_wordnet_map(path: Path | str, source: str | None = None, text: str | None = None) -> dict[str, str]:
    """A class-name -> WordNet mapping: one ``<class name><TAB><synset name or wnid>`` per line
    (``#`` starts a comment; ``-`` as the synset says the class has no WordNet synset)."""
    source = source or str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"WordNet mapping {path} does not exist; give a file with '<class name><TAB><synset>' per line") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read WordNet mapping {path}: {exc}") from exc
    mapping: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        name, tab, synset = line.partition("\t")
        if not tab or not name or not synset.strip():
            raise UserError(f"{source}:{number}: expected '<class name><TAB><synset>', got {line[:60]!r}")
        if name in mapping:
            raise UserError(f"{source}:{number}: class {name!r} is mapped twice")
        mapping[name] = synset.strip()
    return mapping


def shipped_wordnet_map(dataset: str) -> dict[str, str] | None:
    """The WordNet mapping that ships for a dataset read from its layout (``data/<dataset>_wordnet.tsv``), if any."""
    resource = resources.files("transferbench").joinpath(f"data/{dataset}_wordnet.tsv")
    if not resource.is_file():
        return None
    return read_wordnet_map(f"{dataset}_wordnet.tsv", text=resource.read_text(encoding="utf-8"))


def layout_table(dataset: str, names: Sequence[str], mapping: dict[str, str] | None = None, wordnet=None) -> ClassTable:
    """The class table of a dataset read from its layout: its class names in label order, each with
    its WordNet synset and canonical path where ``mapping`` names one (needs ``wordnet``), else
    without: such a class can be split at random but not by WordNet. Nothing is guessed."""
    from transferbench.tasks.wordnet import canonical_path, synset_from_wnid, wnid

    classes = []
    for index, name in enumerate(names):
        target = (mapping or {}).get(name, "-")
        if target == "-" or wordnet is None:
            classes.append(ClassInfo(index, "", "", name, ()))
            continue
        try:
            synset = synset_from_wnid(wordnet, target) if target[:1] in "nvar" and target[1:].isdigit() else wordnet.synset(target)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"the WordNet mapping names {target!r} for class {name!r}, which is not a WordNet 3.0 synset") from exc
        classes.append(ClassInfo(index, wnid(synset), synset.name(), name, tuple(s.name() for s in canonical_path(synset)),
                                 ancestor_names(synset)))
    return ClassTable(dataset, tuple(classes))


def unmapped(table: ClassTable) -> list[str]:
    """The classes of ``table`` without a WordNet synset."""
    return [info.name for info in table.classes if not info.path]


def read_synset_words(path: Path) -> list[tuple[str, str]]:
    """Read an ILSVRC ``synset_words.txt`` (``<wnid> <names>``) or ``synsets.txt`` (``<wnid>``) list."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"class list {path} does not exist; give the path of a synsets.txt / synset_words.txt file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read class list {path}: {exc}") from exc
    entries = []
    for line in lines:
        if not line.strip():
            continue
        wnid_text, _, names = line.strip().partition(" ")
        entries.append((wnid_text, names.strip()))
    if not entries:
        raise UserError(f"class list {path} is empty; it needs one wnid per line")
    return entries


# CIFAR-100's fine labels in label order (alphabetical, as in its ``meta`` file), each mapped
# to the WordNet 3.0 synset that names the same category.
CIFAR100_SYNSETS: tuple[tuple[str, str], ...] = (
    ("apple.n.01", "apple"),
    ("fish.n.01", "aquarium_fish"),
    ("baby.n.01", "baby"),
    ("bear.n.01", "bear"),
    ("beaver.n.07", "beaver"),
    ("bed.n.01", "bed"),
    ("bee.n.01", "bee"),
    ("beetle.n.01", "beetle"),
    ("bicycle.n.01", "bicycle"),
    ("bottle.n.01", "bottle"),
    ("bowl.n.03", "bowl"),
    ("male_child.n.01", "boy"),
    ("bridge.n.01", "bridge"),
    ("bus.n.01", "bus"),
    ("butterfly.n.01", "butterfly"),
    ("camel.n.01", "camel"),
    ("can.n.01", "can"),
    ("castle.n.02", "castle"),
    ("caterpillar.n.01", "caterpillar"),
    ("cattle.n.01", "cattle"),
    ("chair.n.01", "chair"),
    ("chimpanzee.n.01", "chimpanzee"),
    ("clock.n.01", "clock"),
    ("cloud.n.02", "cloud"),
    ("cockroach.n.01", "cockroach"),
    ("sofa.n.01", "couch"),
    ("crab.n.01", "crab"),
    ("crocodile.n.01", "crocodile"),
    ("cup.n.01", "cup"),
    ("dinosaur.n.01", "dinosaur"),
    ("dolphin.n.02", "dolphin"),
    ("elephant.n.01", "elephant"),
    ("flatfish.n.02", "flatfish"),
    ("forest.n.01", "forest"),
    ("fox.n.01", "fox"),
    ("female_child.n.01", "girl"),
    ("hamster.n.01", "hamster"),
    ("house.n.01", "house"),
    ("kangaroo.n.01", "kangaroo"),
    ("computer_keyboard.n.01", "keyboard"),
    ("lamp.n.02", "lamp"),
    ("lawn_mower.n.01", "lawn_mower"),
    ("leopard.n.02", "leopard"),
    ("lion.n.01", "lion"),
    ("lizard.n.01", "lizard"),
    ("lobster.n.02", "lobster"),
    ("man.n.01", "man"),
    ("maple.n.02", "maple_tree"),
    ("motorcycle.n.01", "motorcycle"),
    ("mountain.n.01", "mountain"),
    ("mouse.n.01", "mouse"),
    ("mushroom.n.02", "mushroom"),
    ("oak.n.02", "oak_tree"),
    ("orange.n.01", "orange"),
    ("orchid.n.01", "orchid"),
    ("otter.n.02", "otter"),
    ("palm.n.03", "palm_tree"),
    ("pear.n.01", "pear"),
    ("pickup.n.01", "pickup_truck"),
    ("pine.n.01", "pine_tree"),
    ("plain.n.01", "plain"),
    ("plate.n.04", "plate"),
    ("poppy.n.01", "poppy"),
    ("porcupine.n.01", "porcupine"),
    ("phalanger.n.01", "possum"),
    ("rabbit.n.01", "rabbit"),
    ("raccoon.n.02", "raccoon"),
    ("ray.n.07", "ray"),
    ("road.n.01", "road"),
    ("rocket.n.01", "rocket"),
    ("rose.n.01", "rose"),
    ("sea.n.01", "sea"),
    ("seal.n.09", "seal"),
    ("shark.n.01", "shark"),
    ("shrew.n.02", "shrew"),
    ("skunk.n.04", "skunk"),
    ("skyscraper.n.01", "skyscraper"),
    ("snail.n.01", "snail"),
    ("snake.n.01", "snake"),
    ("spider.n.01", "spider"),
    ("squirrel.n.01", "squirrel"),
    ("streetcar.n.01", "streetcar"),
    ("sunflower.n.01", "sunflower"),
    ("sweet_pepper.n.02", "sweet_pepper"),
    ("table.n.02", "table"),
    ("tank.n.01", "tank"),
    ("telephone.n.01", "telephone"),
    ("television_receiver.n.01", "television"),
    ("tiger.n.02", "tiger"),
    ("tractor.n.01", "tractor"),
    ("train.n.01", "train"),
    ("trout.n.02", "trout"),
    ("tulip.n.01", "tulip"),
    ("turtle.n.02", "turtle"),
    ("wardrobe.n.01", "wardrobe"),
    ("whale.n.02", "whale"),
    ("willow.n.01", "willow_tree"),
    ("wolf.n.01", "wolf"),
    ("woman.n.01", "woman"),
    ("worm.n.01", "worm"),
)

# Fashion-MNIST's labels in label order, mapped to WordNet 3.0 synsets.
FASHION_MNIST_SYNSETS: tuple[tuple[str, str], ...] = (
    ("tee_shirt.n.01", "T-shirt/top"),
    ("trouser.n.01", "Trouser"),
    ("pullover.n.01", "Pullover"),
    ("dress.n.01", "Dress"),
    ("coat.n.01", "Coat"),
    ("sandal.n.01", "Sandal"),
    ("shirt.n.01", "Shirt"),
    ("gym_shoe.n.01", "Sneaker"),
    ("bag.n.04", "Bag"),
    ("boot.n.01", "Ankle boot"),
)
