"""Home Assistant intents files for ``edge-train``: reading and checking.

The file is the YAML (or JSON) Home Assistant uses for its intents, parsed by ``hassil``, Home
Assistant's own template library, so a file that works there trains here, with the same syntax:
alternatives ``(a|b)``, optionals ``[word]``, permutations ``(a;b)``, slots ``{list}`` /
``{list:slot}`` / ``{1..10:slot}``, rules ``<rule>``.  docs/intents-files.md describes every key;
in short::

    language: en
    intents:
      LightOn:
        data:
          - sentences: ["<switch_on> [the] lights in [the] {area}"]
            requires_context: {domain: light}      # a {name} value whose context differs is not said here
            expansion_rules: {switch_on: "(turn|switch) on"}   # this block's own rules and lists
    lists:
      area: {values: [kitchen, {in: "(living room|lounge)", out: living_room}]}
      brightness: {range: {from: 0, to: 100, type: percentage}}
      item: {wildcard: true}
    expansion_rules: {the: "[the]"}
    skip_words: [please]
    out_of_scope: ["what's the weather like"]    # edge only: sentences that are none of the intents
    tests:                                       # as in Home Assistant's tests/ files
      - sentences: ["switch on the lounge lights"]
        intent: {name: LightOn, slots: {area: living_room}}

Where it comes from: a path, or ``ha:LANG`` for the compiled file of the installed PyPI package
``home-assistant-intents`` (:func:`source_path`).  ``{name}``, ``{area}`` and ``{floor}``, which
Home Assistant fills from the user's devices, come from a lists file (:func:`load_lists`: hassil
list syntax, or Home Assistant's test-fixtures format, whose entities become ``name`` values
carrying their ``domain`` and attributes as hassil value ``context``).

**What "hassil accepts" means here.**  A file is accepted by hassil when

1. ``yaml.safe_load`` gives a mapping and ``hassil.Intents.from_dict`` returns without an
   exception (it parses the expansion rules and list values; ranges are checked by
   ``RangeSlotList``);
2. every template of every block parses (``IntentData.sentences``, which ``from_dict`` leaves
   for the first match); and
3. every template of every block can be expanded completely by hassil's sampler
   (``hassil.sample.sample_expression``) with the lists and rules Home Assistant's matcher uses
   for that block (``recognize_all``: ``{**file lists, **caller's lists, **block lists}`` and
   ``{**file rules, **block rules}``, inline ranges ``{N..M:slot}`` created as the matcher
   creates them, number words in the file's language), without ``MissingListError``,
   ``MissingRuleError``, ``RecursionError`` or ``ValueError``: then the matcher cannot fail on it
   for any input.

So a reference is resolved where it is *used*: a file-level rule may use ``<class>`` that each
block defines for itself, a block's rule may use the file's, a block's list hides the file's
list of that name, and a rule that no template reaches is not resolved at all.  Tests compare
this checker's verdict with those hassil calls (tests/test_intents_file.py).

The checker also refuses what hassil would read silently in a way nobody meant, each a
documented rule of this format: keys it does not know (hassil ignores them: a misspelt
``expansion_rule:`` would drop the rules), values of the wrong type (hassil iterates a string
given for a list character by character, ``bool("no")`` is true, ``int(2.5)`` is 2), duplicate
keys, empty text, a list with no values, a list that is two kinds at once, an intent without a
template, and rules or lists nested deeper than :data:`MAX_REFERENCE_DEPTH`.

The file is checked node by node on the YAML parser's own tree (``yaml.compose``), so every
problem is reported at once with its line and key path, before hassil sees the data.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from hassil.expression import Expression, Group, ListReference, RuleReference, Sentence
from hassil.intents import Intents, RangeSlotList, SlotList, TextSlotList
from hassil.parse_expression import parse_sentence
from hassil.util import is_template

from .data import DataError

TOP_KEYS = {
    "language": "the language code, e.g. en",
    "intents": "intent name -> {data: [...]}",
    "lists": "slot lists (values, range or wildcard)",
    "expansion_rules": "rule name -> template",
    "skip_words": "words said around commands",
    "settings": "hassil settings",
    "responses": "Home Assistant's response texts (not used for training)",
    "out_of_scope": "sentences that are none of the intents",
    "tests": "test sentences with intent and slots",
}
DATA_KEYS = (
    "sentences",
    "slots",
    "requires_context",
    "excludes_context",
    "expansion_rules",
    "lists",
    "response",
    "metadata",
    "required_keywords",
    "inferred_domain",
    "name_domains",
    "settings",
)
LIST_KEYS = ("values", "range", "wildcard")
RANGE_KEYS = ("from", "to", "step", "type", "fractions", "multiplier", "digits", "words", "words_language")
TEST_KEYS = ("sentences", "intent", "response", "context", "metadata")
HOME_LISTS = ("name", "area", "floor")
"""Lists Home Assistant fills from the user's own devices, areas and floors."""
TOP = "(top level)"
MAX_NESTING = 64
"""YAML nesting depth accepted: far more than an intents file needs, far less than exhausts a parser's stack."""
TOO_DEEP = f"nested too deep (more than {MAX_NESTING} levels of lists and mappings)"
MAX_NODES = 1_000_000
"""YAML nodes after expanding aliases: room for any intents file, not for an alias bomb."""
MAX_REFERENCE_DEPTH = 100
"""Rules and lists used within each other, deepest chain (hassil's recursive matcher gives up a few hundred deep)."""
LISTS_EXAMPLE = """\
lists:
  name:
    values: [Kitchen Light, Front Door]
  area:
    values: [Kitchen, {in: "(living room|lounge)", out: Living Room}]
  floor:
    values: [Ground Floor]"""


