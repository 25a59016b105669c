"""Expansion of a checked intents file (``tools.intents_file``) into labelled training sentences.

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

from hassil.expression import Alternative, Expression, ListReference, Permutation, RuleReference, Sequence, TextChunk
from hassil.intents import Intents, RangeSlotList, SlotList, TextSlotList

from tools.augment import FILLERS, augment
from tools.data import DataError, Entity, Example
from tools.intents_file import IntentsFile, TemplateError, TestCase, load, walk

MAX_SYNONYMS = 200
"""Surface forms per list value recorded for canonical lookup (a template value can expand to many)."""
MAX_RANGE_VALUES = 2000
"""Numbers of a range list recorded for canonical lookup ("twenty five" -> 25)."""

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
                for ref in walk(s.expression, rules):
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
