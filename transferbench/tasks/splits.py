"""Class splits: which classes form task A and task B.

Every split is a :class:`Split`, saved as one self-describing JSON file under ``splits/``.
Four ways to make one:

* :func:`random_split`      the paper's random halves, bit-exact (NumPy's legacy generator
                            seeded with a one-element list, as the authors' script did);
* :func:`stratified_split`  a random split balanced in *every* WordNet cluster (every hypernym on
                            every path: an integer program), the canonical tree as the fallback;
* :func:`natman_split`      natural vs man-made classes from a WordNet rule plus overrides;
* :func:`reduced_split`     all classes, each capped to its first k images.

A split also rewrites Caffe-style image lists (``<file> <class index>`` per line): keep the
lines of one side and renumber the labels 0..n-1 in increasing original index.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from transferbench.errors import UserError
from transferbench.schema.spec import LAYOUTS
from transferbench.tasks.classes import ClassInfo, ClassTable, load_table

SPLIT_FORMAT = "transferbench-split/1"
METHODS = ("random", "stratified", "natman", "reduced")
# The paper's data-size study: images kept per class.
PAPER_REDUCED_SIZES = (1, 2, 5, 10, 25, 50, 100, 250, 500, 750, 1000, 1300)


@dataclass(frozen=True)
class Split:
    """A named division of a dataset's classes into sides (``A``/``B``, or ``all``)."""

    name: str
    dataset: str
    method: str
    params: Mapping[str, Any]
    wordnet: str | None  # WordNet version the split's classes were placed with
    side_names: Mapping[str, str]  # side -> what it is ("natural", "random half", ...)
    sides: Mapping[str, tuple[ClassInfo, ...]]  # side -> classes in increasing original index
    description: str = ""

    def side(self, side: str) -> tuple[ClassInfo, ...]:
        if side not in self.sides:
            raise UserError(f"split {self.name} has no side {side!r}; choose one of {', '.join(self.sides)}")
        return self.sides[side]

    def label_map(self, side: str) -> dict[int, int]:
        """Original class index -> label within ``side`` (0..n-1 in increasing original index)."""
        return {info.index: label for label, info in enumerate(self.side(side))}

    @property
    def images_per_class(self) -> int | None:
        return self.params.get("images_per_class")

    def content(self) -> dict[str, Any]:
        """Everything that defines the split; the content hash is taken over this."""
        return {
            "name": self.name,
            "dataset": self.dataset,
            "method": self.method,
            "params": dict(self.params),
            "wordnet": self.wordnet,
            "description": self.description,
            "side_names": dict(self.side_names),
            "sides": {
                side: [{"index": c.index, "wnid": c.wnid, "name": c.short_name} for c in classes]
                for side, classes in self.sides.items()
            },
        }

    def content_hash(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_json(self) -> str:
        """The split file: readable, one class per line, stable byte for byte."""
        content = self.content()
        sides = content.pop("sides")
        head = {"format": SPLIT_FORMAT, **content, "sizes": {side: len(c) for side, c in sides.items()}}
        lines = ["{"]
        for key, value in head.items():
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False, sort_keys=True)},")
        lines.append('  "sides": {')
        for side_number, (side, classes) in enumerate(sides.items()):
            lines.append(f"    {json.dumps(side)}: [")
            rows = [f"      {json.dumps(entry, ensure_ascii=False)}" for entry in classes]
            lines.append(",\n".join(rows))
            lines.append("    ]" + ("," if side_number < len(sides) - 1 else ""))
        lines.append("  },")
        lines.append(f'  "content_hash": {json.dumps(self.content_hash())}')
        lines.append("}")
        return "\n".join(lines) + "\n"


