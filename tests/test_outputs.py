"""The daemon's outputs and configuration, each with the real thing behind it: a mosquitto broker
started here, hook programs run as real processes, prometheus-client's exposition format, YAML files."""

from __future__ import annotations

import getpass
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from edge import config as config_mod
from edge.config import HooksSettings, MqttSettings
from edge.events import Event
from edge.outputs.hooks import HookRunner
from edge.outputs.metrics import Metrics
from edge.outputs.mqtt import MqttOutput
from edge.outputs.stdout import StdoutOutput
from edge.result import Result, Slot
from edge.settings import SettingsError

ROOT = Path(__file__).resolve().parent.parent


def make_event(
    intent: str | None = "iot_hue_lightoff",
    text: str = "turn off the lights in the kitchen",
    slots: tuple[Slot, ...] = (),
    **latency: float,
) -> Event:
    """A classification as the classifier returns it (outputs only serialise it)."""
    result = Result(
        text=text,
        intent=intent,
        confidence=0.93 if intent else None,
        guess=intent or "iot_hue_lightoff",
        guess_confidence=0.93 if intent else 0.2,
        slots=slots,
        latency_ms=latency or {"tokenize": 0.2, "infer": 2.0, "decode": 0.1, "total": 2.3},
        backend="onnx/int8",
        model="squeezebert-hwu64@1.0.0",
    )
    return Event.from_result(result)


