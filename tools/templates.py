"""Home Assistant intent files -> labelled training sentences for ``edge-train INTENTS.yaml``.

The file is the YAML Home Assistant uses for its intents (github.com/home-assistant/intents), read
and parsed by ``hassil``, Home Assistant's own template library, so a file that works there
trains here, with the same template syntax: alternatives ``(a|b)``, optionals ``[word]``,
permutations ``(a;b)``, slots ``{list}`` / ``{list:slot}``, rules ``<rule>``::

    language: en
    intents:
      LightOn:
        data:
          - sentences:
              - "turn on [the] lights in [the] {area}"
              - "<switch_on> the {area} lights"
    lists:
      area:
        values:
          - kitchen
          - in: "(living room|lounge)"        # synonyms ...
            out: living_room                  # ... one canonical value
      brightness:
        range: {from: 0, to: 100}             # "50" and "fifty"
      item:
        wildcard: true                        # free text: filled with sample words for training
    expansion_rules:
      switch_on: "(turn|switch) on"
    skip_words: [please, "can you"]
    out_of_scope:                              # edge only: sentences that are none of the intents
      - "what's the weather like"
    tests:                                     # as in Home Assistant's tests/ files
      - sentences: ["switch on the lounge lights"]
        intent: {name: LightOn, slots: {area: living_room}}

hassil's ``Intents.from_dict`` reports a malformed file with a KeyError or an assertion, so the
file is first checked here against the structure above, node by node on the YAML parser's own
tree (``yaml.compose``), and every problem is reported with its line and key path at once.

Expansion walks hassil's parsed templates (its ``sample`` module enumerates text only; we need
to know which characters came from which ``{list}``), labels slot spans with their canonical
value (``out``), balances the intents (the same number of sentences each, spread over their
templates so that a template with a 100-value list does not crowd out the others), and holds
out expansions for model selection and evaluation. ``tools/augment.py`` then makes a share of
the training sentences look like speech-recogniser output.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import random
import re
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml
from hassil.expression import (Alternative, Expression, ListReference, Permutation, RuleReference, Sentence,
                               Sequence, TextChunk)
from hassil.intents import Intents, RangeSlotList, SlotList, TextSlotList, WildcardSlotList
from hassil.parse_expression import parse_sentence

from tools.augment import FILLERS, augment
from tools.data import DataError, Entity, Example

TOP_KEYS = {"language": "the language code, e.g. en", "intents": "intent name -> {data: [...]}",
            "lists": "slot lists (values, range or wildcard)", "expansion_rules": "rule name -> template",
            "skip_words": "words said around commands", "settings": "hassil settings",
            "out_of_scope": "sentences that are none of the intents", "tests": "test sentences with intent and slots"}
DATA_KEYS = ("sentences", "slots", "requires_context", "excludes_context", "expansion_rules", "lists", "response",
             "metadata", "required_keywords", "inferred_domain", "name_domains", "settings")
LIST_KEYS = ("values", "range", "wildcard")
RANGE_KEYS = ("from", "to", "step", "type", "fractions", "multiplier", "digits", "words", "words_language")
TEST_KEYS = ("sentences", "intent", "response", "context", "metadata")
TOP = "(top level)"
MAX_SYNONYMS = 200
"""Surface forms per list value recorded for canonical lookup (a template value can expand to many)."""
MAX_RANGE_VALUES = 2000
"""Numbers of a range list recorded for canonical lookup ("twenty five" -> 25)."""


class TemplateError(DataError):
    """The intents file is malformed; the message names every problem with its line and key."""


# --------------------------------------------------------------------------- loading and checking


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
    """hassil's parsed file."""
    out_of_scope: list[Sentence]
    tests: list[TestCase]

    @property
    def language(self) -> str:
        return self.intents.language


