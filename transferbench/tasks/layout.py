"""What `plan` checks of a dataset on disk before any job is queued: a class folder missing from
ImageNet's train/, a validation list that does not exist or names files that are not there,
fail at `plan` in one line, not hours later at a job's first evaluation.

Cheap by design: one directory listing per class the study uses (ImageNet: up to 1000),
and a seeded sample of the validation list's paths.
"""

from __future__ import annotations

import os
import random
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
