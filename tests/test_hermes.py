"""The daemon's MQTT output read by a Hermes client: ``rhasspy-hermes`` (PyPI), on a real mosquitto.

``tests/hermes_client.py`` runs in ``.venv-clients`` (rhasspy-hermes pins paho-mqtt 1.5) and
parses every message on the Hermes topics with the library's own ``NluIntent.from_json`` /
``NluIntentNotRecognized.from_json`` (and ``NluIntentParsed``, ``NluError``); this test checks
that what it parsed is what edge published: intent, confidence, slot values, raw values,
ranges and confidences, site and session ids, and the answers to ``hermes/nlu/query``.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest
from test_outputs import Broker, Subscriber, wait_for
from test_wyoming import words

from speech_helpers import speak, write_wav
from test_daemon import ROOT, Daemon

CLIENTS_PYTHON = ROOT / ".venv-clients" / "bin" / "python"


class HermesClient:
    """tests/hermes_client.py in its own venv: queries in on stdin, parsed messages out on stdout."""

    def __init__(self, port: int) -> None:
        if not CLIENTS_PYTHON.exists():
            pytest.skip(f"{CLIENTS_PYTHON} is missing (script/setup --dev creates it)")
        self.proc = subprocess.Popen(
            [str(CLIENTS_PYTHON), str(Path(__file__).parent / "hermes_client.py"), str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[dict] = []
        self.errors: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.errors.extend(self.proc.stderr), daemon=True).start()
        wait_for(
            lambda: any(line.get("ready") for line in self.lines) or self.proc.poll() is not None,
            20,
            "the Hermes client to subscribe",
        )
        assert self.proc.poll() is None, "".join(self.errors)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    @property
    def messages(self) -> list[dict]:
        return [line for line in self.lines if "topic" in line]

    def send(self, query: dict) -> None:
        self.proc.stdin.write(json.dumps(query) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def check_intent(message: dict, event: dict, site_id: str = "kitchen") -> None:
    """An NluIntent as rhasspy-hermes parsed it, against edge's event JSON for the same command."""
    assert message["input"] == event["text"] and message["rawInput"] == event["text"]
    assert message["intent"] == {"intentName": event["intent"], "confidenceScore": event["confidence"]}
    assert (message["siteId"], message["sessionId"]) == (site_id, event["id"])
    slots = [
        (s["entity"], s["slotName"], s["value"], s["rawValue"], s["confidence"], s["range"]) for s in message["slots"]
    ]
    assert slots == [
        (
            s["name"],
            s["name"],
            {"kind": "Custom", "value": s["value"]},
            s["text"],
            s["confidence"],
            {"start": s["start"], "end": s["end"], "rawStart": s["start"], "rawEnd": s["end"]},
        )
        for s in event["slot_spans"]
    ]
    for s in message["slots"]:  # the range picks out the raw value in the input
        assert message["input"][s["range"]["start"] : s["range"]["end"]] == s["rawValue"]


