"""Reading and checking intents files (tools/intents_file.py) against hassil itself.

The property test generates intents files from a small grammar, mutates them (a list or rule
dropped, misspelt or moved between the file and a block, wrong types, bad syntax, cycles) and
asserts that the checker accepts exactly the files hassil accepts (module docstring of
tools/intents_file.py: ``Intents.from_dict``, every template parsed, and every template of every
block expanded completely by hassil's sampler with the lists and rules its matcher uses), and
refuses the rest with line and key.  ``INTENTS_PROPERTY_EXAMPLES=5000`` runs more examples
(docs/intents-files.md has the long run's count).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, data_file

pytest.importorskip("hassil", reason="intents files need hassil: script/setup --dev")

from hassil.expression import INLINE_RANGE_PATTERN  # noqa: E402
from hassil.intents import Intents, RangeSlotList  # noqa: E402
from hassil.numbers import get_rbnf_engine  # noqa: E402
from hassil.sample import sample_expression  # noqa: E402

from tools.intents_file import MAX_REFERENCE_DEPTH, TemplateError, load, load_lists, load_text, source_path  # noqa: E402

PROBLEM_LINE = re.compile(r"^  line \d+: \S.*?: .+")


def problems(exc: TemplateError) -> list[str]:
    """The problem lines of a refusal (continuation lines of a long message are indented further)."""
    return [ln for ln in str(exc).splitlines()[1:] if not ln.startswith("    ")]


def refused(text: str, tmp_path: Path, lists: str | None = None) -> str:
    path = tmp_path / "intents.yaml"
    path.write_text(text)
    extra = None
    if lists is not None:
        (tmp_path / "lists.yaml").write_text(lists)
        extra = tmp_path / "lists.yaml"
    with pytest.raises(TemplateError) as err:
        load(path, extra)
    for line in problems(err.value):
        assert PROBLEM_LINE.match(line), line
    return str(err.value)


def ha_intents_installed() -> bool:
    try:
        source_path("ha:en")
        return True
    except TemplateError:
        return False


# --------------------------------------------------------------------------- Home Assistant's own file


@pytest.mark.skipif(not ha_intents_installed(), reason="home-assistant-intents is not installed: script/setup --dev")
def test_home_assistant_english_needs_only_the_users_lists():
    with pytest.raises(TemplateError) as err:
        load("ha:en")
    lines = problems(err.value)
    assert len(lines) == 1, lines  # one error, not one per template
    msg = str(err.value)
    assert "{name}, {area}, {floor}" in msg and "--lists FILE" in msg and "values: [Kitchen Light" in msg


@pytest.mark.skipif(not ha_intents_installed(), reason="home-assistant-intents is not installed: script/setup --dev")
def test_home_assistant_english_loads_with_speech_to_phrase_fixtures():
    from hassil import recognize

    f = load("ha:en", data_file("real-speech", "speech-to-phrase/fixtures_en.yaml"))
    assert len(f.intents.intents) >= 30 and f.language == "en"
    names = f.intents.slot_lists["name"]
    bed = next(v for v in names.values if v.value_out == "Bed Light")
    assert bed.context["domain"] == "light" and bed.context["light_supports_brightness"] is True
    assert (
        f.intents.slot_lists["floor"].values == []
    )  # the fixtures have no floors, as Home Assistant's tests read them
    # the loaded objects carry what the matcher needs: value context against the block's requires_context
    assert recognize("turn on Bed Light", f.intents).intent.name == "HassTurnOn"
    assert recognize("is the Front Door locked", f.intents).intent.name == "HassGetState"
    result = recognize("lock the Front Door", f.intents)
    assert result.intent.name == "HassLockAll" or result.intent.name == "HassTurnOn"
    assert any(d.requires_context.get("domain") for i in f.intents.intents.values() for d in i.data)
    assert (
        recognize("lock the Bed Light", f.intents) is None
        or recognize("lock the Bed Light", f.intents).intent.name != "HassTurnOn"
    )


def test_ha_language_that_the_package_does_not_have():
    if not ha_intents_installed():
        pytest.skip("home-assistant-intents is not installed")
    with pytest.raises(TemplateError, match=r"ha:xx: home-assistant-intents has no language 'xx' \(it has: .*\ben\b"):
        load("ha:xx")


def test_json_file_by_path(tmp_path):
    import json

    path = tmp_path / "intents.json"
    path.write_text(
        json.dumps(
            {
                "language": "en",
                "intents": {"A": {"data": [{"sentences": ["turn on {x}"]}]}},
                "lists": {"x": {"values": ["a"]}},
            },
            indent=2,
        )
    )
    assert set(load(path).intents.intents) == {"A"}
    path.write_text(path.read_text().replace('"turn on {x}"', '"turn on {y}"'))
    with pytest.raises(TemplateError, match=r"line 8: intents\.A\.data\[0\]\.sentences\[0\]: uses \{y\}"):
        load(path)


def test_templates_cli_names_the_missing_lists_without_a_traceback(tmp_path):
    path = tmp_path / "intents.yaml"
    path.write_text('language: en\nintents:\n  A:\n    data: [{sentences: ["turn on {name}"]}]\n')
    proc = subprocess.run(
        [sys.executable, "-m", "tools.templates", str(path)], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "line 4: intents.A.data[0].sentences[0]: 1 template(s) use {name}" in proc.stderr
    assert "--lists FILE" in proc.stderr


# --------------------------------------------------------------------------- resolution at the point of use

CLASS_RULE = """\
language: en
intents:
  HassGetState:
    data:
      - sentences: ["<what_is_the_class_of_name>"]
        expansion_rules:
          class: "(humidity|temperature)"
      - sentences: ["<what_is_the_class_of_name> now"]
        expansion_rules:
          class: "moisture"
