"""Intents files (Home Assistant format, tools/templates.py): schema errors, expansion, augmentation.

Fast: no training here (tests/test_templates_train.py trains a tiny example end to end).
"""

import json
import random
import subprocess
import sys

import pytest
from conftest import REPO

pytest.importorskip("hassil", reason="intents files need hassil: script/setup --dev")

EXAMPLE = REPO / "examples" / "smart_home.yaml"
PARAPHRASES = REPO / "examples" / "smart_home.paraphrases.jsonl"

GOOD = """\
language: en
intents:
  LightOn:
    data:
      - sentences:
          - "turn on [the] lights in [the] {area}"
lists:
  area:
    values:
      - kitchen
"""

# (file text, line, key path, words the message must contain): each a different way to get it wrong.
BAD = [
    ("language: en\nintentz: {}\nintents:\n  A:\n    data: [{sentences: [a]}]\n", 2, "intentz", "unknown key"),
    ("intents:\n  A:\n    data: [{sentences: [a]}]\n", 1, "(top level)", "missing required key 'language'"),
    ("language: en\nintents:\n  A:\n    data:\n      - sentences:\n          - \"turn (on the light\"\n",
     6, "intents.A.data[0].sentences[0]", "cannot parse template"),
    ("language: en\nintents:\n  A:\n    data:\n      - sentences:\n          - \"x [y\"\n", 6, "intents.A.data[0].sentences[0]", "cannot parse"),
    ("language: en\nintents:\n  A:\n    data:\n      - sentences:\n          - ok\n          - \"turn on {room}\"\n",
     7, "intents.A.data[0].sentences[1]", "{room}, which is not defined under lists"),
    ("language: en\nintents:\n  A:\n    data:\n      - sentences: [\"<on> it\"]\n", 5, "intents.A.data[0].sentences[0]",
     "<on>, which is not defined under expansion_rules"),
    ("language: en\nintents:\n  A:\n    data:\n      - sentences: [a]\n        slotz: {}\n", 6,
     "intents.A.data[0].slotz", "unknown key"),
    ("language: en\nintents:\n  A:\n    data:\n      - sentences:\n          - 42\n", 6, "intents.A.data[0].sentences[0]",
     "expected non-empty text, got a number"),
    ("language: en\nintents:\n  A:\n    data: []\n", 4, "intents.A.data", "empty"),
    ("language: en\nintents:\n  A:\n    data: [{sentences: [\"{n}\"]}]\nlists:\n  n:\n    range:\n      from: 9\n      to: 1\n",
     8, "lists.n.range", "from (9) is greater than to (1)"),
    ("language: en\nintents:\n  A:\n    data: [{sentences: [\"{v}\"]}]\nlists:\n  v:\n    values:\n      - out: x\n",
     8, "lists.v.values[0]", "missing required key 'in'"),
    ("language: en\nintents:\n  A:\n    data: [{sentences: [\"{v}\"]}]\nlists:\n  v:\n    values: [a]\n    range: {from: 1, to: 2}\n",
     7, "lists.v", "exactly one of values"),
    ("language: en\nintents:\n  A:\n    data: [{sentences: [\"<a>\"]}]\nexpansion_rules:\n  a: \"<b> x\"\n  b: \"<a> y\"\n",
     6, "expansion_rules.a", "refers to itself"),
    ("language: en\nintents:\n  A:\n    data: [{sentences: [a]}]\n  A:\n    data: [{sentences: [b]}]\n",
     5, "intents.A", "duplicate key"),
    ("language: en\nintents:\n  A:\n    data: [{sentences: [a]}]\ntests:\n  - sentences: [a]\n    intent: {name: B}\n",
     7, "tests[0].intent.name", "'B' is not an intent of this file"),
    ("language: en\nintents:\n  A:\n    data:\n      - sentences:\n          - a\n    \t- b\n", 7, "", "not valid YAML"),
]


def test_example_file_loads_in_hassil_and_here():
    from hassil import Intents

    from tools.intents_file import load

    Intents.from_yaml(EXAMPLE.open())  # the worked example is a valid Home Assistant intents file
    f = load(EXAMPLE)
    assert len(f.intents.intents) >= 10
    assert len(f.tests) >= 10 and f.out_of_scope


@pytest.mark.parametrize("text, line, key, words", BAD, ids=[b[3][:30] for b in BAD])
def test_malformed_file_names_line_and_key(tmp_path, text, line, key, words):
    from tools.intents_file import TemplateError, load

    path = tmp_path / "intents.yaml"
    path.write_text(text)
    with pytest.raises(TemplateError) as err:
        load(path)
    msg = str(err.value)
    assert str(path) in msg and words in msg
    assert f"line {line}: {key}" in msg or (not key and f"{path}:{line}:" in msg), msg


def test_every_problem_is_reported_at_once(tmp_path):
    from tools.intents_file import TemplateError, load

    path = tmp_path / "intents.yaml"
    path.write_text(GOOD.replace("{area}", "{room} <rule>").replace("kitchen", "- nested"))
    with pytest.raises(TemplateError) as err:
        load(path)
    assert "3 problem(s)" in str(err.value) or "2 problem(s)" in str(err.value)
    assert "{room}" in str(err.value) and "<rule>" in str(err.value)