class TemplateError(DataError):
    """The intents file is malformed; the message names every problem with its line and key."""


# --------------------------------------------------------------------------- where the file comes from


def source_path(spec: str | Path) -> Path:
    """A path, or ``ha:LANG``: the compiled intents of the installed ``home-assistant-intents`` package."""
    text = str(spec)
    if not text.startswith("ha:") or Path(text).exists():
        return Path(spec)
    language = text[3:]
    try:
        import home_assistant_intents
    except ImportError:
        raise TemplateError(
            f"{text}: Home Assistant's intents package is not installed "
            "(pip install home-assistant-intents, or script/setup --train)"
        ) from None
    data = Path(home_assistant_intents.__file__).parent / "data"
    path = data / f"{language}.json"
    if not path.is_file():
        known = sorted(p.stem for p in data.glob("*.json"))
        raise TemplateError(f"{text}: home-assistant-intents has no language {language!r} (it has: {', '.join(known)})")
    return path


# --------------------------------------------------------------------------- loading


@dataclasses.dataclass(frozen=True)
class TestCase:
    text: str
    intent: str
    slots: dict[str, Any]
    line: int


@dataclasses.dataclass
class IntentsFile:
    path: Path
    intents: Intents
    """hassil's parsed file; its ``slot_lists`` include the lists given with ``lists=`` (they win, as in hassil)."""
    out_of_scope: list[Sentence]
    tests: list[TestCase]
    data: dict = dataclasses.field(default_factory=dict)
    """The file as hassil reads it (``Intents.from_dict``): what a model package keeps as its grammar."""

    @property
    def language(self) -> str:
        return self.intents.language


def load(path: str | Path, lists: str | Path | None = None) -> IntentsFile:
    """Read, check and parse an intents file (a path or ``ha:LANG``), with the user's lists file if given.

    :class:`TemplateError` lists every problem found.
    """
    path = source_path(path)
    extra, raw = _lists_file(lists) if lists is not None else (None, {})
    f = load_text(_read(path, "intents file"), path, extra, str(lists) if lists is not None else None)
    if raw:
        f.data["lists"] = {**f.data.get("lists", {}), **raw}
    return f


def load_text(
    text: str, path: str | Path, extra_lists: dict[str, SlotList] | None = None, lists_source: str | None = None
) -> IntentsFile:
    """:func:`load` on text already read (``path`` names it in messages)."""
    path = Path(path)
    root = _compose(text, path)
    check = _Checker(path)
    data = check.document(root, extra_lists or {}, lists_source)
    check.raise_errors()
    intents = Intents.from_dict(data)
    if extra_lists:
        intents.slot_lists = {**intents.slot_lists, **extra_lists}
    oos = [parse_sentence(t, keep_text=True) for t in data.get("out_of_scope") or []]
    tests = [
        TestCase(s, t["intent"]["name"], dict(t["intent"].get("slots") or {}), line)
        for t, line in check.test_lines
        for s in t["sentences"]
    ]
    grammar = {k: v for k, v in data.items() if k in ("language", "intents", "lists", "expansion_rules", "skip_words")}
    return IntentsFile(path, intents, oos, tests, grammar)


def load_lists(path: str | Path) -> dict[str, SlotList]:
    """The user's ``name`` / ``area`` / ``floor`` (or any) lists, in either format.

    * hassil's list syntax: ``lists: {name: {values: [...]}, area: {...}}``;
    * Home Assistant's test fixtures (``tests/<lang>/_fixtures.yaml``, also under a ``fixtures:``
      key as speech-to-phrase writes it): ``areas`` and ``floors`` (``name``, optional ``id``)
      become ``area`` / ``floor`` values; ``entities`` (``name``, ``domain`` or an ``id`` such as
      ``light.kitchen``, ``area``, ``attributes``, ...) become ``name`` values whose hassil
      ``context`` is ``{domain, **attributes}``, so that a block's ``requires_context`` /
      ``excludes_context`` applies to them as in Home Assistant.  A name written as a template
      (``"(TV|telly)"``) is one value per way of saying it, as Home Assistant's tests do.
    """
    return _lists_file(path)[0]


