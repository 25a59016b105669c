"""``edge-intent --mic`` through real PortAudio capture: wake words, a stalled device, its own feedback sound.

The capture device is an ALSA ``type file`` PCM reading a FIFO that a thread of the test feeds
like a microphone (three times faster than real time, to keep the suite short); whatever the
program plays goes to a file through the same device. Each case runs the real CLI in a child
process, since ``ALSA_CONFIG_PATH`` must be set before PortAudio starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from speech_helpers import FifoFeeder, alsa_capture_config, silence, speak, write_wav

pytestmark = pytest.mark.slow

UNRELATED = ["i think we should buy more bread tomorrow", "the game starts at eight tonight"]


@pytest.fixture(autouse=True)
def _needs_portaudio():
    pytest.importorskip("sounddevice")


def say(tmp: Path, text: str, voice: str = "rms") -> np.ndarray:
    return speak(text, voice, tmp, lead_s=0.0, tail_s=0.0)


def listen(tmp: Path, segments: list[tuple[np.ndarray, float]], *argv: str, playback: Path | None = None):
    """Run ``edge-intent --mic --json ARGV`` on the fed audio; returns (events, stderr)."""
    fifo = tmp / "mic.fifo"
    feeder = FifoFeeder(fifo, segments, speed=3.0)
    feeder.start()
    conf = alsa_capture_config(tmp, fifo, playback=playback)
    try:
        proc = run_cli("edge.cli.intent", "--mic", "--json", *argv, env={"ALSA_CONFIG_PATH": str(conf)}, timeout=90)
    finally:
        feeder.finish()
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return [json.loads(line) for line in proc.stdout.decode().splitlines()], err


def kinds(events: list[dict]) -> list[tuple[str, str | None]]:
    return [(e["type"], e.get("intent")) for e in events]


@pytest.mark.parametrize("phrase,engine", [("hey jarvis", "micro"), ("hey computer", "pocketsphinx")])
def test_one_wake_and_one_command_among_other_speech(tmp_path, phrase, engine):
    audio = np.concatenate(
        [
            silence(0.5),
            say(tmp_path, UNRELATED[0]),
            silence(1.5),
            say(tmp_path, f"{phrase}, turn off the kitchen lights"),
            silence(1.5),
            say(tmp_path, UNRELATED[1]),
            silence(1.5),
            # a second command, so the program stops (--utterances 2) only after
            # everything before it has been heard
            say(tmp_path, f"{phrase}, what time is it"),
            silence(1.5),
        ]
    )
    events, err = listen(tmp_path, [(audio, 0.0)], "--wake", phrase, "--utterances", "2")
    assert kinds(events) == [
        ("wake", None),
        ("intent", "iot_hue_lightoff"),
        ("wake", None),
        ("intent", "datetime_query"),
    ], [e.get("text") for e in events]
    assert {e["engine"] for e in events if e["type"] == "wake"} == {engine}
    assert events[1]["slots"].get("house_place") == "kitchen"
    assert f"say '{phrase}', then a command" in err and "stopped after 2 utterance(s)" in err


@pytest.mark.native_speed  # an emulated loop lags real time, and its backlog hides the stall
def test_stalled_microphone_is_reopened_and_the_next_command_recognised(tmp_path):
    first = np.concatenate([silence(0.5), say(tmp_path, "turn off the kitchen lights"), silence(1.0)])
    second = np.concatenate([silence(0.3), say(tmp_path, "wake me up at seven am", "awb"), silence(1.5)])
    # The device delivers nothing for 2.5 s between the commands, its stream stuck in a read.
    events, err = listen(
        tmp_path, [(first, 2.5), (second, 0.0)], "--device", "edgefile", "--stale-audio", "0.5", "--utterances", "2"
    )
    assert kinds(events) == [("intent", "iot_hue_lightoff"), ("intent", "alarm_set")]
    assert "no audio for 0.5 s from 'edgefile'; reopening it (attempt 1)" in err
    assert "capture resumed on edgefile" in err
    attempts = int(err.rsplit("audio overflow(s), ", 1)[1].split(" device reopen attempt(s)")[0])
    assert attempts >= 1


def test_own_feedback_sound_with_the_wake_word_does_not_wake_it(tmp_path):
    ding = say(tmp_path, "hey jarvis")  # the worst case: the feedback sound says the wake word itself
    loud = np.flatnonzero(np.abs(ding) > 300)
    ding = ding[loud[0] : loud[-1] + 1]
    sound = write_wav(tmp_path / "ding.wav", ding.astype(np.float32) / 32768, 16000)
    played = tmp_path / "played.raw"
    # The program plays the sound as it detects the wake word and after the command; the
    # microphone hears it back from the room a moment later (the endpointer closes a command
    # 480 ms after its last word).
    pieces = [
        silence(0.5),
        say(tmp_path, "hey jarvis"),
        silence(0.25),
        ding,
        silence(1.2),
        say(tmp_path, "turn off the kitchen lights"),
        silence(0.7),
        ding,
        silence(1.5),
        say(tmp_path, UNRELATED[1]),
        silence(1.0),
        # The same sound when nothing is playing: it does wake the engine (and the command
        # follows the sound it plays then).
        ding,
        silence(2.5),
        say(tmp_path, "wake me up at seven am", "awb"),
        silence(1.5),
    ]
    events, err = listen(
        tmp_path,
        [(np.concatenate(pieces), 0.0)],
        "--wake",
        "hey jarvis",
        "--feedback",
        str(sound),
        "--feedback-done",
        str(sound),
        "--utterances",
        "2",
        playback=played,
    )
    assert kinds(events) == [("wake", None), ("intent", "iot_hue_lightoff"), ("wake", None), ("intent", "alarm_set")]
    starts = np.cumsum([0] + [len(p) for p in pieces]) / 16000
    wakes = [e["audio_s"] for e in events if e["type"] == "wake"]
    assert wakes[0] < starts[3] + 0.1 and starts[11] < wakes[1] < starts[12] + 0.5  # the real one, the control
    # The sound really went out: after each wake word and each command.
    assert played.read_bytes().count(ding.astype("<i2").tobytes()) == 4
