"""Hermes protocol payloads (Rhasspy, Snips; Node-RED flows built for them): what a Hermes client parses.

The MQTT output publishes these on the Hermes topics beside edge's own event JSON on
``edge/event/...``:

* ``hermes/intent/<intentName>``: ``NluIntent`` — ``input``, ``intent.intentName``,
  ``intent.confidenceScore``, ``slots[]`` (``entity``, ``slotName``, ``rawValue`` as spoken,
  ``value`` ``{"kind": "Custom", "value": <canonical value>}``, ``confidence``, ``range``
  ``{start, end}`` as character offsets into ``input``), ``siteId``, ``sessionId``, and from
  speech ``asrTokens`` and ``asrConfidence``;
* ``hermes/nlu/intentNotRecognized``: ``NluIntentNotRecognized`` — ``input``, ``siteId``,
  ``sessionId``;
* answers to ``hermes/nlu/query`` (``mqtt.nlu_query``): the above with the query's ``id``,
  ``siteId``, ``sessionId``, ``customData`` and ``lang``, preceded by ``NluIntentParsed`` on
  ``hermes/nlu/intentParsed`` as Rhasspy's NLU service does; a query that cannot be read gets
  ``NluError`` on ``hermes/error/nlu``.

Field names and shapes follow ``rhasspy-hermes`` (the reference implementation, tested with its
own ``NluIntent.from_json``). A session is one command here, so ``sessionId`` is the event's id
unless a query brought its own. Written here rather than with ``rhasspy-hermes`` itself because
that package pins paho-mqtt 1.5 (edge needs 2.x) and these are a few dictionaries.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.events import Event
    from edge.result import Result

QUERY_TOPIC = "hermes/nlu/query"
PARSED_TOPIC = "hermes/nlu/intentParsed"
ERROR_TOPIC = "hermes/error/nlu"


@dataclasses.dataclass(frozen=True)
class NluQuery:
    """A ``hermes/nlu/query`` request."""

    input: str
    site_id: str = "default"
    id: str | None = None
    session_id: str | None = None
    intent_filter: tuple[str, ...] | None = None
    """Only these intents may be the answer; any other is answered as not recognised."""
    custom_data: str | None = None
    lang: str | None = None

    def context(self) -> dict[str, Any]:
        """What the answer carries back (kept in the event's ``hermes`` field)."""
        return {
            "id": self.id,
            "siteId": self.site_id,
            "sessionId": self.session_id,
            "customData": self.custom_data,
            "lang": self.lang,
        }


class QueryError(ValueError):
    """A query payload that cannot be answered; ``site_id`` / ``session_id`` when they could be read."""

    def __init__(self, message: str, site_id: str = "default", session_id: str | None = None) -> None:
        super().__init__(message)
        self.site_id, self.session_id = site_id, session_id


def parse_query(payload: bytes, default_site: str = "default") -> NluQuery:
    """An ``NluQuery`` from its JSON payload; :class:`QueryError` says what is wrong and what is expected."""
    expected = 'expected JSON such as {"input": "turn off the lights", "siteId": "default"}'
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QueryError(f"hermes/nlu/query: the payload is not JSON ({exc}); {expected}", default_site) from None
    if not isinstance(data, dict):
        raise QueryError(f"hermes/nlu/query: the payload is a {type(data).__name__}; {expected}", default_site)
    site = data.get("siteId") if isinstance(data.get("siteId"), str) else default_site
    session = data.get("sessionId") if isinstance(data.get("sessionId"), str) else None
    text = data.get("input")
    if not isinstance(text, str):
        got = "nothing" if text is None else type(text).__name__
        raise QueryError(f"hermes/nlu/query: 'input' must be a string, got {got}; {expected}", site, session)
    strings = {key: data.get(key) for key in ("id", "customData", "lang")}
    for key, value in strings.items():
        if value is not None and not isinstance(value, str):
            raise QueryError(
                f"hermes/nlu/query: {key!r} must be a string or null, got {type(value).__name__}", site, session
            )
    filter_ = data.get("intentFilter")
    if filter_ is not None and not (isinstance(filter_, list) and all(isinstance(x, str) for x in filter_)):
        raise QueryError("hermes/nlu/query: 'intentFilter' must be a list of intent names or null", site, session)
    return NluQuery(
        input=text,
        site_id=site,
        id=strings["id"],
        session_id=session,
        intent_filter=tuple(filter_) if filter_ is not None else None,
        custom_data=strings["customData"],
        lang=strings["lang"],
    )


def nlu_intent(event: Event, site_id: str) -> dict[str, Any]:
    """The ``NluIntent`` payload of an ``intent`` event."""
    result = _result(event)
    context = _context(event, site_id)
    tokens, asr_confidence = _asr_tokens(result)
    return {
        "input": result.text,
        "intent": {"intentName": result.intent, "confidenceScore": _round(result.confidence)},
        "siteId": context["siteId"],
        "id": context["id"],
        "slots": [_slot(s) for s in result.slots],
        "sessionId": context["sessionId"],
        "customData": context["customData"],
        "asrTokens": tokens,
        "asrConfidence": asr_confidence,
        "rawInput": result.text,
        "wakewordId": None,
        "lang": context["lang"],
    }


def nlu_intent_parsed(event: Event, site_id: str) -> dict[str, Any]:
    """The ``NluIntentParsed`` payload (query answers only)."""
    full = nlu_intent(event, site_id)
    return {key: full[key] for key in ("input", "intent", "siteId", "id", "slots", "sessionId")}


def nlu_not_recognized(event: Event, site_id: str) -> dict[str, Any]:
    """The ``NluIntentNotRecognized`` payload of a ``not_understood`` event."""
    context = _context(event, site_id)
    text = event.result.text if event.result is not None else ""
    return {
        "input": text,
        "siteId": context["siteId"],
        "id": context["id"],
        "customData": context["customData"],
        "sessionId": context["sessionId"],
    }


def nlu_error(error: str, site_id: str, session_id: str | None, context: str | None = None) -> dict[str, Any]:
    """The ``NluError`` payload."""
    return {"siteId": site_id, "sessionId": session_id, "error": error, "context": context}


def _result(event: Event) -> Result:
    if event.result is None:
        raise ValueError(f"event {event.id} ({event.type}) has no result to describe in Hermes terms")
    return event.result


def _context(event: Event, site_id: str) -> dict[str, Any]:
    query = event.data.get("hermes") or {}
    return {
        "id": query.get("id"),
        "siteId": query.get("siteId") or site_id,
        "sessionId": query.get("sessionId") or event.id,
        "customData": query.get("customData"),
        "lang": query.get("lang"),
    }


def _slot(slot: Any) -> dict[str, Any]:
    return {
        "entity": slot.name,
        "slotName": slot.name,
        "rawValue": slot.text,
        "value": {"kind": "Custom", "value": slot.value},
        "confidence": _round(slot.confidence),
        "range": {"start": slot.start, "end": slot.end, "rawStart": slot.start, "rawEnd": slot.end},
    }


def _asr_tokens(result: Result) -> tuple[list[list[dict[str, Any]]] | None, float | None]:
    """The recogniser's words as Hermes ``asrTokens`` (offsets into the text), and their mean confidence."""
    words = (result.transcript or {}).get("words") or []
    if not words:
        return None, None
    tokens, cursor, known = [], 0, []
    lowered = result.text.lower()
    for word in words:
        text = str(word.get("word", ""))
        # The input may be the normalised transcript ("Kitchen." heard, "kitchen" classified).
        bare = "".join(c for c in text.lower() if c.isalnum() or c == "'")
        start = lowered.find(bare, cursor) if bare else -1
        start, end = (cursor, cursor) if start < 0 else (start, start + len(bare))
        cursor = end
        confidence = word.get("confidence")
        if confidence is not None:
            known.append(float(confidence))
        token: dict[str, Any] = {
            "value": text,
            "confidence": _round(1.0 if confidence is None else confidence),
            "rangeStart": start,
            "rangeEnd": end,
        }
        if word.get("start") is not None and word.get("end") is not None:  # Whisper gives no word times
            token["time"] = {"start": word["start"], "end": word["end"]}
        tokens.append(token)
    return [tokens], (_round(sum(known) / len(known)) if known else None)


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


__all__ = [
    "ERROR_TOPIC",
    "NluQuery",
    "PARSED_TOPIC",
    "QUERY_TOPIC",
    "QueryError",
    "nlu_error",
    "nlu_intent",
    "nlu_intent_parsed",
    "nlu_not_recognized",
    "parse_query",
]