def load(path: str | Path) -> IntentsFile:
    """Read, check and parse an intents file; :class:`TemplateError` lists every problem found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path}: cannot read the intents file ({exc})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise TemplateError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    check = _Checker(path)
    data = check.document(root)
    if check.errors:
        errors = sorted(dict.fromkeys(check.errors), key=lambda e: int(e.split()[1].rstrip(":")))
        raise TemplateError(f"{path}: {len(errors)} problem(s):\n  " + "\n  ".join(errors))
    intents = Intents.from_dict(data)
    oos = [parse_sentence(t, keep_text=True) for t in data.get("out_of_scope") or []]
    tests = [TestCase(s, t["intent"]["name"], dict(t["intent"].get("slots") or {}), line)
             for t, line in check.test_lines for s in t["sentences"]]
    return IntentsFile(path, intents, oos, tests)


class _Checker:
    """Walks the YAML node tree: types, allowed keys, template syntax, and that every {list} and <rule> exists."""

    def __init__(self, path: Path):
        self.path = path
        self.errors: list[str] = []
        self.test_lines: list[tuple[dict, int]] = []
        self.rule_nodes: dict[str, yaml.Node] = {}

    def error(self, node: yaml.Node, key: str, problem: str) -> None:
        self.errors.append(f"line {node.start_mark.line + 1}: {key}: {problem}")

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

    def scalar(self, node, key: str, tag: str, what: str):
        if not isinstance(node, yaml.ScalarNode) or node.tag != f"tag:yaml.org,2002:{tag}":
            self.error(node, key, f"expected {what}, got {_kind(node)}")
            return None
        return yaml.safe_load(yaml.serialize(node))

    def template(self, node, key: str, templates: list) -> None:
        text = self.string(node, key)
        if text is None:
            return
        try:
            templates.append((parse_sentence(text, keep_text=True), node, key))
        except Exception as exc:  # hassil raises ParseError, AssertionError, IndexError for bad syntax
            self.error(node, key, f"cannot parse template {text!r}: {_hassil_message(exc)}")

    # -- the document

    def document(self, root) -> dict:
        if root is None:
            self.errors.append("line 1: the file is empty; expected language, intents and lists")
            return {}
        top = self.mapping(root, TOP, TOP_KEYS, required=("language", "intents"))
        if top is None:
            return {}
        data = yaml.safe_load(yaml.serialize(root))
        templates: list[tuple[Sentence, yaml.Node, str]] = []
        if "language" in top:
            self.string(top["language"][1], "language")
        global_lists = self.lists(top["lists"][1], "lists") if "lists" in top else {}
        global_rules = self.rules(top["expansion_rules"][1], "expansion_rules") if "expansion_rules" in top else {}
        if "skip_words" in top:
            for i, w in enumerate(self.seq(top["skip_words"][1], "skip_words") or []):
                self.string(w, f"skip_words[{i}]")
        if "settings" in top:
            self.mapping(top["settings"][1], "settings", ("ignore_whitespace", "filter_with_regex"))
        intent_names: set[str] = set()
        if "intents" in top:
            intents = self.mapping(top["intents"][1], "intents") or {}
            if not intents and isinstance(top["intents"][1], yaml.MappingNode):
                self.error(top["intents"][1], "intents", "no intents defined")
            intent_names = set(intents)
            for name, (_, inode) in intents.items():
                self.intent(inode, f"intents.{name}", global_lists, global_rules, templates)
        if "out_of_scope" in top:
            oos = []
            for i, s in enumerate(self.seq(top["out_of_scope"][1], "out_of_scope") or []):
                self.template(s, f"out_of_scope[{i}]", oos)
            self.references(oos, global_lists, global_rules)
        if "tests" in top:
            self.tests(top["tests"][1], intent_names, data)
        self.cycles(global_rules)
        return data

    def intent(self, node, key, global_lists, global_rules, templates) -> None:
        m = self.mapping(node, key, ("data",), required=("data",))
        if m is None or "data" not in m:
            return
        blocks = self.seq(m["data"][1], f"{key}.data") or []
        if not blocks and isinstance(m["data"][1], yaml.SequenceNode):
            self.error(m["data"][1], f"{key}.data", "empty; expected at least one block with sentences")
        for b, bnode in enumerate(blocks):
            bkey = f"{key}.data[{b}]"
            block = self.mapping(bnode, bkey, DATA_KEYS, required=("sentences",))
            if block is None:
                continue
            lists = {**global_lists, **(self.lists(block["lists"][1], f"{bkey}.lists") if "lists" in block else {})}
            rules = {**global_rules,
                     **(self.rules(block["expansion_rules"][1], f"{bkey}.expansion_rules") if "expansion_rules" in block else {})}
            found: list = []
            if "sentences" in block:
                sentences = self.seq(block["sentences"][1], f"{bkey}.sentences") or []
                if not sentences and isinstance(block["sentences"][1], yaml.SequenceNode):
                    self.error(block["sentences"][1], f"{bkey}.sentences", "empty; expected at least one template")
                for s, snode in enumerate(sentences):
                    self.template(snode, f"{bkey}.sentences[{s}]", found)
            if "slots" in block:
                self.mapping(block["slots"][1], f"{bkey}.slots")
            self.references(found, lists, rules)
            if "expansion_rules" in block:
                self.cycles(rules)
            templates.extend(found)

    def lists(self, node, key) -> dict[str, SlotList | None]:
        out: dict[str, SlotList | None] = {}
        for name, (_, lnode) in (self.mapping(node, key) or {}).items():
            lkey = f"{key}.{name}"
            before = len(self.errors)
            m = self.mapping(lnode, lkey, LIST_KEYS)
            out[name] = None
            if m is None:
                continue
            kinds = [k for k in LIST_KEYS if k in m]
            if len(kinds) != 1 and not (set(kinds) == {"values", "wildcard"}):
                self.error(lnode, lkey, "expected exactly one of values (a list), range (from/to) or wildcard: true")
                continue
            if "values" in m:
                values = self.seq(m["values"][1], f"{lkey}.values")
                if values is not None and not values:
                    self.error(m["values"][1], f"{lkey}.values", "empty; expected at least one value")
                for i, vnode in enumerate(values or []):
                    vkey = f"{lkey}.values[{i}]"
                    if isinstance(vnode, yaml.ScalarNode):
                        self.template(vnode, vkey, [])
                        continue
                    v = self.mapping(vnode, vkey, ("in", "out", "context", "metadata"), required=("in",))
                    if v and "in" in v:
                        self.template(v["in"][1], f"{vkey}.in", [])
                    if v and "out" in v and not isinstance(v["out"][1], yaml.ScalarNode):
                        self.error(v["out"][1], f"{vkey}.out", f"expected a value (text or number), got {_kind(v['out'][1])}")
            elif "range" in m:
                self.range(m["range"][1], f"{lkey}.range")
            elif "wildcard" in m:
                if self.scalar(m["wildcard"][1], f"{lkey}.wildcard", "bool", "true or false") is False:
                    self.error(m["wildcard"][1], f"{lkey}.wildcard", "false makes an empty list; give values or range")
            if len(self.errors) == before:
                try:
                    out[name] = Intents.from_dict({"language": "en", "intents": {},
                                                   "lists": {name: yaml.safe_load(yaml.serialize(lnode))}}).slot_lists[name]
                except Exception as exc:  # hassil's own checks
                    self.error(lnode, lkey, _hassil_message(exc))
        return out

    def range(self, node, key) -> None:
        m = self.mapping(node, key, RANGE_KEYS, required=("from", "to"))
        if m is None:
            return
        nums = {}
        for k in ("from", "to", "step"):
            if k in m:
                nums[k] = self.scalar(m[k][1], f"{key}.{k}", "int", "a whole number")
        if nums.get("from") is not None and nums.get("to") is not None and nums["from"] > nums["to"]:
            self.error(node, key, f"from ({nums['from']}) is greater than to ({nums['to']})")
        if nums.get("step") is not None and nums["step"] <= 0:
            self.error(m["step"][1], f"{key}.step", "must be a positive whole number")
        for k, allowed in (("type", ("number", "percentage", "temperature")), ("fractions", ("halves", "tenths"))):
            if k in m:
                v = self.string(m[k][1], f"{key}.{k}")
                if v is not None and v not in allowed:
                    self.error(m[k][1], f"{key}.{k}", f"{v!r}; allowed: {', '.join(allowed)}")
        for k in ("digits", "words"):
            if k in m:
                self.scalar(m[k][1], f"{key}.{k}", "bool", "true or false")

    def rules(self, node, key) -> dict[str, Sentence | None]:
        out: dict[str, Sentence | None] = {}
        for name, (_, rnode) in (self.mapping(node, key) or {}).items():
            found: list = []
            self.template(rnode, f"{key}.{name}", found)
            out[name] = found[0][0] if found else None
            self.rule_nodes[name] = rnode
        for name, rule in out.items():
            if rule is not None:
                self.references([(rule, self.rule_nodes[name], f"{key}.{name}")], {}, out, lists_known=False)
        return out

    def references(self, templates, lists, rules, lists_known: bool = True) -> None:
        for sentence, node, key in templates:
            for ref in _walk(sentence.expression):
                if isinstance(ref, RuleReference) and ref.rule_name not in rules:
                    self.error(node, key, f"uses <{ref.rule_name}>, which is not defined under expansion_rules"
                               + (f" (defined: {', '.join(sorted(rules))})" if rules else ""))
                elif isinstance(ref, ListReference) and lists_known and not ref.is_inline_range:
                    if ref.list_name not in lists:
                        self.error(node, key, f"uses {{{ref.list_name}}}, which is not defined under lists"
                                   + (f" (defined: {', '.join(sorted(lists))})" if lists else ""))
            for rule_ref in (r for r in _walk(sentence.expression) if isinstance(r, RuleReference)):
                body = rules.get(rule_ref.rule_name)
                if body is not None and lists_known:
                    for ref in _walk(body.expression, rules):
                        if isinstance(ref, ListReference) and not ref.is_inline_range and ref.list_name not in lists:
                            self.error(node, key, f"uses {{{ref.list_name}}} (through <{rule_ref.rule_name}>), "
                                       "which is not defined under lists")

    def cycles(self, rules) -> None:
        def visit(name, stack):
            if name in stack:
                return stack[stack.index(name):] + [name]
            rule = rules.get(name)
            for ref in (_walk(rule.expression) if rule is not None else ()):
                if isinstance(ref, RuleReference) and ref.rule_name in rules:
                    found = visit(ref.rule_name, stack + [name])
                    if found:
                        return found
            return None

        for name, rule in rules.items():
            loop = visit(name, [])
            if loop and rule is not None:
                self.error(self.rule_nodes[name], f"expansion_rules.{name}", "refers to itself: " + " -> ".join(f"<{r}>" for r in loop))
                return

    def tests(self, node, intent_names, data) -> None:
        for t, tnode in enumerate(self.seq(node, "tests") or []):
            key = f"tests[{t}]"
            m = self.mapping(tnode, key, TEST_KEYS, required=("sentences", "intent"))
            if not m or "sentences" not in m or "intent" not in m:
                continue
            ok = True
            for s, snode in enumerate(self.seq(m["sentences"][1], f"{key}.sentences") or []):
                ok = self.string(snode, f"{key}.sentences[{s}]") is not None and ok
            im = self.mapping(m["intent"][1], f"{key}.intent", ("name", "slots", "context"), required=("name",))
            if im is None or "name" not in im:
                continue
            name = self.string(im["name"][1], f"{key}.intent.name")
            if name is not None and name not in intent_names:
                self.error(im["name"][1], f"{key}.intent.name", f"{name!r} is not an intent of this file "
                           f"(intents: {', '.join(sorted(intent_names))})")
                ok = False
            if "slots" in im:
                ok = self.mapping(im["slots"][1], f"{key}.intent.slots") is not None and ok
            if ok:
                self.test_lines.append((data["tests"][t], tnode.start_mark.line + 1))


def _kind(node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = node.tag.rsplit(":", 1)[-1]
    return {"str": "empty text" if not node.value.strip() else "text", "int": "a number", "float": "a number",
            "bool": "true/false", "null": "nothing"}.get(tag, tag) + (f" ({node.value!r})" if node.value else "")


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


def _walk(expr: Expression, rules: dict | None = None, depth: int = 0) -> Iterator[Expression]:
    """Every node of a parsed template (through rule bodies when ``rules`` is given)."""
    yield expr
    if depth > 40:
        return
    if isinstance(expr, (Sequence, Alternative, Permutation)):
        for item in expr.items:
            yield from _walk(item, rules, depth + 1)
    elif isinstance(expr, RuleReference) and rules and rules.get(expr.rule_name) is not None:
        yield from _walk(rules[expr.rule_name].expression, rules, depth + 1)


# --------------------------------------------------------------------------- expansion with slot spans


class _Slot:
    """One ``{list}`` occurrence in one expansion (identity matters: a sentence may use a list twice)."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: str | None):
        self.name = name
        self.value = value


