"""Typed, frozen settings loaded from YAML, with errors that name the file and the key.

Every configuration file edge reads (device profiles, the daemon config, model manifests'
typed parts) is parsed into frozen dataclasses by :func:`from_mapping`. We validate ourselves
instead of pulling in pydantic: the rules we need (unknown keys are errors, wrong types are
errors, every error names ``file: key.path`` and what is allowed) fit in one small module, and
a Pi Zero pays for every import at start-up.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
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


MAX_YAML_BYTES = 1 << 20
"""Largest settings file read: a configuration is a few kilobytes."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of mappings and lists accepted (the settings themselves are four levels deep)."""
MAX_YAML_VALUES = 100_000
"""Most values a file may hold once its aliases are expanded (an alias bomb expands to billions)."""
MAX_INT_DIGITS = 100
"""Longest integer literal (Python refuses to convert more than 4300 digits, with a traceback)."""


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file, turning every problem into a :class:`SettingsError` with a line number.

    Besides syntax errors: a key given twice in one mapping, nesting deeper than
    ``MAX_YAML_DEPTH``, aliases that expand to more than ``MAX_YAML_VALUES`` values (or into
    themselves), and integers longer than ``MAX_INT_DIGITS`` digits are refused, all before
    anything is built, so a hostile file costs no more memory or time than its own size.
    """
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_YAML_BYTES + 1)
    except FileNotFoundError:
        raise SettingsError(source, "", "file not found") from None
    except IsADirectoryError:
        raise SettingsError(source, "", "is a directory; expected a YAML file") from None
    except OSError as exc:
        raise SettingsError(source, "", f"cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_YAML_BYTES:
        raise SettingsError(source, "", f"larger than {MAX_YAML_BYTES} bytes; allowed: a settings file up to that size")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(source, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        _check_shape(text, source)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)  # "found duplicate anchor 'x'; first occurrence" + "second occurrence"
        raise SettingsError(source, "", f"invalid YAML: {line}{context + ', ' if context else ''}{problem}") from None


_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where PyYAML was built with it


class _Loader(_SafeLoader):  # type: ignore[misc, valid-type]
    """The safe loader with integer literals bounded (see :data:`MAX_INT_DIGITS`)."""


def _construct_int(loader: Any, node: yaml.ScalarNode) -> int:
    digits = sum(ch.isalnum() for ch in node.value)
    if digits > MAX_INT_DIGITS:
        raise yaml.constructor.ConstructorError(
            None, None, f"an integer of {digits} digits; allowed: at most {MAX_INT_DIGITS}", node.start_mark
        )
    return yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _check_shape(text: str, source: str) -> None:
    """Refuse duplicate keys, deep nesting and alias expansion from the parser's events, before composing.

    The events come from a streaming parser, so neither depth nor aliases cost anything here;
    PyYAML's composer and constructor recurse (a ``RecursionError`` 3,000 levels down) and
    share aliased nodes, which a settings check or an error message would then expand.
    """
    frames: list[dict[str, Any]] = []  # open collections: path, children so far, keys seen (mappings)
    anchor_sizes: dict[str, int] = {}  # anchor -> values it expands to
    open_anchors: set[str] = set()  # anchors whose latest definition is a collection still open
    expanded = 0
    for event in yaml.parse(text, Loader=_SafeLoader):
        if isinstance(event, (yaml.DocumentStartEvent, yaml.DocumentEndEvent)):
            frames.clear()
            continue
        if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            frame = frames.pop()
            if frame["anchor"] is not None:  # an anchor name may be defined again inside: the latest counts
                anchor_sizes[frame["anchor"]] = expanded - frame["start"]
                open_anchors.discard(frame["anchor"])
            continue
        if not isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            continue
        line = event.start_mark.line + 1
        path = ""  # where the event is, for the message
        if frames:
            parent = frames[-1]
            position = parent["children"]
            parent["children"] += 1
            if parent["keys"] is not None:
                if position % 2 == 0:  # a key
                    if isinstance(event, yaml.ScalarEvent):
                        key = event.value
                        first = parent["keys"].get(key)
                        if first is not None:
                            raise SettingsError(
                                source,
                                _short(_join(parent["path"], key)),
                                f"given twice in one mapping (lines {first} and {line}); allowed: each key once",
                            )
                        parent["keys"][key] = line
                        parent["key"] = key
                    else:
                        parent["key"] = "?"
                path = _join(parent["path"], parent["key"])
            else:
                path = f"{parent['path']}[{position}]"
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise SettingsError(
                    source,
                    _short(path),
                    f"line {line}: alias *{event.anchor} is used inside the node it "
                    "names; allowed: aliases of complete nodes",
                )
            expanded += anchor_sizes.get(event.anchor, 1)  # an unknown anchor: the loader names it below
        else:
            expanded += 1
        if expanded > MAX_YAML_VALUES:
            raise SettingsError(
                source,
                _short(path),
                f"line {line}: the file expands to more than {MAX_YAML_VALUES} values "
                f"(aliases included); allowed: at most {MAX_YAML_VALUES}",
            )
        anchor = getattr(event, "anchor", None)
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            if len(frames) >= MAX_YAML_DEPTH:
                raise SettingsError(
                    source,
                    _short(path),
                    f"line {line}: nested more than {MAX_YAML_DEPTH} levels deep; allowed: at most {MAX_YAML_DEPTH}",
                )
            mapping = isinstance(event, yaml.MappingStartEvent)
            frames.append(
                {
                    "path": path,
                    "children": 0,
                    "keys": {} if mapping else None,
                    "key": "?",
                    "anchor": anchor,
                    "start": expanded - 1,
                }
            )
            if anchor is not None:
                open_anchors.add(anchor)
        elif isinstance(event, yaml.ScalarEvent) and anchor is not None:
            anchor_sizes[anchor] = 1
            open_anchors.discard(anchor)


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
        choices = [a for a in args if a is not type(None)]
        if len(choices) == 1:  # ``X | None``: the error of X says more than "expected X or null"
            return _convert(choices[0], value, source, key)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, source, key)
            except SettingsError:
                continue
        raise SettingsError(source, key, f"expected {_describe(tp)}, got {_kind(value)} {_show(value)}")
    if origin is Literal:
        if value in args:
            return value
        allowed = ", ".join(repr(a) for a in args)
        raise SettingsError(source, key, f"got {_show(value)}; allowed: {allowed}")
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, source=source, key=key)
    if origin in (tuple, list):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise SettingsError(
                source, key, f"expected a list of {_describe(args[0]) if args else 'values'}, got {_kind(value)}"
            )
        item = args[0] if args else Any
        items = [_convert(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise SettingsError(source, key, f"expected a mapping, got {_kind(value)}")
        kt, vt = args if args else (Any, Any)
        return {_convert(kt, k, source, f"{key}.{k}"): _convert(vt, v, source, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise SettingsError(source, key, f"expected true or false, got {_kind(value)} {_show(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SettingsError(source, key, f"expected a whole number, got {_kind(value)} {_show(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value) if isinstance(value, float) or abs(value) < 2**1023 else math.inf
            if not math.isfinite(number):  # NaN passes every range check written as a comparison
                raise SettingsError(source, key, f"expected a finite number, got {_show(value)}")
            return number
        raise SettingsError(source, key, f"expected a number, got {_kind(value)} {_show(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise SettingsError(source, key, f"expected a string, got {_kind(value)} {_show(value)}")
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


_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 50
_SHOW.maxlist = _SHOW.maxdict = _SHOW.maxtuple = _SHOW.maxset = 4
_SHOW.maxlevel = 3
_SHOW.maxlong = 40


def _show(value: Any) -> str:
    """A value for an error message, abbreviated: the message must not grow with the value."""
    return _SHOW.repr(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "whole number", float: "number", str: "string", list: "list", dict: "mapping"}.get(
        type(value), type(value).__name__
    )


def _short(path: str) -> str:
    return path if len(path) <= 80 else path[:40] + "…" + path[-30:]


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


__all__ = ["SettingsError", "from_mapping", "load_file", "load_yaml", "to_mapping"]
