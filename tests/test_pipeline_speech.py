"""The speech chain end to end: flite speech -> VAD -> STT -> intent model, from WAV files and
from a real PortAudio capture device (ALSA ``type file``), through the ``edge-intent`` options."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.audio import SamplesSource
from edge.cli import speech as speech_cli
from edge.pipeline import Pipeline
from edge.stt.pocketsphinx import PocketSphinxEngine
from edge.textnorm import written_form
from edge.vad import Endpointer

from speech_helpers import alsa_capture_config, silence, speak, write_wav

ROOT = Path(__file__).resolve().parent.parent
# Commands (written for these tests, in no HWU64 split) with the HWU64 intents they ask for.
COMMANDS = [
    ("wake me up at seven am tomorrow", "alarm_set"),
    ("what is the weather like in london", "weather_query"),
    ("play some jazz music", "play_music"),
]
LATENCY_KEYS = {"capture", "vad", "stt", "tokenize", "infer", "decode", "classify", "total"}


@pytest.fixture(scope="module")
def classifier(shipped_classifier):
    return shipped_classifier


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wavs")
    out = []
    for i, (text, intent) in enumerate(COMMANDS):
        samples = speak(text, ("slt", "rms", "awb")[i], tmp)
        out.append((write_wav(tmp / f"cmd{i}.wav", samples.astype(np.float32) / 32768, 16000), text, intent))
    return out


def test_stream_of_two_commands_without_classifier(tmp_path):
    stream = np.concatenate([speak(COMMANDS[0][0], "slt", tmp_path), speak(COMMANDS[2][0], "rms", tmp_path)])
    results = list(Pipeline(SamplesSource(stream), Endpointer(), PocketSphinxEngine()).run())
    assert len(results) == 2
    assert "seven" in results[0].text and "jazz" in results[1].text
    for r in results:
        assert r.intent is None and {"capture", "vad", "stt", "total"} <= set(r.latency_ms)
        assert r.latency_ms["total"] >= r.latency_ms["stt"] > 0
        assert r.transcript["endpoint"]["reason"] == "silence" and r.transcript["audio_ms"] > 1000
        assert r.transcript["engine"] == "pocketsphinx" and r.transcript["stt_stream_ms"] > 0


def args_for(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    speech_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_wav_files_json_lines(classifier, wavs, capsys, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    quiet = write_wav(tmp_path / "quiet.wav", np.zeros(16000), 16000)
    files = [str(p) for p, _, _ in wavs]
    status = speech_cli.run(
        args_for(["--json", "--wav", files[0], str(bad), *files[1:], str(quiet)]), lambda: classifier
    )
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert status == 1 and f"{bad}: not a WAV file" in err  # the bad file is reported, the rest still run
    assert [line["file"] for line in lines] == [files[0], str(bad), *files[1:], str(quiet)]
    assert lines[1]["error"].endswith("not a WAV file (expected a RIFF/WAVE header)")
    assert lines[-1]["note"] == "no speech detected"
    results = [lines[0], *lines[2:-1]]
    assert [r["intent"] for r in results] == [intent for _, _, intent in wavs]
    for r in results:
        assert set(r["latency_ms"]) == LATENCY_KEYS
        heard = r["transcript"]["text"]
        assert r["transcript"]["words"] and heard == " ".join(w["word"] for w in r["transcript"]["words"])
        assert r["text"] == written_form(heard)  # what the model read: the recogniser's text in the model's form


def test_wav_plain_output(classifier, wavs, capsys):
    assert speech_cli.run(args_for(["--wav", str(wavs[2][0])]), lambda: classifier) == 0
    out = capsys.readouterr().out
    assert out.startswith(f'{wavs[2][0]}: "') and "-> play_music" in out and "total" in out


MIC = """
import argparse, sys
from edge.cli import speech
from edge.classifier import IntentClassifier
parser = argparse.ArgumentParser()
parser.add_argument("--json", action="store_true")
speech.add_arguments(parser)
sys.exit(speech.run(parser.parse_args(sys.argv[1:]), IntentClassifier.load))
"""


@pytest.fixture
def mic_process():
    """Starts ``edge-intent --mic`` on an ALSA file device saying ``text``; killed at the test's end
    if still running (a failed wait must not leave a recogniser decoding silence for ever)."""
    started: list[subprocess.Popen] = []

    def start(tmp_path: Path, text: str, argv: list[str]) -> subprocess.Popen:
        started.append(_mic_process(tmp_path, text, argv))
        return started[-1]

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _mic_process(tmp_path: Path, text: str, argv: list[str]) -> subprocess.Popen:
    raw = tmp_path / "mic.raw"
    raw.write_bytes(np.concatenate([silence(0.5), speak(text, "slt", tmp_path), silence(1.0)]).astype("<i2").tobytes())
    conf = alsa_capture_config(tmp_path, raw)
    env = {**os.environ, "ALSA_CONFIG_PATH": str(conf), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", MIC, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_mic_command_comes_out_as_its_intent(classifier, tmp_path, mic_process):
    proc = mic_process(tmp_path, COMMANDS[1][0], ["--mic", "--json", "--utterances", "1"])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    (line,) = out.splitlines()
    result = json.loads(line)
    assert result["intent"] == "weather_query" and "london" in result["text"]
    assert set(result["latency_ms"]) == LATENCY_KEYS
    assert "listening on default" in err and "stopped after 1 utterance(s)" in err


def test_mic_stops_cleanly_on_sigterm(classifier, tmp_path, mic_process):
    proc = mic_process(tmp_path, COMMANDS[2][0], ["--mic"])
    first = proc.stdout.readline()  # the command, then endless silence from the capture device
    assert "-> play_music" in first
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "stopped after 1 utterance(s)" in err and "Traceback" not in err


def test_list_devices_and_missing_device(tmp_path):
    pytest.importorskip("sounddevice")
    raw = tmp_path / "mic.raw"
    raw.write_bytes(b"\0" * 3200)
    env = {**os.environ, "ALSA_CONFIG_PATH": str(alsa_capture_config(tmp_path, raw)), "PYTHONPATH": str(ROOT)}
    listing = subprocess.run(
        [sys.executable, "-c", MIC, "--list-devices"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0 and "edgefile" in listing.stdout and "* " in listing.stdout
    missing = subprocess.run(
        [sys.executable, "-c", MIC, "--mic", "--device", "usb-mic"], env=env, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 1 and "no input device matches 'usb-mic'" in missing.stderr
    assert "edgefile" in missing.stderr and "Traceback" not in missing.stderr
