"""Spoken-input augmentation: make written training sentences look like what a recogniser writes.

The intent model reads speech-to-text output: lower case, no punctuation, numbers as words
("set it to twenty five percent"), the odd "um" or "please", and now and then a misheard small
word ("turn of the lights", "set a timer four ten minutes"). Template expansions are clean
written text, so a model trained on them alone learns that digits and "%" matter and stumbles
on transcripts. Each augmentation here rewrites a labelled example word by word and keeps its
slot spans, so the slot labels stay right after the rewrite.

Number words and symbols reuse the speech side's own normaliser (``edge.stt.adapt.spoken_form``),
so the training text and the STT domain language model agree on how "25%" is said. Confusions
are a short table of English near-homophones among function words that PocketSphinx and Vosk
commonly swap; slot words are never confused or dropped (their canonical value must survive).
"""

from __future__ import annotations

import itertools
import random
import re

from edge.stt.adapt import spoken_form
from tools.data import Entity, Example

FILLERS = ("um", "uh", "please", "okay", "so", "hey", "could you", "can you", "i want to", "i'd like to", "just")
"""Said before a command; the intents file's ``skip_words`` are added to these."""
HESITATIONS = ("um", "uh", "er")
"""Said anywhere between words."""
CLOSINGS = ("please", "thanks", "thank you", "now")
"""Said after a command."""
CONFUSIONS = {
    "to": ("two", "too"), "two": ("to",), "too": ("to",), "for": ("four",), "four": ("for",),
    "the": ("a", "uh"), "a": ("the",), "an": ("and",), "and": ("an", "in"), "in": ("and", "an"), "on": ("an", "and"),
    "off": ("of",), "of": ("off",), "lights": ("light",), "light": ("lights", "like"), "set": ("said", "sat"),
    "my": ("by", "might"), "what's": ("what", "what is"), "it's": ("it", "its"), "is": ("his", "as"),
    "up": ("app",), "down": ("don",), "turn": ("turned", "tone"), "timer": ("time",), "minutes": ("minute",),
}
DROPPABLE = frozenset({"the", "a", "to", "my", "please", "in", "for", "is", "it"})
"""Words a recogniser may miss without changing the command ("on"/"off" are never dropped)."""

Token = tuple[str, int | None]  # one spoken word and the index of the entity it belongs to


def tokens(ex: Example) -> list[Token]:
    """The example as words, each tagged with its entity; a word part in a slot becomes its own word."""
    owner = [None] * len(ex.text)
    for k, ent in enumerate(ex.entities):
        for i in range(ent.start, ent.end):
            owner[i] = k
    out: list[Token] = []
    for m in re.finditer(r"\S+", ex.text):
        for k, run in itertools.groupby(range(m.start(), m.end()), key=lambda i: owner[i]):
            chars = list(run)
            out.append((ex.text[chars[0] : chars[-1] + 1], k))
    return out


def from_tokens(toks: list[Token], ex: Example) -> Example:
    """Join words with single spaces and rebuild each entity's span from its words."""
    text, spans = "", {}
    for word, k in toks:
        if not word:
            continue
        if text:
            text += " "
        start = len(text)
        text += word
        if k is not None:
            s, _ = spans.get(k, (start, start))
            spans[k] = (s, len(text))
    ents = tuple(Entity(s, e, ex.entities[k].entity, ex.entities[k].value) for k, (s, e) in sorted(spans.items())
                 if e > s)
    return Example(text, ex.intent, ents)


def spoken(ex: Example) -> Example:
    """Lower case, no punctuation, numbers and symbols in words (the recogniser's way of writing)."""
    out: list[Token] = []
    for word, k in tokens(ex):
        out.extend((w, k) for w in spoken_form(word).split())
    return from_tokens(out, ex)


def augment(ex: Example, rng: random.Random, fillers: tuple[str, ...] = FILLERS, p_filler: float = 0.3,
            p_confusion: float = 0.25, p_drop: float = 0.1) -> Example:
    """The spoken form of ``ex`` with, at random, a filler word, a misheard or a dropped function word."""
    toks = tokens(spoken(ex))
    confused = -1
    if rng.random() < p_confusion:
        free = [i for i, (w, k) in enumerate(toks) if k is None and w in CONFUSIONS]
        if free:
            confused = rng.choice(free)
            toks[confused] = (rng.choice(CONFUSIONS[toks[confused][0]]), None)
    if rng.random() < p_drop:
        # Never the word just confused: "off" -> "of" -> dropped would make "turn off" read as "turn".
        free = [i for i, (w, k) in enumerate(toks) if k is None and w in DROPPABLE and i != confused]
        if free and len(toks) > 2:
            del toks[rng.choice(free)]
    if rng.random() < p_filler:
        where = rng.choice(("start", "start", "middle", "end"))
        if where == "start":
            i, filler = 0, rng.choice(fillers)
        elif where == "end":
            i, filler = len(toks), rng.choice(CLOSINGS)
        else:  # a hesitation between two words that are not inside one slot
            gaps = [i for i in range(1, len(toks)) if toks[i - 1][1] is None or toks[i - 1][1] != toks[i][1]]
            i, filler = (rng.choice(gaps) if gaps else 0), rng.choice(HESITATIONS)
        toks[i:i] = [(w, None) for w in spoken_form(filler).split()]
    return from_tokens(toks, ex)
