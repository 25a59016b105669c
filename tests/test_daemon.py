"""``edge-intent serve`` as a real subprocess: speech from a real PortAudio capture device, results on
stdout, over HTTP, on a real mosquitto broker and through a hook; systemd notification, SIGHUP,
SIGTERM; bad HTTP requests; a microphone that appears late; the systemd unit.

The capture device is an ALSA ``type file`` PCM whose ``infile`` is a FIFO: :class:`FifoMic`
writes 16 kHz audio into it in real time (silence, and flite speech when asked), so the daemon
hears a microphone paced like a real one and the test knows where in an utterance it is.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_outputs import Broker, Subscriber, hook_records, wait_for, write_hook

from speech_helpers import FifoMic, speak, write_wav

ROOT = Path(__file__).resolve().parent.parent


class Daemon:
    """``edge-intent serve`` in a subprocess, with a systemd notification socket and readers for its output."""

    def __init__(
        self, tmp: Path, config: str, *args: str, env: dict[str, str] | None = None, watchdog_usec: int | None = None
    ) -> None:
        self.config_path = tmp / "config.yaml"
        self.config_path.write_text(config)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(tmp / "notify.sock"))
        self.notes: list[str] = []
        self.events: list[dict] = []
        self.stderr: list[str] = []
        full_env = {
            **os.environ,
            "NOTIFY_SOCKET": str(tmp / "notify.sock"),
            "EDGE_PROFILE": "generic-x86_64",
            "EDGE_PROFILE_OVERRIDE": "/nonexistent",
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        if watchdog_usec:
            full_env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli.intent", "serve", "--config", str(self.config_path), *args],
            env=full_env,
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for target in (self._read_stdout, self._read_stderr, self._read_notify):
            threading.Thread(target=target, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def _read_notify(self) -> None:
        while True:
            try:
                self.notes.extend(self.notify.recv(4096).decode().split("\n"))
            except OSError:
                return

    @property
    def log(self) -> str:
        return "".join(self.stderr)

    def wait_note(self, note: str, after: int = 0, timeout: float = 60) -> int:
        """Index of the first notification ``note`` (prefix) at or after ``after``."""

        def found():
            for i, n in enumerate(self.notes[after:], after):
                if n.startswith(note):
                    return i + 1
            assert self.proc.poll() is None, f"the daemon exited {self.proc.returncode}:\n{self.log}"
            return None

        return wait_for(found, timeout, f"{note} from the daemon") - 1

    def wait_event(self, predicate, timeout: float = 60) -> dict:
        def found():
            match = [e for e in self.events if predicate(e)]
            assert match or self.proc.poll() is None, f"the daemon exited {self.proc.returncode}:\n{self.log}"
            return match[0] if match else None

        return wait_for(found, timeout, "an event on stdout")

    @property
    def url(self) -> str:
        status = [n for n in self.notes if n.startswith("STATUS=ready")][0]
        return re.search(r"HTTP on (http://[^\s;]+)", status).group(1)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 30
    ):
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        conn.close()
        ctype = response.getheader("Content-Type", "")
        return response.status, json.loads(data) if ctype.startswith("application/json") else data.decode()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.notify.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()


def said(tmp: Path, text: str, voice: str) -> np.ndarray:
    return speak(text, voice, tmp)


def need_portaudio() -> None:
    pytest.importorskip("sounddevice")


@pytest.mark.slow
def test_spoken_command_reaches_every_output_and_lifecycle(tmp_path):
    """Microphone -> stdout, HTTP, MQTT and a hook; watchdog; SIGHUP keeps the stream; SIGTERM finishes the utterance."""
    need_portaudio()
    broker = Broker(tmp_path / "broker").start()
    sub = Subscriber(broker.port, client_id="edge-test-daemon")
    hook = write_hook(tmp_path)
    profile_log = tmp_path / "profile.jsonl"
    config = f"""