@pytest.mark.slow
def test_rhasspy_hermes_parses_every_intent_and_not_recognised_message(tmp_path):
    broker = Broker(tmp_path / "broker").start()
    edge_json = Subscriber(broker.port, ("edge/event/#",), client_id="edge-test-hermes-edge-json")
    hermes = HermesClient(broker.port)
    config = f"""
mqtt: {{enabled: true, host: 127.0.0.1, port: {broker.port}, site_id: kitchen, nlu_query: true}}
http: {{listen: "127.0.0.1:0"}}
"""
    daemon = Daemon(tmp_path, config, "--no-mic")
    try:
        daemon.wait_note("READY=1")
        wait_for(lambda: daemon.request("GET", "/healthz")[1]["outputs"]["mqtt"]["connected"], 20, "MQTT to connect")
        events = []
        for text in ("turn off the lights in the kitchen", "set an alarm for seven am tomorrow", "banana seventeen"):
            status, body = daemon.request(
                "POST", "/v1/intent", json.dumps({"text": text}).encode(), {"Content-Type": "application/json"}
            )
            assert status == 200, body
            events.append(body)
        wav = write_wav(
            tmp_path / "weather.wav", speak("what is the weather like in london", "slt", tmp_path) / 32768, 16000
        )
        status, body = daemon.request("POST", "/v1/recognize", wav.read_bytes(), {"Content-Type": "audio/wav"})
        assert status == 200 and body["events"][0]["intent"] == "weather_query", body
        spoken = body["events"][0]
        events.append(spoken)
        hermes.send(
            {"input": "play some jazz music", "id": "q-1", "siteId": "livingroom", "sessionId": "s-9", "lang": "en"}
        )
        hermes.send({"input": "play some jazz music", "id": "q-2", "intentFilter": ["alarm_set", "alarm_query"]})
        hermes.send({"raw": "this is not json"})
        hermes.send({"input": "   ", "id": "q-3", "siteId": "livingroom"})

        try:
            wait_for(lambda: len(hermes.messages) >= 9, 20, "9 Hermes messages")
        except AssertionError:
            print(json.dumps(hermes.lines, indent=1), "".join(hermes.errors), daemon.log)
            raise
        messages = hermes.messages
        assert all(m["same_as_client"] for m in messages)  # from_json reads what the library's client read
        by_class: dict[str, list[dict]] = {}
        for m in messages:
            by_class.setdefault(m["class"], []).append(m)
        assert sorted((k, len(v)) for k, v in by_class.items()) == [
            ("NluError", 2),
            ("NluIntent", 4),
            ("NluIntentNotRecognized", 2),
            ("NluIntentParsed", 1),
        ]

        intents = {m["message"]["sessionId"]: m for m in by_class["NluIntent"]}
        for event in (events[0], events[1], spoken):
            message = intents[event["id"]]
            assert message["topic"] == f"hermes/intent/{event['intent']}"
            check_intent(message["message"], event)
        assert [s["rawValue"] for s in intents[events[1]["id"]]["message"]["slots"]] == ["seven am", "tomorrow"]
        assert intents[events[0]["id"]]["message"]["slots"][0]["value"]["value"] == "kitchen"
        tokens = intents[spoken["id"]]["message"]["asrTokens"][0]  # from speech: the recogniser's words
        bare = ["".join(c for c in t["value"].lower() if c.isalnum()) for t in tokens]
        assert " ".join(bare) == words(spoken["text"])  # the recogniser's words, as it wrote them
        assert all(spoken["text"].lower()[t["rangeStart"] : t["rangeEnd"]] == b for t, b in zip(tokens, bare))
        known = [w["confidence"] for w in spoken["transcript"]["words"] if w["confidence"] is not None]
        expected = round(sum(known) / len(known), 4) if known else None  # Whisper gives no word confidences
        assert intents[spoken["id"]]["message"]["asrConfidence"] == expected

        not_recognized = {m["message"]["sessionId"]: m["message"] for m in by_class["NluIntentNotRecognized"]}
        assert not_recognized[events[2]["id"]] == {
            "input": "banana seventeen",
            "siteId": "kitchen",
            "id": None,
            "customData": None,
            "sessionId": events[2]["id"],
        }
        assert all(m["topic"] == "hermes/nlu/intentNotRecognized" for m in by_class["NluIntentNotRecognized"])

        # the query's answers carry its ids back; intentParsed first, as Rhasspy's NLU service does
        answer = next(m for m in by_class["NluIntent"] if m["message"]["id"] == "q-1")
        parsed = by_class["NluIntentParsed"][0]
        assert messages.index(parsed) < messages.index(answer) and parsed["topic"] == "hermes/nlu/intentParsed"
        assert (answer["message"]["siteId"], answer["message"]["sessionId"], answer["message"]["lang"]) == (
            "livingroom",
            "s-9",
            "en",
        )
        assert answer["topic"] == "hermes/intent/play_music" and answer["site_id"] == "livingroom"
        assert answer["message"]["slots"][0]["value"] == {"kind": "Custom", "value": "jazz"}
        assert parsed["message"]["intent"] == answer["message"]["intent"] and parsed["message"]["id"] == "q-1"
        filtered = next(m for m in not_recognized.values() if m["id"] == "q-2")
        assert filtered["input"] == "play some jazz music" and filtered["siteId"] == "default"  # the query's, as sent
        errors = sorted(by_class["NluError"], key=lambda m: m["message"]["siteId"])
        assert "not JSON" in errors[0]["message"]["error"] and errors[0]["message"]["siteId"] == "kitchen"
        assert "input is empty" in errors[1]["message"]["error"] and errors[1]["message"]["siteId"] == "livingroom"

        # edge's own JSON for every event is still there, on edge/event/...
        query_event = daemon.wait_event(lambda e: e.get("hermes", {}).get("id") == "q-1")  # stdout: an event like any
        wanted = [e["id"] for e in events] + [query_event["id"]]
        wait_for(lambda: set(wanted) <= set(edge_json.ids()), 10, "edge's event JSON on edge/event/#")
        topics = {payload["id"]: topic for topic, payload, _ in edge_json.messages}
        assert topics[events[0]["id"]] == "edge/event/intent" and topics[events[2]["id"]] == "edge/event/not_understood"
        assert daemon.stop() == 0 and "Traceback" not in daemon.log
    finally:
        daemon.kill()
        hermes.close()
        edge_json.close()
        broker.stop()
