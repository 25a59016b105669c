"""Labelled utterances, BIO slot tags over word pieces, and generated out-of-scope text.

The on-disk format is the JSONL of HWU64 as edge uses it (docs/data.md): ``{"text", "intent", "entities": [{"start",
"end", "entity", "value"}]}`` with character offsets; ``"intent": null`` marks an out-of-scope
example. Slot tags are assigned per word piece from the tokenizer's character offsets, so the
runtime can map predicted tags straight back to character spans of the original text.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

from tokenizers import Tokenizer


@dataclasses.dataclass(frozen=True)
class Entity:
    start: int
    end: int
    entity: str
    value: str


@dataclasses.dataclass(frozen=True)
class Example:
    text: str
    intent: str | None
    entities: tuple[Entity, ...] = ()


class DataError(ValueError):
    pass


def read_jsonl(path: str | Path) -> list[Example]:
    """Read labelled utterances, refusing malformed lines with file and line number."""
    path = Path(path)
    examples = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise DataError(f'{path}:{n}: expected an object with "text" (string), "intent" and "entities"')
            intent = row.get("intent")
            if intent is not None and not isinstance(intent, str):
                raise DataError(f'{path}:{n}: "intent" must be a string or null, got {intent!r}')
            entities = []
            for e in row.get("entities") or []:
                try:
                    ent = Entity(int(e["start"]), int(e["end"]), str(e["entity"]), str(e.get("value", "")))
                except (KeyError, TypeError, ValueError):
                    raise DataError(f'{path}:{n}: entity {e!r} needs "start", "end" and "entity"') from None
                if not 0 <= ent.start < ent.end <= len(row["text"]):
                    raise DataError(f"{path}:{n}: entity span {ent.start}..{ent.end} outside the text")
                entities.append(ent)
            examples.append(Example(row["text"], intent, tuple(entities)))
    if not examples:
        raise DataError(f"{path}: no examples")
    return examples


def canonical_slot_values(examples: list[Example]) -> dict[str, dict[str, str]]:
    """Per slot type, said (lower case) -> value, where the data gives a value other than the words said.

    JSONL entities may carry a canonical ``value`` ("lounge" -> ``living_room``); the runtime
    reports that value for the same words. A phrase labelled with two values keeps the more frequent.
    """
    seen: dict[str, dict[str, dict[str, int]]] = {}
    for ex in examples:
        for ent in ex.entities:
            said = " ".join(ex.text[ent.start : ent.end].lower().split())
            if ent.value and ent.value != ex.text[ent.start : ent.end]:
                counts = seen.setdefault(ent.entity, {}).setdefault(said, {})
                counts[ent.value] = counts.get(ent.value, 0) + 1
    return {
        slot: {said: max(values, key=values.get) for said, values in table.items()}
        for slot, table in sorted(seen.items())
    }


def slot_tag_set(examples: list[Example]) -> list[str]:
    types = sorted({e.entity for ex in examples for e in ex.entities})
    return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]


@dataclasses.dataclass
class Encoded:
    input_ids: list[int]
    slot_tags: list[int]  # -100 where no loss applies ([CLS], [SEP])
    intent: int  # -1 for out-of-scope


def encode(tokenizer: Tokenizer, ex: Example, intents: dict[str, int], tags: dict[str, int], max_len: int) -> Encoded:
    enc = tokenizer.encode(ex.text)
    ids = enc.ids[: max_len - 1] + ([enc.ids[-1]] if len(enc.ids) > max_len else [])
    offsets = enc.offsets[: len(ids)]
    special = enc.special_tokens_mask[: len(ids)]
    if len(enc.ids) > max_len:
        special = special[:-1] + [1]
    labels = []
    seen: set[int] = set()
    for (s, e), sp in zip(offsets, special):
        if sp:
            labels.append(-100)
            continue
        label = tags["O"]
        for k, ent in enumerate(ex.entities):
            if s < ent.end and e > ent.start:
                prefix = "I" if k in seen else "B"
                seen.add(k)
                label = tags.get(f"{prefix}-{ent.entity}", tags["O"])
                break
        labels.append(label)
    return Encoded(ids, labels, intents[ex.intent] if ex.intent is not None else -1)


def generated_out_of_scope(n: int, seed: int, exclude: set[str]) -> list[Example]:
    """Word salad from frequent English words: what an always-on microphone hears from a TV.

    It is used for outlier exposure in training and, with a different seed, for calibrating and
    measuring the out-of-scope rule. Real out-of-scope data (``"intent": null`` lines) is used
    alongside when a dataset has it.
    """
    import wordfreq

    words = [w for w in wordfreq.top_n_list("en", 20000) if w.isalpha()]
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        k = rng.randint(2, 12)
        text = " ".join(rng.choice(words) for _ in range(k))
        if text not in exclude:
            out.append(Example(text, None))
    return out
