"""Datasets on disk: what `plan` checks before any job is queued, and the genuine layouts of the
target datasets (CUB-200-2011, MIT Indoor-67, SUN-397, Caltech-101, a folder per class).

A class folder missing from ImageNet's train/, a validation list that does not exist or names
files that are not there, a layout's list file that is missing, a class folder a list names but
that is absent: each fails at `plan` in one line, not hours later at a job's first evaluation.

Cheap by design: one directory listing per class the study uses (ImageNet: up to 1000),
the layouts' list files, and a seeded sample of the listed paths.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from transferbench.errors import UserError

VAL_SAMPLE = 50  # validation-list paths checked at plan (seeded: the same ones every time)


def _names(items: list[str]) -> str:
    return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")


def _has_entry(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(True for _ in entries)


def check_imagenet(root: Path | None, wnids: list[str], needed: set[int], val_list: Path | None, source: str) -> None:
    """Fail in one line unless ``root`` holds a train/ folder with a non-empty folder for every
    class in ``needed`` (original indices), and a validation set for them: val/<wnid>/ folders,
    or a flat val/ with ``val_list`` whose sampled paths exist."""
    if root is None:
        raise UserError(f"{source}: ImageNet needs its folder: set [study] data_root or `plan --data-root DIR` "
                        "(the folder holding train/ and val/)")
    train, val = Path(root) / "train", Path(root) / "val"
    for folder in (train, val):
        if not folder.is_dir():
            raise UserError(f"{source}: no {folder.name}/ folder in the ImageNet data_root {root}")
    used = [wnids[i] for i in sorted(needed)]
    missing = [w for w in used if not (train / w).is_dir()]
    if missing:
        raise UserError(f"{source}: {len(missing)} of the {len(used)} class folders the study uses are missing from "
                        f"{train}: {_names(missing)}")
    empty = [w for w in used if not _has_entry(train / w)]
    if empty:
        raise UserError(f"{source}: {len(empty)} class folders in {train} are empty: {_names(empty)}")
    if val_list is None:
        missing = [w for w in used if not (val / w).is_dir()]
        if missing:
            raise UserError(f"{source}: {len(missing)} class folders are missing from {val}: {_names(missing)} "
                            "(for a flat val/ folder, give [study] val_list, the Caffe-style list)")
        return
    from transferbench.tasks.splits import read_image_list

    if not Path(val_list).is_file():
        raise UserError(f"{source}: val_list {val_list} does not exist; give the Caffe-style '<file> <class index>' list")
    entries = read_image_list(val_list, len(wnids)).entries
    listed = {label for _, label in entries}
    unlisted = [wnids[i] for i in sorted(needed - listed)]
    if unlisted:
        raise UserError(f"{source}: val_list {val_list} has no image of {len(unlisted)} classes the study uses: "
                        f"{_names(unlisted)}")
    sample = random.Random(0).sample(entries, min(VAL_SAMPLE, len(entries)))
    absent = [name for name, _ in sample if not (val / name).is_file()]
    if absent:
        raise UserError(f"{source}: {len(absent)} of {len(sample)} sampled files of val_list {val_list} are not in {val} "
                        f"(e.g. {absent[0]}); is val_list for this data_root?")


# ---------------------------------------------------------------------------- datasets in their genuine layouts

LAYOUT_HELP = {
    "cub200": "CUB-200-2011: images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, images/<class>/",
    "mit67": "MIT Indoor-67: Images/<class>/, TrainImages.txt, TestImages.txt",
    "sun397": "SUN-397: SUN397/<letter>/<class>/, Partitions/ClassName.txt, Training_NN.txt, Testing_NN.txt",
    "caltech101": "Caltech-101: 101_ObjectCategories/<class>/ (N training images per class drawn with a seed, the rest test)",
    "folder": "a folder per class: train/<class>/ and val/<class>/ (or test/<class>/)",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
CALTECH_BACKGROUND = "BACKGROUND_Google"


@dataclass(frozen=True)
class LayoutIndex:
    """A dataset read from its genuine layout: its classes in label order and its official
    training and test images as (path relative to ``root``, label)."""

    dataset: str
    root: Path
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    test: tuple[tuple[str, int], ...]

    def items(self, train: bool) -> list[tuple[Path, int]]:
        return [(self.root / path, label) for path, label in (self.train if train else self.test)]


def _find(root: Path, marker: str, parents: tuple[str, ...]) -> Path:
    """The folder that holds ``marker``: ``root`` itself or one of the named subfolders (as the archives unpack)."""
    for folder in (root, *(root / p for p in parents)):
        if (folder / marker).exists():
            return folder
    return root


def _lines(path: Path, dataset: str) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise UserError(f"{dataset}: {path} is missing; the {LAYOUT_HELP[dataset]} layout needs it (is the data root "
                        "the folder the archive unpacked to?)") from None
    except OSError as exc:
        raise UserError(f"{dataset}: cannot read {path}: {exc.strerror or exc}") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def _numbered(path: Path, dataset: str) -> dict[int, str]:
    """A ``<id> <value>`` file (CUB-200's images.txt, classes.txt ...) as {id: value}."""
    table = {}
    for number, line in enumerate(_lines(path, dataset), 1):
        key, _, value = line.partition(" ")
        if not key.isdigit() or not value.strip():
            raise UserError(f"{path}:{number}: expected '<id> <value>', got {line[:60]!r}")
        table[int(key)] = value.strip()
    return table


def _class_folders(folder: Path, dataset: str, classes: list[str], what: str) -> None:
    missing = [name for name in classes if not (folder / name).is_dir()]
    if missing:
        raise UserError(f"{dataset}: {len(missing)} class folders that {what} names are missing from {folder}: "
                        f"{_names(missing)}")


def _image_files(folder: Path) -> list[str]:
    """The images of a class folder; hidden files (``.DS_Store``, ``._x.jpg``) are not images."""
    return sorted(p.name for p in folder.iterdir()
                  if not p.name.startswith(".") and p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_dirs(folder: Path) -> list[str]:
    """The class folders of ``folder``; a hidden one (``.ipynb_checkpoints``, ``.git``) is not a class."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_cub200(root: Path, options) -> tuple:
    root = _find(root, "images.txt", ("CUB_200_2011",))
    classes_by_id = _numbered(root / "classes.txt", "cub200")
    images = _numbered(root / "images.txt", "cub200")
    labels = _numbered(root / "image_class_labels.txt", "cub200")
    is_train = _numbered(root / "train_test_split.txt", "cub200")
    ids = sorted(classes_by_id)
    classes = [classes_by_id[i] for i in ids]
    label_of = {class_id: label for label, class_id in enumerate(ids)}
    train, test = [], []
    for image_id, path in sorted(images.items()):
        if image_id not in labels or image_id not in is_train:
            raise UserError(f"cub200: image {image_id} ({path}) has no line in image_class_labels.txt or "
                            "train_test_split.txt; the download is incomplete")
        class_id = int(labels[image_id])
        if class_id not in label_of:
            raise UserError(f"cub200: image {image_id} has class {class_id}, which classes.txt does not list")
        (train if is_train[image_id] == "1" else test).append((f"images/{path}", label_of[class_id]))
    _class_folders(root / "images", "cub200", classes, "classes.txt")
    return classes, train, test, root


def _read_mit67(root: Path, options) -> tuple:
    root = _find(root, "TrainImages.txt", ("indoorCVPR_09", "MIT67"))
    lists = {part: _lines(root / f"{part}Images.txt", "mit67") for part in ("Train", "Test")}
    classes = sorted({line.split("/")[0] for lines in lists.values() for line in lines})
    label_of = {name: label for label, name in enumerate(classes)}
    for part, lines in lists.items():
        bad = [line for line in lines if "/" not in line]
        if bad:
            raise UserError(f"mit67: {part}Images.txt lists {bad[0]!r}; expected '<class>/<file>' per line")
    _class_folders(root / "Images", "mit67", classes, "TrainImages.txt / TestImages.txt")
    parts = [[(f"Images/{line}", label_of[line.split("/")[0]]) for line in lists[part]] for part in ("Train", "Test")]
    return classes, parts[0], parts[1], root


def _read_sun397(root: Path, options) -> tuple:
    root = _find(root, "Partitions", ("SUN397",))
    partitions, images = root / "Partitions", root / "SUN397"
    if not partitions.is_dir():
        raise UserError(f"sun397: no Partitions/ folder in {root}; unpack the official Partitions.zip there")
    class_paths = _lines(partitions / "ClassName.txt", "sun397")  # '/a/abbey', '/b/bakery/shop'
    classes = [path.strip("/").split("/", 1)[1] if path.count("/") >= 2 else path.strip("/") for path in class_paths]
    label_of = {path.strip("/"): label for label, path in enumerate(class_paths)}
    _class_folders(images, "sun397", [path.strip("/") for path in class_paths], "Partitions/ClassName.txt")
    parts = []
    for part in ("Training", "Testing"):
        lines = _lines(partitions / f"{part}_{options.partition:02d}.txt", "sun397")
        items = []
        for line in lines:
            folder = line.strip("/").rsplit("/", 1)[0]
            if folder not in label_of:
                raise UserError(f"sun397: {part}_{options.partition:02d}.txt lists {line!r}, whose class is not in "
                                "ClassName.txt")
            items.append((f"SUN397/{line.strip('/')}", label_of[folder]))
        parts.append(items)
    return classes, parts[0], parts[1], root


def _read_caltech101(root: Path, options) -> tuple:
    import zlib

    import numpy as np

    folder = _find(root, "101_ObjectCategories", ()) / "101_ObjectCategories"
    if not folder.is_dir():
        raise UserError(f"caltech101: no 101_ObjectCategories/ folder in {root}; unpack the official archive there")
    classes = [name for name in _class_dirs(folder) if options.background or name != CALTECH_BACKGROUND]
    train, test = [], []
    for label, name in enumerate(classes):
        files = _image_files(folder / name)
        if len(files) <= options.train_per_class:
            raise UserError(f"caltech101: class {name} has {len(files)} images, too few for train_per_class = "
                            f"{options.train_per_class} and a test image; lower train_per_class")
        order = np.random.RandomState([options.split_seed, zlib.crc32(name.encode())]).permutation(len(files))
        # The first train_per_class of the seeded order train; the next test_per_class (the
        # literature's 50, or all the rest) test; both kept in file order.
        chosen = set(order[:options.train_per_class].tolist())
        rest = order[options.train_per_class:]
        tested = set((rest if options.test_per_class is None else rest[:options.test_per_class]).tolist())
        for position, file_name in enumerate(files):
            if position in chosen or position in tested:
                (train if position in chosen else test).append((f"101_ObjectCategories/{name}/{file_name}", label))
    return classes, train, test, folder.parent


def _read_folder(root: Path, options) -> tuple:
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise UserError(f"folder: no train/ folder in {root}; a folder-per-class dataset has train/<class>/ and val/<class>/")
    val_dir = next((root / name for name in ("val", "test") if (root / name).is_dir()), None)
    if val_dir is None:
        raise UserError(f"folder: no val/ (or test/) folder in {root}; a folder-per-class dataset has train/<class>/ and "
                        "val/<class>/")
    classes, val_classes = _class_dirs(train_dir), _class_dirs(val_dir)
    extra = sorted(set(val_classes) - set(classes))
    if extra:
        raise UserError(f"folder: {len(extra)} class folders of {val_dir} have no folder in {train_dir}: {_names(extra)}")
    _class_folders(val_dir, "folder", classes, f"{train_dir}")
    parts = []
    for part in (train_dir, val_dir):
        items = []
        for label, name in enumerate(classes):
            files = _image_files(part / name)
            if not files:
                raise UserError(f"folder: class folder {part / name} holds no image ({', '.join(IMAGE_SUFFIXES)})")
            items += [(f"{part.name}/{name}/{file_name}", label) for file_name in files]
        parts.append(items)
    return classes, parts[0], parts[1], root


_READERS = {"cub200": _read_cub200, "mit67": _read_mit67, "sun397": _read_sun397, "caltech101": _read_caltech101,
            "folder": _read_folder}


def read_layout(dataset: str, root: Path | None, options=None, check_files: bool = True) -> LayoutIndex:
    """The classes and official train/test images of a dataset in its genuine layout (``LAYOUT_HELP``).
    Fails in one line on a missing list file, a class folder a list names but that is absent, an
    empty class, fewer than two classes, or (``check_files``: one stat per file, a few seconds for
    SUN-397's 108,754) listed files that are not there or are empty, counted per side."""
    from transferbench.schema.spec import DataOptions

    if dataset not in _READERS:
        raise UserError(f"unknown dataset layout {dataset!r}; choose one of {', '.join(_READERS)}")
    if root is None:
        raise UserError(f"{dataset} needs its folder: give data_root ({LAYOUT_HELP[dataset]})")
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{dataset}: data_root {root} is not a folder")
    classes, train, test, base = _READERS[dataset](root, options or DataOptions())
    if len(classes) < 2:
        raise UserError(f"{dataset} at {root} has {len(classes)} class{'es' if len(classes) != 1 else ''}: a classifier "
                        "needs at least 2; check the folder")
    for part, items in (("training", train), ("test", test)):
        empty = sorted(set(range(len(classes))) - {label for _, label in items})
        if empty:
            raise UserError(f"{dataset}: {len(empty)} classes have no {part} image: {_names([classes[i] for i in empty])}")
    index = LayoutIndex(dataset, base, tuple(classes), tuple(train), tuple(test))
    if check_files:
        check_listed_files(index)
    return index


def check_listed_files(index: LayoutIndex) -> None:
    """Every image the layout lists exists and is not empty (a stat each); else one line with the
    count per side and the first of them. Corrupt contents are found when the images are decoded."""
    faults: dict[str, list[str]] = {}
    for part, train in (("training", True), ("test", False)):
        for path, _ in index.items(train):
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                faults.setdefault(f"{part}: missing", []).append(str(path))
                continue
            except OSError as exc:
                faults.setdefault(f"{part}: unreadable ({exc.strerror})", []).append(str(path))
                continue
            if size == 0:
                faults.setdefault(f"{part}: empty", []).append(str(path))
    if faults:
        counts = ", ".join(f"{what} {len(paths)}" for what, paths in faults.items())
        first = next(iter(faults.values()))[0]
        total = len(index.train) + len(index.test)
        raise UserError(f"{index.dataset}: of the {total} images its lists name, {counts} (first: {first}); the download "
                        "is incomplete or data_root is wrong")


def dataset_classes(dataset: str, root: str | Path | None, options=None, where: str = "",
                    check_files: bool = True) -> tuple[int, str]:
    """(classes, a description) of a whole dataset: its shipped table, or its layout on disk (read and
    checked here: missing lists, absent class folders, one class, a sample of the files)."""
    from transferbench.schema.spec import LAYOUTS
    from transferbench.tasks.classes import load_table

    prefix = f"{where}: " if where else ""
    if dataset in LAYOUTS:
        if root is None:
            raise UserError(f"{prefix}{dataset} needs data_root, the folder it unpacked to")
        try:
            index = read_layout(dataset, Path(root), options, check_files=check_files)
        except UserError as exc:
            raise UserError(f"{prefix}{exc}") from None
        return len(index.classes), f"{dataset} at {root}: {len(index.classes)} classes, {len(index.train)} training and " \
                                   f"{len(index.test)} test images"
    count = len(load_table(dataset))
    return count, f"{dataset}{f' at {root}' if root else ''}: {count} classes"
