"""What identifies a dataset's images, independently of where they are on disk.

A job's identity (``JobSpec.config_hash``) covers its data by this fingerprint, never by the
folder's path: moving a dataset changes no job, and a folder whose files changed changes every
job that reads it.

| dataset                          | identified by                                                    |
|----------------------------------|------------------------------------------------------------------|
| synthetic                        | its generator's version (the images are a function of it)        |
| fashion-mnist, cifar100          | name and format: fixed public releases, checked by their loader  |
| imagenet1k                       | the sorted file names of every train/<wnid>/ folder and of the validation set (val_list's content, or val/<wnid>/) |
| cub200, mit67, sun397, caltech101, folder | the layout's classes and its official train/test file lists, with the layout options |

Cheap by design: one directory listing per ImageNet class (names only, no stat per file), or
the list files a layout reads anyway.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from transferbench.errors import UserError

SYNTHETIC_VERSION = 1  # bump when worker/synthetic.py draws other images


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _listing(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entry.name for entry in entries)
    except (FileNotFoundError, NotADirectoryError):
        return []  # a missing class folder is the plan's check to report, in its words
    except OSError as exc:
        raise UserError(f"cannot list {folder}: {exc.strerror}; check the data folder's permissions") from exc


def data_fingerprint(dataset: str, root: str | Path | None, options: Any = None, val_list: str | Path | None = None) -> str | None:
    """The fingerprint of ``dataset``'s images (see the table above); None where it cannot be known
    yet (ImageNet without its folder: ``submit`` holds those jobs until a plan names it)."""
    from transferbench.schema.spec import LAYOUTS

    if dataset == "synthetic":
        return _digest(["synthetic", SYNTHETIC_VERSION])
    if dataset in ("fashion-mnist", "cifar100"):
        return _digest([dataset, "release"])
    if dataset in LAYOUTS:
        from transferbench.tasks.layout import read_layout

        if root is None:
            return None
        index = read_layout(dataset, Path(root), options, check_files=False)
        return _digest([dataset, list(index.classes), [list(i) for i in index.train], [list(i) for i in index.test]])
    if dataset == "imagenet1k":
        if root is None:
            return None
        from transferbench.tasks.classes import load_table

        root = Path(root)
        wnids = [c.wnid for c in load_table("imagenet1k").classes]
        train = [[wnid, _listing(root / "train" / wnid)] for wnid in wnids]
        if val_list is not None:  # (one that cannot be read is the plan's check to report, in its words)
            from transferbench.fileio import file_sha256

            val: Any = ["list", file_sha256(Path(val_list)) if Path(val_list).is_file() else None]
        else:
            val = [[wnid, _listing(root / "val" / wnid)] for wnid in wnids]
        return _digest([dataset, train, val])
    raise UserError(f"unknown dataset {dataset!r}")
