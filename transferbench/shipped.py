"""What ships with transferbench, found from any folder: the committed split files, the paper's
published results and the study presets.

One copy lives in the repository: the checkout's top-level ``splits/``, ``results/`` and
``configs/``. Building the package (``setup.py``) copies them into the wheel as
``transferbench/shipped/<kind>/``, so an installed transferbench carries them and a checkout
needs no second copy that could drift.

Lookup order, first match wins:

* split files: the study's ``split_dir``, else ``./splits``, the ``splits/`` beside the
  config's folder, then the shipped ones;
* a study config given by name (``transferbench plan yosinski2014``): ``./configs/<name>.toml``,
  then the shipped presets; a path is used as it is;
* ``plot --reference NAME``: ``./results/NAME.csv``, then the shipped results.
"""

from __future__ import annotations

import re
from pathlib import Path

from transferbench.errors import UserError

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent
KINDS = ("splits", "configs", "results")  # what of each the wheel carries: setup.py


def shipped_dir(kind: str) -> Path | None:
    """The shipped folder of ``kind`` (splits, configs, results): the installed copy, or the checkout's own."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    installed = PACKAGE / "shipped" / kind
    if installed.is_dir():
        return installed
    if (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / kind).is_dir():
        return CHECKOUT / kind
    return None


def presets() -> dict[str, Path]:
    """Shipped study configs by name (``yosinski2014`` -> its file)."""
    folder = shipped_dir("configs")
    return {path.stem: path for path in sorted(folder.glob("*.toml"))} if folder else {}


def preset_summary(path: Path, width: int = 110) -> str:
    """The first sentence of a config's leading comment: what the study is."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#") or not line.strip("# "):
            break
        lines.append(line.strip("# ").rstrip())
    text = " ".join(lines)
    sentence = re.split(r"\.\s+(?=[A-Z(])", text)[0].rstrip(".")  # not at "et al. 2014"
    return sentence if len(sentence) <= width else sentence[:width].rsplit(" ", 1)[0] + " ..."


def find_config(value: Path | str) -> Path:
    """A study config from a path, or from a preset name: ./configs/<name>.toml, then the shipped one."""
    path = Path(value)
    if path.is_file() or path.suffix == ".toml" or len(path.parts) > 1:
        return path  # a path: load_config says clearly if it does not exist
    for candidate in (Path("configs") / f"{value}.toml", *( [presets()[str(value)]] if str(value) in presets() else [])):
        if candidate.is_file():
            return candidate
    raise UserError(f"no study config {str(value)!r}: not a file, and not a preset; presets: {', '.join(presets()) or 'none'} "
                    "(`transferbench plan --list` describes them)")


def find_results(name: str) -> Path:
    """``plot --reference NAME``: ./results/NAME.csv, then the shipped results."""
    for folder in (Path("results"), shipped_dir("results")):
        if folder is not None and (folder / f"{name}.csv").is_file():
            return folder / f"{name}.csv"
    shipped = shipped_dir("results")
    names = sorted(p.stem for p in shipped.glob("*.csv")) if shipped else []
    raise UserError(f"no results {name!r}: neither ./results/{name}.csv nor a shipped one ({', '.join(names) or 'none'})")
