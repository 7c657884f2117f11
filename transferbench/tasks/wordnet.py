"""WordNet 3.0 through nltk, from nltk's data path or from a plain database folder.

Two ways to get WordNet on a machine:

* ``python -m nltk.downloader wordnet`` (needs the internet once), or
* a WordNet 3.0 database folder such as Debian's ``wordnet-base`` package
  (``/usr/share/wordnet``), passed with ``--wordnet-dir`` or the
  ``TRANSFERBENCH_WORDNET_DIR`` environment variable.  Such folders lack the
  ``lexnames`` file that nltk's reader needs; we add it in a private copy.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from transferbench.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from nltk.corpus.reader.wordnet import Synset, WordNetCorpusReader

WORDNET_DIR_ENV = "TRANSFERBENCH_WORDNET_DIR"
HOW_TO_GET = (
    "install WordNet 3.0 with `python -m nltk.downloader wordnet`, or pass a WordNet database folder "
    f"with --wordnet-dir (or ${WORDNET_DIR_ENV}), e.g. /usr/share/wordnet from Debian's wordnet-base"
)

# The lexicographer file list of WordNet 3.0 (`man 5 lexnames`): number, name, syntactic category.
LEXNAMES = """\
00	adj.all	3
01	adj.pert	3
02	adv.all	4
03	noun.Tops	1
04	noun.act	1
05	noun.animal	1
06	noun.artifact	1
07	noun.attribute	1
08	noun.body	1
09	noun.cognition	1
10	noun.communication	1
11	noun.event	1
12	noun.feeling	1
13	noun.food	1
14	noun.group	1
15	noun.location	1
16	noun.motive	1
17	noun.object	1
18	noun.person	1
19	noun.phenomenon	1
20	noun.plant	1
21	noun.possession	1
22	noun.process	1
23	noun.quantity	1
24	noun.relation	1
25	noun.shape	1
26	noun.state	1
27	noun.substance	1
28	noun.time	1
29	verb.body	2
30	verb.change	2
31	verb.cognition	2
32	verb.communication	2
33	verb.competition	2
34	verb.consumption	2
35	verb.contact	2
36	verb.creation	2
37	verb.emotion	2
38	verb.motion	2
39	verb.perception	2
40	verb.possession	2
41	verb.social	2
42	verb.stative	2
43	verb.weather	2
44	adj.ppl	3
"""

_REQUIRED_FILES = ("data.noun", "index.noun")


def _reader_from_folder(folder: Path) -> "WordNetCorpusReader":
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    missing = [name for name in _REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise UserError(f"{folder} is not a WordNet database folder (no {', '.join(missing)}); {HOW_TO_GET}")
    import nltk

    if (folder / "lexnames").is_file():
        data_root, root = folder.resolve(), folder.resolve()
    else:
        data_root = _staged_copy(folder)
        root = data_root / "corpora" / "wordnet"
    # nltk opens files only under its data path (and refuses symlinks that lead out of it).
    if str(data_root) not in nltk.data.path:
        nltk.data.path.append(str(data_root))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The multilingual functions")
            return WordNetCorpusReader(str(root), None)
    except Exception as exc:  # nltk raises assorted errors on unreadable databases
        raise UserError(f"cannot read WordNet from {folder}: {exc}; {HOW_TO_GET}") from exc


def _reader_from_nltk_data() -> "WordNetCorpusReader":
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    try:
        pointer = nltk.data.find("corpora/wordnet")
    except LookupError:
        try:
            pointer = nltk.data.find("corpora/wordnet.zip/wordnet/")
        except LookupError as exc:
            raise UserError(f"WordNet not found; {HOW_TO_GET}") from exc
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The multilingual functions")
        return WordNetCorpusReader(pointer, None)


def _staged_copy(folder: Path) -> Path:
    """A cached nltk data folder holding ``corpora/wordnet``: the database files plus lexnames.

    Built once per source folder under ``$XDG_CACHE_HOME/transferbench`` (a temporary
    folder renamed into place, so a half-copied database is never used).
    """
    source = folder.resolve()
    stamp = ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(source.iterdir()) if p.is_file())
    key = hashlib.sha256(f"{source}|{stamp}".encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "transferbench" / f"wordnet-{key}"
    if (cache / "corpora" / "wordnet" / "lexnames").is_file():
        return cache
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=cache.parent))
        target = staging / "corpora" / "wordnet"
        target.mkdir(parents=True)
        for entry in source.iterdir():
            if entry.is_file():
                shutil.copyfile(entry, target / entry.name)
        (target / "lexnames").write_text(LEXNAMES)
        try:
            staging.rename(cache)
        except OSError:  # another process won the race; use its copy
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise UserError(f"cannot prepare WordNet from {folder} in {cache.parent}: {exc}; set XDG_CACHE_HOME to a writable folder") from exc
    return cache


@lru_cache(maxsize=4)
def load_wordnet(wordnet_dir: str | None = None) -> "WordNetCorpusReader":
    """Return a WordNet 3.0 reader, or raise UserError naming both ways to get one.

    ``wordnet_dir`` (or ``$TRANSFERBENCH_WORDNET_DIR``) wins over nltk's data path.
    """
    folder = wordnet_dir or os.environ.get(WORDNET_DIR_ENV)
    if folder:
        path = Path(folder)
        if not path.is_dir():
            raise UserError(f"WordNet folder {path} does not exist; {HOW_TO_GET}")
        reader = _reader_from_folder(path)
    else:
        reader = _reader_from_nltk_data()
    version = reader.get_version()
    if version != "3.0":
        raise UserError(f"found WordNet {version}, but ImageNet's wnids are WordNet 3.0 offsets; {HOW_TO_GET}")
    return reader


def wnid(synset: "Synset") -> str:
    """The ImageNet id of a synset: its part of speech and 8-digit WordNet 3.0 offset."""
    return f"{synset.pos()}{synset.offset():08d}"


def synset_from_wnid(reader: "WordNetCorpusReader", class_wnid: str) -> "Synset":
    """Look up an ImageNet wnid such as ``n02123045``; unknown ids raise UserError."""
    if len(class_wnid) != 9 or class_wnid[0] not in "nvar" or not class_wnid[1:].isdigit():
        raise UserError(f"{class_wnid!r} is not a wnid; write it as a letter and eight digits, e.g. n02123045")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns and returns None for unknown offsets
        try:
            synset = reader.synset_from_pos_and_offset(class_wnid[0], int(class_wnid[1:]))
        except Exception:
            synset = None
    if synset is None:
        raise UserError(f"unknown wnid {class_wnid}: no such synset in WordNet 3.0; check the class list")
    return synset


def canonical_path(synset: "Synset") -> list["Synset"]:
    """One hypernym path from the root to ``synset``, chosen so that paths form a tree.

    WordNet is a DAG: a synset may have several hypernyms.  We pick, for every synset,
    the hypernym with the longest canonical path (ties: alphabetical by synset name) and
    recurse, so every synset has exactly one canonical parent and the union of canonical
    paths of any class set is a tree.
    """
    return list(_canonical_path(synset))


@lru_cache(maxsize=None)
def _canonical_path(synset: "Synset") -> tuple["Synset", ...]:
    parents = synset.hypernyms() + synset.instance_hypernyms()
    if not parents:
        return (synset,)
    best = max(parents, key=lambda p: (len(_canonical_path(p)), _negated_name(p.name())))
    return _canonical_path(best) + (synset,)


def _negated_name(name: str) -> tuple[int, ...]:
    # max() with ties broken towards the alphabetically *first* name.
    return tuple(-ord(ch) for ch in name)


def all_ancestors(synset: "Synset") -> set["Synset"]:
    """Every synset above ``synset`` on any hypernym path, the synset itself included."""
    return set(synset.closure(lambda s: s.hypernyms() + s.instance_hypernyms())) | {synset}