expansion_rules:
  what_is_the_class_of_name: "what is the <class> of [the] {name}"
lists:
  name:
    values: [sensor]
"""


def test_file_rule_uses_a_rule_each_block_defines(tmp_path):
    from hassil import recognize

    path = tmp_path / "intents.yaml"
    path.write_text(CLASS_RULE)
    f = load(path)
    assert recognize("what is the humidity of the sensor", f.intents).intent.name == "HassGetState"
    assert recognize("what is the moisture of sensor now", f.intents) is not None
    # a block that uses the rule without defining <class>: refused where it is used, naming the chain
    text = CLASS_RULE.replace(
        '      - sentences: ["<what_is_the_class_of_name> now"]\n'
        '        expansion_rules:\n          class: "moisture"\n',
        '      - sentences: ["<what_is_the_class_of_name> now"]\n',
    )
    msg = refused(text, tmp_path)
    assert "1 problem(s)" in msg
    assert (
        "line 8: intents.HassGetState.data[1].sentences[0]: uses <class> (through <what_is_the_class_of_name>), "
        "which is not defined under expansion_rules"
    ) in msg


def test_block_rules_and_lists_mix_with_the_files(tmp_path):
    path = tmp_path / "intents.yaml"
    path.write_text("""\
language: en
intents:
  A:
    data:
      - sentences: ["<local> {thing}"]
        expansion_rules:
          local: "<global> please"           # a block's rule uses the file's rule
        lists:
          thing: {values: ["{colour} lamp"]}  # hides the file's {thing}; its value uses the file's list
      - sentences: ["{thing}"]
expansion_rules:
  global: "(switch|turn) on"
  unused: "<nowhere> {nothing}"              # reached by no template: hassil never resolves it
lists:
  thing: {values: [fan]}
  colour: {values: [red, {in: "(blue|navy)", out: blue, context: {domain: light}}]}
""")
    f = load(path)
    block = f.intents.intents["A"].data[0]
    assert block.slot_lists["thing"].values[0].text_in is not None
    assert f.intents.slot_lists["colour"].values[1].context == {"domain": "light"}
    # the file's {thing} has no {colour}; a block-local list value may use a block-local rule
    text = path.read_text().replace('thing: {values: ["{colour} lamp"]}', 'thing: {values: ["<local> lamp"]}')
    path.write_text(text)
    load(path)
    msg = refused(
        path.read_text().replace('      - sentences: ["{thing}"]\n', '      - sentences: ["<local>"]\n'), tmp_path
    )
    assert "line 10: intents.A.data[1].sentences[0]: uses <local>, which is not defined under expansion_rules" in msg


def test_lists_file_in_hassil_syntax_and_as_fixtures(tmp_path):
    intents = (
        'language: en\nintents:\n  A:\n    data:\n      - sentences: ["turn on [the] {name} in [the] {area}"]\n'
        '        requires_context: {domain: light}\n      - sentences: ["{floor}"]\n'
    )
    path = tmp_path / "intents.yaml"
    path.write_text(intents)
    lists = tmp_path / "home.yaml"
    lists.write_text("lists:\n  name: {values: [Desk Lamp]}\n  area: {values: [Study]}\n  floor: {values: [Attic]}\n")
    assert [v.value_out for v in load(path, lists).intents.slot_lists["area"].values] == ["Study"]
    # Home Assistant's tests/<lang>/_fixtures.yaml: top-level areas/floors/entities, entity ids and attributes
    lists.write_text("""\
