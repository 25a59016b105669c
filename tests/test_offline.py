"""Offline by construction: text, WAV and the live loop work with no network, and open no connection.

Two independent checks: the real CLI runs inside a network namespace that has no network at all
(``unshare -rn``: a user namespace, so no root needed), and a child process runs the same paths
with an audit hook that refuses every ``socket.connect`` and name lookup, and reports them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speech_helpers import FifoFeeder, alsa_capture_config, silence, speak, write_wav

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
COMMAND = "hey jarvis, turn off the kitchen lights"


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> tuple[Path, np.ndarray]:
    tmp = tmp_path_factory.mktemp("offline")
    audio = np.concatenate([silence(0.5), speak(COMMAND, "rms", tmp, 0.0, 0.0), silence(1.5)])
    return write_wav(tmp / "command.wav", audio.astype(np.float32) / 32768, 16000), audio


def _no_network_namespace() -> list[str]:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here (unshare -rn: {probe.stderr.strip()})")
    return ["unshare", "-rn"]


def _in_namespace(argv: list[str], env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "EDGE_PROFILE": "generic-x86_64", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        _no_network_namespace() + argv, capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=timeout
    )


def test_text_wav_and_live_loop_work_without_any_network(speech, tmp_path):
    wav, audio = speech
    # The namespace really has no network: not even a route to a documentation address.
    probe = _in_namespace(
        [
            sys.executable,
            "-c",
            "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), 2)"
            "\nexcept OSError as e:\n    print(e.errno)",
        ]
    )
    assert probe.stdout.strip() in ("101", "99"), probe  # ENETUNREACH (or EADDRNOTAVAIL)

    text = _in_namespace(
        [sys.executable, "-m", "edge.cli.intent", "--text", "turn off the lights in the kitchen", "--json"]
    )
    assert text.returncode == 0, text.stderr
    assert json.loads(text.stdout)["intent"] == "iot_hue_lightoff"

    files = _in_namespace(
        [sys.executable, "-m", "edge.cli.intent", "--wav", str(wav), "--wake", "hey jarvis", "--json"]
    )
    assert files.returncode == 0, files.stderr
    lines = [json.loads(line) for line in files.stdout.splitlines()]
    assert [(e["file"], e["type"], e.get("intent")) for e in lines] == [
        (str(wav), "wake", None),
        (str(wav), "intent", "iot_hue_lightoff"),
    ]

    pytest.importorskip("sounddevice")
    fifo = tmp_path / "mic.fifo"
    feeder = FifoFeeder(fifo, [(audio, 0.0)], speed=3.0)
    feeder.start()
    try:
        live = _in_namespace(
            [sys.executable, "-m", "edge.cli.intent", "--mic", "--wake", "hey jarvis", "--json", "--utterances", "1"],
            env={"ALSA_CONFIG_PATH": str(alsa_capture_config(tmp_path, fifo))},
        )
    finally:
        feeder.finish()
    assert live.returncode == 0, live.stderr
    assert [json.loads(line)["type"] for line in live.stdout.splitlines()] == ["wake", "intent"]
    assert json.loads(live.stdout.splitlines()[1])["intent"] == "iot_hue_lightoff"


AUDITED = """
import json, socket, sys

attempts = []

def refuse(event, args):
    if event == "socket.connect" and args[0].family != socket.AF_UNIX:
        attempts.append(f"connect {args[1]!r}")
        raise PermissionError(f"edge must not connect to {args[1]!r}")
    if event == "socket.getaddrinfo":
        attempts.append(f"lookup {args[0]!r}")
        raise PermissionError(f"edge must not look up {args[0]!r}")

sys.addaudithook(refuse)

import numpy as np
from edge.audio import SamplesSource, WavSource
from edge.classifier import IntentClassifier
from edge.cli.intent import main
from edge.liveloop import LiveLoop, LiveLoopSettings
from edge.pipeline import Pipeline
from edge.stt import SttSettings, create_engine
from edge.vad import Endpointer
from edge.wake import WakeSettings, create_engine as wake_engine

out = {}
out["cli_text"] = main(["--text", "set an alarm for seven am"])
classifier = IntentClassifier.load()
stt = create_engine(SttSettings(), package=classifier.package)
out["wav"] = [r.intent for r in Pipeline(WavSource(sys.argv[1]), Endpointer(), stt, classifier).run()]
samples = WavSource(sys.argv[1]).samples
source, vad = SamplesSource(samples), Endpointer()
loop = LiveLoop(source, vad, Pipeline(source, vad, stt, classifier), wake_engine(WakeSettings()),
                LiveLoopSettings(activation="wake"))
out["live"] = [e.result.intent if e.result else e.type for e in loop.run()]
out["attempts_by_edge"] = list(attempts)
for attempt in (lambda: socket.create_connection(("example.org", 80), timeout=1),  # the hook works: both are
                lambda: socket.socket().connect(("192.0.2.1", 80))):                 # refused and recorded
    try:
        attempt()
    except PermissionError:
        pass
out["attempts"] = attempts
print(json.dumps(out))
"""


def test_no_connection_is_attempted(speech):
    wav, _ = speech
    proc = subprocess.run(
        [sys.executable, "-c", AUDITED, str(wav)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "EDGE_PROFILE": "generic-x86_64", "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["cli_text"] == 0 and out["wav"] == ["iot_hue_lightoff"] and out["live"] == ["wake", "iot_hue_lightoff"]
    assert out["attempts_by_edge"] == []
    assert out["attempts"] == ["lookup 'example.org'", "connect ('192.0.2.1', 80)"]