Piece = tuple[str, "_Slot | None"]


class Expander:
    """Expands hassil templates into text pieces that remember which slot they came from."""

    def __init__(self, intents: Intents, rng: random.Random, wildcard_words: list[str] | None = None):
        from hassil.numbers import get_rbnf_engine

        self.rng = rng
        self.language = intents.language
        self.wildcard_words = wildcard_words or _wildcard_words(intents.language)
        try:
            self._rbnf = get_rbnf_engine(intents.language)
        except Exception:  # a language without number words: digits only
            self._rbnf = None

    # counting (for balancing and for choosing enumeration over sampling)

    def count(self, expr: Expression, lists: dict, rules: dict) -> int:
        if isinstance(expr, TextChunk):
            return 1
        if isinstance(expr, Alternative):
            return sum(self.count(i, lists, rules) for i in expr.items)
        if isinstance(expr, Permutation):
            return math.factorial(len(expr.items)) * math.prod(self.count(i, lists, rules) for i in expr.items)
        if isinstance(expr, Sequence):
            return math.prod(self.count(i, lists, rules) for i in expr.items)
        if isinstance(expr, RuleReference):
            return self.count(rules[expr.rule_name].expression, lists, rules)
        if isinstance(expr, ListReference):
            slot_list = self._list(expr, lists)
            if isinstance(slot_list, TextSlotList):
                return sum(self.count(v.text_in, lists, rules) for v in slot_list.values)
            if isinstance(slot_list, RangeSlotList):
                return len(self._numbers(slot_list)) * len(self._forms(slot_list))
            return 10**6  # wildcard: effectively unbounded
        raise TypeError(f"unexpected template part {expr!r}")

    # random sampling: a uniform choice at every alternative, list value and number

    def sample(self, expr: Expression, lists: dict, rules: dict, owner: _Slot | None = None) -> list[Piece]:
        if isinstance(expr, TextChunk):
            return [(expr.original_text, owner)]
        if isinstance(expr, Alternative):
            return self.sample(self.rng.choice(expr.items), lists, rules, owner)
        if isinstance(expr, Permutation):
            items = list(expr.items)
            self.rng.shuffle(items)
            return [p for i in items for p in self.sample(i, lists, rules, owner)]
        if isinstance(expr, Sequence):
            return [p for i in expr.items for p in self.sample(i, lists, rules, owner)]
        if isinstance(expr, RuleReference):
            return self.sample(rules[expr.rule_name].expression, lists, rules, owner)
        if isinstance(expr, ListReference):
            slot_list = self._list(expr, lists)
            if isinstance(slot_list, TextSlotList):
                value = self.rng.choice(slot_list.values)
                slot = owner or _Slot(expr.slot_name, _out(value.value_out))
                return self.sample(value.text_in, lists, rules, slot)
            if isinstance(slot_list, RangeSlotList):
                numbers = self._numbers(slot_list)
                n = numbers[self.rng.randrange(len(numbers))]
                form = self.rng.choice(self._forms(slot_list))
                return [(self._say(n, form), owner or _Slot(expr.slot_name, _number_value(n, slot_list)))]
            k = self.rng.choice((1, 1, 1, 2, 2, 3))
            return [(" ".join(self.rng.choice(self.wildcard_words) for _ in range(k)), owner or _Slot(expr.slot_name, None))]
        raise TypeError(f"unexpected template part {expr!r}")

    # full enumeration, for templates with fewer expansions than their share

    def enumerate(self, expr: Expression, lists: dict, rules: dict, owner: _Slot | None = None) -> list[list[Piece]]:
        if isinstance(expr, TextChunk):
            return [[(expr.original_text, owner)]]
        if isinstance(expr, Alternative):
            return [e for i in expr.items for e in self.enumerate(i, lists, rules, owner)]
        if isinstance(expr, Permutation):
            parts = [self.enumerate(i, lists, rules, owner) for i in expr.items]
            return [sum(combo, []) for order in itertools.permutations(parts) for combo in itertools.product(*order)]
        if isinstance(expr, Sequence):
            parts = [self.enumerate(i, lists, rules, owner) for i in expr.items]
            return [sum(combo, []) for combo in itertools.product(*parts)]
        if isinstance(expr, RuleReference):
            return self.enumerate(rules[expr.rule_name].expression, lists, rules, owner)
        if isinstance(expr, ListReference):
            slot_list = self._list(expr, lists)
            if isinstance(slot_list, TextSlotList):
                out = []
                for value in slot_list.values:
                    for pieces in self.enumerate(value.text_in, lists, rules, None):
                        slot = owner or _Slot(expr.slot_name, _out(value.value_out))
                        out.append([(t, slot) for t, _ in pieces])
                return out
            if isinstance(slot_list, RangeSlotList):
                return [[(self._say(n, form), owner or _Slot(expr.slot_name, _number_value(n, slot_list)))]
                        for n in self._numbers(slot_list) for form in self._forms(slot_list)]
        return [self.sample(expr, lists, rules, owner)]

    # lists

    def _list(self, ref: ListReference, lists: dict) -> SlotList:
        if ref.is_inline_range:
            start, stop, step = ref.get_inline_range()
            return RangeSlotList(name=ref.slot_name, start=start, stop=stop, step=step)
        return lists[ref.list_name]

    @staticmethod
    def _numbers(r: RangeSlotList) -> list:
        return list(r.get_numbers())

    def _forms(self, r: RangeSlotList) -> tuple[str, ...]:
        forms = (("digits",) if r.digits else ()) + (("words",) if r.words and self._rbnf is not None else ())
        return forms or ("digits",)

    def _say(self, n, form: str) -> str:
        if form == "digits":
            return _number_text(n)
        spelled = self._rbnf.format_number(n).text_by_ruleset
        return (spelled.get("spellout-cardinal") or next(iter(spelled.values()))).replace("-", " ")

    def number_forms(self, r: RangeSlotList) -> Iterator[tuple[str, str]]:
        """(said, canonical value) for every number of a range list and every way it can be said."""
        for n in self._numbers(r)[:MAX_RANGE_VALUES]:
            for form in ("digits", "words") if self._rbnf is not None else ("digits",):
                yield self._say(n, form), _number_value(n, r)