liveloop: {{activation: vad}}
http: {{listen: "127.0.0.1:0"}}
mqtt: {{enabled: true, host: 127.0.0.1, port: {broker.port}}}
hooks: {{commands: {{"*": ["{hook}"]}}}}
profiler: {{path: "{profile_log}"}}
"""
    mic = FifoMic(tmp_path)
    daemon = Daemon(tmp_path, config, env={"ALSA_CONFIG_PATH": str(mic.conf)}, watchdog_usec=600_000)
    try:
        ready = daemon.wait_note("READY=1")
        wait_for(lambda: "listening on" in daemon.log, 30, "the microphone to open")

        # 1. a spoken command: stdout, MQTT, hook
        mic.say(said(tmp_path, "what is the weather like in london", "slt"))
        event = daemon.wait_event(lambda e: e["type"] == "intent")
        assert event["intent"] == "weather_query" and "london" in event["text"].lower()  # Whisper capitalises
        assert event["transcript"]["endpoint"]["reason"] == "silence"
        assert {"capture", "vad", "stt", "classify", "total"} <= set(event["latency_ms"])
        wait_for(lambda: event["id"] in sub.ids(), what="the event on MQTT")
        topic, payload, _ = [m for m in sub.messages if m[1].get("id") == event["id"]][0]
        assert topic == "edge/event/intent" and payload == event
        hermes = [(t, p) for t, p, _ in sub.messages if p.get("sessionId") == event["id"]]
        assert [(t, p["intent"]["intentName"], p["input"]) for t, p in hermes] == [
            ("hermes/intent/weather_query", "weather_query", event["text"])
        ]
        hooked = wait_for(
            lambda: [r["env"] for r in hook_records(tmp_path) if r["env"]["EDGE_EVENT_ID"] == event["id"]],
            what="the hook to run",
        )[0]
        assert (hooked["EDGE_INTENT"], hooked["EDGE_EVENT_ID"], hooked["EDGE_TEXT"]) == (
            "weather_query",
            event["id"],
            event["text"],
        )

        # 2. the HTTP API, results published like spoken ones
        status, body = daemon.request(
            "POST",
            "/v1/intent",
            json.dumps({"text": "turn off the lights in the kitchen"}).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 200 and body["intent"] == "iot_hue_lightoff" and body["slots"] == {"house_place": "kitchen"}
        daemon.wait_event(lambda e: e["id"] == body["id"])
        wait_for(lambda: body["id"] in sub.ids(), what="the HTTP result on MQTT")
        status, health = daemon.request("GET", "/healthz")
        assert status == 200 and health["status"] == "ok"
        mic_health = health["microphone"]
        assert (mic_health["state"], mic_health["opened"], mic_health["commands"]) == ("listening", 1, 1)
        assert mic_health["last_frame_age_s"] < 1.0 and health["outputs"]["mqtt"]["connected"] is True
        assert (health["loop"]["activation"], health["loop"]["state"], health["loop"]["stuck"]) == (
            "vad",
            "waiting",
            False,
        )
        status, metrics = daemon.request("GET", "/metrics")
        assert 'edge_events_total{intent="weather_query",type="intent"} 1.0' in metrics
        assert 'edge_events_total{intent="iot_hue_lightoff",type="intent"} 1.0' in metrics
        assert (
            'edge_stage_latency_seconds_count{stage="stt"} 1.0' in metrics and "edge_inference_energy_joules" in metrics
        )
        assert 'edge_liveloop_state{state="waiting"} 1' in metrics
        assert daemon.notes[ready:].count("WATCHDOG=1") >= 3  # pinged from the main loop every 0.3 s

        # 3. SIGHUP: new MQTT topic and VAD settings; the microphone stream stays open
        daemon.config_path.write_text(
            config.replace("port: ", 'topic: "voice/{name}", port: ') + "vad: {trailing_silence_ms: 416}\n"
        )
        mark = len(daemon.notes)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_note("READY=1", after=daemon.wait_note("RELOADING=1", after=mark))
        wait_for(
            lambda: "configuration reloaded" in daemon.log, what="the reload to be logged"
        )  # stderr lags the notify socket
        mic.say(said(tmp_path, "play some jazz music", "rms"))
        event = daemon.wait_event(lambda e: e["type"] == "intent" and e["intent"] == "play_music")
        wait_for(
            lambda: any(p.get("sessionId") == event["id"] for _, p, _ in sub.messages),
            what="the Hermes message on the new topic",
        )
        assert [t for t, p, _ in sub.messages if p.get("sessionId") == event["id"]] == ["voice/play_music"]
        assert "speech settings reloaded; microphone stream kept open" in daemon.log
        _, health = daemon.request("GET", "/healthz")
        assert (health["microphone"]["opened"], health["reloads"]) == (1, 1)

        # 4. SIGHUP with a broken file: refused, named, and the service goes on as it was
        daemon.config_path.write_text(config + "mqtt: {qos: 7}\n")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in daemon.log, what="the reload to be refused")
        assert f"{daemon.config_path}: mqtt" in daemon.log
        status, health = daemon.request("GET", "/healthz")
        assert status == 200 and "mqtt" in health["reload_error"] and health["reloads"] == 1

        # 5. SIGTERM in the middle of a command: it is heard to its end, published, and the process exits 0
        speech = said(tmp_path, "wake me up at seven am tomorrow", "awb")
        mic.say(speech)
        # Wait for the loop to be capturing this command rather than sleeping a fixed time: the mic
        # may still hold the last command's trailing silence, and on a slow host a fixed sleep can
        # land before speech onset (nothing in flight) or after the endpoint.
        wait_for(
            lambda: (daemon.request("GET", "/healthz")[1]["loop"] or {}).get("state") == "capturing",
            10,
            "the loop to capture the command",
        )
        time.sleep(0.3)  # into the words (about 2 s of them), well before their end
        mark = len(daemon.notes)
        assert daemon.stop() == 0, daemon.log
        last = [e for e in daemon.events if e["type"] == "intent"][-1]
        assert last["intent"] == "alarm_set" and last["transcript"]["endpoint"]["reason"] == "silence"
        assert "STOPPING=1" in daemon.notes[mark:]
        assert "edge.service: stopped" in daemon.log and "Traceback" not in daemon.log
        wait_for(lambda: last["id"] in sub.ids(), what="the last event, flushed to MQTT before exit")
        records = [json.loads(line) for line in profile_log.read_text().splitlines()]
        assert len(records) == 4 and all(r["energy_mj"] > 0 for r in records)  # 3 spoken + 1 HTTP, all flushed
    finally:
        daemon.kill()
        mic.close()
        sub.close()
        broker.stop()


def test_http_api_refuses_bad_requests_with_reasons(tmp_path):
    (tmp_path / "token").write_text("let-me-in\n")
    daemon = Daemon(
        tmp_path,
        f'http: {{listen: "127.0.0.1:0", token_file: "{tmp_path}/token", max_text_bytes: 200}}\n'
        "stdout: {enabled: false}\n",
        "--no-mic",
    )
    auth = {"Authorization": "Bearer let-me-in"}
    json_auth = {**auth, "Content-Type": "application/json"}
    try:
        daemon.wait_note("READY=1")
        cases = [
            (
                "POST",
                "/v1/intent",
                b'{"text": "hi"}',
                {"Content-Type": "application/json"},
                401,
                "missing Authorization header",
            ),
            ("POST", "/v1/intent", b'{"text": "hi"}', {"Authorization": "Bearer nope"}, 401, "wrong token"),
            ("GET", "/metrics", None, {}, 401, "expected 'Authorization: Bearer <token>'"),
            ("GET", "/v1/intent", None, auth, 405, "/v1/intent takes POST, not GET"),
            ("DELETE", "/healthz", None, auth, 405, "/healthz takes GET, not DELETE"),
            ("POST", "/v2/things", b"{}", auth, 404, "no such endpoint: /v2/things; endpoints: POST /v1/intent"),
            ("POST", "/v1/intent", b'{"text": "turn', json_auth, 400, "the body is not valid JSON"),
            (
                "POST",
                "/v1/intent",
                b'["turn on the lights"]',
                json_auth,
                400,
                'expected a JSON object {"text": "..."}, got list',
            ),
            ("POST", "/v1/intent", b'{"txt": "hello"}', json_auth, 400, "unknown field 'txt'; allowed: text"),
            ("POST", "/v1/intent", b'{"text": 42}', json_auth, 400, '"text" must be a string, got int'),
            ("POST", "/v1/intent", b"{}", json_auth, 400, '"text" must be a string, got nothing'),
            ("POST", "/v1/intent", b'{"text": "   "}', json_auth, 400, "input is empty"),
            ("POST", "/v1/intent", b'{"text": "a\\u0000b"}', json_auth, 400, "input is binary, not text"),
            (
                "POST",
                "/v1/intent",
                b"\xff\xfe turn",
                {**auth, "Content-Type": "text/plain"},
                400,
                "the body is not UTF-8",
            ),
            ("POST", "/v1/intent", b"", json_auth, 400, "the body is empty"),
            ("POST", "/v1/intent", b'{"text": "' + b"a" * 300 + b'"}', json_auth, 413, "the limit is 200 bytes"),
            (
                "POST",
                "/v1/intent",
                b'{"text": "hi"}',
                {**auth, "Content-Type": "text/html"},
                415,
                "Content-Type 'text/html' is not accepted here; allowed: application/json, text/plain",
            ),
            (
                "POST",
                "/v1/intent?publish=maybe",
                b'{"text": "hi"}',
                json_auth,
                400,
                "publish='maybe'; allowed: true or false",
            ),
            ("POST", "/v1/recognize", b"this is not audio", auth, 400, "request body: not a WAV file"),
            (
                "POST",
                "/v1/recognize",
                b"RIFF\x24\x00\x00\x00WAVE",
                {**auth, "Content-Type": "audio/wav"},
                400,
                "request body: corrupt WAV file (no fmt chunk)",
            ),
        ]
        for method, path, body, headers, status, reason in cases:
            got, answer = daemon.request(method, path, body, headers)
            assert got == status and reason in answer["error"], (method, path, body, got, answer)
        # no Content-Length at all: chunked upload
        host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("POST", "/v1/intent", body=iter([b'{"text": "hi"}']), headers=json_auth, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 411 and "chunked transfer is not accepted" in json.loads(response.read())["error"]
        conn.close()
        # what works: /healthz without a token, plain text, a WAV of speech
        assert daemon.request("GET", "/healthz")[0] == 200
        status, body = daemon.request(
            "POST", "/v1/intent?publish=false", b"set an alarm for seven am", {**auth, "Content-Type": "text/plain"}
        )
        assert status == 200 and body["intent"] == "alarm_set"
        wav = write_wav(
            tmp_path / "cmd.wav", said(tmp_path, "play some jazz music", "slt").astype(np.float32) / 32768, 16000
        )
        status, body = daemon.request("POST", "/v1/recognize", wav.read_bytes(), {**auth, "Content-Type": "audio/wav"})
        assert status == 200 and [e["intent"] for e in body["events"]] == ["play_music"]
        from edge.profiles import load_profile
        from edge.stt import resolve_engine

        # the engine the daemon's profile (generic-x86_64) picks
        assert body["events"][0]["transcript"]["engine"].startswith(
            resolve_engine("auto", None, load_profile("generic-x86_64").stt)
        )
        status, metrics = daemon.request("GET", "/metrics", headers=auth)
        assert 'edge_http_requests_total{code="401",path="/v1/intent"} 2.0' in metrics
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_sigterm_right_after_ready_exits_cleanly(tmp_path):
    """READY goes out before the microphone is open; a SIGTERM in that window must still end the service."""
    need_portaudio()
    for attempt in range(3):
        run_dir = tmp_path / f"start{attempt}"
        run_dir.mkdir()
        mic = FifoMic(run_dir)
        daemon = Daemon(run_dir, "http: {enabled: false}\n", env={"ALSA_CONFIG_PATH": str(mic.conf)})
        try:
            daemon.wait_note("READY=1")
            assert daemon.stop(timeout=15) == 0, daemon.log
        finally:
            daemon.kill()
            mic.close()


@pytest.mark.slow
def test_missing_microphone_is_retried_until_it_appears_and_again_when_it_goes(tmp_path):
    need_portaudio()
    mic = FifoMic(tmp_path, create=False)  # configured, but the device is not there yet
    daemon = Daemon(
        tmp_path,
        "http: {enabled: false}\naudio: {retry_min_s: 0.2, retry_max_s: 0.4, stale_s: 0.5}\n"
        "liveloop: {activation: vad}\n",
        env={"ALSA_CONFIG_PATH": str(mic.conf)},
    )
    try:
        daemon.wait_note("READY=1")
        wait_for(lambda: daemon.log.count("microphone unavailable") >= 3, 30, "three attempts to open the microphone")
        assert "retrying in 0.2 s" in daemon.log and "retrying in 0.4 s" in daemon.log  # backoff, capped
        error = daemon.wait_event(lambda e: e["type"] == "error", timeout=5)
        assert error["stage"] == "audio" and "no audio input device" in error["message"]
        mic.create()
        wait_for(lambda: "listening on" in daemon.log, 30, "the microphone to be picked up")
        mic.say(said(tmp_path, "play some jazz music", "awb"))
        heard = daemon.wait_event(lambda e: e["type"] in ("intent", "not_understood"))
        assert heard["intent"] == "play_music", heard
        # unplugged mid-stream: the watchdog notices, reopens with backoff (logged), resumes on return
        mic.vanish()
        wait_for(lambda: daemon.log.count("reopening failed") >= 2, 30, "two failed attempts to reopen the microphone")
        mic.create()
        wait_for(lambda: "capture resumed" in daemon.log, 30, "capture to resume")
        mic.say(said(tmp_path, "set an alarm for seven am", "slt"))
        heard = daemon.wait_event(lambda e: e["type"] in ("intent", "not_understood") and e is not heard)
        assert heard["intent"] == "alarm_set", heard
        assert daemon.stop() == 0
        assert len([e for e in daemon.events if e["type"] == "error"]) == 1  # said once, not at every retry
    finally:
        daemon.kill()
        mic.close()


def test_configuration_errors_exit_with_the_reason(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("mqtt:\n  enabled: yes please\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "edge.cli.intent", "serve"]
    proc = subprocess.run([*run, "--config", str(bad)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        f"edge-intent serve: error: {bad}: mqtt.enabled: expected true or false, got string 'yes please'" in proc.stderr
    )
    proc = subprocess.run(
        [*run, "--config", str(tmp_path / "none.yaml")], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 2 and "none.yaml: file not found" in proc.stderr
    proc = subprocess.run(
        [*run, "--config", str(ROOT / "examples" / "config.yaml"), "--http", "0.0.0.0:8080"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2 and "--http: http.listen: 0.0.0.0:8080 is reachable from other machines" in proc.stderr
    (tmp_path / "token").write_text("t0ken\n")
    bad.write_text(f"http: {{listen: '[::]:9000', token_file: {tmp_path}/token}}\n")
    proc = subprocess.run([*run, "--config", str(bad), "--check"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout)["http"]["token"] == "(set)"


def test_systemd_unit_installs_verifies_and_is_hardened(tmp_path):
    from edge.service.install import render_unit

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli.intent", "install-service", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    unit = tmp_path / "etc/systemd/system/edge-intent.service"
    text = unit.read_text()
    assert f"ExecStart={Path(sys.executable).parent / 'edge-intent'} serve --config /etc/edge/config.yaml" in text
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "User=edge",
        "SupplementaryGroups=audio",
        "StateDirectory=edge",
        "LogsDirectory=edge",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=",
    ):
        assert line in text
    assert "m edge audio" in (tmp_path / "etc/sysusers.d/edge-intent.conf").read_text()
    assert (tmp_path / "etc/edge/config.yaml").read_text() == (ROOT / "examples/config.yaml").read_text()
    home = render_unit(text, Path("/home/pi/edge/.venv/bin/edge-intent"))
    assert "ProtectHome=tmpfs\nBindReadOnlyPaths=/home/pi/edge\n" in home
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit was written but not verified")
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True, timeout=60
    )
    if security.returncode != 0 and "offline" in security.stderr:
        pytest.skip(f"this systemd-analyze cannot rate a unit file offline (systemd < 250): {security.stderr.strip()}")
    exposure = re.search(r"Overall exposure level for edge-intent.service: ([0-9.]+)", security.stdout)
    assert exposure, security.stdout + security.stderr
    assert float(exposure.group(1)) <= 2.0
