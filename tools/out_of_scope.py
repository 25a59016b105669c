"""Sentences that are none of a package's commands: the "none" class's training and calibration data.

Word salad alone (``tools.data.generated_out_of_scope``) teaches a model that *incoherent* text is
out of scope, and then "what's the weather like" is confidently a tea order. So three sources
are mixed:

* everyday sentences written for this project (``tools/data_files/everyday.txt``): questions,
  chat, other assistants' commands;
* Home Assistant's own English commands (PyPI ``home-assistant-intents``, sampled with hassil),
  when that package is installed;
* frequent-word salad, what a microphone hears from a television.

A sentence near the package's own grammar (within ``NEAR``, ``edge.grammar``) is left out: "turn
on the lights" is out of scope for a tea bar and a command for a smart home.
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path

from edge.textnorm import spoken_form

from .data import Example, generated_out_of_scope

EVERYDAY = Path(__file__).resolve().parent / "data_files" / "everyday.txt"
HOME = Path(__file__).resolve().parent / "data_files" / "home_fixtures.yaml"
"""A made-up home that fills the {name} / {area} / {floor} of Home Assistant's sentences."""
NEAR = 0.5
"""Edit cost per word below which a sentence counts as one of the grammar's own."""


def everyday_sentences() -> list[str]:
    return [
        line.strip()
        for line in EVERYDAY.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]


def home_assistant_sentences(seed: int, per_intent: int = 40) -> list[str]:
    """Sentences of Home Assistant's English intents, with stand-in names (empty if not installed)."""
    try:
        from hassil.sample import sample_intents

        from .intents_file import load
    except ImportError:
        return []
    try:
        f = load("ha:en", HOME)
    except Exception:  # not installed, or an intents file our checker refuses: the other sources remain
        return []
    rng = random.Random(seed)
    out = [
        text
        for _, text in sample_intents(f.intents, max_sentences_per_intent=per_intent, language="en")
        if "{" not in text
    ]
    rng.shuffle(out)
    return out


PARTS = {"train": (0, 1, 2), "calibrate": (3,), "evaluate": (4,)}
"""Each coherent sentence belongs to one part (by a hash of its text), so calibration and evaluation
see sentences training did not."""


def pool(
    n: int, seed: int, grammar=None, exclude: set[str] | None = None, label: str | None = None, part: str = "train"
) -> list[Example]:
    """``n`` out-of-scope examples (intent ``label``, None by default): up to two thirds coherent sentences
    of ``part``, the rest word salad."""
    rng = random.Random(seed)
    exclude = exclude or set()
    buckets = PARTS[part]
    coherent = [spoken_form(s) for s in everyday_sentences() + home_assistant_sentences(0)]
    coherent = [s for s in coherent if zlib.crc32(s.encode()) % 5 in buckets]
    rng.shuffle(coherent)
    kept: list[str] = []
    for text in dict.fromkeys(coherent):
        if len(kept) >= (2 * n) // 3:
            break
        if not text or text in exclude:
            continue
        if grammar is not None and grammar.match(text, max_distance=NEAR) is not None:
            continue
        kept.append(text)
    salad = generated_out_of_scope(n - len(kept), seed=seed, exclude=exclude | set(kept))
    out = [Example(t, label) for t in kept] + [Example(e.text, label) for e in salad]
    rng.shuffle(out)
    return out


__all__ = ["everyday_sentences", "home_assistant_sentences", "pool"]
