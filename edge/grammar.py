"""The package's templates as a grammar: the nearest sentence to a transcript, with its slots.

A model package trained from an intents file carries that file (``grammar.json``: hassil's
format, the user's lists merged in). When a transcript is a sentence of the templates, its
parse is right by construction; when a recogniser got a word or two wrong ("a light rose house
coffee"), the nearest sentence of the grammar usually is what was said. :meth:`Grammar.match`
finds that sentence and how far the transcript is from it.

How: every template is compiled into a tree of word sequences, alternatives, slots and lists
over :func:`edge.textnorm.spoken_form` words. For the ``n`` words of a transcript, each node
gets an ``(n+1) x (n+1)`` matrix ``M[j, k]``: the cheapest alignment of transcript words
``j..k-1`` to some expansion of the node, where a substituted word costs ``1 - similarity``
(letters and phones, :mod:`edge.phonetics`), a skipped or extra word 1 (less for filler and skip
words). Sequences are min-plus products of their parts, alternatives element-wise minima, lists
the minimum over their values (computed once per list and transcript); a template's cost is
``M[0, n]``. A template whose words cannot come close is skipped before its matrices are built
(a lower bound from word-by-word costs), which keeps files with hundreds of templates fast.
The best template is then traced back to the list values it chose.

Contexts: a block's ``requires_context`` / ``excludes_context`` keep only the list values whose
own ``context`` agrees (``domain: light`` for "turn on {name}"); keys that no value carries are
the device's context (its area, say), which a transcript cannot tell, so they are not checked.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from rapidfuzz.distance import Indel
from rapidfuzz.process import cdist

from edge.phonetics import similarity, sound
from edge.textnorm import parse_number, say_number, spoken_form

log = logging.getLogger("edge.grammar")

INF = 1e9
MAX_WORDS = 40
"""Longer transcripts are not commands of a template file; they go to the model alone."""
MAX_PHRASINGS = 32
"""Ways of saying one list value that :meth:`Grammar.said_values` looks for (a value is a few words)."""
MAX_ENUMERATION = 256
"""Word-internal alternatives ("light[s]") are expanded into whole words up to this many forms."""
MAX_PERMUTATION_ITEMS = 5
MAX_RANGE_VALUES = 2000
"""Range lists up to this size are matched value by value (fuzzily); larger ones exactly."""
SOFT_WORDS = frozenset("a an the um uh er please and to of in on for my me can could would you".split())
"""Words a recogniser drops or adds most often: skipping or adding one costs less."""
SOFT_COST = 0.5
WEAK_SIMILARITY = 0.6
"""Below this similarity two words are simply different: substituting one for the other then costs a
little more than an extra word, so a word the recogniser added is not read as an optional slot's value."""
WEAK_COST = 1.05
MERGE_SIMILARITY = 0.88
"""Two transcript words count as one grammar word ("never mind" / "nevermind") only when they spell it
nearly exactly; looser, and an extra word next to a slot value is swallowed into it."""
NUMBER_WORD_SIMILARITY = 0.8
"""A range slot's span must hold a word this like a number word: a recogniser's number errors are
homophones and near-homophones ("for", "ate", "fourty"), not rhymes ("green" / "thirteen")."""
WILDCARD_WORD_COST = 0.3
BEST_SLOT = "name"
"""The slot that decides between equally good parses (a device's name), as Home Assistant's matcher."""
"""Per word of a wildcard slot: low, so any words fit, but above an exact template word."""


# --------------------------------------------------------------------------- compiled nodes


