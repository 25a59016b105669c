"""What the live loop tells the outputs: one event per thing that happened.

An intent is the common case, but a voice service also has to say when it woke up, when a
command timed out and when it heard speech it did not understand, so that a dashboard, an
MQTT automation or a hook can react to those too. Every output (stdout, HTTP, MQTT, hooks)
serialises an :class:`Event` with :meth:`Event.to_dict`, so they all carry the same fields.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any, Literal

from edge.result import Result

EventType = Literal["intent", "not_understood", "wake", "timeout", "error"]
EVENT_TYPES: tuple[str, ...] = ("intent", "not_understood", "wake", "timeout", "error")


@dataclasses.dataclass(frozen=True)
class Event:
    """One thing the service reports."""

    type: EventType
    """``intent`` (a recognised command), ``not_understood`` (speech the out-of-scope rule rejected,
    or no words), ``wake`` (the wake word was heard), ``timeout`` (no command after a wake word, or a
    state that ran out of time), ``error`` (a stage failed; the loop carries on)."""
    result: Result | None = None
    """The classification, for ``intent`` and ``not_understood``."""
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Type-specific fields: ``phrase``, ``engine``, ``score`` for ``wake``; ``state``, ``after_s``
    for ``timeout``; ``stage``, ``message`` for ``error``."""
    id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: float = dataclasses.field(default_factory=time.time)

    @classmethod
    def from_result(cls, result: Result) -> Event:
        """An ``intent`` event, or ``not_understood`` when the result has no intent; same id and time."""
        kind: EventType = "intent" if result.intent is not None else "not_understood"
        return cls(type=kind, result=result, id=result.id, timestamp=result.timestamp)

    @property
    def name(self) -> str:
        """The intent name for intent events, else the event type (used for MQTT topics and hooks)."""
        if self.type == "intent" and self.result is not None and self.result.intent:
            return self.result.intent
        return self.type

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, "id": self.id, "timestamp": round(self.timestamp, 3)}
        if self.result is not None:
            body = self.result.to_dict()
            body.pop("id", None)
            body.pop("timestamp", None)
            data.update(body)
        data.update(self.data)
        return data


__all__ = ["Event", "EventType", "EVENT_TYPES"]
