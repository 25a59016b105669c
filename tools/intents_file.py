"""Home Assistant intents files for ``edge-train INTENTS.yaml``: reading and checking.

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
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Iterator

import yaml
from hassil.expression import Alternative, Expression, ListReference, Permutation, RuleReference, Sentence, Sequence
from hassil.intents import Intents, SlotList
from hassil.parse_expression import parse_sentence

from tools.data import DataError

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
            for ref in walk(sentence.expression):
                if isinstance(ref, RuleReference) and ref.rule_name not in rules:
                    self.error(node, key, f"uses <{ref.rule_name}>, which is not defined under expansion_rules"
                               + (f" (defined: {', '.join(sorted(rules))})" if rules else ""))
                elif isinstance(ref, ListReference) and lists_known and not ref.is_inline_range:
                    if ref.list_name not in lists:
                        self.error(node, key, f"uses {{{ref.list_name}}}, which is not defined under lists"
                                   + (f" (defined: {', '.join(sorted(lists))})" if lists else ""))
            for rule_ref in (r for r in walk(sentence.expression) if isinstance(r, RuleReference)):
                body = rules.get(rule_ref.rule_name)
                if body is not None and lists_known:
                    for ref in walk(body.expression, rules):
                        if isinstance(ref, ListReference) and not ref.is_inline_range and ref.list_name not in lists:
                            self.error(node, key, f"uses {{{ref.list_name}}} (through <{rule_ref.rule_name}>), "
                                       "which is not defined under lists")

    def cycles(self, rules) -> None:
        def visit(name, stack):
            if name in stack:
                return stack[stack.index(name):] + [name]
            rule = rules.get(name)
            for ref in (walk(rule.expression) if rule is not None else ()):
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


def walk(expr: Expression, rules: dict | None = None, depth: int = 0) -> Iterator[Expression]:
    """Every node of a parsed template (through rule bodies when ``rules`` is given)."""
    yield expr
    if depth > 40:
        return
    if isinstance(expr, (Sequence, Alternative, Permutation)):
        for item in expr.items:
            yield from walk(item, rules, depth + 1)
    elif isinstance(expr, RuleReference) and rules and rules.get(expr.rule_name) is not None:
        yield from walk(rules[expr.rule_name].expression, rules, depth + 1)
