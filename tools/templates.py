"""A checked intents file (``tools.intents_file``) -> labelled training sentences for ``edge-train``.

Sentences are drawn from the same compiled grammar the runtime matches transcripts against
(``edge.grammar``): spoken-form words, word-internal alternatives resolved, list values filtered
by each block's ``requires_context`` / ``excludes_context``, ranges said in words
(``edge.textnorm.say_number``: 60.5 -> "sixty point five"). So the model is trained on exactly
the text form it will read.

How much is drawn scales with the grammar, not with a count per intent:

* coverage: every template, and within it every alternative and every list value, appears in
  training at least once (a template with a 200-value list gets at least 200 sentences);
* combinations: beyond that, a template gets sentences in proportion to the logarithm of how many
  it can say (``EXTRA_PER_BIT`` per doubling), so big templates get more without drowning the rest;
* a bound (``max_sentences``) keeps training time in check for files as large as Home Assistant's.

A share of the sentences then gets what a recogniser does to speech (``tools.augment``): words
swapped for similar-sounding ones (found by their phones in the CMU dictionary), dropped small
words, fillers; and a share gets WordNet synonyms of its template words, so that commands
people phrase their own way still land on the right intent. Out-of-scope sentences (the file's
``out_of_scope`` and generated ones) train an explicit "none of these" class, which works for a
file with one intent as well as for a hundred.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import re
import sys
from pathlib import Path
from typing import Any

from edge.grammar import Alt, Grammar, Seq, Slot, Words
from edge.textnorm import say_number, spoken_form

from .augment import Augmenter
from .data import DataError, Entity, Example
from .intents_file import TemplateError, TestCase, load

NONE_LABEL = "__none__"
"""The intent the model learns for out-of-scope sentences; the runtime reports it as no intent."""
COVER_CAP = 400
"""At most this many coverage sentences per template (a 5,000-name list is sampled, not enumerated)."""
EXTRA_PER_BIT = 3
"""Extra sentences per doubling of a template's number of expansions."""
MAX_COUNT = 10**15
WILDCARD_SENTENCES = 40
"""Wildcard slots are filled with frequent words; this many sentences per template with one."""


# --------------------------------------------------------------------------- sampling the compiled grammar