def load_split(path: str | Path) -> Split:
    """Read a split file, checking its format, its classes against the class table, and its hash."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"split file {path} does not exist; make one with `transferbench splits`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"split file {path} is not valid JSON ({exc}); regenerate it with `transferbench splits`") from exc
    if not isinstance(data, dict) or data.get("format") != SPLIT_FORMAT:
        raise UserError(f"{path} is not a transferbench split file (expected \"format\": \"{SPLIT_FORMAT}\")")
    try:
        shipped = data["dataset"] not in LAYOUTS
        table = load_table(data["dataset"]) if shipped else None
        sides = {}
        for side, entries in data["sides"].items():
            classes = []
            for entry in entries:
                if table is None:  # a dataset read from its layout: the classes are checked against the data by its readers
                    classes.append(ClassInfo(int(entry["index"]), entry["wnid"], "", entry["name"], ()))
                    continue
                info = table.classes[entry["index"]] if 0 <= entry["index"] < len(table) else None
                if info is None or info.wnid != entry["wnid"]:
                    raise UserError(f"{path}: class {entry} does not match the {table.dataset} class table")
                classes.append(info)
            sides[side] = tuple(classes)
        split = Split(
            name=data["name"], dataset=data["dataset"], method=data["method"], params=data["params"],
            wordnet=data["wordnet"], side_names=data["side_names"], sides=sides,
            description=data.get("description", ""),
        )
    except (KeyError, TypeError) as exc:
        raise UserError(f"{path}: malformed split file (missing or bad field {exc}); regenerate it with `transferbench splits`") from exc
    if split.content_hash() != data.get("content_hash"):
        raise UserError(f"{path}: content hash does not match its contents (edited by hand?); regenerate it with `transferbench splits`")
    return split


def check_split_classes(split: Split, table: ClassTable, where: str) -> None:
    """A split of a dataset read from its layout names classes by index and name: they must be the
    dataset's (the class list on disk can change between making the split and using it)."""
    for side, classes in split.sides.items():
        for info in classes:
            if not 0 <= info.index < len(table) or table.classes[info.index].name != info.name:
                found = table.classes[info.index].name if 0 <= info.index < len(table) else "no such class"
                raise UserError(f"{where}: split {split.name} side {side} names class {info.index} {info.name!r}, but the "
                                f"{table.dataset} data has {found!r} there; make the split again from this data")


# --------------------------------------------------------------------------------------
# Choosing the classes

def select_classes(table: ClassTable, wnids: Sequence[str] | None) -> tuple[ClassInfo, ...]:
    """The classes to split: all of ``table``, or the listed wnids (each known, none twice)."""
    if wnids is None:
        return table.classes
    counts = Counter(wnids)
    duplicates = sorted(w for w, n in counts.items() if n > 1)
    if duplicates:
        raise UserError(f"duplicate class {duplicates[0]} in the class list ({len(duplicates)} duplicated in all); list each class once")
    return tuple(sorted((table.by_wnid(w) for w in wnids), key=lambda info: info.index))


def _half_size(count: int, size_a: int | None) -> int:
    if size_a is None:
        if count % 2:
            raise UserError(f"{count} classes cannot be halved evenly; drop one class or give --size-a")
        return count // 2
    if not 0 < size_a < count:
        raise UserError(f"--size-a {size_a} must be between 1 and {count - 1} for {count} classes")
    return size_a


def _from_positions(classes: Sequence[ClassInfo], positions: Iterable[int]) -> tuple[ClassInfo, ...]:
    return tuple(sorted((classes[p] for p in positions), key=lambda info: info.index))


def _complement(classes: Sequence[ClassInfo], side: Sequence[ClassInfo]) -> tuple[ClassInfo, ...]:
    taken = {info.index for info in side}
    return tuple(info for info in classes if info.index not in taken)


def paper_random_positions(count: int, size_a: int, seed: int) -> list[int]:
    """The authors' draw, bit-exact: ``np.random.seed([seed]); choice(arange(count), size_a, replace=False)``.

    Their script passed the argparse list straight to ``np.random.seed``; a one-element list
    seeds the legacy Mersenne Twister differently from the bare integer.  A private
    ``RandomState([seed])`` draws the same numbers without touching NumPy's global state.
    """
    generator = np.random.RandomState([seed])
    return sorted(int(p) for p in generator.choice(np.arange(count), size_a, replace=False))