def test_edge_train_reports_a_bad_file_without_a_traceback(tmp_path):
    path = tmp_path / "intents.yaml"
    path.write_text(GOOD.replace("{area}", "{room}"))
    proc = subprocess.run([sys.executable, "-m", "tools.train", str(path), "--out", str(tmp_path / "pkg")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert "line 6: intents.LightOn.data[0].sentences[0]: uses {room}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "pkg").exists()


@pytest.fixture(scope="module")
def expansion():
    pytest.importorskip("wordfreq", reason="wildcard lists are filled from wordfreq: script/setup --train")
    from tools.templates import expand_intents_file

    return expand_intents_file(EXAMPLE, per_intent=120, seed=3)


def test_expansion_is_balanced_and_labelled(expansion):
    from collections import Counter

    from tools.intents_file import load

    names = set(load(EXAMPLE).intents.intents)
    counts = Counter(e.intent for e in expansion.train)
    assert {k for k in counts if k is not None} == names
    assert {counts[n] for n in names} == {120}  # balanced, also the intents with 29 distinct sentences
    assert 0 < counts[None] <= 60  # the file's out_of_scope sentences
    for e in expansion.train + expansion.dev + expansion.heldout:
        for ent in e.entities:
            said = e.text[ent.start:ent.end]
            assert said == said.strip() and said, e
            assert e.text[ent.start - 1: ent.start].strip() == "" or not e.text[ent.start - 1].isalnum(), e
    train_texts = {e.text for e in expansion.train}
    assert not train_texts & {e.text for e in expansion.heldout}


def test_synonyms_map_to_canonical_values(expansion):
    from edge.stt.adapt import spoken_form

    sv = expansion.slot_values
    assert sv["area"]["lounge"] == "living_room" and sv["area"]["front room"] == "living_room"
    assert sv["device"]["telly"] == "tv" and sv["artist"]["bach"] == "J. S. Bach"
    assert sv["brightness"]["twenty five"] == "25" and sv["color"]["violet"] == "purple"
    # every labelled span in the training data is said in a way the runtime maps back to its value
    checked = 0
    for e in expansion.train:
        for ent in e.entities:
            said = e.text[ent.start:ent.end].lower()
            if ent.entity == "item":  # wildcard: the words are the value
                assert ent.value.lower() in (said, spoken_form(said)) or spoken_form(ent.value) == said
                continue
            assert sv.get(ent.entity, {}).get(said, said) == ent.value or said == ent.value.lower(), (e, ent)
            checked += 1
    assert checked > 500


def test_tests_section_becomes_labelled_examples(expansion):
    by_text = {e.text: e for e in expansion.tests}
    e = by_text["switch on the lounge lamp"]
    assert e.intent == "HassTurnOn"
    assert {(x.entity, e.text[x.start:x.end], x.value) for x in e.entities} == {
        ("area", "lounge", "living_room"), ("device", "lamp", "light")}
    e = by_text["dim the kitchen lights to 30 percent"]
    assert ("brightness", "30", "30") in {(x.entity, e.text[x.start:x.end], x.value) for x in e.entities}


def test_paraphrases_are_not_produced_by_the_templates():
    """The held-out set is hand-written: Home Assistant's own matcher recognises none of it."""
    from hassil import recognize

    from tools.data import read_jsonl
    from tools.intents_file import load

    f = load(EXAMPLE)
    rows = read_jsonl(PARAPHRASES)
    assert len(rows) >= 60 and sum(r.intent is None for r in rows) >= 5
    assert {r.intent for r in rows if r.intent} == set(f.intents.intents)
    matched = [r.text for r in rows if recognize(r.text, f.intents) is not None]
    assert matched == []
    for t in f.tests:  # while the file's own tests are matched, as Home Assistant requires
        assert recognize(t.text, f.intents).intent.name == t.intent


def test_augmentation_keeps_slots(expansion):
    from edge.stt.adapt import spoken_form
    from tools.augment import augment

    rng = random.Random(5)
    changed = 0
    for e in expansion.heldout:
        a = augment(e, rng, p_filler=0.6, p_confusion=0.6, p_drop=0.4)
        assert a.intent == e.intent
        assert [x.entity for x in a.entities] == [x.entity for x in e.entities]
        for x, y in zip(e.entities, a.entities):
            assert a.text[y.start:y.end] == spoken_form(e.text[x.start:x.end]) and x.value == y.value
        assert a.text == a.text.lower() and not any(c in a.text for c in ",.?!%")
        changed += a.text != spoken_form(e.text)
    assert changed > len(expansion.heldout) // 3


def test_jsonl_with_out_of_scope_lines_and_canonical_values(tmp_path):
    from tools.data import DataError
    from tools.train import parse_args, prepare_data

    rows = [{"text": "lights on in the lounge", "intent": "on", "entities": [
                {"start": 17, "end": 23, "entity": "area", "value": "living_room"}]},
            {"text": "lights off", "intent": "off", "entities": []},
            {"text": "what is the capital of peru", "intent": None, "entities": []}] * 5
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    d = prepare_data(parse_args([str(data), "--dev", str(data), "--out", str(tmp_path / "pkg")]))
    assert d.intents == ["off", "on"]
    assert d.slot_values == {"area": {"lounge": "living_room"}}
    assert sum(e.intent is None for e in d.train) == 5 and sum(e.intent is None for e in d.dev) == 5
    data.write_text(json.dumps(rows[2]) + "\n")
    with pytest.raises(DataError, match="every training example is out of scope"):
        prepare_data(parse_args([str(data), "--out", str(tmp_path / "pkg")]))
