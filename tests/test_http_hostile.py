"""The HTTP API against hostile clients: malformed requests, slow clients, floods, long uploads, SIGTERM.

Each test runs the real daemon in this process (the shipped model, PocketSphinx, no microphone)
and talks to it over real sockets; the SIGTERM test runs ``edge-intent serve`` as a subprocess.
The reproductions are the ones of the robustness issue: each must get a 4xx (or a 503 when
busy) naming the input and the limit, and the service must go on answering everyone else.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_outputs import wait_for

from edge.config import Config, HttpSettings, StdoutSettings, check
from edge.service import lifecycle
from edge.service.reload import Overrides

from speech_helpers import speak, write_wav
from test_daemon import Daemon as ServeProcess


class Service:
    """The daemon in this process with the given ``http`` settings, and raw and HTTP clients for it."""

    def __init__(self, **http: object) -> None:
        settings = HttpSettings(listen="127.0.0.1:0", **http)
        config = check(Config(http=settings, stdout=StdoutSettings(enabled=False)), "test")
        self.daemon = lifecycle.Service(Overrides(no_mic=True).apply(config), None, overrides=Overrides(no_mic=True))
        self.daemon.start()
        assert self.daemon.http is not None
        host, port = self.daemon.http.url.removeprefix("http://").rsplit(":", 1)
        self.address = (host, int(port))

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 30
    ) -> tuple[int, dict]:
        conn = http.client.HTTPConnection(*self.address, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def raw(self, data: bytes, timeout: float = 10) -> bytes:
        """Send bytes, read until the server closes or goes quiet for ``timeout``."""
        with socket.create_connection(self.address, timeout=timeout) as sock:
            sock.sendall(data)
            received = b""
            try:
                while chunk := sock.recv(65536):
                    received += chunk
                    if _complete(received):
                        break
            except TimeoutError:
                pass
        return received

    def close(self) -> None:
        self.daemon.close()


def read_answer(sock: socket.socket) -> bytes:
    """Read one whole answer (or what came before the server closed)."""
    received = b""
    while not _complete(received):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return bool(length) and len(body) >= length[0]


def parse(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), response[:200]
    return int(head.split()[1]), json.loads(body)


def post_json(body: bytes) -> bytes:
    return (
        b"POST /v1/intent HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body


@pytest.fixture
def service():
    started = Service(timeout_s=3)
    yield started
    started.close()


def command_wav(tmp: Path, repeats: int = 1) -> bytes:
    samples = np.concatenate([speak("play some jazz music", "slt", tmp)] * repeats)
    return write_wav(tmp / f"command-{repeats}.wav", samples.astype(np.float32) / 32768, 16000).read_bytes()


def long_lowrate_wav(seconds: float = 599.0, rate: int = 7000) -> bytes:
    """8-bit mono at 7 kHz: ten minutes of audio in 4 MiB, under the byte limit."""
    frames = int(seconds * rate)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + frames)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", frames)
        + bytes([128]) * frames
    )


# --------------------------------------------------------------------------- malformed requests


REPRODUCTIONS = [
    (
        "non-ASCII Content-Length",
        "POST /v1/intent HTTP/1.1\r\nHost: x\r\nContent-Length: ²\r\n\r\n".encode(),
        400,
        "Content-Length",
    ),
    (
        "two Content-Length headers",
        b'POST /v1/intent HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n{"a"',
        400,
        "Content-Length is given 2 times",
    ),
    (
        "a Content-Length list",
        b'POST /v1/intent HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 4\r\n\r\n{"a"',
        400,
        "allowed: exactly one",
    ),
    ("a lone surrogate", post_json(b'{"text": "\\ud800"}'), 400, "lone surrogate U+D800"),
    ("JSON nested 5,000 deep", post_json(b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}"), 400, "nested too deeply"),
    ("an integer of 5,000 digits", post_json(b'{"text": ' + b"7" * 5000 + b"}"), 400, "4300 digits"),
    ("zero-width text only", post_json('{"text": "\u200b\ufeff"}'.encode()), 400, "input is empty"),
    (
        "headers of 20 kB",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
        431,
        "larger than 16384 bytes",
    ),
    ("not HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "malformed request"),
    ("a body on GET", b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", 400, "takes no body"),
]


@pytest.mark.parametrize("what, request_bytes, status, reason", REPRODUCTIONS, ids=[r[0] for r in REPRODUCTIONS])
def test_malformed_requests_get_a_4xx_naming_the_problem(service, what, request_bytes, status, reason):
    got, answer = parse(service.raw(request_bytes))
    assert got == status and reason in answer["error"], (what, got, answer)
    assert service.request("GET", "/healthz")[0] == 200


def test_keep_alive_and_pipelined_requests_are_answered_in_order(service):
    two = post_json(b'{"text": "turn off the lights"}') + post_json(b'{"text": "play some jazz music"}')
    with socket.create_connection(service.address, timeout=10) as sock:
        sock.sendall(two)
        received = b""
        while received.count(b'"type": "intent"') < 2:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    intents = [
        json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["intent"]
        for part in received.split(b"HTTP/1.1 200 OK")[1:]
    ]
    assert intents == ["iot_hue_lightoff", "play_music"]


# --------------------------------------------------------------------------- slow clients and floods


def test_slow_clients_are_cut_off_by_one_deadline_and_starve_nobody(service):
    """20 clients sending a header line every 0.5 s (each read is quick; the request never ends)."""
    slow = [socket.create_connection(service.address, timeout=10) for _ in range(20)]
    for sock in slow:
        sock.sendall(b"POST /v1/intent HTTP/1.1\r\n")
    started = time.monotonic()
    answered = []
    while time.monotonic() - started < 2.0:  # inside the 3 s deadline: the slow clients are all still there
        for sock in slow:
            sock.sendall(b"X-Slow: 1\r\n")
        answered.append(service.request("GET", "/healthz")[0])
        answered.append(
            service.request("POST", "/v1/intent", b"turn off the lights", {"Content-Type": "text/plain"})[0]
        )
        time.sleep(0.5)
    assert answered and set(answered) == {200}
    for sock in slow:  # then each gets 408 naming the setting, whatever it kept sending
        status, answer = parse(read_answer(sock))
        assert status == 408 and "within 3 s (http.timeout_s)" in answer["error"]
        sock.close()


def test_connections_past_the_limit_get_503_at_once_and_the_rest_are_served():
    service = Service(max_connections=8, timeout_s=5)
    try:
        idle = [socket.create_connection(service.address, timeout=10) for _ in range(8)]
        wait_for(lambda: len(service.daemon.http._connections) == 8, 5, "eight open connections")
        status, answer = parse(service.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
        assert status == 503 and "8 connections are open (http.max_connections)" in answer["error"]
        for sock in idle:
            sock.close()
        wait_for(lambda: not service.daemon.http._connections, 5, "the idle connections to close")
        # a flood of 200 at once: every one gets an answer (served, or 503), none waits in the backlog
        results: list[int] = []

        def one() -> None:
            try:
                results.append(parse(service.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=10))[0])
            except (OSError, AssertionError):
                results.append(-1)

        threads = [threading.Thread(target=one) for _ in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 200 and set(results) <= {200, 503} and 200 in results
        assert service.request("GET", "/healthz")[0] == 200
    finally:
        service.close()


def test_uploads_past_the_receiving_budget_get_503(tmp_path):
    service = Service(max_wav_bytes=100_000, max_receiving_bytes=150_000, timeout_s=5)
    try:
        first = socket.create_connection(service.address, timeout=10)
        first.sendall(b"POST /v1/recognize HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"R" * 1000)
        wait_for(lambda: service.daemon.http._receiving == 100_000, 5, "the first upload to be reserved")
        status, answer = parse(service.raw(b"POST /v1/recognize HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n"))
        assert status == 503 and "(http.max_receiving_bytes)" in answer["error"]
        assert service.request("POST", "/v1/intent", b"turn off the lights", {"Content-Type": "text/plain"})[0] == 200
        first.close()
    finally:
        service.close()


# --------------------------------------------------------------------------- long audio


def test_long_audio_is_refused_by_its_length_naming_the_setting(service):
    wav = long_lowrate_wav()
    assert len(wav) < HttpSettings().max_wav_bytes
    status, answer = service.request("POST", "/v1/recognize", wav, {"Content-Type": "audio/wav"})
    assert status == 413, answer
    assert "599.0 s of audio is longer than the limit of 120 s (http.max_wav_seconds)" in answer["error"]
    assert answer["error"].startswith("request body:")


def test_truncated_extensible_header_is_a_400(service):
    fmt = struct.pack("<HHIIHH", 0xFFFE, 1, 16000, 32000, 2, 16)
    body = b"RIFF" + struct.pack("<I", 32) + b"WAVE" + b"fmt " + struct.pack("<I", 40) + fmt + b"\x16\x00\x10\x00"
    assert len(body) == 40
    status, answer = service.request("POST", "/v1/recognize", body, {"Content-Type": "audio/wav"})
    assert status == 400 and "the fmt chunk says 40 bytes, the file ends after 20" in answer["error"]


@pytest.mark.slow
def test_a_long_recognition_holds_neither_the_workers_nor_other_clients(tmp_path):
    """One recognition at a time: a second gets 503 at once; /healthz and /v1/intent go on being answered."""
    service = Service(workers=2, recognize_timeout_s=600)
    long_wav, short_wav = command_wav(tmp_path, repeats=20), command_wav(tmp_path)
    try:
        answers: list = []
        long_request = threading.Thread(
            target=lambda: answers.append(
                service.request("POST", "/v1/recognize", long_wav, {"Content-Type": "audio/wav"}, timeout=120)
            )
        )
        long_request.start()
        wait_for(lambda: service.daemon.assistant._request_lock.locked(), 10, "the long recognition to start")
        status, answer = service.request("POST", "/v1/recognize", short_wav, {"Content-Type": "audio/wav"})
        assert status == 503 and "another POST /v1/recognize" in answer["error"]
        assert service.request("GET", "/healthz")[0] == 200
        assert (
            service.request("POST", "/v1/intent", b"set an alarm for seven am", {"Content-Type": "text/plain"})[0]
            == 200
        )
        assert service.daemon.assistant._request_lock.locked()  # all of the above happened during the long recognition
        long_request.join()
        status, answer = answers[0]
        assert status == 200 and [e["intent"] for e in answer["events"]] == ["play_music"] * 20
    finally:
        service.close()


def test_recognition_past_its_time_limit_is_stopped_with_413_and_the_recogniser_recovers(tmp_path):
    service = Service(recognize_timeout_s=0.5)
    try:
        status, answer = service.request(
            "POST", "/v1/recognize", command_wav(tmp_path, repeats=20), {"Content-Type": "audio/wav"}
        )
        assert status == 413 and "longer than 0.5 s (http.recognize_timeout_s)" in answer["error"]
        config = service.daemon.config
        service.daemon.config = dataclasses.replace(
            config, http=dataclasses.replace(config.http, recognize_timeout_s=60)
        )
        status, answer = service.request("POST", "/v1/recognize", command_wav(tmp_path), {"Content-Type": "audio/wav"})
        assert status == 200 and [e["intent"] for e in answer["events"]] == ["play_music"]
    finally:
        service.close()


# --------------------------------------------------------------------------- SIGTERM


@pytest.mark.slow
def test_sigterm_during_a_long_recognition_still_answers_the_client(tmp_path):
    wav = command_wav(tmp_path, repeats=20)
    # Limits for a failure, not for speed: a minute of speech takes minutes under CPU emulation (script/test-aarch64).
    serve = ServeProcess(tmp_path, 'http: {listen: "127.0.0.1:0", recognize_timeout_s: 600}\n', "--no-mic")
    try:
        serve.wait_note("READY=1")
        answers: list = []
        client = threading.Thread(
            target=lambda: answers.append(
                serve.request("POST", "/v1/recognize", wav, {"Content-Type": "audio/wav"}, timeout=600)
            )
        )
        client.start()
        wait_for(lambda: _recognising(serve), 20, "the recognition to be under way")
        assert serve.stop(timeout=600) == 0, serve.log
        client.join(600)
        status, body = answers[0]
        assert status == 200 and len(body["events"]) == 20, body
        # the recognition, and at times the readiness probe that happened to be in flight
        assert re.search(r"HTTP: [12] request\(s\) in progress; letting them finish", serve.log), serve.log
        published = {e["id"] for e in serve.events}
        assert {e["id"] for e in body["events"]} <= published  # its events reached stdout before the exit
    finally:
        serve.kill()


def _recognising(serve: ServeProcess) -> bool:
    _, metrics = serve.request("GET", "/metrics")
    return 'edge_http_requests_in_progress{path="/v1/recognize"} 1.0' in metrics