def random_split(table: ClassTable, seed: int, wnids: Sequence[str] | None = None, size_a: int | None = None,
                 name: str | None = None) -> Split:
    """The paper's random A/B halves (seeds 0..3 on ImageNet-1k reproduce the published ones)."""
    classes = select_classes(table, wnids)
    size = _half_size(len(classes), size_a)
    side_a = _from_positions(classes, paper_random_positions(len(classes), size, seed))
    return Split(
        name=name or f"{table.dataset}-random{seed}",
        dataset=table.dataset, method="random",
        params={"seed": seed, "size_a": size, "generator": "numpy.random.RandomState([seed]).choice",
                "classes": "all" if wnids is None else len(classes)},
        wordnet=None,
        side_names={"A": "random half", "B": "the other classes"},
        sides={"A": side_a, "B": _complement(classes, side_a)},
        description="Random split as in Yosinski et al. 2014: A drawn with NumPy's legacy generator seeded with [seed].",
    )


def chain_split(table: ClassTable, seed: int, parts: int = 3, wnids: Sequence[str] | None = None,
                name: str | None = None) -> Split:
    """Sides A, B, C, ...: a random partition into ``parts`` near-equal tasks, for chains of
    transfers (A → B → C) such as the continual growth of developmental networks."""
    classes = select_classes(table, wnids)
    if not 2 <= parts <= min(26, len(classes)):
        raise UserError(f"--parts {parts} must be 2..{min(26, len(classes))} for {len(classes)} classes")
    order = np.random.RandomState([seed]).permutation(len(classes))
    letters = [chr(ord("A") + number) for number in range(parts)]
    sides = {letter: _from_positions(classes, sorted(int(p) for p in chunk))
             for letter, chunk in zip(letters, np.array_split(order, parts))}
    return Split(
        name=name or f"{table.dataset}-chain{seed}",
        dataset=table.dataset, method="chain",
        params={"seed": seed, "parts": parts, "generator": "numpy.random.RandomState([seed]).permutation",
                "classes": "all" if wnids is None else len(classes)},
        wordnet=None,
        side_names={letter: f"random part {number + 1} of {parts}" for number, letter in enumerate(letters)},
        sides=sides,
        description="Random partition into tasks for chains of transfers: a permutation from NumPy's legacy "
                    "generator seeded with [seed], cut into near-equal parts in order.",
    )


# --------------------------------------------------------------------------------------
# Stratified: balanced at every node of the WordNet tree

@dataclass
class _Node:
    classes: list[int] = field(default_factory=list)  # class indices whose path ends here
    children: dict[str, "_Node"] = field(default_factory=dict)


def _build_tree(classes: Sequence[ClassInfo]) -> _Node:
    root = _Node()
    for info in classes:
        node = root
        for synset in info.path:
            node = node.children.setdefault(synset, _Node())
        node.classes.append(info.index)
    return root


def _balance(node: _Node, rng: random.Random) -> dict[int, int]:
    """Assign +1 (A) / -1 (B) to every class below ``node`` so every subtree's sum is in {-1, 0, 1}.

    Induction: each part (a class here, or a child subtree) already sums to -1, 0 or 1, and
    swapping A/B inside a part keeps all of its subtrees balanced.  Orienting the odd parts
    alternately (in random order, starting with a random sign) keeps this node's sum in
    {-1, 0, 1}; even parts are swapped at random so the result stays a random draw.
    """
    parts: list[dict[int, int]] = [{index: 1} for index in node.classes]
    parts += [_balance(node.children[key], rng) for key in sorted(node.children)]
    rng.shuffle(parts)
    want = rng.choice((1, -1))
    merged: dict[int, int] = {}
    for part in parts:
        total = sum(part.values())
        if total:
            flip = total != want
            want = -want
        else:
            flip = rng.random() < 0.5
        merged.update({index: -side if flip else side for index, side in part.items()})
    return merged


