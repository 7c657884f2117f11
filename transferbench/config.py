"""TOML reading shared by presets and study configs."""

from __future__ import annotations

import sys
from typing import Any

from transferbench.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def read_toml(text: str, source: str) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a one-line UserError naming ``source``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{source} is not valid TOML: {exc}") from exc
