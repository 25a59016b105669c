"""Typed, frozen settings loaded from YAML, with errors that name the file and the key.

Every configuration file edge reads (device profiles, the daemon config, model manifests'
typed parts) is parsed into frozen dataclasses by :func:`from_mapping`. We validate ourselves
instead of pulling in pydantic: the rules we need (unknown keys are errors, wrong types are
errors, every error names ``file: key.path`` and what is allowed) fit in one small module, and
a Pi Zero pays for every import at start-up.
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class SettingsError(ValueError):
    """A configuration value is missing, unknown or of the wrong type.

    The message always reads ``<file>: <key.path>: <what is wrong>; <what is allowed>``.
    """

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file, turning parser errors into a :class:`SettingsError` with a line number."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(str(path), "", "file not found") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(str(path), "", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SettingsError(str(path), "", f"invalid YAML: {line}{problem}") from None


def load_file(cls: type[T], path: str | Path) -> T:
    """Load a YAML file into the dataclass ``cls``."""
    data = load_yaml(path)
    if data is None:
        data = {}
    return from_mapping(cls, data, source=str(path))


def from_mapping(cls: type[T], data: Any, *, source: str, key: str = "") -> T:
    """Build the frozen dataclass ``cls`` from ``data``, checking every key and type."""
    if not isinstance(data, dict):
        raise SettingsError(source, key, f"expected a mapping of {cls.__name__} fields, got {_kind(data)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        allowed = ", ".join(sorted(fields))
        raise SettingsError(source, _join(key, str(unknown[0])), f"unknown key; allowed keys: {allowed}")
    values: dict[str, Any] = {}
    for name, field in fields.items():
        path = _join(key, name)
        if name in data:
            values[name] = _convert(hints[name], data[name], source, path)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise SettingsError(source, path, f"required key is missing (type {_describe(hints[name])})")
    try:
        return cls(**values)
    except ValueError as exc:  # __post_init__ range checks
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(source, key or cls.__name__, str(exc)) from None


def to_mapping(obj: Any) -> Any:
    """The inverse of :func:`from_mapping`: plain dicts, lists and scalars, ready for YAML or JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_mapping(v) for k, v in obj.items()}
    return obj


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = get_origin(tp)
    args = get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, source, key)
            except SettingsError:
                continue
        raise SettingsError(source, key, f"expected {_describe(tp)}, got {_kind(value)} {value!r}")
    if origin is Literal:
        if value in args:
            return value
        allowed = ", ".join(repr(a) for a in args)
        raise SettingsError(source, key, f"got {value!r}; allowed: {allowed}")
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, source=source, key=key)
    if origin in (tuple, list):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise SettingsError(source, key, f"expected a list of {_describe(args[0]) if args else 'values'}, got {_kind(value)}")
        item = args[0] if args else Any
        items = [_convert(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise SettingsError(source, key, f"expected a mapping, got {_kind(value)}")
        kt, vt = args if args else (Any, Any)
        return {
            _convert(kt, k, source, f"{key}.{k}"): _convert(vt, v, source, f"{key}.{k}") for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise SettingsError(source, key, f"expected true or false, got {_kind(value)} {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SettingsError(source, key, f"expected a whole number, got {_kind(value)} {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise SettingsError(source, key, f"expected a number, got {_kind(value)} {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise SettingsError(source, key, f"expected a string, got {_kind(value)} {value!r}")
    raise TypeError(f"settings type {tp!r} at {key} is not supported")


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    args = get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None)) + (
            " or null" if type(None) in args else ""
        )
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        return f"list of {_describe(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return f"mapping ({tp.__name__})"
    return {bool: "true/false", int: "whole number", float: "number", str: "string"}.get(tp, str(tp))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "whole number", float: "number", str: "string", list: "list", dict: "mapping"}.get(
        type(value), type(value).__name__
    )


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


__all__ = ["SettingsError", "from_mapping", "load_file", "load_yaml", "to_mapping"]