class _Span:
    """One slot occurrence in one sentence (identity matters: a sentence may fill a list twice)."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: Any):
        self.name = name
        self.value = value


Token = tuple[str, "_Span | None"]


class Sampler:
    """Sentences from compiled templates, each word tagged with the slot it belongs to."""

    def __init__(self, rng: random.Random, wildcard_words: list[str]):
        self.rng = rng
        self.wildcard_words = wildcard_words
        self._counts: dict[int, int] = {}
        self._branching: dict[int, int] = {}
        # Per choice point, where its options start for cover = 0 (so choice points do not move in
        # step). Drawn in the order the nodes are met, from a generator of its own: the same file
        # gives the same sentences in every process (an id() would not: it is a memory address).
        self._shifts: dict[int, int] = {}
        self._shift_rng = random.Random(7)

    def count(self, node: Any) -> int:
        """How many sentences ``node`` can say (capped at ``MAX_COUNT``)."""
        key = id(node)
        if key in self._counts:
            return self._counts[key]
        if isinstance(node, Words):
            n = 1
        elif isinstance(node, Seq):
            n = 1
            for i in node.items:
                n = min(MAX_COUNT, n * self.count(i))
        elif isinstance(node, Alt):
            n = min(MAX_COUNT, sum(self.count(i) for i in node.items) + (1 if node.optional else 0))
        elif isinstance(node, Slot):
            if node.kind == "wildcard":
                n = 10**6
            elif node.kind == "number":
                start, stop, step, _, _ = node.number_range
                n = min(MAX_COUNT, int((stop - start) // step) + 1)
            else:
                n = min(MAX_COUNT, sum(self.count(v.body) for v in node.values))
        else:
            raise TypeError(node)
        self._counts[key] = n
        return n

    def branching(self, node: Any) -> int:
        """The most choices any one alternative or list in ``node`` offers (coverage needs that many)."""
        key = id(node)
        if key in self._branching:
            return self._branching[key]
        if isinstance(node, Words):
            b = 1
        elif isinstance(node, Seq):
            b = max((self.branching(i) for i in node.items), default=1)
        elif isinstance(node, Alt):
            b = max([len(node.items) + node.optional] + [self.branching(i) for i in node.items])
        elif isinstance(node, Slot):
            if node.kind != "list":
                b = 1
            else:
                b = max([len(node.values)] + [self.branching(v.body) for v in node.values])
        else:
            b = 1
        self._branching[key] = b
        return b

    def sample(self, node: Any, cover: int | None = None, owner: _Span | None = None) -> list[Token]:
        """One sentence; with ``cover = i``, every choice point takes its option ``i`` (shifted per node),
        so ``cover = 0 .. branching - 1`` together use every option of every choice point."""
        if isinstance(node, Words):
            return [(w, owner) for w in node.words]
        if isinstance(node, Seq):
            return [t for i in node.items for t in self.sample(i, cover, owner)]
        if isinstance(node, Alt):
            options = list(node.items) + ([None] if node.optional else [])
            choice = self._choose(options, node, cover)
            return [] if choice is None else self.sample(choice, cover, owner)
        if isinstance(node, Slot):
            if node.kind == "wildcard":
                span = owner or _Span(node.name, None)
                k = self.rng.choice((1, 1, 1, 2, 2, 3))
                return [(self.rng.choice(self.wildcard_words), span) for _ in range(k)]
            if node.kind == "number":
                start, stop, step, multiplier, _ = node.number_range
                n = start + step * self.rng.randrange(int((stop - start) // step) + 1)
                span = owner or _Span(node.name, _number(n * multiplier))
                return [(w, span) for w in say_number(n).split()]
            value = self._choose(list(node.values), node, cover)
            span = owner or _Span(node.name, value.out)
            return self.sample(value.body, cover, span)
        raise TypeError(node)

    def _choose(self, options: list, node: Any, cover: int | None):
        if cover is None:
            return self.rng.choice(options)
        shift = self._shifts.get(id(node))
        if shift is None:
            shift = self._shifts[id(node)] = self._shift_rng.randrange(1 << 30)
        return options[(cover + shift) % len(options)]


def _number(n: float) -> int | float:
    return int(n) if float(n).is_integer() else round(float(n), 6)


def to_example(tokens: list[Token], intent: str | None) -> Example:
    """Join words with spaces; each slot's span runs from its first word to its last."""
    text, spans = "", {}
    for word, span in tokens:
        if text:
            text += " "
        start = len(text)
        text += word
        if span is not None:
            first = spans.get(id(span), (start, start, span))[0]
            spans[id(span)] = (first, len(text), span)
    entities = []
    for start, end, span in sorted(spans.values(), key=lambda s: s[0]):
        value = span.value if span.value is not None else text[start:end]
        entities.append(Entity(start, end, span.name, str(value)))
    return Example(text, intent, tuple(entities))


# --------------------------------------------------------------------------- the training set


@dataclasses.dataclass
class Expansion:
    """What ``edge-train`` needs from an intents file."""

    train: list[Example]
    dev: list[Example]
    """Held-out sentences in recogniser form, for choosing the epoch and calibrating rejection."""
    heldout: list[Example]
    """Other held-out sentences, clean, for the package's metrics."""
    tests: list[Example]
    """The file's ``tests:`` sentences, with slot spans located in the text."""
    grammar: dict
    """The intents file as hassil reads it (the user's lists merged in): the package's ``grammar.json``."""
    sentences: list[str]
    """Clean sentences for the speech recognisers' domain adaptation."""
    prompt: str
    """Sentences to bias Whisper with: between them they say the grammar's slot values, rarest first."""
    info: dict
    warnings: list[str]
    slot_values: dict = dataclasses.field(default_factory=dict)
    """Synonym tables for the runtime; empty, because the package's grammar resolves slot values."""