language: en
areas:
  - {name: "(living room|lounge)", id: living_room, floor: ground}
floors:
  - {name: Ground Floor, id: ground}
entities:
  - {name: "(TV|telly)", id: media_player.tv, area: living_room, state: "on", attributes: {device_class: tv}}
  - {name: Ceiling, id: light.ceiling}
timers:
  - {name: pizza, start_minutes: 30}
media:
  - {title: The Office, media_class: tv_show}
""")
    got = load_lists(lists)
    assert [(v.value_out, v.context) for v in got["name"].values] == [
        ("TV", {"domain": "media_player", "device_class": "tv"}),
        ("telly", {"domain": "media_player", "device_class": "tv"}),
        ("Ceiling", {"domain": "light"}),
    ]
    assert [v.value_out for v in got["area"].values] == ["living room", "lounge"]
    from hassil import recognize

    f = load(path, lists)
    assert recognize("turn on the Ceiling in the lounge", f.intents).intent.name == "A"
    assert recognize("turn on the telly in the lounge", f.intents) is None  # requires_context domain: light
    lists.write_text("fixtures:\n  entities:\n    - {name: Lamp}\n    - {name: [x], domain: light}\n")
    with pytest.raises(TemplateError) as err:
        load_lists(lists)
    assert "line 3: fixtures.entities[0]: missing 'domain'" in str(err.value)
    assert "line 4: fixtures.entities[1].name: expected non-empty text, got a list" in str(err.value)
    lists.write_text("lists:\n  name: {values: [Lamp]}\n")
    msg = refused(intents, tmp_path, lists="lists:\n  name: {values: [Lamp]}\n")
    assert "use {area}, {floor} and the lists file" in msg and "has no area / floor list" in msg


# --------------------------------------------------------------------------- refusals with line and key

REFUSED = [
    # (file, line, key, words)
    ('lists:\n  n:\n    range: {from: "5", to: 9}\n', 8, "lists.n.range.from", "expected a whole number, got text"),
    ('lists:\n  n:\n    range: {from: 1, to: 9, words: "no"}\n', 8, "lists.n.range.words", "expected true or false"),
    ("lists:\n  n:\n    range: {from: 1, to: 9, step: 0}\n", 8, "lists.n.range.step", "must be a positive"),
    ("lists:\n  n:\n    range: {from: 1, to: 2, fractions: thirds}\n", 8, "lists.n.range.fractions", "allowed: halves"),
    ("lists:\n  n:\n    range: {from: 1, to: 2, digits: false, words: false}\n", 8, "lists.n.range", "no way to say"),
    ('lists:\n  n:\n    values: "abc"\n', 8, "lists.n.values", "expected a list, got text"),
    ('lists:\n  n:\n    values: [a]\n    wildcard: "yes"\n', 9, "lists.n.wildcard", "expected true or false"),
    ("lists:\n  n:\n    values: [{in: a, out: [1, 2]}]\n", 8, "lists.n.values[0].out", "expected a value"),
    ('lists:\n  n:\n    values: ["(a|{n})"]\n', 8, "lists.n", "refers to itself: {n} -> {n}"),
]


@pytest.mark.parametrize("tail, line, key, words", REFUSED, ids=[r[2] + ":" + r[3][:20] for r in REFUSED])
def test_refusal_names_line_and_key(tmp_path, tail, line, key, words):
    head = 'language: en\nintents:\n  A:\n    data:\n      - sentences: ["x {n}"]\n'
    msg = refused(head + tail, tmp_path)
    assert f"line {line}: {key}: " in msg and words in msg, msg


BLOCK_REFUSED = [
    ('      - sentences: "turn on"\n', 5, "intents.A.data[0].sentences", "expected a list, got text"),
    ("      - sentences: [a]\n        slots: [x]\n", 6, "intents.A.data[0].slots", "expected a mapping, got a list"),
    (
        "      - sentences: [a]\n        requires_context: domain\n",
        6,
        "intents.A.data[0].requires_context",
        "expected a mapping",
    ),
    ("      - sentences: [a]\n        response: [x]\n", 6, "intents.A.data[0].response", "expected non-empty text"),
    ("      - sentences: [a]\n        expansion_rule: {x: y}\n", 6, "intents.A.data[0].expansion_rule", "unknown key"),
    ('      - sentences: ["{1..10:n}"]\n', None, None, None),  # inline range: accepted
    ('      - sentences: ["{9..1:n}"]\n', 5, "intents.A.data[0].sentences[0]", "the start must not exceed the end"),
    ("      - sentences: []\n", 5, "intents.A.data", "no templates in any block"),
]


@pytest.mark.parametrize(
    "block, line, key, words", BLOCK_REFUSED, ids=[str(r[2]) + ":" + str(r[3])[:20] for r in BLOCK_REFUSED]
)
def test_block_refusal_names_line_and_key(tmp_path, block, line, key, words):
    text = "language: en\nintents:\n  A:\n    data:\n" + block
    if line is None:
        path = tmp_path / "intents.yaml"
        path.write_text(text)
        load(path)
        return
    msg = refused(text, tmp_path)
    assert f"line {line}: {key}: " in msg and words in msg, msg


def test_number_words_need_a_language_hassil_can_say_numbers_in(tmp_path):
    text = (
        'language: zz\nintents:\n  A:\n    data:\n      - sentences: ["{n}"]\nlists:\n  n:\n'
        "    range: {from: 1, to: 3}\n"
    )
    msg = refused(text, tmp_path)
    assert "line 8: lists.n.range: no number words for language 'zz'" in msg
    path = tmp_path / "intents.yaml"
    path.write_text(text.replace("to: 3}", "to: 3, words: false}"))
    load(path)


# --------------------------------------------------------------------------- limits (issue 21)


def chain(n: int, body: str) -> str:
    rules = "".join(f'  r{i}: "{body.format(p=f"<r{i - 1}>")}"\n' for i in range(1, n + 1))
    return (
        f'language: en\nintents:\n  A:\n    data:\n      - sentences: ["<r{n}>"]\nexpansion_rules:\n  r0: "a"\n' + rules
    )


@pytest.mark.parametrize("body", ["({p}|{p})", "{p} {p}"])
def test_rule_chains_are_walked_once_per_rule(tmp_path, body):
    """2^25 expansions: the reference walk visits each rule once (an exponential walk would not finish)."""
    path = tmp_path / "intents.yaml"
    path.write_text(chain(25, body))
    load(path)
    path.write_text(chain(25, body).replace('r0: "a"', 'r0: "<r25>"'))
    with pytest.raises(
        TemplateError, match=r"line 32: expansion_rules\.r25: refers to itself: <r25> -> <r24> -> .* -> <r0> -> <r25>$"
    ):
        load(path)
    path.write_text(chain(MAX_REFERENCE_DEPTH + 20, body))
    with pytest.raises(TemplateError, match=f"used within each other more than {MAX_REFERENCE_DEPTH} deep"):
        load(path)


def test_deep_nesting_and_alias_bombs_are_refused_clearly(tmp_path):
    path = tmp_path / "intents.yaml"
    path.write_text("language: en\nintents: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(TemplateError, match=r"intents.yaml:2: nested too deep \(more than 64 levels"):
        load(path)
    bomb = "language: en\nlists:\n  a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"  {chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
    )
    path.write_text(bomb + "intents:\n  A:\n    data: [{sentences: [x]}]\n")
    with pytest.raises(TemplateError, match=r"aliases \(\*name\) expand to more than 1,000,000 values"):
        load(path)
    path.write_text(
        'language: en\nintents:\n  A:\n    data: [{sentences: ["' + "(" * 3000 + "a" + ")" * 3000 + '"]}]\n'
    )
    with pytest.raises(TemplateError, match="brackets nested too deep"):
        load(path)


# --------------------------------------------------------------------------- property test: the checker agrees with hassil

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

WORDS = ["turn", "on", "off", "the", "light", "set", "to", "up", "kitchen", "please"]
LIST_NAMES = ["area", "device", "level", "colour"]
RULE_NAMES = ["r0", "r1", "r2", "r3"]
EXAMPLES = int(os.environ.get("INTENTS_PROPERTY_EXAMPLES", "1000"))


class MatcherLists(dict):
    """One block's lists as hassil's matcher holds them: ``{N..M:slot}`` ranges are created on first use.

    (hassil's sampler does not know inline ranges; its matcher makes a RangeSlotList for them,
    string_matcher.match_expression.)  The generator writes inline ranges only with a slot name.
    """

    def __bool__(self):
        return True

    def __contains__(self, name):
        if not dict.__contains__(self, name):
            m = INLINE_RANGE_PATTERN.match(name)
            if m is None:
                return False
            start, stop, step = m.groups()
            self[name] = RangeSlotList(name=name, start=int(start), stop=int(stop), step=int(step or 1))
        return True


def hassil_accepts(data) -> bool:
    """Definition of "hassil accepts" (tools/intents_file.py), with hassil's own loader, parser and sampler.

    Ranges are sampled as ``{name}`` (``expand_ranges=False``) to keep the expansion small; the
    number words the matcher would need are then looked up for each range the samples name.
    """
    try:
        intents = Intents.from_dict(data)
        for intent in intents.intents.values():
            for block in intent.data:
                lists = MatcherLists({**intents.slot_lists, **block.slot_lists})
                rules = {**intents.expansion_rules, **block.expansion_rules}
                said: set[str] = set()
                for sentence in block.sentences:
                    for sample in sample_expression(sentence.expression, lists, rules, expand_ranges=False):
                        said.update(re.findall(r"\{([^{}]+)\}", sample))
                for name in said:
                    slot_list = lists[name]
                    if isinstance(slot_list, RangeSlotList) and slot_list.words:
                        get_rbnf_engine(slot_list.words_language or intents.language)
    except Exception:  # MissingListError, MissingRuleError, RecursionError, ValueError, AssertionError, ...
        return False
    return True


# The format's own rules (docs/intents-files.md), written out separately from the checker: what a
# hassil-loadable file must also satisfy here (types hassil would misread, unknown keys, empty text).


def text(v) -> bool:
    return isinstance(v, str) and bool(v.strip())


def texts(v) -> bool:
    return isinstance(v, list) and all(text(x) for x in v)


def mapping(v, allowed=None) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) for k in v) and (allowed is None or set(v) <= set(allowed))


def boolean(v) -> bool:
    return isinstance(v, bool)


def whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def slot_list_ok(spec) -> bool:
    if not mapping(spec, ("values", "range", "wildcard")):
        return False
    kinds = set(spec)
    if len(kinds) != 1 and kinds != {"values", "wildcard"}:
        return False
    if "wildcard" in spec and not (boolean(spec["wildcard"]) and (spec["wildcard"] or "values" in spec)):
        return False
    if "values" in spec:
        values = spec["values"]
        if not isinstance(values, list) or not values:
            return False
        for v in values:
            if isinstance(v, dict):
                if not (mapping(v, ("in", "out", "context", "metadata")) and text(v.get("in"))):
                    return False
                if isinstance(v.get("out"), (list, dict)):
                    return False
                if any(v.get(k) is not None and not mapping(v[k]) for k in ("context", "metadata")):
                    return False
            elif not text(v):
                return False
    if "range" in spec:
        r = spec["range"]
        if not mapping(
            r, ("from", "to", "step", "type", "fractions", "multiplier", "digits", "words", "words_language")
        ):
            return False
        if not (whole(r.get("from")) and whole(r.get("to")) and r["from"] <= r["to"]):
            return False
        if "step" in r and not (whole(r["step"]) and r["step"] > 0):
            return False
        if "type" in r and r["type"] not in ("number", "percentage", "temperature"):
            return False
        if r.get("fractions") is not None and r["fractions"] not in ("halves", "tenths"):
            return False
        if r.get("multiplier") is not None and not (
            isinstance(r["multiplier"], (int, float)) and not boolean(r["multiplier"])
        ):
            return False
        if any(k in r and not boolean(r[k]) for k in ("digits", "words")):
            return False
        if r.get("digits") is False and r.get("words") is False:
            return False
        if r.get("words_language") is not None and not text(r["words_language"]):
            return False
    return True


def definitions_ok(lists, rules) -> bool:
    return (lists is None or (mapping(lists) and all(slot_list_ok(s) for s in lists.values()))) and (
        rules is None or (mapping(rules) and all(text(r) for r in rules.values()))
    )


def block_ok(b) -> bool:
    keys = (
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
    if not (mapping(b, keys) and texts(b.get("sentences"))):
        return False
    if any(k in b and not mapping(b[k]) for k in ("slots", "requires_context", "excludes_context")):
        return False
    if any(b.get(k) is not None and not text(b[k]) for k in ("response", "inferred_domain")):
        return False
    if b.get("metadata") is not None and not mapping(b["metadata"]):
        return False
    if any(k in b and not texts(b[k]) for k in ("required_keywords", "name_domains")):
        return False
    if "settings" in b and not (
        mapping(b["settings"], ("filter_with_regex",)) and all(map(boolean, b["settings"].values()))
    ):
        return False
    return definitions_ok(b.get("lists", {}), b.get("expansion_rules", {}))


def format_ok(data) -> bool:
    top = (
        "language",
        "intents",
        "lists",
        "expansion_rules",
        "skip_words",
        "settings",
        "responses",
        "out_of_scope",
        "tests",
    )
    if not (mapping(data, top) and text(data.get("language")) and mapping(data.get("intents")) and data["intents"]):
        return False
    if not definitions_ok(data.get("lists", {}), data.get("expansion_rules", {})):
        return False
    if "skip_words" in data and not texts(data["skip_words"]):
        return False
    if "settings" in data and not (
        mapping(data["settings"], ("ignore_whitespace", "filter_with_regex"))
        and all(map(boolean, data["settings"].values()))
    ):
        return False
    if "responses" in data and not mapping(data["responses"]):
        return False
    for intent in data["intents"].values():
        if not (mapping(intent, ("data",)) and isinstance(intent.get("data"), list) and intent["data"]):
            return False
        if not all(block_ok(b) for b in intent["data"]) or not any(b["sentences"] for b in intent["data"]):
            return False
    for t in data.get("tests", []):
        if not (
            mapping(t, ("sentences", "intent", "response", "context", "metadata"))
            and texts(t.get("sentences"))
            and mapping(t.get("intent"), ("name", "slots", "context"))
            and t["intent"].get("name") in data["intents"]
        ):
            return False
    return True


@st.composite
def templates(draw, lists, rules, depth=0):
    """A template using the given list and rule names (and sometimes others)."""
    parts = []
    for _ in range(draw(st.integers(1, 3 - depth))):
        kind = draw(
            st.sampled_from(
                ["word", "word", "opt", "alt", "perm", "list", "rule", "inline"]
                if depth < 2
                else ["word", "list", "rule"]
            )
        )
        if kind == "word":
            parts.append(draw(st.sampled_from(WORDS)))
        elif kind == "opt":
            parts.append("[" + draw(templates(lists, rules, depth + 1)) + "]")
        elif kind == "alt":
            parts.append(
                "(" + draw(templates(lists, rules, depth + 1)) + "|" + draw(templates(lists, rules, depth + 1)) + ")"
            )
        elif kind == "perm":
            parts.append("(" + draw(st.sampled_from(WORDS)) + ";" + draw(st.sampled_from(WORDS)) + ")")
        elif kind == "list" and lists:
            name = draw(st.sampled_from(lists))
            parts.append("{" + name + (":" + draw(st.sampled_from(["x", "y"])) if draw(st.booleans()) else "") + "}")
        elif kind == "rule" and rules:
            parts.append("<" + draw(st.sampled_from(rules)) + ">")
        elif kind == "inline":
            lo = draw(st.integers(0, 3))
            parts.append(f"{{{lo}..{lo + draw(st.integers(0, 2))}:n}}")
        else:
            parts.append(draw(st.sampled_from(WORDS)))
    return " ".join(parts)


@st.composite
def slot_lists(draw, names, rules):
    out = {}
    for i, name in enumerate(names):
        kind = draw(st.sampled_from(["values", "values", "range", "wildcard"]))
        if kind == "values":
            values = []
            for _ in range(draw(st.integers(1, 2))):
                if draw(st.booleans()):
                    values.append(draw(st.sampled_from(WORDS)))
                else:
                    value = {
                        "in": draw(templates(names[:i][-1:], rules, depth=2)),  # earlier lists only: no cycle
                        "out": draw(st.sampled_from(WORDS + [1, 2.5])),
                    }
                    if draw(st.booleans()):
                        value["context"] = {"domain": draw(st.sampled_from(["light", "fan"]))}
                    values.append(value)
            out[name] = {"values": values}
        elif kind == "range":
            lo = draw(st.integers(0, 3))
            r = {"from": lo, "to": lo + draw(st.integers(0, 2))}
            for key, strategy in (
                ("step", st.integers(1, 2)),
                ("fractions", st.sampled_from(["halves", "tenths"])),
                ("multiplier", st.sampled_from([-1, 0.5, 10])),
                ("type", st.sampled_from(["number", "percentage", "temperature"])),
                ("words", st.booleans()),
            ):
                if draw(st.integers(0, 3)) == 0:
                    r[key] = draw(strategy)
            out[name] = {"range": r}
        else:
            out[name] = {"wildcard": True}
    return out


@st.composite
def intents_files(draw):
    """A file valid by construction: rules use only rules before them, list values only other lists."""
    global_lists = draw(st.lists(st.sampled_from(LIST_NAMES), max_size=3, unique=True))
    global_rules = draw(st.lists(st.sampled_from(RULE_NAMES), max_size=3, unique=True))
    rules = {}
    for i, name in enumerate(global_rules):
        rules[name] = draw(templates(global_lists, global_rules[:i], depth=1))
    data = {"language": draw(st.sampled_from(["en", "en", "en", "de", "zz"])), "intents": {}}
    if global_lists:
        data["lists"] = draw(slot_lists(global_lists, []))
    if rules:
        data["expansion_rules"] = rules
    for n in range(draw(st.integers(1, 2))):
        blocks = []
        for _ in range(draw(st.integers(1, 2))):
            local_lists = draw(st.lists(st.sampled_from(LIST_NAMES), max_size=1, unique=True))
            local_rules = draw(
                st.lists(
                    st.sampled_from([r for r in RULE_NAMES if r not in global_rules] or ["r9"]), max_size=1, unique=True
                )
            )
            lists = sorted(set(global_lists) | set(local_lists))
            block = {
                "sentences": [
                    draw(templates(lists, global_rules + local_rules)) for _ in range(draw(st.integers(1, 2)))
                ]
            }
            if local_lists:
                block["lists"] = draw(slot_lists(local_lists, []))
            if local_rules:
                block["expansion_rules"] = {r: draw(templates(lists, global_rules, depth=1)) for r in local_rules}
            for key, strategy in (
                ("requires_context", st.just({"domain": "light"})),
                ("excludes_context", st.just({"domain": ["fan"]})),
                ("slots", st.just({"domain": "light"})),
                ("response", st.just("default")),
                ("metadata", st.just({"slot_combination": "name_only"})),
            ):
                if draw(st.integers(0, 3)) == 0:
                    block[key] = draw(strategy)
            blocks.append(block)
        data["intents"][f"Intent{n}"] = {"data": blocks}
    for key, strategy in (
        ("skip_words", st.just(["please"])),
        ("settings", st.just({"ignore_whitespace": False})),
        ("responses", st.just({"errors": {"no_intent": "Sorry"}})),
        ("tests", st.just([{"sentences": ["turn on"], "intent": {"name": "Intent0"}}])),
    ):
        if draw(st.integers(0, 3)) == 0:
            data[key] = draw(strategy)
    return data


def nodes(data, path=()):
    """Every (container, key) in the data, for mutations."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield data, k
            yield from nodes(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield data, i
            yield from nodes(v, path + (i,))


def blocks_of(data):
    intents = data.get("intents")
    return [
        b
        for i in (intents.values() if isinstance(intents, dict) else [])
        if isinstance(i, dict) and isinstance(i.get("data"), list)
        for b in i["data"]
        if isinstance(b, dict)
    ]


@st.composite
def mutated(draw, data):
    """0-3 mutations of the kinds that break files (or, moving definitions, may not)."""
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 2, 3]))):
        kind = draw(
            st.sampled_from(
                [
                    "drop_list",
                    "drop_rule",
                    "misspell",
                    "move_rule",
                    "move_list",
                    "wrong_type",
                    "syntax",
                    "unknown_key",
                    "cycle",
                    "range",
                    "inline_reversed",
                ]
            )
        )
        sections = [
            (d, s)
            for d in [data] + blocks_of(data)
            for s in ("lists", "expansion_rules")
            if isinstance(d.get(s), dict) and d[s]
        ]
        if kind in ("drop_list", "drop_rule", "move_list", "move_rule"):
            want = "lists" if kind.endswith("list") else "expansion_rules"
            owners = [d for d, s in sections if s == want]
            if not owners:
                continue
            owner = draw(st.sampled_from(owners))
            name = draw(st.sampled_from(sorted(owner[want])))
            body = owner[want].pop(name)
            if not owner[want]:
                del owner[want]
            if kind.startswith("move"):
                target = draw(st.sampled_from([data] + blocks_of(data)))
                target.setdefault(want, {})[name] = body
        elif kind in ("misspell", "syntax", "cycle", "inline_reversed"):
            spots = [
                (c, k)
                for c, k in nodes(data)
                if isinstance(c[k], str)
                and (
                    isinstance(c, list)
                    or k in ("in",)
                    or c is data.get("expansion_rules")
                    or any(c is b.get("expansion_rules") for b in blocks_of(data))
                )
            ]
            if not spots:
                continue
            container, key = draw(st.sampled_from(spots))
            value = container[key]
            if kind == "misspell":
                value = (
                    value.replace("{", "{x", 1) if "{" in value and draw(st.booleans()) else value.replace("<", "<x", 1)
                )
            elif kind == "syntax":
                value = draw(st.sampled_from(["(", "[", "<", "{", ")", "|", "(a|b;c)"])) + value
            elif kind == "cycle":
                value = value + " <" + draw(st.sampled_from(RULE_NAMES)) + ">"
            else:
                value = value + " {5..2:n}"
            container[key] = value
        elif kind == "wrong_type":
            container, key = draw(st.sampled_from(list(nodes(data))))
            container[key] = draw(st.sampled_from([7, 2.5, True, None, "text", "", [], ["a"], {}, {"a": 1}]))
        elif kind == "unknown_key":
            target = draw(
                st.sampled_from(
                    [data]
                    + blocks_of(data)
                    + [d["lists"][n] for d, sec in sections if sec == "lists" for n in d["lists"]]
                )
            )
            if isinstance(target, dict):
                target[draw(st.sampled_from(["expansion_rule", "list", "sentence", "valuez"]))] = {}
        elif kind == "range":
            ranges = [
                s["range"]
                for d, sec in sections
                if sec == "lists"
                for s in d["lists"].values()
                if isinstance(s, dict) and isinstance(s.get("range"), dict)
            ]
            if ranges:
                r = draw(st.sampled_from(ranges))
                r.update(
                    draw(
                        st.sampled_from(
                            [
                                {"from": 5, "to": 1},
                                {"step": 0},
                                {"fractions": "thirds"},
                                {"digits": False, "words": False},
                                {"from": "1"},
                                {"words": "no"},
                                {"multiplier": "x"},
                                {"fractions": None},
                                {"to": 1.5},
                            ]
                        )
                    )
                )
    return data


