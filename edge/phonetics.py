"""How alike two words are, in letters and in sound, for matching transcripts to the grammar.

Recognisers err towards words that *sound* like what was said ("light rose" for "light roast",
"for" for "four", "incubi" for "EcoBee"), so a word pair is scored by the better of two
similarities (``rapidfuzz``'s normalised Indel similarity): of the letters, and of the phones
from the CMU pronouncing dictionary that the PocketSphinx wheel carries. The dictionary is searched
in place (see :class:`Pronunciations`).
"""

from __future__ import annotations

import functools
import mmap
from pathlib import Path

import numpy as np
from rapidfuzz.distance import Indel
from rapidfuzz.process import cdist

# One character per ARPAbet phone, so phone strings compare with the same string metric.
_PHONES = (
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH"
).split()
_PHONE_CHAR = {p: chr(0x100 + i) for i, p in enumerate(_PHONES)}


class Pronunciations:
    """Word -> phone string (one character per phone), looked up in a CMU-format dictionary file.

    The file is searched in place (memory-mapped, binary search over its lines): its lines are in
    byte order of their words once the ``word(2)`` alternatives are read as ``word``, and loading
    its 135k entries into a dict would cost the daemon tens of MB for a few lookups per command.
    """

    def __init__(self, path: Path) -> None:
        self._fh = path.open("rb")
        self._map = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)

    def _line_at(self, pos: int) -> tuple[int, bytes]:
        """The start and text of the line that contains byte ``pos``."""
        start = self._map.rfind(b"\n", 0, pos) + 1
        end = self._map.find(b"\n", pos)
        return start, self._map[start : end if end != -1 else len(self._map)]

    @staticmethod
    def _key(line: bytes) -> bytes:
        word = line.split(b" ", 1)[0]
        return word.split(b"(", 1)[0]

    def phones(self, word: str) -> str | None:
        key = word.encode()
        lo, hi = 0, len(self._map)
        while lo < hi:
            mid = (lo + hi) // 2
            start, line = self._line_at(mid)
            if self._key(line) < key:
                lo = start + len(line) + 1
            else:
                hi = start
        if lo >= len(self._map):
            return None
        _, line = self._line_at(lo)
        parts = line.decode("utf-8", "replace").split()
        if not parts or parts[0] != word:
            return None
        return "".join(_PHONE_CHAR.get(p.rstrip("012"), "") for p in parts[1:])


@functools.lru_cache(maxsize=1)
def pronunciations() -> Pronunciations | None:
    """The CMU dictionary of the PocketSphinx wheel, or None where it is not installed (letters only then)."""
    try:
        from pocketsphinx import get_model_path
    except ImportError:
        return None
    path = Path(get_model_path("en-us/cmudict-en-us.dict"))
    return Pronunciations(path) if path.is_file() else None


def sound(words: list[str]) -> list[str]:
    """Phone strings of words; a word the dictionary lacks keeps its letters (compared as letters)."""
    return [_sound_of(w) for w in words]


@functools.lru_cache(maxsize=65536)
def _sound_of(word: str) -> str:
    p = pronunciations()
    phones = p.phones(word) if p is not None else None
    return phones or word


def similarity(
    a: list[str], b: list[str], a_sound: list[str] | None = None, b_sound: list[str] | None = None
) -> np.ndarray:
    """``len(a) x len(b)`` similarities in 0..1: the better of letters and phones."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    letters = cdist(a, b, scorer=Indel.normalized_similarity, dtype=np.float32)
    a_sound = a_sound if a_sound is not None else sound(a)
    b_sound = b_sound if b_sound is not None else sound(b)
    phones = cdist(a_sound, b_sound, scorer=Indel.normalized_similarity, dtype=np.float32)
    return np.maximum(letters, phones).astype(np.float64)


__all__ = ["Pronunciations", "pronunciations", "similarity", "sound"]