def plan(sampler: Sampler, templates: list, max_sentences: int) -> list[tuple[int, int]]:
    """Per template: (coverage sentences, extra sentences), scaled down together past ``max_sentences``."""
    wanted = []
    for t in templates:
        count = sampler.count(t.node)
        cover = min(COVER_CAP, count, sampler.branching(t.node))
        if _has_wildcard(t.node):
            cover = max(cover, min(WILDCARD_SENTENCES, count))
        extra = min(count - cover, int(EXTRA_PER_BIT * math.log2(max(1, count)))) if count > cover else 0
        wanted.append((cover, max(0, extra)))
    total = sum(c + e for c, e in wanted)
    if total <= max_sentences:
        return wanted
    extras = sum(e for _, e in wanted)
    covers = total - extras
    if covers <= max_sentences:
        keep = (max_sentences - covers) / max(1, extras)
        return [(c, int(e * keep)) for c, e in wanted]
    keep = max_sentences / covers
    return [(max(1, int(c * keep)), 0) for c, _ in wanted]


def _has_wildcard(node: Any, seen: set | None = None) -> bool:
    seen = set() if seen is None else seen
    if id(node) in seen:
        return False
    seen.add(id(node))
    if isinstance(node, Slot):
        return node.kind == "wildcard" or any(_has_wildcard(v.body, seen) for v in node.values)
    if isinstance(node, (Seq, Alt)):
        return any(_has_wildcard(i, seen) for i in node.items)
    return False