def _lists_file(path: str | Path) -> tuple[dict[str, SlotList], dict[str, dict]]:
    """The lists of a lists file, parsed and in hassil's dict form (for a package's grammar.json)."""
    path = Path(path)
    root = _compose(_read(path, "lists file"), path)
    check = _Checker(path)
    out = check.lists_file(root)
    check.raise_errors()
    return out, check.raw_lists


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path}: cannot read the {what} ({exc})") from None


def _compose(text: str, path: Path) -> yaml.Node | None:
    """The YAML node tree, refusing nesting and alias expansion that would exhaust the stack or memory."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        depth = 0
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_NESTING:
                    raise TemplateError(f"{path}:{event.start_mark.line + 1}: {TOO_DEEP}")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        root = yaml.compose(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        if "nesting depth" in problem:  # libyaml's own limit, met before ours when it scans ahead
            raise TemplateError(f"{path}{where}: {TOO_DEEP}") from None
        raise TemplateError(f"{path}{where}: not valid YAML ({problem})") from None
    if root is not None:
        order = _distinct_nodes(root)
        for node in order:
            problem = _plain_yaml_problem(node)
            if problem:
                raise TemplateError(f"{path}:{node.start_mark.line + 1}: {problem}")
        if _expanded_size(root, order) > MAX_NODES:
            raise TemplateError(
                f"{path}: its YAML aliases (*name) expand to more than {MAX_NODES:,} values; "
                "write the file out instead of repeating anchors inside anchors"
            )
    return root


def _distinct_nodes(root: yaml.Node) -> list[yaml.Node]:
    """Each node once, parents before children (aliases share node objects)."""
    order, seen, stack = [], set(), [root]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            order.append(node)
            stack.extend(_children(node))
    return order


PLAIN_TAGS = {
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "binary")
}


def _plain_yaml_problem(node: yaml.Node) -> str | None:
    """What keeps a node from being plain data that every key of the format can hold."""
    if node.tag not in PLAIN_TAGS:
        return f"the YAML tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed in an intents file"
    if isinstance(node, yaml.MappingNode):
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                return "a mapping key must be text (found a list, a mapping or a '<<' merge as a key)"
    return None


def _expanded_size(root: yaml.Node, order: list[yaml.Node]) -> int:
    """Nodes after alias expansion, without expanding: each distinct node sized once, children first."""
    sizes: dict[int, int] = {}
    for node in reversed(order):
        sizes[id(node)] = min(MAX_NODES + 1, 1 + sum(sizes[id(c)] for c in _children(node)))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _construct(node: yaml.Node) -> Any:
    return yaml.SafeLoader("").construct_document(node)


# --------------------------------------------------------------------------- checking


class _Checker:
    """Walks the YAML node tree: types, allowed keys, template syntax; then resolves every reference as hassil does."""

    def __init__(self, path: Path):
        self.path = path
        self.errors: list[str] = []
        self.raw_lists: dict[str, dict] = {}
        """The lists of a lists file in hassil's dict form, for a package's grammar."""
        self.test_lines: list[tuple[dict, int]] = []
        self._engines: dict[str, bool] = {}

    def error(self, node: yaml.Node, key: str, problem: str) -> None:
        self.errors.append(f"line {node.start_mark.line + 1}: {key}: {problem}")

    def raise_errors(self) -> None:
        if self.errors:
            errors = sorted(dict.fromkeys(self.errors), key=lambda e: int(e.split()[1].rstrip(":")))
            raise TemplateError(f"{self.path}: {len(errors)} problem(s):\n  " + "\n  ".join(errors))

    # -- typed node readers (None when the node is wrong; the error is recorded)

    def mapping(self, node, key: str, allowed=None, required=()) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, key, f"expected a mapping, got {_kind(node)}")
            return None
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else None
            if name is None or k.tag != "tag:yaml.org,2002:str":
                self.error(k, key, f"keys must be names (text), got {_kind(k)}")
                continue
            path = name if key == TOP else f"{key}.{name}"
            if name in out:
                self.error(k, path, "duplicate key (the earlier one would be silently ignored)")
            if allowed is not None and name not in allowed:
                self.error(k, path, f"unknown key; allowed: {', '.join(allowed)}")
                continue
            out[name] = (k, v)
        for r in required:
            if r not in out:
                self.error(node, key, f"missing required key {r!r}")
        return out

    def seq(self, node, key: str) -> list | None:
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, key, f"expected a list, got {_kind(node)}")
            return None
        return node.value

    def string(self, node, key: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str" or not node.value.strip():
            self.error(node, key, f"expected non-empty text, got {_kind(node)}")
            return None
        return node.value

    def strings(self, node, key: str) -> list[str] | None:
        items = self.seq(node, key)
        if items is None:
            return None
        out = [self.string(item, f"{key}[{i}]") for i, item in enumerate(items)]
        return None if None in out else out

    def scalar(self, node, key: str, tags: tuple[str, ...], what: str):
        if not isinstance(node, yaml.ScalarNode) or node.tag.rsplit(":", 1)[-1] not in tags:
            self.error(node, key, f"expected {what}, got {_kind(node)}")
            return None
        return _construct(node)

    def optional(self, node) -> bool:
        """A YAML null where hassil takes None as 'not given'."""
        return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"

    def template(self, node, key: str, templates: list | None = None) -> Sentence | None:
        text = self.string(node, key)
        if text is None:
            return None
        try:
            sentence = parse_sentence(text, keep_text=True)
        except RecursionError:
            self.error(node, key, f"cannot parse template {_short(text)}: brackets nested too deep")
            return None
        except Exception as exc:  # hassil raises ParseError, AssertionError, IndexError for bad syntax
            self.error(node, key, f"cannot parse template {_short(text)}: {_hassil_message(exc)}")
            return None
        if templates is not None:
            templates.append(_Use(sentence.expression, node, key))
        return sentence

    # -- the intents file

    def document(self, root, extra_lists: dict[str, SlotList], lists_source: str | None) -> dict:
        if root is None:
            self.errors.append("line 1: (top level): the file is empty; expected language, intents and lists")
            return {}
        top = self.mapping(root, TOP, TOP_KEYS, required=("language", "intents"))
        if top is None:
            return {}
        data = _construct(root)
        language = self.string(top["language"][1], "language") if "language" in top else None
        global_lists = self.lists(top["lists"][1], "lists") if "lists" in top else {}
        global_rules = self.rules(top["expansion_rules"][1], "expansion_rules") if "expansion_rules" in top else {}
        if "skip_words" in top:
            self.strings(top["skip_words"][1], "skip_words")
        if "settings" in top:
            self.settings(top["settings"][1], "settings", ("ignore_whitespace", "filter_with_regex"))
        if "responses" in top:
            self.mapping(top["responses"][1], "responses")
        resolver = _Resolver(self, language or "en", lists_source)
        file_lists = {
            **global_lists,
            **{n: _Def(sl, None, f"{lists_source or 'lists'}.{n}") for n, sl in extra_lists.items()},
        }
        intent_names: set[str] = set()
        if "intents" in top:
            intents = self.mapping(top["intents"][1], "intents") or {}
            if not intents and isinstance(top["intents"][1], yaml.MappingNode):
                self.error(top["intents"][1], "intents", "no intents defined")
            intent_names = set(intents)
            for name, (_, inode) in intents.items():
                self.intent(inode, f"intents.{name}", file_lists, global_rules, resolver)
        if "out_of_scope" in top:
            oos: list[_Use] = []
            for i, s in enumerate(self.seq(top["out_of_scope"][1], "out_of_scope") or []):
                self.template(s, f"out_of_scope[{i}]", oos)
            resolver.check(oos, file_lists, global_rules, {}, {})
        if "tests" in top:
            self.tests(top["tests"][1], intent_names, data)
        resolver.report_home_lists()
        return data

    def intent(self, node, key, file_lists, global_rules, resolver) -> None:
        m = self.mapping(node, key, ("data",), required=("data",))
        if m is None or "data" not in m:
            return
        blocks = self.seq(m["data"][1], f"{key}.data")
        if blocks is None:
            return
        said = 0
        for b, bnode in enumerate(blocks):
            bkey = f"{key}.data[{b}]"
            block = self.mapping(bnode, bkey, DATA_KEYS, required=("sentences",))
            if block is None:
                said += 1  # reported already; no second "no template" error
                continue
            local_lists = self.lists(block["lists"][1], f"{bkey}.lists") if "lists" in block else {}
            local_rules = (
                self.rules(block["expansion_rules"][1], f"{bkey}.expansion_rules") if "expansion_rules" in block else {}
            )
            found: list[_Use] = []
            if "sentences" in block:
                sentences = self.seq(block["sentences"][1], f"{bkey}.sentences")
                said += 1 if sentences is None else len(sentences)
                for s, snode in enumerate(sentences or []):
                    self.template(snode, f"{bkey}.sentences[{s}]", found)
            self.block_fields(block, bkey)
            resolver.check(found, file_lists, global_rules, local_lists, local_rules, bkey)
        if not said:
            self.error(
                m["data"][1],
                f"{key}.data",
                "empty; expected at least one block with sentences"
                if not blocks
                else "no templates in any block (every sentences: list is empty)",
            )

    def block_fields(self, block, bkey) -> None:
        for k in ("slots", "requires_context", "excludes_context"):
            if k in block:
                self.mapping(block[k][1], f"{bkey}.{k}")
        for k in ("response", "inferred_domain"):
            if k in block and not self.optional(block[k][1]):
                self.string(block[k][1], f"{bkey}.{k}")
        if "metadata" in block and not self.optional(block["metadata"][1]):
            self.mapping(block["metadata"][1], f"{bkey}.metadata")
        for k in ("required_keywords", "name_domains"):
            if k in block:
                self.strings(block[k][1], f"{bkey}.{k}")
        if "settings" in block:
            self.settings(block["settings"][1], f"{bkey}.settings", ("filter_with_regex",))

    def settings(self, node, key, allowed) -> None:
        for name, (_, v) in (self.mapping(node, key, allowed) or {}).items():
            self.scalar(v, f"{key}.{name}", ("bool",), "true or false")

    def lists(self, node, key) -> dict[str, _Def]:
        out: dict[str, _Def] = {}
        for name, (_, lnode) in (self.mapping(node, key) or {}).items():
            out[name] = _Def(self.slot_list(lnode, f"{key}.{name}", name), lnode, f"{key}.{name}")
        return out

    def slot_list(self, lnode, lkey, name) -> SlotList | None:
        before = len(self.errors)
        m = self.mapping(lnode, lkey, LIST_KEYS)
        if m is None:
            return None
        kinds = [k for k in LIST_KEYS if k in m]
        if len(kinds) != 1 and set(kinds) != {"values", "wildcard"}:
            self.error(lnode, lkey, "expected exactly one of values (a list), range (from/to) or wildcard: true")
            return None
        if "values" in m:
            values = self.seq(m["values"][1], f"{lkey}.values")
            if values is not None and not values:
                self.error(m["values"][1], f"{lkey}.values", "empty; expected at least one value")
            for i, vnode in enumerate(values or []):
                self.list_value(vnode, f"{lkey}.values[{i}]")
        if "wildcard" in m:
            if (
                self.scalar(m["wildcard"][1], f"{lkey}.wildcard", ("bool",), "true or false") is False
                and "values" not in m
            ):
                self.error(m["wildcard"][1], f"{lkey}.wildcard", "false makes an empty list; give values or range")
        if "range" in m:
            self.range(m["range"][1], f"{lkey}.range")
        if len(self.errors) != before:
            return None
        try:  # hassil's own reading of the list
            return Intents.from_dict({"language": "en", "intents": {}, "lists": {name: _construct(lnode)}}).slot_lists[
                name
            ]
        except Exception as exc:
            self.error(lnode, lkey, _hassil_message(exc))
            return None

    def list_value(self, vnode, vkey) -> None:
        if isinstance(vnode, yaml.ScalarNode):
            text = self.string(vnode, vkey)
            if text is not None and is_template(text):  # hassil parses a value only when it has template syntax
                self.template(vnode, vkey)
            return
        v = self.mapping(vnode, vkey, ("in", "out", "context", "metadata"), required=("in",))
        if not v:
            return
        if "in" in v:
            text = self.string(v["in"][1], f"{vkey}.in")
            if text is not None and is_template(text):
                self.template(v["in"][1], f"{vkey}.in")
        if "out" in v and not isinstance(v["out"][1], yaml.ScalarNode):
            self.error(v["out"][1], f"{vkey}.out", f"expected a value (text or number), got {_kind(v['out'][1])}")
        for k in ("context", "metadata"):
            if k in v and not self.optional(v[k][1]):
                self.mapping(v[k][1], f"{vkey}.{k}")

    def range(self, node, key) -> None:
        m = self.mapping(node, key, RANGE_KEYS, required=("from", "to"))
        if m is None:
            return
        nums = {}
        for k in ("from", "to", "step"):
            if k in m:
                nums[k] = self.scalar(m[k][1], f"{key}.{k}", ("int",), "a whole number")
        if nums.get("from") is not None and nums.get("to") is not None and nums["from"] > nums["to"]:
            self.error(node, key, f"from ({nums['from']}) is greater than to ({nums['to']})")
        if nums.get("step") is not None and nums["step"] <= 0:
            self.error(m["step"][1], f"{key}.step", "must be a positive whole number")
        for k, allowed in (("type", ("number", "percentage", "temperature")), ("fractions", ("halves", "tenths"))):
            if k in m and not (k == "fractions" and self.optional(m[k][1])):
                v = self.string(m[k][1], f"{key}.{k}")
                if v is not None and v not in allowed:
                    self.error(m[k][1], f"{key}.{k}", f"{v!r}; allowed: {', '.join(allowed)}")
        if "multiplier" in m and not self.optional(m["multiplier"][1]):
            self.scalar(m["multiplier"][1], f"{key}.multiplier", ("int", "float"), "a number")
        flags = {
            k: self.scalar(m[k][1], f"{key}.{k}", ("bool",), "true or false") for k in ("digits", "words") if k in m
        }
        if flags.get("digits") is False and flags.get("words") is False:
            self.error(node, key, "digits: false and words: false leave no way to say a number")
        if "words_language" in m and not self.optional(m["words_language"][1]):
            self.string(m["words_language"][1], f"{key}.words_language")

    def rules(self, node, key) -> dict[str, _Def]:
        return {
            name: _Def(self.template(rnode, f"{key}.{name}"), rnode, f"{key}.{name}")
            for name, (_, rnode) in (self.mapping(node, key) or {}).items()
        }

    def tests(self, node, intent_names, data) -> None:
        for t, tnode in enumerate(self.seq(node, "tests") or []):
            key = f"tests[{t}]"
            m = self.mapping(tnode, key, TEST_KEYS, required=("sentences", "intent"))
            if not m or "sentences" not in m or "intent" not in m:
                continue
            ok = self.strings(m["sentences"][1], f"{key}.sentences") is not None
            if "response" in m and isinstance(m["response"][1], yaml.SequenceNode):
                self.strings(m["response"][1], f"{key}.response")
            elif "response" in m:
                self.string(m["response"][1], f"{key}.response")
            im = self.mapping(m["intent"][1], f"{key}.intent", ("name", "slots", "context"), required=("name",))
            if im is None or "name" not in im:
                continue
            name = self.string(im["name"][1], f"{key}.intent.name")
            if name is not None and name not in intent_names:
                self.error(
                    im["name"][1],
                    f"{key}.intent.name",
                    f"{name!r} is not an intent of this file (intents: {', '.join(sorted(intent_names))})",
                )
                ok = False
            for k in ("slots", "context"):
                if k in im:
                    ok = self.mapping(im[k][1], f"{key}.intent.{k}") is not None and ok
            if ok:
                self.test_lines.append((data["tests"][t], tnode.start_mark.line + 1))

    # -- the user's lists file

    def lists_file(self, root) -> dict[str, SlotList]:
        if root is None:
            self.errors.append("line 1: (top level): the file is empty; expected lists: or fixtures:")
            return {}
        top = self.mapping(root, TOP)
        if top is None:
            return {}
        fixtures = top.get("fixtures", (None, root))[1]
        if "lists" in top:
            self.mapping(root, TOP, ("language", "lists"))
            found = {n: d.slot_list for n, d in self.lists(top["lists"][1], "lists").items() if d.slot_list is not None}
            raw = yaml.safe_load(yaml.serialize(top["lists"][1])) or {}
            self.raw_lists = {n: raw[n] for n in found if n in raw}
            return found
        prefix = "fixtures" if "fixtures" in top else TOP
        if "fixtures" in top:
            self.mapping(root, TOP, ("language", "fixtures"))
        # timers and media are the state Home Assistant's tests answer questions from, not names said
        m = self.mapping(fixtures, prefix, ("language", "areas", "floors", "entities", "timers", "media"))
        if m is None:
            return {}
        if not {"areas", "floors", "entities"} & set(m):
            self.error(
                fixtures,
                prefix,
                "expected lists: {name: ..., area: ...} or Home Assistant's fixtures (areas, floors, entities)",
            )
            return {}
        sub = (lambda k: k) if prefix == TOP else (lambda k: f"fixtures.{k}")
        # As Home Assistant's tests read fixtures: all three lists, empty where the home has none (no floors).
        out: dict[str, SlotList] = {}
        for kind, slot, allowed in (
            ("areas", "area", ("name", "id", "floor", "aliases")),
            ("floors", "floor", ("name", "id", "aliases")),
            ("entities", "name", None),
        ):
            items = self.fixture_items(m[kind][1], sub(kind), allowed) if kind in m else []
            values = [(s, s, _entity_context(item) if allowed is None else None) for said, item in items for s in said]
            out[slot] = TextSlotList.from_tuples(values, allow_template=False, name=slot)
            self.raw_lists[slot] = {
                "values": [
                    {"in": said, "out": value, **({"context": ctx} if ctx else {})}
                    for said, value, ctx in values
                    if not is_template(said)
                ]
            }
        return out

    def fixture_items(self, node, key, allowed) -> Iterator[tuple[list[str], dict]]:
        for i, inode in enumerate(self.seq(node, key) or []):
            ikey = f"{key}[{i}]"
            m = self.mapping(inode, ikey, allowed, required=("name",))
            if not m or "name" not in m:
                continue
            if allowed is None:  # an entity: its domain names what it is
                if "domain" not in m and "id" not in m:
                    self.error(inode, ikey, "missing 'domain' (light, cover, ...) or an 'id' such as light.kitchen")
                    continue
                for k in ("domain", "id", "area"):
                    if k in m:
                        self.string(m[k][1], f"{ikey}.{k}")
                if "attributes" in m:
                    self.mapping(m["attributes"][1], f"{ikey}.attributes")
            text = self.string(m["name"][1], f"{ikey}.name")
            sentence = self.template(m["name"][1], f"{ikey}.name") if text is not None and is_template(text) else None
            if text is None or (sentence is None and is_template(text)):
                continue
            said = _ways_to_say(sentence, text)
            if said is None:
                self.error(m["name"][1], f"{ikey}.name", "a name may use (a|b) and [optional], not lists or rules")
                continue
            yield said, _construct(inode)


@dataclasses.dataclass
class _Def:
    """A rule or list definition where it was written (``node`` None: from the user's lists file)."""

    body: Any
    """Sentence for a rule, SlotList for a list; None when it is malformed (already reported)."""
    node: yaml.Node | None
    key: str

    @property
    def slot_list(self) -> SlotList | None:
        return self.body


@dataclasses.dataclass
class _Use:
    """A template, where it was written."""

    expression: Expression
    node: yaml.Node
    key: str


class _Resolver:
    """References resolved at their point of use, as hassil's matcher does.

    For each block the lists are ``{**file, **user's, **block}`` and the rules
    ``{**file, **block}`` (hassil's ``recognize_all``), and a rule body or list value is
    resolved in the block that reaches it.  Each definition is resolved once per set of
    block-local definitions (memoised), so rules that use each other many times over
    cost one visit each, and a cycle is found on the way.
    """

    def __init__(self, checker: _Checker, language: str, lists_source: str | None):
        self.checker = checker
        self.language = language
        self.lists_source = lists_source
        self.memos: dict[str, dict] = {}
        self.home_uses: dict[str, list[_Use]] = {}

    def check(self, uses: list[_Use], file_lists, file_rules, local_lists, local_rules, block: str = "") -> None:
        """Resolve the references of ``uses``, templates of the block named ``block`` ("" for none: the file's)."""
        lists = {**file_lists, **local_lists}
        rules = {**file_rules, **local_rules}
        memo = self.memos.setdefault(block if local_lists or local_rules else "", {})
        for use in uses:
            problems = self._expression(use.expression, lists, rules, memo, [])
            for problem, via in problems.items():
                self._report(problem, via, use, local_lists, local_rules, lists, rules)

    # problems: {("rule"|"list", name) | ("cycle", names) | ("words", list name) | ("inline", text): via chain}

    def _expression(self, expr, lists, rules, memo, stack) -> dict:
        out: dict = {}
        for ref in _references(expr):
            if isinstance(ref, RuleReference):
                found = self._definition("rule", ref.rule_name, lists, rules, memo, stack)
            elif ref.list_name in lists:
                found = self._definition("list", ref.list_name, lists, rules, memo, stack)
            elif ref.is_inline_range:
                found = self._inline(ref)
            else:
                found = {("list", ref.list_name): ()}
            for problem, via in found.items():
                out.setdefault(problem, via)
        return out

    def _definition(self, kind, name, lists, rules, memo, stack) -> dict:
        key = (kind, name)
        if key in memo:
            return memo[key]
        table = rules if kind == "rule" else lists
        if name not in table:
            return {key: ()}
        if key in stack:
            loop = stack[stack.index(key) :] + [key]
            return {("cycle", tuple(loop)): ()}
        if len(stack) >= MAX_REFERENCE_DEPTH:
            return {("deep", tuple(stack[:3] + [key])): ()}
        body = table[name].body
        stack.append(key)
        found: dict = {}
        if kind == "rule" and body is not None:
            found = self._expression(body.expression, lists, rules, memo, stack)
        elif isinstance(body, TextSlotList):
            for value in body.values:
                for problem, via in self._expression(value.text_in, lists, rules, memo, stack).items():
                    found.setdefault(problem, via)
        elif (
            isinstance(body, RangeSlotList) and body.words and not self._has_words(body.words_language or self.language)
        ):
            found = {("words", name): ()}
        stack.pop()
        result = {problem: (key,) + via if problem[0] in ("rule", "list") else via for problem, via in found.items()}
        memo[key] = result
        return result

    def _inline(self, ref: ListReference) -> dict:
        start, stop, step = ref.get_inline_range()
        if start > stop or step <= 0:
            return {
                ("inline", f"{{{ref.list_name}:{ref.slot_name}}} counts from {start} to {stop} in steps of {step}"): ()
            }
        if not self._has_words(self.language):
            return {("words", ref.list_name): ()}
        return {}

    def _has_words(self, language: str) -> bool:
        if language not in self.checker._engines:
            from hassil.numbers import get_rbnf_engine

            try:
                get_rbnf_engine(language)
                self.checker._engines[language] = True
            except Exception:  # unicode-rbnf has no rules for it
                self.checker._engines[language] = False
        return self.checker._engines[language]

    def _report(self, problem, via, use: _Use, local_lists, local_rules, lists, rules) -> None:
        kind, name = problem
        through = f" (through {' -> '.join(_ref(*v) for v in via)})" if via else ""
        c = self.checker
        if kind == "list" and name in HOME_LISTS and name not in lists:
            self.home_uses.setdefault(name, []).append(use)
        elif kind in ("rule", "list"):
            section = "expansion_rules" if kind == "rule" else "lists"
            local = local_rules if kind == "rule" else local_lists
            where = (
                f"defined neither in this block's {section} nor under the file's {section}"
                if local
                else f"not defined under {section}"
            )
            defined = sorted(n for n in (rules if kind == "rule" else lists))
            c.error(
                use.node,
                use.key,
                f"uses {_ref(kind, name)}{through}, which is {where}"
                + (f" (defined: {', '.join(defined[:12])}{', ...' if len(defined) > 12 else ''})" if defined else ""),
            )
        elif kind == "cycle":
            first = name[0]
            d = (rules if first[0] == "rule" else lists)[first[1]]
            node, key = (d.node, d.key) if d.node is not None else (use.node, use.key)
            c.error(node, key, "refers to itself: " + " -> ".join(_ref(*n) for n in name))
        elif kind == "deep":
            c.error(
                use.node,
                use.key,
                f"rules and lists used within each other more than {MAX_REFERENCE_DEPTH} deep "
                f"({' -> '.join(_ref(*n) for n in name)} -> ...)",
            )
        elif kind == "words":
            d = lists.get(name)
            node, key = (d.node, f"{d.key}.range") if d is not None and d.node is not None else (use.node, use.key)
            c.error(
                node,
                key,
                f"no number words for language {self.language!r} (hassil's number rules have none); "
                "set words: false, or words_language",
            )
        elif kind == "inline":
            c.error(use.node, use.key, f"{name}: the start must not exceed the end, and the step must be positive")

    def report_home_lists(self) -> None:
        if not self.home_uses:
            return
        names = sorted(self.home_uses, key=HOME_LISTS.index)
        first = min((u for uses in self.home_uses.values() for u in uses), key=lambda u: u.node.start_mark.line)
        count = sum(len(u) for u in self.home_uses.values())
        said = ", ".join(f"{{{n}}}" for n in names)
        given = (
            f"the lists file {self.lists_source} has no {' / '.join(names)} list"
            if self.lists_source
            else "Home Assistant fills them from your devices, areas and floors"
        )
        self.checker.error(
            first.node,
            first.key,
            f"{count} template(s) use {said} and {given}: pass your own with --lists FILE, "
            f"either hassil lists:\n{_indent(LISTS_EXAMPLE)}\n    or Home Assistant's fixtures "
            "(fixtures: {areas: [{name: Kitchen}], entities: [{name: Kitchen Light, domain: light}]})",
        )


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.splitlines())


