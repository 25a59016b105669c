"""Synonyms from WordNet 3.0 (Princeton; Debian package ``wordnet-base``), for training-data paraphrases.

A command people say in their own words ("get the kitchen lights going", "fire up the coffee
maker") uses other words for what the templates say. WordNet's synsets give those words; the
trainer swaps some template words for synonyms from their first senses (``tools.augment``).

Read directly from the database files: NLTK's reader also wants a ``lexnames`` file that
Debian's package does not ship, and synonyms need only the index and data lookups done here.
"""

from __future__ import annotations

import functools
from pathlib import Path

WORDNET_DIRS = (Path("/usr/share/wordnet"), Path("/usr/local/share/wordnet"), Path("/usr/share/wordnet/dict"))
POS = {"verb": "v", "noun": "n", "adj": "a", "adv": "r"}


class WordNet:
    """Lemma -> synonyms, from a WordNet 3.0 database directory (``index.*`` and ``data.*``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._index: dict[str, dict[str, list[int]]] = {}
        for pos in POS:
            table: dict[str, list[int]] = {}
            with (root / f"index.{pos}").open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if line.startswith(" "):
                        continue  # the licence header
                    parts = line.split()
                    lemma, n_synsets, n_pointers = parts[0], int(parts[2]), int(parts[3])
                    offsets = parts[4 + n_pointers + 2 :]
                    table[lemma] = [int(o) for o in offsets[:n_synsets]]
            self._index[pos] = table
        self._data = {pos: (root / f"data.{pos}").open("rb") for pos in POS}

    def synonyms(self, phrase: str, senses: int = 2) -> list[str]:
        """Words of the first ``senses`` synsets of ``phrase`` in each part of speech, ``phrase`` itself left out."""
        lemma = "_".join(phrase.lower().split())
        out: dict[str, None] = {}
        for pos, table in self._index.items():
            for offset in table.get(lemma, [])[:senses]:
                for word in self._synset_words(pos, offset):
                    if word != lemma:
                        out[word.replace("_", " ")] = None
        return list(out)

    def _synset_words(self, pos: str, offset: int) -> list[str]:
        fh = self._data[pos]
        fh.seek(offset)
        parts = fh.readline().decode("utf-8", "replace").split()
        count = int(parts[3], 16)
        words = parts[4 : 4 + 2 * count : 2]
        return [w.split("(")[0].lower() for w in words]

    def knows(self, phrase: str) -> bool:
        lemma = "_".join(phrase.lower().split())
        return any(lemma in table for table in self._index.values())


@functools.lru_cache(maxsize=1)
def wordnet() -> WordNet | None:
    """The installed WordNet, or None (``apt-get install wordnet-base``; the trainer then adds no synonyms)."""
    for root in WORDNET_DIRS:
        if (root / "index.verb").is_file() and (root / "data.verb").is_file():
            return WordNet(root)
    return None


__all__ = ["WordNet", "wordnet"]