def expand_intents_file(
    path: str | Path,
    lists: str | Path | None = None,
    seed: int = 13,
    max_sentences: int = 12000,
    held_share: float = 0.1,
    dev_max: int = 1500,
    heldout_max: int = 1500,
    asr_share: float = 0.5,
    synonym_share: float = 0.25,
    progress=None,
) -> Expansion:
    """Expand, hold out, augment: the labelled data for one intents file."""
    f = load(path, lists)
    rng = random.Random(seed)
    grammar = Grammar(f.intents, f.intents.skip_words)
    left_out = [
        f"{path}: intent {intent}, template {text!r} is left out: {why}" for intent, text, why in grammar.unusable
    ]
    if not grammar.templates:
        raise TemplateError("; ".join([*left_out, f"{path}: no template can be used for training"]))
    words = _wildcard_words(f.language)
    sampler = Sampler(rng, words)
    templates = grammar.templates
    quotas = plan(sampler, templates, max_sentences)
    warnings: list[str] = left_out
    by_intent: dict[str, dict[str, Example]] = {}
    held: dict[str, Example] = {}
    counts: dict[str, dict] = {}
    for t, (cover, extra) in zip(templates, quotas):
        pool = by_intent.setdefault(t.intent, {})
        c = counts.setdefault(t.intent, {"templates": 0, "expansions": 0, "sentences": 0})
        c["templates"] += 1
        c["expansions"] = min(MAX_COUNT, c["expansions"] + sampler.count(t.node))
        made = []
        for i in range(cover):
            made.append(to_example(sampler.sample(t.node, cover=i), t.intent))
        tries = 0
        while len(made) < cover + extra and tries < 4 * extra:
            tries += 1
            made.append(to_example(sampler.sample(t.node), t.intent))
        for e in made:
            pool.setdefault(e.text, e)
        # held-out sentences: new ones when the template has more to say, never training ones
        n_held = max(1, int((cover + extra) * held_share)) if sampler.count(t.node) > cover + extra else 0
        for _ in range(n_held * 3):
            if n_held <= 0:
                break
            e = to_example(sampler.sample(t.node), t.intent)
            if e.text not in pool and e.text not in held:
                held[e.text] = e
                n_held -= 1
        if progress is not None:
            progress(1)
    for name, c in counts.items():
        c["sentences"] = len(by_intent[name])
    train = [e for pool in by_intent.values() for e in pool.values()]
    held_list = list(held.values())
    rng.shuffle(held_list)
    dev_clean, heldout = held_list[: min(dev_max, len(held_list) // 2)], held_list[len(held_list) // 2 :][:heldout_max]
    if not dev_clean:
        # every template was enumerated: choose the epoch on recogniser-like copies of training sentences
        dev_clean = rng.sample(train, min(len(train), 300))
        warnings.append(
            "the grammar says few enough sentences that all of them are trained on; dev uses "
            "recogniser-like variants of training sentences"
        )
    oos = (
        [to_example(sampler.sample(s), None) for s in grammar.compile_sentences(f.out_of_scope) for _ in range(5)]
        if f.out_of_scope
        else []
    )
    augmenter = Augmenter(grammar.vocabulary, skip_words=f.intents.skip_words, rng=rng)
    train_aug = []
    for e in train:
        r = rng.random()
        if r < asr_share:
            train_aug.append(augmenter.recogniser(e))
        elif r < asr_share + synonym_share:
            train_aug.append(augmenter.synonyms(e))
    dev = [augmenter.recogniser(e, strength=0.5) for e in dev_clean]
    train = train + [e for e in train_aug if e.text not in held] + [dataclasses.replace(e, intent=None) for e in oos]
    rng.shuffle(train)
    tests = [test_example(t, grammar, f.path) for t in f.tests]
    sentences = [e.text for pool in by_intent.values() for e in pool.values()]
    info = {
        "data": str(path),
        "format": "Home Assistant intents (hassil)",
        "language": f.language,
        "intents": counts,
        "seed": seed,
        "max_sentences": max_sentences,
        "licence": "your own intent definitions",
        "tests": len(tests),
    }
    if lists is not None:
        info["lists"] = str(lists)
    return Expansion(train, dev, heldout, tests, f.data, sentences, whisper_prompt(grammar, sampler), info, warnings)


PROMPT_WORDS = 85
"""About the 120 prompt tokens edge.stt.whisper keeps."""


def whisper_prompt(grammar: Grammar, sampler: Sampler | None = None, budget: int = PROMPT_WORDS) -> str:
    """A few sentences of the grammar that between them say its list values, the rarest words last.

    Whisper takes its prompt as what was said before: sentences prime both the words ("EcoBee",
    "rooibos") and the way commands are phrased, where a bare list of values makes it write lists
    (docs/speech.md measures both). Values are shown as the file writes them ("Bed Light"). The
    rarest last: the end of the prompt is nearest the audio, and it is what the engine keeps when
    the whole prompt does not fit its window.
    """
    try:
        import wordfreq
    except ImportError:  # the prompt is a bias, not a requirement
        wordfreq = None
    sampler = sampler or Sampler(random.Random(11), ["something"])
    candidates = []
    for t in grammar.templates:
        for i in range(min(6, sampler.branching(t.node))):
            candidates.append(sampler.sample(t.node, cover=i))
        candidates.append(sampler.sample(t.node))
    rarity: dict[str, float] = {}

    def weight(span: _Span, words: list[str]) -> float:
        key = f"{span.name}={span.value}"
        if key not in rarity:
            zipf = min((wordfreq.zipf_frequency(w, "en") for w in words), default=0.0) if wordfreq else 3.0
            rarity[key] = max(0.5, 8.0 - zipf) ** 2  # squared: one rare name outweighs several common words
        return rarity[key]

    chosen: list[str] = []
    covered: set[str] = set()
    used = 0
    while used < budget and candidates:
        best, best_gain = None, 0.0
        for tokens in candidates:
            spans = _spans(tokens)
            gain = sum(weight(sp, ws) for sp, ws in spans if f"{sp.name}={sp.value}" not in covered)
            gain /= max(4, len(tokens)) ** 0.5
            if gain > best_gain:
                best, best_gain = tokens, gain
        if best is None:
            break
        candidates.remove(best)
        covered |= {f"{sp.name}={sp.value}" for sp, _ in _spans(best)}
        chosen.append(_display(best))
        used += len(best)
    return " ".join(reversed(chosen))


def _spans(tokens: list[Token]) -> list[tuple[_Span, list[str]]]:
    """The list values a sentence says (numbers and wildcards left out: Whisper needs no help with them)."""
    out: dict[int, tuple[_Span, list[str]]] = {}
    for word, span in tokens:
        if span is not None and isinstance(span.value, str):
            out.setdefault(id(span), (span, []))[1].append(word)
    return list(out.values())


def _display(tokens: list[Token]) -> str:
    """A sentence as a person would write it: capital first letter, list values as the file spells them."""
    words: list[str] = []
    last = None
    for word, span in tokens:
        if span is not None and span is last:
            continue
        if span is not None:
            said = [w for w, s in tokens if s is span]
            shown = span.value if isinstance(span.value, str) and spoken_form(span.value).split() == said else None
            words.append(shown if shown else " ".join(said))
        else:
            words.append(word)
        last = span
    text = re.sub(r"\bi\b", "I", " ".join(words))
    return text[:1].upper() + text[1:] + "."


def _wildcard_words(language: str) -> list[str]:
    """Stand-ins for free text (shopping items, names): frequent words of the language."""
    try:
        import wordfreq
    except ImportError:
        raise DataError(
            "edge-train needs the [train] extra for intents files: pip install 'edge-intent[train]'"
        ) from None
    code = language.split("-")[0].split("_")[0]
    try:
        words = wordfreq.top_n_list(code, 6000)
    except (LookupError, ValueError):
        # a language wordfreq has no list for (or no valid tag): its wildcard slots get English words
        words = wordfreq.top_n_list("en", 6000)
    words = [w for w in words if w.isalpha() and len(w) > 2]
    return words[200:] or ["thing"]


def test_example(t: TestCase, grammar: Grammar, path: Path) -> Example:
    """A ``tests:`` sentence as a labelled example, in the spoken form the model reads.

    The grammar's own parse gives the slot spans when the sentence is one of its sentences with
    the expected intent; otherwise each expected value is looked for among the ways its list says it.
    """
    text = spoken_form(t.text)
    match = grammar.match(text, max_distance=0.0)
    expected = {k: v for k, v in t.slots.items()}
    if match is not None and match.intent == t.intent:
        entities = [
            Entity(s.start, s.end, s.name, str(s.value)) for s in match.slots if s.name in expected and s.end > s.start
        ]
        if {e.entity for e in entities} >= {k for k in expected if _said_slot(k, grammar)}:
            return Example(text, t.intent, tuple(entities))
    entities = []
    for slot, value in expected.items():
        for v in value if isinstance(value, list) else [value]:
            span = _find_value(text, slot, v, grammar)
            if span is None:
                if not _said_slot(slot, grammar):
                    continue  # a slot the block sets without words (domain: light)
                raise TemplateError(f"{path}:{t.line}: tests: {slot} = {v!r} is not said in {t.text!r}")
            entities.append(Entity(span[0], span[1], slot, str(v)))
    return Example(text, t.intent, tuple(sorted(entities, key=lambda e: e.start)))


def _said_slot(name: str, grammar: Grammar) -> bool:
    return name in grammar.slots


def _find_value(text: str, slot: str, value: Any, grammar: Grammar) -> tuple[int, int] | None:
    forms = {spoken_form(str(value))}
    node = grammar.slots.get(slot)
    if node is not None:
        for v in node.values:
            if str(v.out) == str(value) or (isinstance(v.out, (int, float)) and str(v.out) == str(value)):
                forms |= {
                    " ".join(t[0] for t in Sampler(random.Random(0), ["x"]).sample(v.body, cover=i))
                    for i in range(min(8, Sampler(random.Random(0), ["x"]).branching(v.body)))
                }
    for form in sorted((f for f in forms if f), key=len, reverse=True):
        m = re.search(rf"(?<!\w){re.escape(form)}(?!\w)", text)
        if m:
            return m.start(), m.end()
    return None


# --------------------------------------------------------------------------- command line


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tools.templates",
        description="Check a Home Assistant intents file and show what edge-train would train on.",
    )
    p.add_argument("file", help="intents file (YAML or JSON), or ha:LANG for Home Assistant's own (e.g. ha:en)")
    p.add_argument(
        "--lists", type=Path, help="your name / area / floor lists (hassil lists: or Home Assistant fixtures)"
    )
    p.add_argument("--show", type=int, default=3, help="example sentences shown per intent")
    p.add_argument("--max-sentences", type=int, default=12000)
    args = p.parse_args(argv)
    try:
        e = expand_intents_file(args.file, lists=args.lists, max_sentences=args.max_sentences)
    except DataError as exc:
        print(f"tools.templates: {exc}", file=sys.stderr)
        return 2
    for name, c in e.info["intents"].items():
        print(f"{name}: {c['templates']} templates, {c['expansions']} expansions, {c['sentences']} sentences")
        for x in [x for x in e.train if x.intent == name][: args.show]:
            shown = x.text
            for ent in reversed(x.entities):
                shown = (
                    shown[: ent.start] + f"[{shown[ent.start : ent.end]}]({ent.entity}={ent.value})" + shown[ent.end :]
                )
            print(f"    {shown}")
    print(f"train {len(e.train)}, dev {len(e.dev)}, held-out {len(e.heldout)}, tests {len(e.tests)}")
    print(f"whisper prompt: {e.prompt[:200]}")
    for w in e.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