def wait_for(condition, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --------------------------------------------------------------------------- a real MQTT broker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto on a free local port; sessions persist across ``stop()``/``start()`` (like a real restart)."""

    def __init__(self, tmp: Path) -> None:
        if shutil.which("mosquitto") is None:
            pytest.skip("the mosquitto broker is not installed (script/setup --dev installs it)")
        self.port = free_port()
        tmp.mkdir(parents=True, exist_ok=True)
        self.conf = tmp / "mosquitto.conf"
        # mosquitto started as root drops to the "mosquitto" user, which cannot write the session store in
        # this directory: the subscriber's session would then not survive the restart. Stay as whoever we are.
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {tmp}/\nautosave_interval 1\nuser {getpass.getuser()}\n"
        )
        self.log = tmp / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)], stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        wait_for(self._listening, what=f"mosquitto on port {self.port}")
        return self

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
            assert (self.conf.parent / "mosquitto.db").exists(), (
                f"mosquitto did not save its sessions, so the restart would lose them: {self.log.read_text()[-500:]}"
            )


class Subscriber:
    """A paho client with a persistent session that records (topic, payload, retain) in arrival order."""

    def __init__(self, port: int, topics: tuple[str, ...] = ("#",), client_id: str = "edge-test-sub") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.reconnect_delay_set(1, 1)
        self.connected = threading.Event()

        def on_connect(client, userdata, flags, reason, properties):
            for topic in topics:
                client.subscribe(topic, qos=1)
            self.connected.set()

        def on_message(client, userdata, msg):
            with self._lock:
                self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        assert self.connected.wait(10), "the test subscriber could not connect"
        time.sleep(0.2)  # let the SUBACK arrive before anything is published

    def ids(self) -> list[str]:
        """Ids of edge's event JSON messages (Hermes messages carry no ``type``), in arrival order."""
        with self._lock:
            return [payload["id"] for _, payload, _ in self.messages if "type" in payload]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def mqtt_settings(port: int, **kw) -> MqttSettings:
    return MqttSettings(
        enabled=True,
        host="127.0.0.1",
        port=port,
        reconnect_min_s=1,
        reconnect_max_s=1,
        keepalive_s=5,
        flush_timeout_s=5.0,
        **kw,
    )


def test_mqtt_topics_payload_qos_retain(broker):
    """Hermes messages on the Hermes topics, edge's JSON for every event on edge/event/... (or its own topic)."""
    sub = Subscriber(broker.port)
    metrics = Metrics()
    out = MqttOutput(
        mqtt_settings(broker.port, retain=True, site_id="kitchen", topics={"alarm_set": "home/alarm"}), metrics
    )
    try:
        events = [
            make_event("iot_hue_lightoff", slots=(Slot("house_place", "kitchen", "kitchen", 28, 35, 0.91),)),
            make_event(None, text="banana seventeen"),
            make_event("alarm_set", text="wake me at 7"),
            Event(type="wake", data={"phrase": "hey jarvis", "engine": "micro", "score": 0.97}),
        ]
        for event in events:
            out.publish(event)
        wait_for(lambda: len(sub.messages) == 7, what="7 MQTT messages")
        topics = [t for t, _, _ in sub.messages]
        assert topics == [
            "hermes/intent/iot_hue_lightoff",
            "edge/event/intent",
            "hermes/nlu/intentNotRecognized",
            "edge/event/not_understood",
            "hermes/intent/alarm_set",
            "home/alarm",
            "edge/event/wake",
        ]
        hermes, own = sub.messages[0][1], sub.messages[1][1]
        assert own == events[0].to_dict() and own["slots"] == {"house_place": "kitchen"}
        assert hermes["input"] == "turn off the lights in the kitchen" and hermes["intent"] == {
            "intentName": "iot_hue_lightoff",
            "confidenceScore": 0.93,
        }
        assert (hermes["siteId"], hermes["sessionId"], hermes["id"]) == ("kitchen", events[0].id, None)
        assert hermes["slots"] == [
            {
                "entity": "house_place",
                "slotName": "house_place",
                "rawValue": "kitchen",
                "value": {"kind": "Custom", "value": "kitchen"},
                "confidence": 0.91,
                "range": {"start": 28, "end": 35, "rawStart": 28, "rawEnd": 35},
            }
        ]
        assert sub.messages[2][1] == {
            "input": "banana seventeen",
            "siteId": "kitchen",
            "id": None,
            "customData": None,
            "sessionId": events[1].id,
        }
        assert sub.messages[6][1]["phrase"] == "hey jarvis"
        assert out.health()["published"] == 7 and out.health()["connected"] is True
    finally:
        out.close()
        sub.close()
    # retain: a subscriber that comes later still gets the last message of the topic
    late = Subscriber(broker.port, ("hermes/intent/#",), client_id="edge-test-late")
    try:
        wait_for(lambda: len(late.messages) == 2, what="the retained messages")
        assert {t for t, _, r in late.messages if r} == {"hermes/intent/iot_hue_lightoff", "hermes/intent/alarm_set"}
    finally:
        late.close()
    assert "edge_mqtt_published_total 7.0" in metrics.text().decode()


def test_mqtt_without_hermes_publishes_edge_json_only(broker):
    sub = Subscriber(broker.port, client_id="edge-test-nohermes")
    out = MqttOutput(mqtt_settings(broker.port, hermes=False, topics={"not_understood": "voice/huh"}))
    try:
        events = [make_event("iot_hue_lightoff"), make_event(None, text="banana seventeen")]
        for event in events:
            out.publish(event)
        wait_for(lambda: len(sub.messages) == 2, what="2 MQTT messages")
        assert [(t, p) for t, p, _ in sub.messages] == [
            ("edge/event/intent", events[0].to_dict()),
            ("voice/huh", events[1].to_dict()),
        ]
    finally:
        out.close()
        sub.close()


@pytest.mark.parametrize("qos", [0, 1])
def test_mqtt_broker_restart_loses_nothing_and_keeps_order(broker, qos, caplog):
    caplog.set_level(logging.INFO, logger="edge.outputs.mqtt")
    sub = Subscriber(broker.port, client_id=f"edge-test-restart-{qos}")
    out = MqttOutput(mqtt_settings(broker.port, qos=qos))
    events = [make_event("iot_hue_lightoff", text=f"command {i}") for i in range(12)]
    try:
        for event in events[:3]:
            out.publish(event)
        wait_for(lambda: len(sub.ids()) >= 3, what="the first 3 events")
        broker.stop()
        wait_for(lambda: not out.health()["connected"], what="the output to notice the broker is gone")
        for event in events[3:]:
            out.publish(event)  # the live loop goes on while the broker is away
        assert out.health()["queued"] == 18  # an intent is two messages: Hermes and edge JSON
        broker.start()
        wait_for(lambda: len(set(sub.ids())) >= 12, timeout=20, what="all 12 events after the restart")
    finally:
        out.close()
        sub.close()
    ids = sub.ids()
    first_seen = list(dict.fromkeys(ids))  # QoS 1 may deliver a message twice; never out of order, never lost
    assert first_seen == [e.id for e in events]
    assert out.health()["dropped"] == 0
    assert "MQTT connection to 127.0.0.1" in caplog.text and "reconnecting" in caplog.text


def test_mqtt_queue_overflow_drops_oldest_counts_and_logs(tmp_path, caplog):
    broker = Broker(tmp_path / "late-broker")  # not started yet: the broker is down from the beginning
    metrics = Metrics()
    out = MqttOutput(mqtt_settings(broker.port, queue_size=3, hermes=False), metrics)  # one message per event
    events = [make_event("play_music", text=f"song {i}") for i in range(5)]
    try:
        for event in events:
            out.publish(event)
        health = out.health()
        assert (health["queued"], health["dropped"], health["connected"]) == (3, 2, False)
        assert "MQTT queue full" in caplog.text
        assert "edge_mqtt_dropped_total 2.0" in metrics.text().decode()
        broker.start()
        sub = Subscriber(broker.port, client_id="edge-test-overflow")
        wait_for(lambda: out.health()["queued"] == 0, timeout=15, what="the queue to drain")
        wait_for(lambda: len(sub.ids()) == 3, what="the 3 queued events")
        assert sub.ids() == [e.id for e in events[2:]]
        sub.close()
    finally:
        out.close()
        broker.stop()


# --------------------------------------------------------------------------- hooks

HOOK = """#!{python}
import json, os, sys, time
record = {{"argv": sys.argv[1:], "stdin": json.loads(sys.stdin.read()), "start": time.monotonic(),
           "env": {{k: v for k, v in os.environ.items() if k.startswith("EDGE_") or k in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}}}}
time.sleep(float(os.environ.get("HOOK_SLEEP", "0")))
record["end"] = time.monotonic()
path = os.path.join({out!r}, record["stdin"]["id"] + ".json")
with open(path + ".tmp", "w") as fh:
    json.dump(record, fh)
os.replace(path + ".tmp", path)  # whole, for a test reading while hooks run
sys.exit(int(os.environ.get("HOOK_EXIT", "0")))
"""


def write_hook(tmp: Path, body: str = HOOK) -> Path:
    out = tmp / "hook-out"
    out.mkdir(exist_ok=True)
    path = tmp / "hook.py"
    path.write_text(body.format(python=sys.executable, out=str(out)))
    path.chmod(0o755)
    return path


def hook_records(tmp: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp / "hook-out").glob("*.json"))]


