"""Shared fixtures: the authors' reference files and WordNet.

Both live outside the repository (``../shared`` and a WordNet install).  Locally a test
that needs one is skipped when it is absent; CI sets ``TRANSFERBENCH_REQUIRE_EXTERNALS=1``
so that a missing one fails the run instead of silently skipping it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("TRANSFERBENCH_REFERENCE", REPO.parent / "shared" / "reference" / "yosinski2014"))


def _missing(what: str) -> None:
    if os.environ.get("TRANSFERBENCH_REQUIRE_EXTERNALS") == "1":
        pytest.fail(f"{what} is required in CI but missing")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def reference() -> Path:
    """The authors' published files (class lists, split files, logs)."""
    if not (REFERENCE / "ilsvrc12" / "synsets.txt").is_file():
        _missing(f"reference folder {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def wordnet():
    """A WordNet 3.0 reader ($TRANSFERBENCH_WORDNET_DIR, nltk's data path, or /usr/share/wordnet)."""
    from transferbench.errors import UserError
    from transferbench.wordnet import load_wordnet

    for folder in (None, "/usr/share/wordnet"):
        try:
            return load_wordnet(folder)
        except UserError:
            continue
    _missing("WordNet 3.0")