def wordnet_clusters(classes: Sequence[ClassInfo]) -> dict[str, list[int]]:
    """Every WordNet cluster of ``classes`` with 2+ members: synset -> the class indices under it on
    any hypernym path (WordNet is a DAG), or on the canonical path where a table has no ancestors."""
    members: dict[str, list[int]] = {}
    for info in classes:
        for synset in dict.fromkeys((*info.path, *info.ancestors)):
            members.setdefault(synset, []).append(info.index)
    return {synset: indices for synset, indices in members.items() if len(indices) >= 2}


@dataclass(frozen=True)
class Unbalanced:
    """A WordNet cluster that no split balances together with all the others (|A - B| > 1)."""

    synset: str
    size: int
    imbalance: int


def balance_every_cluster(classes: Sequence[ClassInfo], seed: int) -> tuple[set[int] | None, list[Unbalanced]]:
    """Side A of a half split with |A ∩ c| - |B ∩ c| in {-1, 0, 1} for every WordNet cluster c,
    found as an integer program (scipy's HiGHS): one 0/1 variable per class, per distinct cluster
    floor(|c|/2) <= |A ∩ c| <= ceil(|c|/2), |A| = |classes|/2, and a random objective drawn from
    ``seed``, solved to proven optimality, so that the split is a random one of the balanced
    splits and the same on every machine (a continuous random objective has one optimum).

    Returns (side A, []) or, when no split balances every cluster, (None, the clusters that the
    least total excess leaves off by more than one): the solver proves that none does better."""
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix, hstack, identity

    order = [info.index for info in classes]
    position = {index: i for i, index in enumerate(order)}
    distinct: dict[tuple[int, ...], str] = {}
    for synset, indices in sorted(wordnet_clusters(classes).items()):
        distinct.setdefault(tuple(sorted(indices)), synset)
    groups = list(distinct)
    count = len(order)
    rows = [row for row, group in enumerate(groups) for _ in group]
    cols = [position[index] for group in groups for index in group]
    matrix = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(groups), count))
    low = np.array([len(group) // 2 for group in groups], dtype=float)
    high = np.array([(len(group) + 1) // 2 for group in groups], dtype=float)
    objective = np.random.default_rng(seed).standard_normal(count)
    half = LinearConstraint(np.ones((1, count)), count // 2, count // 2)
    options = {"mip_rel_gap": 0.0, "time_limit": 600.0}
    result = milp(objective, constraints=[LinearConstraint(matrix, low, high), half], integrality=np.ones(count),
                  bounds=Bounds(0, 1), options=options)
    if result.status == 0:
        return {order[i] for i in np.flatnonzero(np.round(result.x) > 0.5)}, []
    # No split balances every cluster: the least total excess over the bounds (one slack per cluster) names them.
    slack = identity(len(groups), format="csr")
    relaxed = milp(np.concatenate([np.zeros(count), np.ones(len(groups))]),
                   constraints=[LinearConstraint(hstack([matrix, slack]), low, np.inf),
                                LinearConstraint(hstack([matrix, -slack]), -np.inf, high),
                                LinearConstraint(np.concatenate([np.ones(count), np.zeros(len(groups))])[None, :],
                                                 count // 2, count // 2)],
                   integrality=np.concatenate([np.ones(count), np.zeros(len(groups))]),
                   bounds=Bounds(0, np.concatenate([np.ones(count), np.full(len(groups), np.inf)])), options=options)
    if relaxed.x is None:
        raise UserError(f"the integer program found no half split at all ({relaxed.message}); report this as a bug")
    chosen = np.round(relaxed.x[:count])
    left = []
    for group, synset in zip(groups, distinct.values()):
        in_a = int(sum(chosen[position[index]] for index in group))
        if abs(2 * in_a - len(group)) > 1:
            left.append(Unbalanced(synset, len(group), 2 * in_a - len(group)))
    return None, left


def stratified_split(table: ClassTable, seed: int, wnids: Sequence[str] | None = None,
                     name: str | None = None) -> Split:
    """A random A/B split in which every WordNet cluster is divided as evenly as possible.

    The clusters are every hypernym on every path of the classes (WordNet is a DAG: the 13
    felids, the dogs, and also "instrumentality", reached by many paths): for each,
    |A ∩ c| - |B ∩ c| is -1, 0 or 1 where any split achieves it (``balance_every_cluster``).
    Where none does, the split balances every node of the tree of canonical paths instead (any
    cluster rule that picks tree nodes, "classes under an ancestor at depth d", is balanced),
    and the clusters that cannot be are named in the split's params. Deterministic per seed.
    """
    classes = select_classes(table, wnids)
    _half_size(len(classes), None)
    common = {"seed": seed, "classes": "all" if wnids is None else len(classes)}
    side_a_indices, unbalanced = balance_every_cluster(classes, seed) if all(c.ancestors for c in classes) else (None, [])
    if side_a_indices is not None:
        side_a = tuple(info for info in classes if info.index in side_a_indices)
        params = {**common, "cluster_rule": "every WordNet hypernym on every path of the classes",
                  "generator": "integer program (scipy.optimize.milp, HiGHS, proven optimal) with the objective "
                               "numpy.random.default_rng(seed).standard_normal(classes)"}
        description = "Random split balanced within every WordNet cluster: |A∩c|-|B∩c| in {-1,0,1} for every hypernym c."
    else:  # the canonical tree, whose every node can always be balanced
        sides = _balance(_build_tree(classes), random.Random(seed))
        side_a = tuple(info for info in classes if sides[info.index] > 0)
        params = {**common, "cluster_rule": "every node of the canonical WordNet hypernym tree",
                  "generator": "python random.Random(seed)"}
        if unbalanced:
            params["unbalanceable"] = {u.synset: u.size for u in unbalanced}
        description = "Random split balanced within every WordNet cluster: |A∩c|-|B∩c| in {-1,0,1} for every node c."
    split = Split(
        name=name or f"{table.dataset}-stratified{seed}",
        dataset=table.dataset, method="stratified", params=params, wordnet="3.0",
        side_names={"A": "stratified half", "B": "the other half"},
        sides={"A": side_a, "B": _complement(classes, side_a)},
        description=description,
    )
    assert len(split.sides["A"]) == len(split.sides["B"])
    return split


@dataclass(frozen=True)
class ClusterBalance:
    """How one WordNet node is divided by a split."""

    synset: str
    depth: int
    size: int
    in_a: int

    @property
    def imbalance(self) -> int:
        return self.in_a - (self.size - self.in_a)


def cluster_balance(split: Split) -> list[ClusterBalance]:
    """The division of every WordNet cluster (with 2+ classes) of the split: every hypernym on
    every path (``wordnet_clusters``); ``depth`` is the cluster's place on a canonical path
    (0 for a hypernym on none of them)."""
    in_a = {info.index for info in split.sides["A"]}
    classes = (*split.sides["A"], *split.sides["B"])
    depth = {synset: number for info in classes for number, synset in enumerate(info.path, 1)}
    return sorted(
        (ClusterBalance(synset, depth.get(synset, 0), len(indices), sum(i in in_a for i in indices))
         for synset, indices in wordnet_clusters(classes).items()),
        key=lambda c: (-c.size, c.depth, c.synset),
    )


def tightest_clusters(balances: Sequence[ClusterBalance], split: Split, min_size: int) -> list[ClusterBalance]:
    """Clusters of near-identical classes: nodes with >= min_size classes none of whose children has as many."""
    paths = {info.path for side in split.sides.values() for info in side}
    big = {b.synset for b in balances if b.size >= min_size}
    parents_of_big = set()
    for path in paths:
        for depth in range(1, len(path)):
            if path[depth] in big:
                parents_of_big.add(path[depth - 1])
    return [b for b in balances if b.synset in big and b.synset not in parents_of_big]


# --------------------------------------------------------------------------------------
# Natural / man-made

@dataclass(frozen=True)
class NatmanOverride:
    wnid: str
    side: str  # "natural" or "man-made"
    reason: str


@dataclass(frozen=True)
class NatmanPreset:
    """A natural/man-made rule: classes under a natural root are natural, the rest man-made."""

    name: str
    dataset: str
    description: str
    natural_roots: tuple[str, ...]  # side A is every class under one of these
    overrides: tuple[NatmanOverride, ...]
    side_names: tuple[str, str] = ("natural", "man-made")



def load_natman_preset(name_or_path: str) -> NatmanPreset:
    """A shipped preset by name (``yosinski2014``, ``cifar100``) or a TOML file by path."""
    from transferbench.schema.loader import read_toml

    path = Path(name_or_path)
    if path.suffix != ".toml":
        from importlib import resources

        shipped = resources.files("transferbench").joinpath(f"presets/natman-{name_or_path}.toml")
        if not shipped.is_file():
            names = sorted(p.name[len("natman-"):-len(".toml")] for p in resources.files("transferbench").joinpath("presets").iterdir()
                           if p.name.startswith("natman-"))
            raise UserError(f"unknown natman preset {name_or_path!r}; choose one of {', '.join(names)} or give a .toml file")
        data, source = read_toml(shipped.read_text(encoding="utf-8"), f"preset {name_or_path}"), f"preset {name_or_path}"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot read preset {path}: {exc.strerror or exc}") from exc
        data, source = read_toml(text, str(path)), str(path)
    allowed = {"name", "dataset", "description", "natural_roots", "override", "side_names"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UserError(f"{source}: unknown key {unknown[0]!r}; valid keys are {', '.join(sorted(allowed))}")
    try:
        side_names = tuple(data.get("side_names", ("natural", "man-made")))
        if len(side_names) != 2 or len(set(side_names)) != 2:
            raise UserError(f"{source}: side_names must name two different sides, e.g. [\"natural\", \"man-made\"]")
        overrides = []
        for entry in data.get("override", []):
            extra = sorted(set(entry) - {"class", "side", "reason"})
            if extra:
                raise UserError(f"{source}: unknown override key {extra[0]!r}; valid keys are class, side, reason")
            if entry["side"] not in side_names:
                raise UserError(f"{source}: override side {entry['side']!r} must be one of {', '.join(side_names)}")
            overrides.append(NatmanOverride(str(entry["class"]), entry["side"], str(entry["reason"])))
        preset = NatmanPreset(str(data["name"]), str(data["dataset"]), str(data.get("description", "")),
                              tuple(str(r) for r in data["natural_roots"]), tuple(overrides), side_names)
    except KeyError as exc:
        raise UserError(f"{source}: missing key {exc}; a natman preset needs name, dataset, natural_roots") from exc
    load_table(preset.dataset)  # unknown dataset -> error naming the valid ones
    return preset


@dataclass(frozen=True)
class NatmanDisagreement:
    """A class where the plain root rule and the preset's final answer differ."""

    info: ClassInfo
    rule_side: str
    preset_side: str
    hypernym_path: tuple[str, ...]
    reason: str


def natman_split(preset: NatmanPreset, wordnet, wnids: Sequence[str] | None = None,
                 name: str | None = None) -> tuple[Split, list[NatmanDisagreement]]:
    """Apply a natman preset with WordNet: side A natural, B man-made (as in the authors' files).

    Returns the split and the classes where the preset's overrides change the plain rule.
    """
    from transferbench.tasks.wordnet import all_ancestors, canonical_path, synset_from_wnid

    table = load_table(preset.dataset)
    classes = select_classes(table, wnids)
    roots = set()
    for root in preset.natural_roots:
        try:
            roots.add(wordnet.synset(root))
        except Exception as exc:
            raise UserError(f"preset {preset.name}: unknown natural root {root!r}; name a WordNet 3.0 synset such as organism.n.01") from exc
    overrides = {o.wnid: o for o in preset.overrides}
    for override_wnid in overrides:
        table.by_wnid(override_wnid)
    natural, disagreements = [], []
    for info in classes:
        synset = synset_from_wnid(wordnet, info.wnid)
        ancestors = all_ancestors(synset)
        rule_side = preset.side_names[0] if ancestors & roots else preset.side_names[1]
        side = rule_side
        if info.wnid in overrides:
            side = overrides[info.wnid].side
            if side != rule_side:
                path = tuple(s.name() for s in canonical_path(synset))
                disagreements.append(NatmanDisagreement(info, rule_side, side, path, overrides[info.wnid].reason))
        if side == preset.side_names[0]:
            natural.append(info)
    split = Split(
        name=name or f"{preset.dataset}-natman",
        dataset=preset.dataset, method="natman",
        params={"preset": preset.name, "natural_roots": list(preset.natural_roots),
                "overrides": {o.wnid: o.side for o in preset.overrides},
                "classes": "all" if wnids is None else len(classes)},
        wordnet=wordnet.get_version(),
        side_names={"A": preset.side_names[0], "B": preset.side_names[1]},
        sides={"A": tuple(natural), "B": _complement(classes, natural)},
        description=preset.description,
    )
    if not split.sides["A"] or not split.sides["B"]:
        raise UserError(f"preset {preset.name} puts every class on one side; check its natural_roots")
    return split, disagreements


# --------------------------------------------------------------------------------------
# Reduced data

def reduced_split(table: ClassTable, images_per_class: int, name: str | None = None) -> Split:
    """All classes, each capped to its first ``images_per_class`` training images (in list order)."""
    if images_per_class < 1:
        raise UserError(f"--k {images_per_class} must be at least 1 image per class")
    return Split(
        name=name or f"{table.dataset}-reduced{images_per_class:04d}",
        dataset=table.dataset, method="reduced",
        params={"images_per_class": images_per_class},
        wordnet=None,
        side_names={"all": f"every class, first {images_per_class} images each"},
        sides={"all": table.classes},
        description="Yosinski et al. 2014's data-size study: the first k training images of every class.",
    )


# --------------------------------------------------------------------------------------
# Caffe-style image lists

@dataclass(frozen=True)
class ImageList:
    """A Caffe-style list: ``(file, original class index)`` per line, in file order."""

    source: str
    entries: tuple[tuple[str, int], ...]


def read_image_list(path: str | Path, num_classes: int) -> ImageList:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"image list {path} does not exist; give a file with '<image> <class index>' per line") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read image list {path}: {exc}") from exc
    entries = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].isdigit():
            raise UserError(f"{path}:{line_number}: expected '<image> <class index>', got {line.strip()[:60]!r}")
        label = int(parts[1])
        if label >= num_classes:
            raise UserError(f"{path}:{line_number}: class index {label} is out of range for {num_classes} classes")
        entries.append((parts[0], label))
    if not entries:
        raise UserError(f"image list {path} is empty")
    return ImageList(str(path), tuple(entries))


def split_image_list(images: ImageList, split: Split, side: str) -> str:
    """The lines of ``images`` whose class is on ``side``, relabelled, capped if the split says so.

    Output format is the authors': ``<file> <new label>\\n`` in the input's order.
    """
    labels = split.label_map(side)
    cap = split.images_per_class
    kept: Counter[int] = Counter()
    lines = []
    for file_name, original in images.entries:
        if original not in labels:
            continue
        if cap is not None and kept[original] >= cap:
            continue
        kept[original] += 1
        lines.append(f"{file_name} {labels[original]}\n")
    return "".join(lines)