@pytest.mark.slow
@hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=EXAMPLES <= 1000,
    suppress_health_check=list(hypothesis.HealthCheck),
)
@hypothesis.given(st.data())
def test_checker_agrees_with_hassil(data):
    original = data.draw(intents_files())
    assert format_ok(original) and hassil_accepts(original) or original["language"] == "zz", original
    file = data.draw(mutated(yaml.safe_load(yaml.safe_dump(original))))
    text = yaml.safe_dump(file, sort_keys=False, allow_unicode=True)
    expected = format_ok(file) and hassil_accepts(file)
    try:
        load_text(text, "generated.yaml")
        accepted, message = True, ""
    except TemplateError as exc:
        accepted, message = False, str(exc)
        for line in problems(exc):
            assert PROBLEM_LINE.match(line), (line, text)
    hypothesis.event("accepted" if accepted else "refused")
    assert accepted == expected, (
        f"checker {'accepts' if accepted else 'refuses'}, hassil and the format "
        f"{'accept' if expected else 'refuse'}:\n{text}\n{message}"
    )


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.sampled_from(WORDS + ["{area}", "<r0>", "(a|", "{1..3:n}", ""]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "language",
                    "intents",
                    "data",
                    "sentences",
                    "lists",
                    "values",
                    "range",
                    "from",
                    "to",
                    "in",
                    "out",
                    "expansion_rules",
                    "A",
                    "r0",
                    "area",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=30,
)
YAMLISH = st.text(alphabet="ab:-[]{}()<>|;&*!%#'\"\n \t?,.0", max_size=200)


@hypothesis.settings(
    max_examples=300, deadline=None, database=None, derandomize=True, suppress_health_check=list(hypothesis.HealthCheck)
)
@hypothesis.given(st.one_of(JSONISH.map(lambda d: yaml.safe_dump(d, allow_unicode=True)), YAMLISH))
def test_any_text_is_loaded_or_refused_with_a_template_error(text):
    """No input makes the checker raise anything but its documented error (issue 21)."""
    try:
        load_text(text, "fuzz.yaml")
    except TemplateError as exc:
        assert str(exc).startswith("fuzz.yaml")
