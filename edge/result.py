"""The one result type every stage fills in and every output serialises the same way."""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any


@dataclasses.dataclass(frozen=True)
class Slot:
    """One filled slot: a span of the text and the value it stands for."""

    name: str
    """Slot type, e.g. ``house_place``."""
    value: Any
    """Canonical value: the list value's ``out`` where the words were resolved to one (a number for a
    range list), a synonym's canonical value, else the span's text."""
    text: str
    """The span exactly as it appears in the input text."""
    start: int
    """Character offset of the span in ``Result.text``."""
    end: int
    """Character offset one past the span's end."""
    confidence: float = 1.0
    """Mean tag probability over the span's word pieces (1.0 for a grammar match)."""
    score: float | None = None
    """How close the words are to the list value they were resolved to (1.0: the same words;
    ``None``: the slot has no list, or no value was close enough and the words are kept)."""


@dataclasses.dataclass(frozen=True)
class Result:
    """What one utterance was understood as."""

    text: str
    """The text that was classified (the transcript, for speech)."""
    intent: str | None
    """The recognised intent, or ``None`` when the out-of-scope rule rejected the best guess."""
    confidence: float | None
    """Probability of ``intent``; ``None`` when out of scope."""
    guess: str
    """The model's best intent whether or not it passed the out-of-scope rule."""
    guess_confidence: float
    """Probability of ``guess``."""
    slots: tuple[Slot, ...] = ()
    latency_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    """Wall time per stage (capture, vad, stt, tokenize, infer, decode, total)."""
    backend: str = ""
    """Backend and precision that ran the model, e.g. ``onnx/int8``."""
    model: str = ""
    """Model package name and version."""
    seq_len: int = 0
    """Word pieces the model read, [CLS] and [SEP] included (the profiler records it)."""
    truncated: bool = False
    """True when the text was longer than the model's maximum and only its start was classified."""
    transcript: dict[str, Any] | None = None
    """Speech only: engine, per-word confidences, audio duration."""
    source: str = "model"
    """What decided: ``model`` (the neural intent model) or ``grammar`` (the nearest sentence of the
    package's templates, within ``grammar_distance``)."""
    grammar_distance: float | None = None
    """Edit cost per word between the text and the nearest template sentence (0: one of them), when
    the package has a grammar."""
    id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: float = dataclasses.field(default_factory=time.time)

    def slot_dict(self) -> dict[str, Any]:
        """``{name: value}``; a slot type filled more than once maps to a list of values."""
        out: dict[str, Any] = {}
        for slot in self.slots:
            if slot.name in out:
                prev = out[slot.name]
                out[slot.name] = (prev if isinstance(prev, list) else [prev]) + [slot.value]
            else:
                out[slot.name] = slot.value
        return out

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "timestamp": round(self.timestamp, 3),
            "text": self.text,
            "intent": self.intent,
            "confidence": _round(self.confidence),
            "guess": self.guess,
            "guess_confidence": _round(self.guess_confidence),
            "slots": self.slot_dict(),
            "slot_spans": [
                {
                    "name": s.name,
                    "value": s.value,
                    "text": s.text,
                    "start": s.start,
                    "end": s.end,
                    "confidence": _round(s.confidence),
                    "score": _round(s.score),
                }
                for s in self.slots
            ],
            "source": self.source,
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "backend": self.backend,
            "model": self.model,
        }
        if self.grammar_distance is not None:
            data["grammar_distance"] = _round(self.grammar_distance)
        if self.truncated:
            data["truncated"] = True
        if self.transcript is not None:
            data["transcript"] = self.transcript
        return data


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)