def _ref(kind: str, name: str) -> str:
    return f"<{name}>" if kind == "rule" else f"{{{name}}}"


def _references(expr: Expression) -> Iterator[RuleReference | ListReference]:
    """The rule and list references of one expression (not through rules), without recursion."""
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, Group):
            stack.extend(reversed(e.items))
        elif isinstance(e, (RuleReference, ListReference)):
            yield e


def _ways_to_say(sentence: Sentence | None, text: str) -> list[str] | None:
    """Every text of a template without lists or rules (a fixture name such as "(TV|telly)")."""
    if sentence is None:
        return [text.strip()]
    if any(True for _ in _references(sentence.expression)):
        return None
    from hassil.sample import sample_expression

    return list(dict.fromkeys(" ".join(s.split()) for s in sample_expression(sentence.expression)))


def _entity_context(entity: dict) -> dict:
    """hassil value context of a fixtures entity: its domain and attributes, as Home Assistant's tests build it."""
    domain = entity.get("domain") or str(entity.get("id", "")).split(".", 1)[0]
    extra = {
        k: v for k, v in entity.items() if k not in ("name", "id", "domain", "area", "state", "attributes", "aliases")
    }
    return {"domain": domain, **extra, **(entity.get("attributes") or {})}


def _kind(node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = node.tag.rsplit(":", 1)[-1]
    return {
        "str": "empty text" if not node.value.strip() else "text",
        "int": "a number",
        "float": "a number",
        "bool": "true/false",
        "null": "nothing",
    }.get(tag, tag) + (f" ({_short(node.value)})" if node.value else "")


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _hassil_message(exc: Exception) -> str:
    # hassil wraps the template in a group and reports positions in that: leave them out.
    msg = re.sub(r" from index \d+| in: .*$", "", str(exc) or type(exc).__name__)
    if type(exc).__name__ == "ParseExpressionError":
        msg = "unbalanced brackets or a misplaced '|' / ';'"
    elif isinstance(exc, AssertionError):
        msg = msg if msg != "AssertionError" else "invalid structure"
        if "sequence" in msg:
            msg = "a permutation (a;b) must hold plain parts, not alternatives"
    return msg


def walk(expr: Expression, rules: dict | None = None) -> Iterator[Expression]:
    """Every node of a parsed template, through rule bodies when ``rules`` is given (each rule's body once)."""
    seen: set[str] = set()
    stack = [expr]
    while stack:
        e = stack.pop()
        yield e
        if isinstance(e, Group):
            stack.extend(reversed(e.items))
        elif isinstance(e, RuleReference) and rules and e.rule_name not in seen and rules.get(e.rule_name) is not None:
            seen.add(e.rule_name)
            stack.append(rules[e.rule_name].expression)
