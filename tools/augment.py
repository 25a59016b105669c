"""Spoken-input augmentation: make written training sentences look like what a recogniser writes.

The intent model reads speech-to-text output: lower case, no punctuation, numbers as words
("set it to twenty five percent"), the odd "um" or "please", and now and then a misheard small
word ("turn of the lights", "set a timer four ten minutes"). Template expansions are clean
written text, so a model trained on them alone learns that digits and "%" matter and stumbles
on transcripts. Each augmentation here rewrites a labelled example word by word and keeps its
slot spans, so the slot labels stay right after the rewrite.

Number words and symbols use the runtime's own normaliser (``edge.textnorm.spoken_form``), so
the training text, the grammar and the STT domain language model agree on how "25%" is said.
Confusions are near-homophones: a short table of function words PocketSphinx and Vosk commonly
swap, and sound-alikes of the grammar's words (:class:`Augmenter`).
"""

from __future__ import annotations

import functools
import itertools
import random
import re

import numpy as np

from edge.textnorm import spoken_form

from .data import Entity, Example

FILLERS = ("um", "uh", "please", "okay", "so", "hey", "could you", "can you", "i want to", "i'd like to", "just")
"""Said before a command; the intents file's ``skip_words`` are added to these."""
HESITATIONS = ("um", "uh", "er")
"""Said anywhere between words."""
CLOSINGS = ("please", "thanks", "thank you", "now")
"""Said after a command."""
CONFUSIONS = {
    "to": ("two", "too"),
    "two": ("to",),
    "too": ("to",),
    "for": ("four",),
    "four": ("for",),
    "the": ("a", "uh"),
    "a": ("the",),
    "an": ("and",),
    "and": ("an", "in"),
    "in": ("and", "an"),
    "on": ("an", "and"),
    "off": ("of",),
    "of": ("off",),
    "lights": ("light",),
    "light": ("lights", "like"),
    "set": ("said", "sat"),
    "my": ("by", "might"),
    "what's": ("what", "what is"),
    "it's": ("it", "its"),
    "is": ("his", "as"),
    "up": ("app",),
    "down": ("don",),
    "turn": ("turned", "tone"),
    "timer": ("time",),
    "minutes": ("minute",),
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
    ents = tuple(
        Entity(s, e, ex.entities[k].entity, ex.entities[k].value) for k, (s, e) in sorted(spans.items()) if e > s
    )
    return Example(text, ex.intent, ents)


def spoken(ex: Example) -> Example:
    """Lower case, no punctuation, numbers and symbols in words (the recogniser's way of writing)."""
    out: list[Token] = []
    for word, k in tokens(ex):
        out.extend((w, k) for w in spoken_form(word).split())
    return from_tokens(out, ex)


@functools.lru_cache(maxsize=4)
def _pronounceable_common_words(n: int) -> list[str]:
    """The ``n`` most frequent English words that have a pronunciation (the sound-alike candidates)."""
    from edge.phonetics import pronunciations

    try:
        import wordfreq

        common = [w for w in wordfreq.top_n_list("en", n) if w.isalpha()]
    except ImportError:
        return []
    p = pronunciations()
    return [w for w in common if p is None or p.phones(w)]


class Augmenter:
    """What a recogniser and a person's own words do to a template sentence, slot labels kept.

    Sound-alikes are found for the grammar's own words: frequent English words whose phones (CMU
    dictionary, ``edge.phonetics``) are close ("roast" -> "rose", "light" -> "like"), so a model
    trained on them tags "a light rose coffee" as it would "a light roast coffee", and the runtime
    then resolves the span to its list value. Slot words may be misheard too (their label stays);
    they are never dropped or replaced by synonyms, so their canonical value survives.
    """

    SOUND_ALIKES = 4
    MIN_SOUND_SIMILARITY = 0.6

    def __init__(
        self,
        vocabulary: list[str],
        skip_words: list[str] | tuple[str, ...] = (),
        rng: random.Random | None = None,
        general_words: int = 20000,
    ) -> None:
        from edge.phonetics import similarity, sound

        self.rng = rng or random.Random(0)
        self.fillers = tuple(dict.fromkeys(FILLERS + tuple(w.lower() for w in skip_words)))
        self.alikes: dict[str, list[str]] = {w: list(c) for w, c in CONFUSIONS.items()}
        common = _pronounceable_common_words(general_words)
        words = [w for w in vocabulary if len(w) > 2 and w.isalpha()]
        if words and common:
            sim = similarity(words, common, sound(words), sound(common))
            for i, w in enumerate(words):
                order = np.argsort(-sim[i])
                found = [
                    common[j]
                    for j in order[: self.SOUND_ALIKES * 3]
                    if common[j] != w and sim[i, j] >= self.MIN_SOUND_SIMILARITY
                ][: self.SOUND_ALIKES]
                if found:
                    self.alikes[w] = list(dict.fromkeys(self.alikes.get(w, []) + found))
        from .lexicon import wordnet

        self.wordnet = wordnet()
        self._synonyms: dict[str, list[str]] = {}

    def recogniser(self, ex: Example, strength: float = 1.0) -> Example:
        """``ex`` as a recogniser might write it: a misheard word, a dropped small word, a filler."""
        toks = tokens(spoken(ex))
        rng = self.rng
        confused = -1
        if rng.random() < 0.4 * strength:
            candidates = [i for i, (w, k) in enumerate(toks) if w in self.alikes]
            if candidates:
                confused = rng.choice(candidates)
                word, k = toks[confused]
                toks[confused] = (rng.choice(self.alikes[word]), k)
        if rng.random() < 0.15 * strength:
            free = [i for i, (w, k) in enumerate(toks) if k is None and w in DROPPABLE and i != confused]
            if free and len(toks) > 2:
                del toks[rng.choice(free)]
        if rng.random() < 0.25 * strength:
            toks = self._add_filler(toks)
        return from_tokens(toks, ex)

    def synonyms(self, ex: Example) -> Example:
        """``ex`` with one template word (or two-word phrase) replaced by a WordNet synonym of its first sense."""
        toks = tokens(spoken(ex))
        if self.wordnet is None:
            return from_tokens(toks, ex)
        spots = []
        for i, (w, k) in enumerate(toks):
            if k is not None:
                continue
            if i + 1 < len(toks) and toks[i + 1][1] is None and self._synonyms_of(f"{w} {toks[i + 1][0]}"):
                spots.append((i, 2))
            if len(w) > 3 and w not in DROPPABLE and self._synonyms_of(w):
                spots.append((i, 1))
        if not spots:
            return from_tokens(toks, ex)
        i, n = self.rng.choice(spots)
        phrase = " ".join(w for w, _ in toks[i : i + n])
        replacement = self.rng.choice(self._synonyms_of(phrase))
        toks[i : i + n] = [(w, None) for w in spoken_form(replacement).split()]
        return from_tokens(toks, ex)

    def _synonyms_of(self, phrase: str) -> list[str]:
        if phrase not in self._synonyms:
            found = self.wordnet.synonyms(phrase, senses=1) if self.wordnet else []
            if not found and phrase.endswith("s") and len(phrase) > 4 and " " not in phrase:
                found = [f"{w}s" for w in self.wordnet.synonyms(phrase[:-1], senses=1) if " " not in w]
            self._synonyms[phrase] = [w for w in found if w.replace(" ", "").isalpha()]
        return self._synonyms[phrase]

    def _add_filler(self, toks: list[Token]) -> list[Token]:
        rng = self.rng
        where = rng.choice(("start", "start", "middle", "end"))
        if where == "start":
            i, filler = 0, rng.choice(self.fillers)
        elif where == "end":
            i, filler = len(toks), rng.choice(CLOSINGS)
        else:  # a hesitation between two words that are not inside one slot
            gaps = [i for i in range(1, len(toks)) if toks[i - 1][1] is None or toks[i - 1][1] != toks[i][1]]
            i, filler = (rng.choice(gaps) if gaps else 0), rng.choice(HESITATIONS)
        toks[i:i] = [(w, None) for w in spoken_form(filler).split()]
        return toks