def _out(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _number_text(n) -> str:
    return str(int(n)) if float(n).is_integer() else str(n)


def _number_value(n, r: RangeSlotList) -> str:
    return _number_text(n * r.multiplier if r.multiplier is not None else n)


def _wildcard_words(language: str) -> list[str]:
    """Stand-ins for free text (shopping items, names): frequent words of the language."""
    import wordfreq

    words = [w for w in wordfreq.top_n_list(language.split("-")[0].split("_")[0], 6000) if w.isalpha() and len(w) > 2]
    if language.startswith("en"):
        # Only words the recogniser can say: they also go into the STT language model.
        from pocketsphinx import get_model_path

        from edge.stt.adapt import read_dictionary

        known = read_dictionary(Path(get_model_path("en-us/cmudict-en-us.dict")))
        words = [w for w in words if w in known]
    return words[200:] or ["thing"]


def to_example(pieces: list[Piece], intent: str | None) -> Example:
    """Join pieces with hassil's whitespace rule (runs collapse to one space) and locate each slot."""
    chars: list[str] = []
    owners: list[_Slot | None] = []
    for text, slot in pieces:
        for ch in text:
            if ch.isspace():
                if not chars or chars[-1] == " ":
                    continue
                ch = " "
            chars.append(ch)
            owners.append(slot)
    while chars and chars[-1] == " ":
        chars.pop()
        owners.pop()
    text = "".join(chars)
    spans: dict[int, list] = {}
    for i, (ch, slot) in enumerate(zip(chars, owners)):
        if slot is not None and ch != " ":
            span = spans.setdefault(id(slot), [i, i + 1, slot])
            span[1] = i + 1
    entities = []
    for start, end, slot in sorted(spans.values(), key=lambda s: s[0]):
        said = text[start:end]
        entities.append(Entity(start, end, slot.name, slot.value if slot.value is not None else said))
    return Example(text, intent, tuple(entities))


# --------------------------------------------------------------------------- the training set


@dataclasses.dataclass
class Expansion:
    """What ``edge-train`` needs from an intents file."""

    train: list[Example]
    dev: list[Example]
    """Held-out expansions in spoken form, for choosing the epoch and calibrating out-of-scope rejection."""
    heldout: list[Example]
    """Other held-out expansions, written form, for the package's metrics."""
    tests: list[Example]
    """The file's ``tests:`` sentences, with slot spans located in the text."""
    slot_values: dict[str, dict[str, str]]
    """Per slot: said (lower case) -> canonical value, for the runtime."""
    sentences: list[str]
    """Clean expansions for the speech recognisers' domain adaptation."""
    info: dict
    warnings: list[str]


def expand_intents_file(path: str | Path, per_intent: int = 200, seed: int = 13, dev_per_intent: int = 30,
                        heldout_per_intent: int = 30, stt_per_intent: int = 600, written_share: float = 0.3) -> Expansion:
    """Expand, balance, hold out, augment: the labelled data for one intents file."""
    f = load(path)
    rng = random.Random(seed)
    ex = Expander(f.intents, rng)
    glob_lists, glob_rules = f.intents.slot_lists, f.intents.expansion_rules
    warnings: list[str] = []
    train, dev, heldout, sentences, counts = [], [], [], [], {}
    fillers = tuple(dict.fromkeys(FILLERS + tuple(w.lower() for w in f.intents.skip_words)))
    blocks = {name: [(s, {**glob_lists, **d.slot_lists}, {**glob_rules, **d.expansion_rules})
                     for d in intent.data for s in d.sentences] for name, intent in f.intents.intents.items()}
    blocks[None] = [(s, glob_lists, glob_rules) for s in f.out_of_scope]
    for name, templates in blocks.items():
        if not templates:
            continue
        want = per_intent if name is not None else per_intent // 2
        hold = (dev_per_intent + heldout_per_intent) if name is not None else dev_per_intent // 2
        pool = _draw(ex, templates, want + hold, name)
        counts[name or "(out of scope)"] = {"templates": len(templates), "expansions":
                                            sum(min(ex.count(s.expression, lists, rules), 10**9) for s, lists, rules in templates)}
        rng.shuffle(pool)
        n_hold = hold if len(pool) >= want + hold else min(hold, len(pool) // 5)
        if name is not None and n_hold < hold:
            warnings.append(f"{name}: only {len(pool)} distinct sentences; {n_hold} held out")
        n_dev = n_hold if name is None else min(dev_per_intent, n_hold // 2 or n_hold)
        dev += pool[:n_dev]
        if name is not None:
            heldout += pool[n_dev:n_hold]
        rest = pool[n_hold:]
        held = {e.text for e in pool[:n_hold]}
        # Balance: every intent gets ``want`` training sentences, cycling through small pools.
        for i in range(want):
            e = rest[i % len(rest)]
            if rng.random() < written_share and i < len(rest):
                train.append(e)
                continue
            for _ in range(5):  # an augmented sentence must not turn into a held-out one
                a = augment(e, rng, fillers)
                if a.text not in held:
                    break
            train.append(a if a.text not in held else e)
        seen = {e.text for e in pool}
        extra = [e.text for e in _draw(ex, templates, stt_per_intent, name) if e.text not in seen]
        sentences += [e.text for e in rest] + extra
    dev = [augment(e, rng, fillers, p_filler=0.2, p_confusion=0.1, p_drop=0.05) for e in dev]
    slot_values, clashes = canonical_values(f, ex)
    warnings += clashes
    tests = [test_example(t, slot_values, f.path) for t in f.tests]
    rng.shuffle(train)
    info = {"data": str(path), "format": "Home Assistant intents (hassil)", "language": f.language,
            "intents": {k: v for k, v in counts.items()}, "per_intent": per_intent, "seed": seed,
            "licence": "your own intent definitions", "tests": len(tests)}
    return Expansion(train, dev, heldout, tests, slot_values, sentences, info, warnings)


def _draw(ex: Expander, templates: list, n: int, intent: str | None) -> list[Example]:
    """About ``n`` distinct expansions spread evenly over the templates (all of a small one)."""
    counts = [ex.count(s.expression, lists, rules) for s, lists, rules in templates]
    quota = _water_fill(counts, n)
    out: dict[str, Example] = {}
    for (sentence, lists, rules), count, q in zip(templates, counts, quota):
        if q == 0:
            continue
        if count <= q:
            for pieces in ex.enumerate(sentence.expression, lists, rules):
                e = to_example(pieces, intent)
                out.setdefault(e.text, e)
            continue
        got, tries = 0, 0
        while got < q and tries < q * 20:
            tries += 1
            e = to_example(ex.sample(sentence.expression, lists, rules), intent)
            if e.text not in out:
                out[e.text] = e
                got += 1
    return list(out.values())


def _water_fill(counts: list[int], total: int) -> list[int]:
    """Share ``total`` over templates evenly, giving small templates all they have and the rest to the others."""
    quota = [0] * len(counts)
    order = sorted(range(len(counts)), key=lambda i: counts[i])
    left = total
    for pos, i in enumerate(order):
        share = math.ceil(left / (len(order) - pos))
        quota[i] = min(counts[i], share)
        left = max(0, left - quota[i])
    return quota


def canonical_values(f: IntentsFile, ex: Expander) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Per slot name: every way a value can be said (lower case, and in spoken form) -> its canonical value."""
    from edge.stt.adapt import spoken_form

    lists_by_slot: dict[str, list[SlotList]] = {}
    all_lists = dict(f.intents.slot_lists)
    for intent in f.intents.intents.values():
        for d in intent.data:
            lists = {**all_lists, **d.slot_lists}
            rules = {**f.intents.expansion_rules, **d.expansion_rules}
            for s in d.sentences:
                for ref in _walk(s.expression, rules):
                    if isinstance(ref, ListReference):
                        slot_list = ex._list(ref, lists)
                        lists_by_slot.setdefault(ref.slot_name, [])
                        if all(slot_list is not known for known in lists_by_slot[ref.slot_name]):
                            lists_by_slot[ref.slot_name].append(slot_list)
    out: dict[str, dict[str, str]] = {}
    clashes = []
    for slot, slot_lists in sorted(lists_by_slot.items()):
        table: dict[str, str] = {}
        for slot_list in slot_lists:
            pairs: list[tuple[str, str]] = []
            if isinstance(slot_list, TextSlotList):
                for value in slot_list.values:
                    for pieces in itertools.islice(_enumerate_lazy(ex, value.text_in, all_lists, f.intents.expansion_rules),
                                                   MAX_SYNONYMS):
                        said = to_example(pieces, None).text
                        pairs.append((said, _out(value.value_out) if value.value_out is not None else said))
            elif isinstance(slot_list, RangeSlotList):
                pairs = list(ex.number_forms(slot_list))
            for said, value in pairs:
                for form in {said.lower(), spoken_form(said)}:
                    if not form:
                        continue
                    if form in table and table[form] != value:
                        clashes.append(f"slot {slot}: {form!r} is said for both {table[form]!r} and {value!r}; "
                                       f"the runtime reports {table[form]!r}")
                        continue
                    table[form] = value
        table = {k: v for k, v in table.items() if k != v}
        if table:
            out[slot] = table
    return out, clashes


def _enumerate_lazy(ex: Expander, expr: Expression, lists: dict, rules: dict):
    if ex.count(expr, lists, rules) <= MAX_SYNONYMS * 10:
        yield from ex.enumerate(expr, lists, rules)
        return
    for _ in range(MAX_SYNONYMS):
        yield ex.sample(expr, lists, rules)


def test_example(t: TestCase, slot_values: dict[str, dict[str, str]], path: Path) -> Example:
    """A ``tests:`` sentence as a labelled example: each expected slot value is found in the sentence.

    Home Assistant's tests give canonical values (``area: living_room``), not where they were
    said, so the span is the longest way of saying that value (from the lists) that occurs.
    """
    text = " ".join(t.text.split())
    entities = []
    for slot, expected in t.slots.items():
        for value in (expected if isinstance(expected, list) else [expected]):
            value = _out(value)
            said = [k for k, v in slot_values.get(slot, {}).items() if v == value] + [value]
            best = None
            for s in sorted(set(said), key=len, reverse=True):
                m = re.search(rf"(?<!\w){re.escape(s)}(?!\w)", text, re.IGNORECASE)
                if m:
                    best = m
                    break
            if best is None:
                raise TemplateError(f"{path}:{t.line}: tests: {slot} = {value!r} is not said in {t.text!r} "
                                    f"(ways to say it: {', '.join(sorted(set(said))[:8])})")
            entities.append(Entity(best.start(), best.end(), slot, value))
    return Example(text, t.intent, tuple(sorted(entities, key=lambda e: e.start)))


# --------------------------------------------------------------------------- command line


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.templates",
                                description="Check a Home Assistant intents file and show what edge-train would train on.")
    p.add_argument("file", type=Path)
    p.add_argument("--show", type=int, default=3, help="example sentences shown per intent")
    p.add_argument("--per-intent", type=int, default=200)
    args = p.parse_args(argv)
    try:
        e = expand_intents_file(args.file, per_intent=args.per_intent)
    except DataError as exc:
        print(f"tools.templates: {exc}", file=sys.stderr)
        return 2
    for name, c in e.info["intents"].items():
        print(f"{name}: {c['templates']} templates, {c['expansions']} expansions")
        for x in [x for x in e.train if (x.intent or "(out of scope)") == name][: args.show]:
            shown = x.text
            for ent in reversed(x.entities):
                shown = shown[: ent.start] + f"[{shown[ent.start:ent.end]}]({ent.entity}={ent.value})" + shown[ent.end:]
            print(f"    {shown}")
    print(f"train {len(e.train)}, dev {len(e.dev)}, held-out {len(e.heldout)}, tests {len(e.tests)}, "
          f"slot types with synonyms {len(e.slot_values)}")
    for w in e.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