@dataclasses.dataclass(frozen=True, eq=False)
class Words:
    words: tuple[str, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class Seq:
    items: tuple[Any, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class Alt:
    items: tuple[Any, ...]
    optional: bool = False


@dataclasses.dataclass(frozen=True, eq=False)
class Value:
    body: Any
    out: Any
    """The canonical value (a list value's ``out``, or its words)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Slot:
    name: str
    values: tuple[Value, ...] = ()
    kind: str = "list"
    """``list`` (``values``), ``wildcard`` (any words), ``number`` (a large range: exact number words)."""
    number_range: tuple[float, float, float, float, tuple[float, ...]] | None = None
    """(start, stop, step, multiplier, fractions) of a range: ``number``, or a range small enough
    to be a list of its numbers' words."""


@dataclasses.dataclass(frozen=True)
class Template:
    intent: str
    node: Any
    fixed_slots: dict[str, Any]
    text: str
    required: frozenset[str]
    """Words every expansion contains (for the lower bound)."""


@dataclasses.dataclass(frozen=True)
class GrammarSlot:
    name: str
    value: Any
    """Canonical value: the list value's ``out`` (numbers as int or float)."""
    text: str
    """The transcript words it was read from (spoken form)."""
    start: int
    """Character offsets in the spoken-form text."""
    end: int
    said: str
    """The value's own words in the grammar (what the words were taken to be)."""
    wildcard: bool = False
    """A free-text slot: its value is whatever was said."""


@dataclasses.dataclass(frozen=True)
class GrammarMatch:
    intent: str
    slots: tuple[GrammarSlot, ...]
    fixed_slots: dict[str, Any]
    """Slots the template's block sets without words (``slots:`` in the intents file)."""
    cost: float
    """Edit cost of the transcript against the chosen sentence (0: it is one of the sentences)."""
    distance: float
    """``cost`` per word of the longer of transcript and sentence (0..~1)."""
    text: str
    """The transcript in spoken form."""
    sentence: str
    """The grammar sentence it was matched to."""
    template: str


# --------------------------------------------------------------------------- compiling hassil templates


class _Compiler:
    def __init__(self, intents: Any) -> None:
        self.intents = intents
        self._memo: dict[tuple, Any] = {}
        self._interned: dict[tuple, Any] = {}
        self.by_name: dict[str, list[Slot]] = {}
        self.unusable: list[tuple[str, str, str]] = []
        self._shortest: dict[int, int] = {}
        self._required: dict[int, frozenset[str]] = {}

    # One object per distinct part: templates that share words, alternatives and sequence prefixes
    # ("[can I get|I'd like] [a|an] {size} ...") then share their cost matrices when matching.

    def _words(self, words: tuple[str, ...]) -> Words:
        return self._interned.setdefault(("w", words), Words(words))

    def _alt(self, items: tuple, optional: bool) -> Alt:
        return self._interned.setdefault(("a", tuple(id(i) for i in items), optional), Alt(items, optional))

    def _seq(self, items: list) -> Any:
        items = [i for i in items if not (isinstance(i, Words) and not i.words)]
        if not items:
            return self._words(())
        node = items[0]
        for item in items[1:]:  # left-nested pairs, so that a shared prefix is one node
            node = self._interned.setdefault(("s", id(node), id(item)), Seq((node, item)))
        return node

    def template_nodes(self) -> list[Template]:
        out = []
        for name, intent in self.intents.intents.items():
            for data in intent.data:
                lists = {**self.intents.slot_lists, **data.slot_lists}
                rules = {**self.intents.expansion_rules, **data.expansion_rules}
                ctx = (_context_filter(data.requires_context), _context_filter(data.excludes_context))
                for sentence in data.sentences:
                    try:
                        node = self.expr(sentence.expression, lists, rules, ctx, id(data))
                        if _shortest(node, self._shortest) > MAX_WORDS:
                            raise _Unusable(f"its shortest sentence has more than {MAX_WORDS} words")
                    except _Unusable as exc:
                        log.debug("template %r of %s not used for matching: %s", sentence.text, name, exc)
                        self.unusable.append((name, sentence.text, str(exc)))
                        continue
                    fixed = dict(data.slots or {})
                    out.append(Template(name, node, fixed, sentence.text, _required(node, self._required)))
        return out

    def expr(self, e: Any, lists: dict, rules: dict, ctx: tuple, block: int) -> Any:
        from hassil.expression import Alternative, ListReference, Permutation, RuleReference, Sequence, TextChunk

        if isinstance(e, TextChunk):
            return self._words(tuple(spoken_form(e.text).split()))
        if isinstance(e, Sequence) and not isinstance(e, (Alternative, Permutation)):
            return self.seq(list(e.items), lists, rules, ctx, block)
        if isinstance(e, Alternative):
            items = tuple(self.expr(i, lists, rules, ctx, block) for i in e.items)
            empty = any(isinstance(i, Words) and not i.words for i in items)
            items = tuple(i for i in items if not (isinstance(i, Words) and not i.words))
            return self._alt(items, e.is_optional or empty)
        if isinstance(e, Permutation):
            if len(e.items) > MAX_PERMUTATION_ITEMS:
                raise _Unusable(f"a permutation of {len(e.items)} parts")
            parts = [self.expr(i, lists, rules, ctx, block) for i in e.items]
            return self._alt(tuple(self._seq(list(order)) for order in itertools.permutations(parts)), False)
        if isinstance(e, RuleReference):
            key = ("rule", e.rule_name, block)
            if key not in self._memo:
                body = rules.get(e.rule_name)
                if body is None:
                    raise _Unusable(f"<{e.rule_name}> is not defined")
                self._memo[key] = self.expr(body.expression, lists, rules, ctx, block)
            return self._memo[key]
        if isinstance(e, ListReference):
            return self.slot(e, lists, rules, ctx, block)
        raise _Unusable(f"unexpected template part {type(e).__name__}")

    def seq(self, items: list, lists: dict, rules: dict, ctx: tuple, block: int) -> Any:
        """A sequence, with parts written together without a space ("light[s]") joined into words."""
        from hassil.expression import TextChunk

        segments: list[list] = [[]]
        for item in items:
            if isinstance(item, TextChunk):
                text = item.text
                if not text.strip():
                    if text:
                        segments.append([])
                    continue
                if text[0].isspace():
                    segments.append([])
                pieces = text.split()
                for i, piece in enumerate(pieces):
                    if i:
                        segments.append([])
                    segments[-1].append(piece)
                if text[-1].isspace():
                    segments.append([])
            else:
                segments[-1].append(item)
        nodes = []
        for seg in segments:
            if not seg:
                continue
            if len(seg) == 1:
                part = seg[0]
                nodes.append(
                    self._words(tuple(spoken_form(part).split()))
                    if isinstance(part, str)
                    else self.expr(part, lists, rules, ctx, block)
                )
                continue
            nodes.append(self.glued(seg, lists, rules, ctx, block))
        return self._seq(nodes)

    def glued(self, seg: list, lists: dict, rules: dict, ctx: tuple, block: int) -> Any:
        from hassil.expression import ListReference

        if any(isinstance(p, ListReference) for p in seg):
            # "{area}'s": treat the parts as separate words (rare in templates)
            return self._seq(
                [
                    self._words(tuple(spoken_form(p).split()))
                    if isinstance(p, str)
                    else self.expr(p, lists, rules, ctx, block)
                    for p in seg
                ]
            )
        forms = [[p] if isinstance(p, str) else _strings(p, rules, MAX_ENUMERATION) for p in seg]
        if math.prod(len(f) for f in forms) > MAX_ENUMERATION:
            raise _Unusable("word-internal alternatives with too many forms")
        words = {tuple(spoken_form("".join(combo)).split()) for combo in itertools.product(*forms)}
        alts = tuple(self._words(w) for w in sorted(words) if w)
        if len(alts) == 1 and () not in words:
            return alts[0]
        return self._alt(alts, () in words)

    def slot(self, ref: Any, lists: dict, rules: dict, ctx: tuple, block: int) -> Slot:
        from hassil.intents import RangeSlotList, TextSlotList, WildcardSlotList

        if ref.is_inline_range:
            start, stop, step = ref.get_inline_range()
            slot_list: Any = RangeSlotList(name=ref.slot_name, start=start, stop=stop, step=step)
        else:
            slot_list = lists.get(ref.list_name)
        if slot_list is None:
            raise _Unusable(f"{{{ref.list_name}}} is not defined")
        key = ("list", id(slot_list), ref.slot_name, ctx)
        if key in self._memo:
            return self._memo[key]
        if isinstance(slot_list, WildcardSlotList):
            node = Slot(ref.slot_name, kind="wildcard")
        elif isinstance(slot_list, RangeSlotList):
            node = self.range_slot(ref.slot_name, slot_list)
        elif isinstance(slot_list, TextSlotList):
            values = []
            for value in slot_list.values:
                if not _context_allows(ctx, value.context):
                    continue
                body = self.expr(value.text_in, lists, rules, ctx, block)
                out = value.value_out if value.value_out is not None else " ".join(_first_words(body))
                values.append(Value(body, out))
            if not values:
                raise _Unusable(f"no value of {{{ref.list_name}}} fits the block's context")
            node = Slot(ref.slot_name, tuple(values))
        else:
            raise _Unusable(f"{{{ref.list_name}}}: unsupported list type {type(slot_list).__name__}")
        self._memo[key] = node
        self.by_name.setdefault(ref.slot_name, []).append(node)
        return node

    def slots(self) -> dict[str, Slot]:
        """Per slot name, every value any template can give it (for resolving a model's spans)."""
        out = {}
        for name, nodes in self.by_name.items():
            lists = [n for n in nodes if n.kind == "list"]
            if lists:
                values = {id(v): v for n in lists for v in n.values}
                ranges = [n.number_range for n in lists]
                out[name] = Slot(name, tuple(values.values()), number_range=ranges[0] if all(ranges) else None)
            else:
                out[name] = nodes[0]
        return out

    def range_slot(self, name: str, r: Any) -> Slot:
        from hassil.intents import RangeFractionType

        step = r.step or 1
        fractions = tuple(RangeFractionType.get_fractions(r.fraction_type)) if r.fraction_type else ()
        count = (int((r.stop - r.start) // step) + 1) * (1 + len(fractions)) if r.stop >= r.start else 0
        multiplier = r.multiplier if getattr(r, "multiplier", None) is not None else 1
        number_range = (float(r.start), float(r.stop), float(step), float(multiplier), fractions)
        if count <= MAX_RANGE_VALUES:
            values = []
            for n in r.get_numbers():
                values.append(Value(self._words(tuple(say_number(n).split())), _number(n * multiplier)))
            return Slot(name, tuple(values), number_range=number_range)
        return Slot(name, kind="number", number_range=number_range)


class _Unusable(Exception):
    """A template part the matcher cannot represent; the template is left to the model."""


def _number(n: float) -> int | float:
    return int(n) if float(n).is_integer() else round(float(n), 6)


def _strings(e: Any, rules: dict, limit: int) -> list[str]:
    """Every text an expression can say (for word-internal alternatives); capped at ``limit``."""
    from hassil.expression import Alternative, Permutation, RuleReference, Sequence, TextChunk

    if isinstance(e, TextChunk):
        return [e.text]
    if isinstance(e, Alternative):
        out = []
        for item in e.items:
            out += _strings(item, rules, limit)
            if len(out) > limit:
                raise _Unusable("too many forms")
        return out
    if isinstance(e, Permutation):
        raise _Unusable("a permutation inside a word")
    if isinstance(e, Sequence):
        out = [""]
        for item in e.items:
            out = [a + b for a in out for b in _strings(item, rules, limit)]
            if len(out) > limit:
                raise _Unusable("too many forms")
        return out
    if isinstance(e, RuleReference) and e.rule_name in rules:
        return _strings(rules[e.rule_name].expression, rules, limit)
    raise _Unusable("a list or rule inside a word")


def _context_filter(context: dict | None) -> tuple:
    if not context:
        return ()
    items = []
    for key, value in sorted(context.items()):
        if isinstance(value, dict):
            value = value.get("value")
        if value is None:
            continue
        allowed = frozenset([value] if isinstance(value, str) or not isinstance(value, Iterable) else value)
        items.append((key, allowed))
    return tuple(items)


def _context_allows(ctx: tuple, value_context: dict | None) -> bool:
    required, excluded = ctx
    if not value_context:
        return True
    for key, allowed in required:
        if key in value_context and value_context[key] not in allowed:
            return False
    for key, banned in excluded:
        if key in value_context and value_context[key] in banned:
            return False
    return True


def _first_words(node: Any, limit: int = MAX_WORDS + 1) -> list[str]:
    """The words of a node's first expansion (a list value's own text when it has no ``out``), at most ``limit``."""
    out: list[str] = []
    stack = [node]
    while stack and len(out) < limit:
        n = stack.pop()
        if isinstance(n, Words):
            out.extend(n.words)
        elif isinstance(n, Seq):
            stack.extend(reversed(n.items))
        elif isinstance(n, Alt) and n.items:
            stack.append(n.items[0])
        elif isinstance(n, Slot) and n.values:
            stack.append(n.values[0].body)
    return out[:limit]


def _required(node: Any, memo: dict[int, frozenset[str]] | None = None) -> frozenset[str]:
    """Words that occur in every expansion of ``node`` (memoised: templates share their parts)."""
    memo = {} if memo is None else memo
    key = id(node)
    if key in memo:
        return memo[key]
    if isinstance(node, Words):
        out = frozenset(node.words)
    elif isinstance(node, Seq):
        out = frozenset().union(*(_required(i, memo) for i in node.items)) if node.items else frozenset()
    elif isinstance(node, Alt) and not node.optional and node.items:
        out = frozenset.intersection(*(_required(i, memo) for i in node.items))
    else:
        out = frozenset()
    memo[key] = out
    return out


def _shortest(node: Any, memo: dict[int, int]) -> int:
    """Words in the shortest expansion of ``node``, saturating just past ``MAX_WORDS``."""
    key = id(node)
    if key in memo:
        return memo[key]
    if isinstance(node, Words):
        n = len(node.words)
    elif isinstance(node, Seq):
        n = sum(_shortest(i, memo) for i in node.items)
    elif isinstance(node, Alt):
        n = 0 if node.optional or not node.items else min(_shortest(i, memo) for i in node.items)
    elif isinstance(node, Slot) and node.kind == "list":
        n = min((_shortest(v.body, memo) for v in node.values), default=0)
    else:
        n = 1
    memo[key] = n = min(n, MAX_WORDS + 1)
    return n


def _expansions(node: Any, limit: int) -> list[tuple[str, ...]]:
    """The word sequences a (list value's) node can be said as, at most ``limit`` of them."""
    if isinstance(node, Words):
        return [node.words]
    if isinstance(node, Seq):
        out: list[tuple[str, ...]] = [()]
        for item in node.items:
            out = [a + b for a in out for b in _expansions(item, limit)][:limit]
        return out
    if isinstance(node, Alt):
        out = [()] if node.optional else []
        for item in node.items:
            out += _expansions(item, limit)
        return out[:limit]
    return []  # a slot inside a value: not said word for word


def _vocabulary(node: Any, out: set[str], seen: set[int]) -> None:
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, Words):
        out.update(node.words)
    elif isinstance(node, (Seq, Alt)):
        for i in node.items:
            _vocabulary(i, out, seen)
    elif isinstance(node, Slot):
        for v in node.values:
            _vocabulary(v.body, out, seen)


# --------------------------------------------------------------------------- matching


class _Scorer:
    """Cost matrices of the nodes for one transcript (memoised per node)."""

    def __init__(
        self,
        words: list[str],
        soft: frozenset[str],
        vocab_index: dict[str, int],
        sub_costs: np.ndarray,
        merge_costs: np.ndarray,
    ) -> None:
        self.w = words
        self.n = len(words)
        self.soft = soft
        self.index = vocab_index
        self.sub = sub_costs  # vocab x n
        self.merge = merge_costs  # vocab x (n-1): a grammar word said as two transcript words
        ins = np.array([SOFT_COST if w in soft else 1.0 for w in words])
        self.ins_cum = np.concatenate([[0.0], np.cumsum(ins)])
        self._memo: dict[int, np.ndarray] = {}
        self._splits: dict[str, np.ndarray] = {}
        size = self.n + 1
        self.identity = np.full((size, size), INF)
        np.fill_diagonal(self.identity, 0.0)
        upper = np.triu(np.ones((size, size), bool))
        self.upper = upper
        self.ins_only = np.where(upper, self.ins_cum[None, :] - self.ins_cum[:, None], INF)

    def delete_cost(self, word: str) -> float:
        return SOFT_COST if word in self.soft else 1.0

    def matrix(self, node: Any) -> np.ndarray:
        key = id(node)
        m = self._memo.get(key)
        if m is None:
            m = self._compute(node)
            self._memo[key] = m
        return m

    def _compute(self, node: Any) -> np.ndarray:
        if isinstance(node, Words):
            return self.words_matrix(node.words)
        if isinstance(node, Seq):
            if not node.items:
                return self.identity
            m = self.matrix(node.items[0])
            for item in node.items[1:]:
                m = minplus(m, self.matrix(item))
            return m
        if isinstance(node, Alt):
            m = self.identity.copy() if node.optional or not node.items else np.full_like(self.identity, INF)
            for item in node.items:
                np.minimum(m, self.matrix(item), out=m)
            return m
        if isinstance(node, Slot):
            return self.slot_matrix(node)
        raise TypeError(node)

    def words_matrix(self, labels: tuple[str, ...]) -> np.ndarray:
        """Edit distance of ``labels`` to every span ``j..k`` of the transcript, extra words included."""
        n = self.n
        d_prev2 = None
        d_prev = self.ins_only.copy()
        for i, label in enumerate(labels):
            row = self.index[label]
            e = d_prev + self.delete_cost(label)
            if n:
                sub = d_prev[:, :-1] + self.sub[row][None, :]
                np.minimum(e[:, 1:], sub, out=e[:, 1:])
                if n > 1:
                    merged = d_prev[:, :-2] + self.merge[row][None, :]
                    np.minimum(e[:, 2:], merged, out=e[:, 2:])
                if d_prev2 is not None:
                    split = d_prev2[:, :-1] + self._split_cost(labels[i - 1], label)[None, :]
                    np.minimum(e[:, 1:], split, out=e[:, 1:])
            # extra transcript words after this label: a running minimum along k
            e = self.ins_cum[None, :] + np.minimum.accumulate(e - self.ins_cum[None, :], axis=1)
            e[~self.upper] = INF
            d_prev2, d_prev = d_prev, e
        return d_prev

    def _split_cost(self, a: str, b: str) -> np.ndarray:
        """Two grammar words said as one transcript word ("never mind" -> "nevermind")."""
        joined = a + b
        cost = self._splits.get(joined)
        if cost is None:
            sim = cdist([joined], self.w, scorer=Indel.normalized_similarity)[0] if self.n else np.zeros(0)
            cost = self._splits[joined] = np.where(sim >= MERGE_SIMILARITY, 1.0 - sim, INF) + 0.1
        return cost

    def slot_matrix(self, slot: Slot) -> np.ndarray:
        size = self.n + 1
        if slot.kind == "wildcard":
            span = np.arange(size)[None, :] - np.arange(size)[:, None]
            return np.where(span >= 1, span * WILDCARD_WORD_COST, INF)
        if slot.kind == "number":
            m = np.full((size, size), INF)
            start, stop, step, _, fractions = slot.number_range
            for j in range(self.n):
                for k in range(j + 1, min(self.n, j + 8) + 1):
                    n = parse_number(" ".join(self.w[j:k]))
                    if n is not None and _in_range(n, start, stop, step, fractions):
                        m[j, k] = 0.0
            return m
        m = np.full((size, size), INF)
        for value in slot.values:
            np.minimum(m, self.matrix(value.body), out=m)
        return m

    # -- tracing the best path back to its words and slots

    def trace(self, node: Any, j: int, k: int, out: list) -> None:
        """Append, in order, the grammar words (``str``) and slots (``_Filled``) of the best path over ``j..k``."""
        if isinstance(node, Words):
            out.extend(node.words)
            return
        target = self.matrix(node)[j, k]
        if isinstance(node, Seq):
            if not node.items:
                return
            for item, (a, b) in zip(node.items, self._split_points(node.items, j, k, target)):
                self.trace(item, a, b, out)
        elif isinstance(node, Alt):
            for item in node.items:
                if self.matrix(item)[j, k] <= target + 1e-9:
                    self.trace(item, j, k, out)
                    return
        elif isinstance(node, Slot):
            out.append(self._filled(node, j, k, target))

    def _filled(self, slot: Slot, j: int, k: int, target: float) -> _Filled:
        text = " ".join(self.w[j:k])
        if slot.kind == "wildcard":
            return _Filled(slot.name, text, j, k, tuple(self.w[j:k]), wildcard=True)
        if slot.kind == "number":
            number = parse_number(text)
            return _Filled(slot.name, _number((number or 0) * slot.number_range[3]), j, k, tuple(self.w[j:k]))
        for value in slot.values:
            if self.matrix(value.body)[j, k] <= target + 1e-9:
                return self.filled_by(slot, value, j, k)
        return _Filled(slot.name, None, j, k, ())

    def filled_by(self, slot: Slot, value: Value, j: int, k: int) -> _Filled:
        """List ``slot`` read as ``value`` over ``j..k``: the value's words, on the narrowest span that costs the same."""
        a, b = self._tightest(self.matrix(value.body), j, k)
        inner: list = []
        self.trace(value.body, a, b, inner)
        return _Filled(slot.name, value.out, a, b, tuple(inner))

    def _tightest(self, m: np.ndarray, j: int, k: int) -> tuple[int, int]:
        """The narrowest span inside ``j..k`` that costs the same once the words around it count as extra:
        a slot's text should not include the words a recogniser added next to it."""
        target = m[j, k]
        best = (j, k)
        for a in range(j, k + 1):
            for b in range(k, a - 1, -1):
                cost = m[a, b] + (self.ins_cum[a] - self.ins_cum[j]) + (self.ins_cum[k] - self.ins_cum[b])
                if cost <= target + 1e-9 and b - a < best[1] - best[0]:
                    best = (a, b)
        return best

    def _split_points(self, items: tuple, j: int, k: int, target: float) -> list[tuple[int, int]]:
        # prefix products from j, then walk back from k
        prefix = [self.matrix(items[0])[j]]
        for item in items[1:]:
            prefix.append((prefix[-1][:, None] + self.matrix(item)).min(axis=0))
        spans = []
        end = k
        for i in range(len(items) - 1, 0, -1):
            m = self.matrix(items[i])[:, end]
            cand = prefix[i - 1] + m
            start = int(np.argmin(np.where(np.arange(len(cand)) <= end, cand, INF)))
            spans.append((start, end))
            end = start
        spans.append((j, end))
        return spans[::-1]


@dataclasses.dataclass(frozen=True)
class _Filled:
    name: str
    value: Any
    start: int
    """Transcript word span."""
    end: int
    said: tuple
    """The grammar's words (and nested slots) for the value."""
    wildcard: bool = False


def _in_range(n: float, start: float, stop: float, step: float, fractions: tuple[float, ...]) -> bool:
    whole, part = divmod(n, 1.0)
    if part > 1e-9 and not any(abs(part - f) < 1e-6 for f in fractions):
        return False
    q = (whole - start) / step
    return start <= whole <= stop and abs(q - round(q)) < 1e-6


def minplus(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``C[j, k] = min_i A[j, i] + B[i, k]``."""
    return (a[:, :, None] + b[None, :, :]).min(axis=1)


# --------------------------------------------------------------------------- the grammar


class Grammar:
    """Templates of one intents file, ready to match transcripts against."""

    def __init__(self, intents: Any, skip_words: Iterable[str] = ()) -> None:
        self.intents = intents
        compiler = _Compiler(intents)
        self.templates = compiler.template_nodes()
        self.unusable = compiler.unusable
        """(intent, template, why) of the templates left out of matching."""
        self.slots = compiler.slots()
        vocab: set[str] = set()
        seen: set[int] = set()
        for t in self.templates:
            _vocabulary(t.node, vocab, seen)
        for slot in self.slots.values():
            _vocabulary(slot, vocab, seen)
        self.vocabulary = sorted(vocab)
        self._index = {w: i for i, w in enumerate(self.vocabulary)}
        self._sound = sound(self.vocabulary)
        skip = {w for s in skip_words for w in spoken_form(s).split()}
        self.soft = SOFT_WORDS | frozenset(skip)
        self._phrasings: dict[str, dict[str, list[tuple[tuple[str, ...], Any]]]] = {}
        self._number_words: dict[str, list[str]] = {}

    @classmethod
    def from_dict(cls, data: dict) -> Grammar:
        from hassil.intents import Intents

        return cls(Intents.from_dict(data), data.get("skip_words") or ())

    @classmethod
    def from_file(cls, path: str | Path) -> Grammar:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def match(self, text: str, max_distance: float = 1.0) -> GrammarMatch | None:
        """The nearest sentence of the grammar to ``text`` (any form), or None beyond ``max_distance``."""
        words = spoken_form(text).split()
        if not words or len(words) > MAX_WORDS or not self.templates:
            return None
        scorer = self._scorer(words)
        lower = self._lower_bounds(scorer)
        best_cost: float | None = None
        tied: list[Template] = []
        budget = max_distance * len(words)
        for bound, template in sorted(zip(lower, self.templates), key=lambda x: x[0]):
            limit = best_cost if best_cost is not None else budget
            if bound > limit + 1e-9:
                break
            cost = float(scorer.matrix(template.node)[0, len(words)])
            if best_cost is None or cost < best_cost - 1e-9:
                if cost <= budget + 1e-9:
                    best_cost, tied = cost, [template]
            elif cost <= best_cost + 1e-9:
                tied.append(template)
        if best_cost is None:
            return None
        matches = [self._explain(scorer, words, best_cost, t) for t in tied]
        best = min(matches, key=_preference)
        return best if best.distance <= max_distance else None

    def _explain(self, scorer: _Scorer, words: list[str], cost: float, template: Template) -> GrammarMatch:
        path: list = []
        scorer.trace(template.node, 0, len(words), path)
        spoken = " ".join(words)
        offsets = [0]
        for w in words:
            offsets.append(offsets[-1] + len(w) + 1)
        slots: list[GrammarSlot] = []
        sentence = _flatten(path, slots, spoken, offsets)
        distance = cost / max(len(words), len(sentence), 1)
        return GrammarMatch(
            template.intent,
            tuple(slots),
            dict(template.fixed_slots),
            float(cost),
            float(distance),
            spoken,
            " ".join(sentence),
            template.text,
        )

    def compile_sentences(self, sentences: Iterable[Any]) -> list[Any]:
        """Compile other templates (an intents file's ``out_of_scope``) with the file's global lists and rules."""
        compiler = _Compiler(self.intents)
        lists, rules = self.intents.slot_lists, self.intents.expansion_rules
        out = []
        for sentence in sentences:
            try:
                out.append(compiler.expr(sentence.expression, lists, rules, ((), ()), 0))
            except _Unusable as exc:
                log.debug("sentence %r not used: %s", getattr(sentence, "text", sentence), exc)
        return out

    def resolve(self, name: str, text: str) -> tuple[Any, float] | None:
        """The value of list ``name`` nearest to ``text`` and how close (0..1), or None if no list has that name."""
        slot = self.slots.get(name)
        words = spoken_form(text).split()
        if slot is None or not words or len(words) > MAX_WORDS:
            return None
        if slot.kind == "wildcard":
            return text, 1.0
        if slot.number_range is not None and not self._says_a_number(name, slot, words):
            return text, 0.0
        scorer = self._scorer(words)
        n = len(words)
        if slot.kind == "list":
            found = self._nearest_value(scorer, slot)
            if found is None:
                return text, 0.0
            value, cost = found
            filled = scorer.filled_by(slot, value, 0, n)
        else:
            cost = float(scorer.slot_matrix(slot)[0, n])
            if cost >= INF:
                return text, 0.0
            filled = scorer._filled(slot, 0, n, cost)
        said = [w for w in filled.said if isinstance(w, str)]
        return filled.value, max(0.0, 1.0 - cost / max(n, len(said), 1))

    def _says_a_number(self, name: str, slot: Slot, words: list[str]) -> bool:
        """Whether a range's span says a number: one of its words is a number word or sounds nearly
        like one ("for", "fourty"). A range's value is a number said, not any word that half rhymes
        with one ("green" is 0.6 like "thirteen")."""
        if any(parse_number(w) is not None for w in words):
            return True
        number_words = self._number_words.get(name)
        if number_words is None:
            found: set[str] = set()
            _vocabulary(slot, found, set())
            number_words = self._number_words[name] = sorted(found)
        if not number_words:
            return True
        # two number words run together ("eightythree")
        if any(w.startswith(n) for w in words for n in number_words if len(n) >= 3 and len(w) > len(n)):
            return True
        sim = similarity(number_words, words, sound(number_words), sound(words))
        return bool(sim.max() >= NUMBER_WORD_SIMILARITY)

    def _nearest_value(self, scorer: _Scorer, slot: Slot) -> tuple[Value, float] | None:
        """The list value whose words the whole transcript is cheapest as (the first of equals), and
        that cost; values are tried from the lowest lower bound and the rest are skipped once no
        bound is below the best cost (a list of devices can hold hundreds of names)."""
        bound = self._bound(scorer)
        order = sorted(range(len(slot.values)), key=lambda i: (bound(slot.values[i].body), i))
        best: tuple[float, int] | None = None
        for i in order:
            if best is not None and bound(slot.values[i].body) > best[0] + 1e-9:
                break
            cost = float(scorer.matrix(slot.values[i].body)[0, scorer.n])
            if cost < INF and (best is None or cost < best[0] - 1e-9 or (cost <= best[0] + 1e-9 and i < best[1])):
                best = (cost, i)
        return None if best is None else (slot.values[best[1]], best[0])

    def says_other_known_words(self, match: GrammarMatch) -> bool:
        """Whether the text says words of this grammar where the matched sentence says others, or says
        a (not soft) word of it the sentence leaves out: "activate each light" matched to
        "deactivate each light". Near matches recover words a recogniser got wrong, which are mostly
        words the grammar does not know; a word it knows is more likely meant."""
        said, sentence = match.text.split(), match.sentence.split()
        opcodes = difflib.SequenceMatcher(a=said, b=sentence, autojunk=False).get_opcodes()
        for op, i1, i2, _, _ in opcodes:
            words = said[i1:i2]
            if op == "replace" and any(w in self._index for w in words):
                return True
            if op == "delete" and any(w in self._index and w not in self.soft for w in words):
                return True
        return False

    def said_values(self, name: str, words: list[str]) -> list[tuple[int, int, Any]]:
        """Every ``(first, end, value)`` where ``words`` (spoken form) say a value of list ``name`` word for word."""
        phrasings = self._phrasings.get(name)
        if phrasings is None:
            slot = self.slots.get(name)
            phrasings = {}
            if slot is not None and slot.kind == "list":
                for v in slot.values:
                    for said in _expansions(v.body, MAX_PHRASINGS):
                        if said:
                            phrasings.setdefault(said[0], []).append((said, v.out))
            self._phrasings[name] = phrasings
        found = []
        for i, word in enumerate(words):
            for said, out in phrasings.get(word, ()):
                if tuple(words[i : i + len(said)]) == said:
                    found.append((i, i + len(said), out))
        return found

    def _scorer(self, words: list[str]) -> _Scorer:
        vocab = self.vocabulary
        sim = similarity(vocab, words, self._sound, sound(words))
        sub = np.where(sim >= 1.0, 0.0, np.where(sim >= WEAK_SIMILARITY, 1.0 - sim, WEAK_COST))
        if len(words) > 1:
            pairs = [a + b for a, b in zip(words, words[1:])]
            msim = similarity(vocab, pairs, self._sound, sound(pairs))
            merge = np.where(msim >= MERGE_SIMILARITY, 1.0 - msim + 0.1, INF)
        else:
            merge = np.zeros((len(vocab), 0))
        return _Scorer(words, self.soft, self._index, sub, merge)

    def _lower_bounds(self, scorer: _Scorer) -> list[float]:
        """Per template, a cost it cannot go below: every word at its cheapest, wherever it is said."""
        bound = self._bound(scorer)
        return [bound(t.node) for t in self.templates]

    def _bound(self, scorer: _Scorer) -> Callable[[Any], float]:
        """A node's lower bound on its cost against this transcript (memoised per node)."""
        if scorer.n:
            cheapest = np.minimum(scorer.sub.min(axis=1), 1.0)
            if scorer.merge.shape[1]:
                cheapest = np.minimum(cheapest, scorer.merge.min(axis=1))
        else:
            cheapest = np.ones(len(self.vocabulary))
        word_cost = {w: float(cheapest[i]) for w, i in self._index.items()}
        for w in self.soft:
            if w in word_cost:
                word_cost[w] = min(word_cost[w], SOFT_COST)
        memo: dict[int, float] = {}
        lengths = sorted({len(w) for w in scorer.w})

        def split_cost(a: str, b: str) -> float:
            """At least what two grammar words cost said as one transcript word (their letters' Indel
            similarity to it can be no higher than their lengths allow)."""
            joined = len(a) + len(b)
            top = max((2 * min(joined, n) / (joined + n) for n in lengths), default=0.0)
            return 1.0 - top + 0.1 if top >= MERGE_SIMILARITY else INF

        def words_bound(words: tuple[str, ...]) -> float:
            before, last = 0.0, 0.0  # cheapest cost of the words up to i-2 and up to i-1
            for i, w in enumerate(words):
                now = last + word_cost[w]
                if i:
                    now = min(now, before + split_cost(words[i - 1], w))
                before, last = last, now
            return last

        def bound(node: Any) -> float:
            key = id(node)
            if key in memo:
                return memo[key]
            if isinstance(node, Words):
                b = words_bound(node.words)
            elif isinstance(node, Seq):
                b = sum(bound(i) for i in node.items)
            elif isinstance(node, Alt):
                b = 0.0 if node.optional or not node.items else min(bound(i) for i in node.items)
            elif isinstance(node, Slot):
                b = min((bound(v.body) for v in node.values), default=0.0)
            else:
                b = 0.0
            memo[key] = b
            return b

        return bound


def to_jsgf(grammar: Grammar, known: set[str] | None = None, name: str = "commands") -> str:
    """The templates as a JSGF grammar (for PocketSphinx's grammar search), or "" when none can be written.

    Parts used more than once become rules of their own, so the grammar stays the size of the
    file. Wildcards and ranges too large to list cannot be written as a finite grammar; templates
    with them, and alternatives with words outside ``known`` (the recogniser's dictionary), are left out.
    """
    uses: dict[int, int] = {}

    def count(node: Any) -> None:
        uses[id(node)] = uses.get(id(node), 0) + 1
        if uses[id(node)] > 1:
            return
        for child in _children(node):
            count(child)

    for t in grammar.templates:
        count(t.node)
    rules: dict[int, str] = {}
    bodies: list[str] = []
    memo: dict[int, str | None] = {}

    def body(node: Any) -> str | None:
        key = id(node)
        if key in memo:
            return memo[key]
        if isinstance(node, Words):
            out = " ".join(node.words) if all(known is None or w in known for w in node.words) else None
        elif isinstance(node, Seq):
            parts = [ref(i) for i in node.items]
            out = None if any(p is None for p in parts) else " ".join(p for p in parts if p)
        elif isinstance(node, Alt):
            parts = [p for p in (ref(i) for i in node.items) if p is not None]
            if not parts and not node.optional:
                out = None
            elif not parts:
                out = ""
            else:
                joined = " | ".join(parts)
                out = f"[ {joined} ]" if node.optional else f"( {joined} )"
        elif isinstance(node, Slot) and node.kind == "list":
            parts = [p for p in (ref(v.body) for v in node.values) if p]
            out = f"( {' | '.join(parts)} )" if parts else None
        else:
            out = None  # a wildcard or a large range
        memo[key] = out
        return out

    def ref(node: Any) -> str | None:
        text = body(node)
        if text is None or uses.get(id(node), 0) < 2 or isinstance(node, Words) or not text:
            return text
        if id(node) not in rules:
            rules[id(node)] = f"<r{len(rules)}>"
            bodies.append(f"{rules[id(node)]} = {text};")
        return rules[id(node)]

    tops = [t for t in (ref(t.node) for t in grammar.templates) if t]
    if not tops:
        return ""
    return (
        "\n".join(
            ["#JSGF V1.0;", f"grammar {name};", f"public <command> = {' | '.join(dict.fromkeys(tops))};", *bodies]
        )
        + "\n"
    )


def _children(node: Any) -> list:
    if isinstance(node, (Seq, Alt)):
        return list(node.items)
    if isinstance(node, Slot):
        return [v.body for v in node.values]
    return []


def _preference(m: GrammarMatch) -> tuple:
    """Among sentences the text matches equally well, the one Home Assistant's matcher would pick
    (hassil's ``recognize_best`` with ``best_slot_name="name"``): a device's name over an area, the
    longest name first; then fewer words taken by wildcards, more of the template's own words."""
    name = next((s for s in m.slots if s.name == BEST_SLOT), None)
    wildcard_words = sum(len(s.text.split()) for s in m.slots if s.wildcard)
    slot_words = sum(len(s.text.split()) for s in m.slots)
    literal = len(m.text.split()) - slot_words
    return (name is None, -(len(name.text) if name else 0), wildcard_words, -literal, m.intent)


def _flatten(path: list, slots: list[GrammarSlot], spoken: str, offsets: list[int]) -> list[str]:
    """The grammar sentence's words; the slots on the way are appended to ``slots`` in order."""
    words: list[str] = []
    for step in path:
        if isinstance(step, str):
            words.append(step)
            continue
        said = _flatten(list(step.said), slots, spoken, offsets)
        start = offsets[step.start]
        end = offsets[step.end] - 1 if step.end > step.start else start
        slots.append(GrammarSlot(step.name, step.value, spoken[start:end], start, end, " ".join(said), step.wildcard))
        words += said
    return words


__all__ = ["Grammar", "GrammarMatch", "GrammarSlot", "minplus", "to_jsgf"]
