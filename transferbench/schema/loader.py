"""The one strict loader: TOML and JSON tables into frozen dataclasses, checked key by key.

Every hand-off of the pipeline (study config, job spec, plan, manifest, record) is a frozen
dataclass whose fields carry type hints. ``build`` turns a table read from TOML or JSON into
one of them and refuses, in one line that names the file and the key:

* a key the dataclass does not have (listing the valid ones),
* a value of the wrong type (``lr = "0.01"``, ``n = 4`` where a list is wanted, ``true``
  where a number is wanted),
* a value out of range (the dataclass's ``__post_init__`` raises a UserError; the loader
  adds where it was).

Values keep the type they were written with where it is valid (an integer is a valid
float and stays an integer), so a plan written before and after the loader existed hashes
the same. Lists become tuples where the field is a tuple.

No library does this here: dacite/cattrs/pydantic would each replace about the 60 lines
of ``_convert`` but bring a dependency and their own error wording, and the messages
(file, table, key, what to write instead) are the part that matters.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from functools import lru_cache
from typing import Any, Mapping, TypeVar, Union

from transferbench.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")


def read_toml(text: str, source: str) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a one-line UserError naming ``source``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{source} is not valid TOML: {exc}") from exc


@lru_cache(maxsize=None)
def field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved type hint, in declaration order."""
    hints = typing.get_type_hints(cls)
    return {field.name: hints[field.name] for field in dataclasses.fields(cls)}


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join("nothing" if a is type(None) else _type_name(a) for a in args)
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} values"
        item = args[0] if args else Any
        return f"a list of {_PLURAL.get(item, _type_name(item))}"
    if origin in (dict, Mapping):
        return "a table"
    if dataclasses.is_dataclass(hint):
        return "a table"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, getattr(hint, "__name__", str(hint)))


_PLURAL = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__ if not isinstance(value, bool) else 'boolean'})"


class _Mismatch(Exception):
    """A value that does not fit its type (turned into a UserError by the caller, who knows where)."""


def _convert(value: Any, hint: Any, where: str, source: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where, source)
            except _Mismatch:
                continue
        raise _Mismatch
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise _Mismatch
        return build(hint, value, where, source)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _Mismatch
            items = [_convert(v, a, where, source) for v, a in zip(value, args)]
        else:
            item = args[0] if args else Any
            items = [_convert(v, item, where, source) for v in value]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _Mismatch
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise _Mismatch
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Mismatch
        return value  # an integer stays one: plans and hashes keep the value as written
    if hint is str:
        if not isinstance(value, str):
            raise _Mismatch
        return value
    raise TypeError(f"the loader cannot check values of type {hint!r}")  # a programming error, not a user's


def check_values(cls: type, values: Any, where: str, source: str, required: bool = False) -> dict[str, Any]:
    """Check a (possibly partial) table against ``cls``'s fields: known keys, right types.

    Returns the converted values. With ``required``, fields without a default must be present.
    """
    if not isinstance(values, Mapping):
        raise UserError(f"{source}: [{where}] must be a table, got {_describe(values)}")
    types_ = field_types(cls)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise UserError(f"{source}: unknown key {unknown[0]!r} in [{where}]; valid keys: {', '.join(sorted(types_))}")
    if required:
        absent = [f.name for f in dataclasses.fields(cls) if f.name not in values
                  and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if absent:
            raise UserError(f"{source}: [{where}] needs {absent[0]} ({_type_name(types_[absent[0]])})")
    converted = {}
    for key, value in values.items():
        try:
            converted[key] = _convert(value, types_[key], f"{where}.{key}", source)
        except _Mismatch:
            raise UserError(f"{source}: [{where}] {key} must be {_type_name(types_[key])}, got {_describe(value)}") from None
    return converted


def build(cls: type[T], values: Any, where: str, source: str) -> T:
    """An instance of the dataclass ``cls`` from a table, checked (see the module docstring)."""
    converted = check_values(cls, values, where, source, required=True)
    try:
        return cls(**converted)
    except UserError as exc:
        message = str(exc)
        raise UserError(message if message.startswith(source) else f"{source}: [{where}] {message}") from None


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``train.lr=0.001`` -> (("train", "lr"), 0.001). The value is read as TOML (numbers,
    booleans, lists, quoted strings); anything that is not valid TOML is taken as a string."""
    path, sep, raw = text.partition("=")
    keys = tuple(part.strip() for part in path.split("."))
    if not sep or len(keys) < 2 or not all(keys):
        raise UserError(f"--set {text!r}: write TABLE.KEY=VALUE, e.g. --set train.lr=0.001 or --set block.1.n=[1,2]")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return keys, value


def apply_overrides(config: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """A copy of ``config`` with each ``TABLE.KEY=VALUE`` set (``block.N.KEY`` for the N-th block,
    counted from 1). The values are checked later, with the rest of the config."""
    import copy

    config = copy.deepcopy(config)
    for text in overrides:
        keys, value = parse_override(text)
        target: Any = config
        for depth, key in enumerate(keys[:-1]):
            if isinstance(target, list):
                if not key.isdigit() or not 1 <= int(key) <= len(target):
                    raise UserError(f"--set {text!r}: {source} has {len(target)} blocks; give a block number 1..{len(target)}")
                target = target[int(key) - 1]
                continue
            if key == "block" and depth == 0:
                target = target.setdefault("block", [])
                if len(keys) < 3:
                    raise UserError(f"--set {text!r}: name the block, e.g. --set block.1.n=[1,2]")
                continue
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise UserError(f"--set {text!r}: {'.'.join(keys[:depth + 1])} is not a table")
        target[keys[-1]] = value
    return config
