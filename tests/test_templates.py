"""Intents files (Home Assistant format, tools/templates.py): schema errors, expansion, augmentation.

Fast: no training here (tests/test_templates_train.py trains a tiny example end to end).
"""

import json
import os
import random
import subprocess
import sys

import pytest

from conftest import REPO, need_train_extra

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
    (
        'language: en\nintents:\n  A:\n    data:\n      - sentences:\n          - "turn (on the light"\n',
        6,
        "intents.A.data[0].sentences[0]",
        "cannot parse template",
    ),
    (
        'language: en\nintents:\n  A:\n    data:\n      - sentences:\n          - "x [y"\n',
        6,
        "intents.A.data[0].sentences[0]",
        "cannot parse",
    ),
    (
        'language: en\nintents:\n  A:\n    data:\n      - sentences:\n          - ok\n          - "turn on {room}"\n',
        7,
        "intents.A.data[0].sentences[1]",
        "{room}, which is not defined under lists",
    ),
    (
        'language: en\nintents:\n  A:\n    data:\n      - sentences: ["<on> it"]\n',
        5,
        "intents.A.data[0].sentences[0]",
        "<on>, which is not defined under expansion_rules",
    ),
    (
        "language: en\nintents:\n  A:\n    data:\n      - sentences: [a]\n        slotz: {}\n",
        6,
        "intents.A.data[0].slotz",
        "unknown key",
    ),
    (
        "language: en\nintents:\n  A:\n    data:\n      - sentences:\n          - 42\n",
        6,
        "intents.A.data[0].sentences[0]",
        "expected non-empty text, got a number",
    ),
    ("language: en\nintents:\n  A:\n    data: []\n", 4, "intents.A.data", "empty"),
    (
        'language: en\nintents:\n  A:\n    data: [{sentences: ["{n}"]}]\nlists:\n  n:\n    range:\n      from: 9\n      to: 1\n',
        8,
        "lists.n.range",
        "from (9) is greater than to (1)",
    ),
    (
        'language: en\nintents:\n  A:\n    data: [{sentences: ["{v}"]}]\nlists:\n  v:\n    values:\n      - out: x\n',
        8,
        "lists.v.values[0]",
        "missing required key 'in'",
    ),
    (
        'language: en\nintents:\n  A:\n    data: [{sentences: ["{v}"]}]\nlists:\n  v:\n    values: [a]\n    range: {from: 1, to: 2}\n',
        7,
        "lists.v",
        "exactly one of values",
    ),
    (
        'language: en\nintents:\n  A:\n    data: [{sentences: ["<a>"]}]\nexpansion_rules:\n  a: "<b> x"\n  b: "<a> y"\n',
        6,
        "expansion_rules.a",
        "refers to itself",
    ),
    (
        "language: en\nintents:\n  A:\n    data: [{sentences: [a]}]\n  A:\n    data: [{sentences: [b]}]\n",
        5,
        "intents.A",
        "duplicate key",
    ),
    (
        "language: en\nintents:\n  A:\n    data: [{sentences: [a]}]\ntests:\n  - sentences: [a]\n    intent: {name: B}\n",
        7,
        "tests[0].intent.name",
        "'B' is not an intent of this file",
    ),
    (
        "language: en\nintents:\n  A:\n    data:\n      - sentences:\n          - a\n    \t- b\n",
        7,
        "",
        "not valid YAML",
    ),
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
    need_train_extra("torch")
    path = tmp_path / "intents.yaml"
    path.write_text(GOOD.replace("{area}", "{room}"))
    proc = subprocess.run(
        [sys.executable, "-m", "tools.train", str(path), "--out", str(tmp_path / "pkg")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "line 6: intents.LightOn.data[0].sentences[0]: uses {room}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "pkg").exists()


@pytest.fixture(scope="module")
def expansion():
    pytest.importorskip("wordfreq", reason="wildcard lists are filled from wordfreq: script/setup --train")
    from tools.templates import expand_intents_file

    return expand_intents_file(EXAMPLE, seed=3, max_sentences=6000)


def test_every_template_and_every_list_value_is_trained_on(expansion):
    """Coverage: each template of the file, and each value of each list it uses, occurs in training."""
    from edge.grammar import WILDCARD_WORD_COST, Grammar
    from tools.intents_file import load

    f = load(EXAMPLE)
    grammar = Grammar(f.intents)
    assert {e.intent for e in expansion.train} == set(f.intents.intents) | {None}
    by_intent: dict = {}
    for e in expansion.train:
        by_intent.setdefault(e.intent, []).append(e.text.split())
    for t in grammar.templates:
        said_by_it = (words for words in by_intent[t.intent] if t.required <= set(words))
        # exactly this template's words (a wildcard's words cost a little each, by design)
        assert any(
            grammar._scorer(words).matrix(t.node)[0, len(words)] <= WILDCARD_WORD_COST * len(words) + 1e-9
            for words in said_by_it
        ), t.text
    labelled = {(x.entity, x.value) for e in expansion.train for x in e.entities}
    for name, slot in grammar.slots.items():
        if slot.kind != "list":
            continue
        missing = [v.out for v in slot.values if (name, str(v.out)) not in labelled]
        assert not missing, (name, missing)
    train_texts = {e.text for e in expansion.train}
    assert not train_texts & {e.text for e in expansion.heldout}


def test_training_text_is_the_spoken_form_the_runtime_reads(expansion):
    from edge.textnorm import spoken_form

    for e in expansion.train + expansion.dev + expansion.heldout:
        assert e.text == spoken_form(e.text), e
        for ent in e.entities:
            said = e.text[ent.start : ent.end]
            assert said == said.strip() and said, e
            assert ent.start == 0 or e.text[ent.start - 1] == " ", e


def test_sentences_scale_with_the_grammar():
    """A template that can say more gets more sentences; the bound caps the whole."""
    need_train_extra()
    from tools.templates import expand_intents_file

    small = expand_intents_file(REPO / "examples" / "tea_order.yaml", seed=1, max_sentences=800)
    big = expand_intents_file(REPO / "examples" / "tea_order.yaml", seed=1, max_sentences=4000)
    n = lambda e: sum(x.intent == "OrderTea" for x in e.train)  # noqa: E731
    assert 400 < n(small) < n(big) and n(big) > 2500


def test_tests_section_becomes_labelled_examples(expansion):
    by_text = {e.text: e for e in expansion.tests}
    e = by_text["switch on the lounge lamp"]
    assert e.intent == "HassTurnOn"
    assert {(x.entity, e.text[x.start : x.end], x.value) for x in e.entities} == {
        ("area", "lounge", "living_room"),
        ("device", "lamp", "light"),
    }
    e = by_text["dim the kitchen lights to thirty percent"]
    assert ("brightness", "thirty", "30") in {(x.entity, e.text[x.start : x.end], x.value) for x in e.entities}


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


def test_recogniser_and_synonym_variation_keep_slots(expansion):
    from edge.grammar import Grammar
    from tools.augment import Augmenter
    from tools.intents_file import load

    grammar = Grammar(load(EXAMPLE).intents)
    aug = Augmenter(grammar.vocabulary, rng=random.Random(5))
    assert "lights" in aug.alikes  # sound-alikes of the grammar's own words
    changed = synonyms = 0
    for e in expansion.heldout:
        for a in (aug.recogniser(e, strength=1.5), aug.synonyms(e)):
            assert a.intent == e.intent
            assert [x.entity for x in a.entities] == [x.entity for x in e.entities]
            for x, y in zip(e.entities, a.entities):
                assert x.value == y.value and a.text[y.start : y.end].strip() == a.text[y.start : y.end]
            assert a.text == a.text.lower() and not any(c in a.text for c in ",.?!%")
        changed += aug.recogniser(e, strength=1.5).text != e.text
        synonyms += aug.synonyms(e).text != e.text
    assert changed > len(expansion.heldout) // 3
    if aug.wordnet is not None:
        assert synonyms > len(expansion.heldout) // 4


def test_jsonl_with_out_of_scope_lines_and_canonical_values(tmp_path):
    from tools.data import DataError
    from tools.train import parse_args, prepare_data

    rows = [
        {
            "text": "lights on in the lounge",
            "intent": "on",
            "entities": [{"start": 17, "end": 23, "entity": "area", "value": "living_room"}],
        },
        {"text": "lights off", "intent": "off", "entities": []},
        {"text": "what is the capital of peru", "intent": None, "entities": []},
    ] * 5
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    d = prepare_data(parse_args([str(data), "--dev", str(data), "--out", str(tmp_path / "pkg")]))
    assert d.intents == ["off", "on"]
    assert d.slot_values == {"area": {"lounge": "living_room"}}
    assert sum(e.intent is None for e in d.train) == 5 and sum(e.intent is None for e in d.dev) == 5
    data.write_text(json.dumps(rows[2]) + "\n")
    with pytest.raises(DataError, match="every training example is out of scope"):
        prepare_data(parse_args([str(data), "--out", str(tmp_path / "pkg")]))


def test_out_of_scope_sentences_are_coherent_and_far_from_the_grammar():
    """The none class learns from sentences people say, not only word salad, and never from commands of the file."""
    need_train_extra()
    import yaml

    from edge.grammar import Grammar
    from tools import out_of_scope

    tea = Grammar.from_dict(yaml.safe_load((REPO / "examples" / "tea_order.yaml").read_text()))
    home = Grammar.from_dict(yaml.safe_load(GOOD))
    pool = out_of_scope.pool(300, seed=1, grammar=tea, label="__none__")
    texts = [e.text for e in pool]
    assert len(pool) == 300 and {e.intent for e in pool} == {"__none__"}
    assert "what's the weather like today" in out_of_scope.everyday_sentences()
    assert sum(t in {s for s in out_of_scope.everyday_sentences()} for t in texts) >= 10
    assert all(tea.match(t, max_distance=out_of_scope.NEAR) is None for t in texts)
    # the same everyday sentence is out of scope for tea and kept out of a smart-home file's none class
    near = [t for t in out_of_scope.everyday_sentences() if home.match(t, max_distance=out_of_scope.NEAR)]
    assert "turn on the lights" in near
    calibrate = {e.text for e in out_of_scope.pool(300, seed=2, grammar=tea, part="calibrate")}
    coherent_train = set(texts) & set(out_of_scope.everyday_sentences())
    assert not coherent_train & calibrate  # calibration sees sentences training did not


def test_whisper_prompt_says_the_rare_values_in_sentences():
    need_train_extra()
    import yaml

    from edge.grammar import Grammar
    from tools.templates import whisper_prompt

    tea = Grammar.from_dict(yaml.safe_load((REPO / "examples" / "tea_order.yaml").read_text()))
    prompt = whisper_prompt(tea)
    assert 40 <= len(prompt.split()) <= 100 and prompt.endswith(".")
    # the sentences are sampled: most of the rarest values are said, whichever sentences were drawn
    rare = ("rooibos", "hibiscus", "oolong", "matcha latte", "stevia")
    assert sum(r in prompt.lower() for r in rare) >= 4, prompt
    assert prompt.split(". ")[0][0].isupper()


def test_the_same_file_trains_on_the_same_sentences_in_every_process():
    """Two runs of the expander on one file agree: training data and the Whisper prompt are
    reproducible (nothing in them may depend on memory addresses or hash seeds)."""
    need_train_extra()
    code = (
        "import hashlib, sys; sys.path.insert(0, '.');"
        "from edge.grammar import Grammar; from tools.intents_file import load;"
        "from tools.templates import expand_intents_file, whisper_prompt;"
        "e = expand_intents_file('examples/smart_home.yaml', max_sentences=3000);"
        "f = load('examples/tea_order.yaml');"
        "p = whisper_prompt(Grammar(f.intents, f.intents.skip_words));"
        "print(hashlib.sha256(repr(([x.text for x in e.train], p)).encode()).hexdigest())"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        digests.add(proc.stdout.split()[-1])
    assert len(digests) == 1


def test_rule_chains_that_say_too_much_are_refused_or_expanded_at_once(tmp_path):
    """Rules that double at each level (``r_i = <r_{i-1}> <r_{i-1}>``: 2**29 words a sentence) are
    refused, naming the template; alternatives of the same depth say two sentences and expand."""
    need_train_extra()
    from tools.intents_file import TemplateError
    from tools.templates import expand_intents_file

    head = (
        'language: en\nintents:\n  Go:\n    data:\n      - sentences: ["go <r29>"]\nexpansion_rules:\n  r0: "(a|b)"\n'
    )
    doubling = tmp_path / "doubling.yaml"
    doubling.write_text(head + "".join(f'  r{i}: "<r{i - 1}> <r{i - 1}>"\n' for i in range(1, 30)))
    with pytest.raises(
        TemplateError, match=r"intent Go, template 'go <r29>' is left out: its shortest sentence has more than 40 words"
    ):
        expand_intents_file(doubling, seed=1, max_sentences=200)
    choice = tmp_path / "choice.yaml"
    choice.write_text(head + "".join(f'  r{i}: "(<r{i - 1}>|<r{i - 1}>)"\n' for i in range(1, 30)))
    assert {e.text for e in expand_intents_file(choice, seed=1, max_sentences=200).train} >= {"go a", "go b"}