def test_hook_gets_slots_as_inert_data(tmp_path, monkeypatch):
    hook = write_hook(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")  # the daemon's, not the hook's
    nasty = [
        f"; touch {tmp_path}/pwned1",
        f"$(touch {tmp_path}/pwned2)",
        f"`touch {tmp_path}/pwned3`",
        "kitchen' && rm -rf ~ #",
        f'x"; echo 1 > {tmp_path}/pwned4; "',
    ]
    slots = tuple(Slot("house_place" if i == 0 else f"name_{i}", v, v, 0, len(v)) for i, v in enumerate(nasty))
    slots += (Slot("date", "today", "today", 0, 5), Slot("date", "tomorrow", "tomorrow", 0, 8))
    runner = HookRunner(HooksSettings(commands={"iot_hue_lightoff": [str(hook), "--room", "{house_place}", "; ls"]}))
    event = make_event("iot_hue_lightoff", text="turn off the lights " + nasty[0], slots=slots)
    runner.publish(event)
    runner.publish(make_event("play_music"))  # no hook for this intent, and no "*"
    runner.close()
    (record,) = hook_records(tmp_path)
    env = record["env"]
    assert record["argv"] == ["--room", "{house_place}", "; ls"]  # argv is passed as written, never interpreted
    assert env["EDGE_SLOT_HOUSE_PLACE"] == nasty[0]
    assert [env[f"EDGE_SLOT_NAME_{i}"] for i in range(1, len(nasty))] == nasty[1:]
    assert env["EDGE_SLOT_DATE"] == "today\ntomorrow"
    assert json.loads(env["EDGE_SLOTS"])["house_place"] == nasty[0]
    assert (env["EDGE_EVENT"], env["EDGE_INTENT"], env["EDGE_EVENT_ID"]) == ("intent", "iot_hue_lightoff", event.id)
    assert env["EDGE_TEXT"] == event.result.text and env["EDGE_CONFIDENCE"] == "0.9300"
    assert "NOTIFY_SOCKET" not in env
    assert record["stdin"] == event.to_dict()
    assert not list(tmp_path.glob("pwned*"))


def test_hook_timeout_kills_the_process_group_and_exit_status_is_logged(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edge.outputs.hooks")
    child_pid = tmp_path / "child.pid"
    slow = tmp_path / "slow.sh"
    # sh, not Python: an interpreter that takes longer than the timeout to start (CPU emulation)
    # would be killed before it started its child
    slow.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > '{child_pid}'\nsleep 60\n")
    slow.chmod(0o755)
    failing = write_hook(tmp_path)
    metrics = Metrics()
    runner = HookRunner(HooksSettings(commands={"alarm_set": [str(slow)], "*": [str(failing)]}, timeout_s=1.0), metrics)
    os.environ["HOOK_EXIT"] = "3"
    try:
        start = time.monotonic()
        runner.publish(make_event("alarm_set"))
        runner.publish(make_event("weather_query"))  # "*": every other intent
        runner.publish(make_event(None))  # not_understood: "*" is for intents only
        runner.close()
    finally:
        del os.environ["HOOK_EXIT"]
    assert time.monotonic() - start < 5
    pid = int(child_pid.read_text())
    wait_for(
        lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
        what="the hook's child to be killed",
    )
    assert f"hook alarm_set: {slow} killed after the 1 s timeout" in caplog.text
    assert f"hook weather_query: {failing} exited 3" in caplog.text
    assert len(hook_records(tmp_path)) == 1
    text = metrics.text().decode()
    assert 'edge_hook_runs_total{hook="alarm_set",outcome="timeout"} 1.0' in text
    assert 'edge_hook_runs_total{hook="weather_query",outcome="failed"} 1.0' in text


def test_hook_concurrency_limit_and_queue_overflow(tmp_path, caplog):
    hook = write_hook(tmp_path)
    os.environ["HOOK_SLEEP"] = "0.4"
    try:
        runner = HookRunner(HooksSettings(commands={"*": [str(hook)]}, concurrency=2, queue_size=3))
        for i in range(7):
            runner.publish(make_event("play_music", text=f"song {i}"))
        assert runner.health()["dropped"] == 2  # 2 running + 3 waiting; the 6th and 7th find no room
        runner.close()
    finally:
        del os.environ["HOOK_SLEEP"]
    records = hook_records(tmp_path)
    assert len(records) == 5
    spans = [(r["start"], r["end"]) for r in records]
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 2
    assert "hook for play_music dropped" in caplog.text


# --------------------------------------------------------------------------- stdout and metrics


def test_stdout_json_lines(tmp_path):
    path = tmp_path / "out.jsonl"
    with path.open("w") as stream:
        out = StdoutOutput(stream)
        events = [make_event("iot_hue_lightoff"), make_event(None), Event(type="timeout", data={"state": "command"})]
        for event in events:
            out.publish(event)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [e.to_dict() for e in events]
    assert [line["type"] for line in lines] == ["intent", "not_understood", "timeout"]


def test_metrics_counts_intents_stages_errors_and_profiler_energy(shipped_package):
    from edge.classifier import IntentClassifier
    from edge.profiler import Profiler, ProfilerSettings

    classifier = IntentClassifier.load(shipped_package, backend="onnx", precision="int8", threads=1)
    profiler = Profiler(ProfilerSettings())
    profiler.bind(classifier)
    metrics = Metrics(profiler)
    for text in ("turn off the lights in the kitchen", "turn the lights off", "set an alarm for 7 am"):
        with profiler.track() as rec:
            result = classifier.classify(text)
            rec.finish(result)
        metrics.publish(Event.from_result(result))
    metrics.publish(Event(type="error", data={"stage": "audio", "message": "gone"}))
    text = metrics.text().decode()
    from prometheus_client.parser import text_string_to_metric_families

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("edge_events_total", (("intent", "iot_hue_lightoff"), ("type", "intent")))] == 2
    assert samples[("edge_events_total", (("intent", "alarm_set"), ("type", "intent")))] == 1
    assert samples[("edge_events_total", (("intent", ""), ("type", "error")))] == 1
    assert samples[("edge_errors_total", (("stage", "audio"),))] == 1
    for stage in ("tokenize", "infer", "decode", "total"):
        assert samples[("edge_stage_latency_seconds_count", (("stage", stage),))] == 3
    assert samples[("edge_stage_latency_seconds_bucket", (("le", "+Inf"), ("stage", "infer")))] == 3
    energy = [v for (name, labels), v in samples.items() if name == "edge_inference_energy_joules"]
    assert energy and energy[0] > 0
    assert samples[("edge_inferences_profiled_total", ())] == 3


# --------------------------------------------------------------------------- configuration


def write_config(tmp: Path, text: str) -> Path:
    path = tmp / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "mqtt:\n  hots: x\n",
            "mqtt.hots: unknown key; allowed keys: client_id, enabled, event_topic, flush_timeout_s, hermes, host",
        ),
        ("http:\n  max_text_bytes: big\n", "http.max_text_bytes: expected a whole number, got string 'big'"),
        ("stt:\n  engine: kaldi\n", "stt.engine: got 'kaldi'; allowed: 'auto', 'pocketsphinx', 'vosk', 'whisper'"),
        ("mqtt:\n  qos: 3\n", "mqtt: qos: 3 is out of range; allowed 0, 1, 2"),
        (
            "mqtt:\n  topic: 'hermes/#/{name}'\n",
            "not a publishable MQTT topic; allowed: a topic without + or # wildcards",
        ),
        ("mqtt:\n  topic: 'x/{intent}'\n", "topic: 'x/{intent}' has an unknown placeholder; allowed: {name}"),
        ("mqtt:\n  site_id: 'a/b'\n", "mqtt: site_id: 'a/b' is not a Hermes site id; allowed: a non-empty name"),
        (
            "wyoming:\n  listen: 'http://0.0.0.0:10300'\n",
            "wyoming: listen: 'http://0.0.0.0:10300' is not a Wyoming address; allowed: tcp://HOST:PORT",
        ),
        (
            "wyoming:\n  listen: 'tcp://0.0.0.0'\n",
            "wyoming: listen: 'tcp://0.0.0.0': '0.0.0.0' is not an address; "
            "allowed: tcp://HOST:PORT, e.g. tcp://0.0.0.0:10300",
        ),
        ("wyoming:\n  max_audio_bytes: 0\n", "wyoming: max_audio_bytes: 0 is out of range; allowed 1 or more"),
        ("wyoming:\n  listen: 'unix:///run/edge.sock'\n  zeroconf: true\n", "wyoming: zeroconf: announces a TCP port"),
        ("wyoming:\n  enable: true\n", "wyoming.enable: unknown key; allowed keys: enabled, listen, max_audio_bytes"),
        (
            "http:\n  listen: 0.0.0.0:8765\n",
            "http.listen: 0.0.0.0:8765 is reachable from other machines, so the API needs a token",
        ),
        ("http:\n  listen: localhost\n", "http.listen: 'localhost' is not an address; allowed: HOST:PORT"),
        (
            "hooks:\n  commands:\n    alarm_set: /bin/echo hi\n",
            "hooks.commands.alarm_set: expected a list of string, got string",
        ),
        (
            "hooks:\n  commands:\n    alarm_set: [/no/such/program]\n",
            "hooks.commands.alarm_set[0]: '/no/such/program' is not an executable",
        ),
        ("http:\n  token_file: /no/such/token\n", "http.token_file: /no/such/token cannot be read"),
        ("audio:\n  retry_min_s: 5\n  retry_max_s: 1\n", "audio: retry_min_s (5.0) and retry_max_s (1.0)"),
        ("vad:\n  threshold: 2\n", "vad: threshold 2.0 is outside (0, 1)"),
        ("- just\n- a list\n", "expected a mapping of Config fields, got list"),
        ("mqtt: {host: [\n", "invalid YAML: line 2"),
    ],
)
def test_config_errors_name_file_key_and_allowed(tmp_path, text, message):
    path = write_config(tmp_path, text)
    with pytest.raises(SettingsError) as info:
        config_mod.load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_config_secrets_from_files_and_the_example(tmp_path):
    (tmp_path / "token").write_text("s3cret\n")
    (tmp_path / "pw").write_text("mqtt-pw\n")
    path = write_config(
        tmp_path,
        f"""
        http: {{listen: "0.0.0.0:9000", token_file: {tmp_path}/token}}
        mqtt: {{enabled: true, username: edge, password_file: {tmp_path}/pw}}
        hooks: {{commands: {{"*": ["true"]}}}}
    """,
    )
    c = config_mod.load(path)
    assert (c.http.address, c.http.token, c.http.token_file) == (("0.0.0.0", 9000), "s3cret", None)
    assert (c.mqtt.password, c.mqtt.password_file) == ("mqtt-pw", None)
    assert c.hooks.command_for("weather_query", "intent") == ["true"]
    assert c.hooks.command_for("wake", "wake") is None
    example = config_mod.load(ROOT / "examples" / "config.yaml")
    assert example.http.address == ("127.0.0.1", 8765) and example.mqtt.topic == "hermes/intent/{name}"
    assert config_mod.load(None) == config_mod.Config()
