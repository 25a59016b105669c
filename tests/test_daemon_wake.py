"""``edge-intent serve`` with its default activation: the wake word, through real PortAudio capture.

The daemon runs in a child process on an ALSA ``type file`` PCM fed from a FIFO (``FifoMic`` of
tests/test_daemon.py), with the configuration's defaults for the live loop and the wake word
("hey jarvis" on the shipped microWakeWord model): other speech is ignored, the wake word and the
command after it reach stdout, ``/healthz`` shows the loop, ``/metrics`` the wake stage's cost,
and ``POST /v1/listen`` takes one command without the wake word.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from speech_helpers import FifoMic, silence, speak
from test_daemon import Daemon, need_portaudio, wait_for

pytestmark = pytest.mark.slow


def test_wake_word_then_command_and_listen_request(tmp_path):
    need_portaudio()
    mic = FifoMic(tmp_path, speed=2.0)  # twice real time: the loop counts audio time, not wall time
    daemon = Daemon(tmp_path, 'http: {listen: "127.0.0.1:0"}\n', env={"ALSA_CONFIG_PATH": str(mic.conf)})
    try:
        daemon.wait_note("READY=1")
        wait_for(lambda: "listening on" in daemon.log, 30, "the microphone to open")
        said = mic.say(
            np.concatenate(
                [
                    speak("the game starts at eight tonight", "slt", tmp_path),
                    silence(0.5),
                    speak("hey jarvis, turn off the kitchen lights", "rms", tmp_path),
                ]
            )
        )
        intent = daemon.wait_event(lambda e: e["type"] == "intent")
        assert said.wait(10)
        assert [e["type"] for e in daemon.events] == ["wake", "intent"], daemon.events  # nothing for the other sentence
        wake = daemon.events[0]
        assert (wake["phrase"], wake["engine"]) == ("hey jarvis", "micro") and wake["score"] > 0
        assert intent["intent"] == "iot_hue_lightoff" and intent["slots"].get("house_place") == "kitchen"

        status, health = daemon.request("GET", "/healthz")
        loop = health["loop"]
        assert status == 200 and (loop["activation"], loop["state"], loop["stuck"]) == ("wake", "waiting", False)
        assert loop["last_frame_age_s"] < 1.0 and loop["events"] == {"wake": 1, "intent": 1}
        assert loop["wake"]["engine"] == "micro" and loop["wake"]["audio_s"] > 3
        _, metrics = daemon.request("GET", "/metrics")
        assert 'edge_wake_detections_total{engine="micro",phrase="hey jarvis"} 1.0' in metrics
        cpu = float(metrics.split("\nedge_wake_cpu_per_audio_second ")[1].split()[0])
        assert 0 < cpu < 0.5

        # POST /v1/listen: one command now, no wake word needed; the answer is its event. The speech is
        # made first: under CPU emulation (script/test-aarch64) flite alone outlasts the no-speech timeout.
        command = speak("what time is it", "awb", tmp_path)
        answer: dict = {}
        thread = threading.Thread(
            target=lambda: answer.update(zip(("status", "body"), daemon.request("POST", "/v1/listen")))
        )
        thread.start()
        wait_for(
            lambda: daemon.request("GET", "/healthz")[1]["loop"]["state"] == "capturing",
            10,
            "the loop to start capturing for the listen request",
        )
        mic.say(command)
        thread.join(30)
        assert answer["status"] == 200 and answer["body"]["intent"] == "datetime_query", answer
        assert daemon.wait_event(lambda e: e["id"] == answer["body"]["id"])
        assert [e["type"] for e in daemon.events] == ["wake", "intent", "intent"]
        assert daemon.stop() == 0 and "Traceback" not in daemon.log
    finally:
        daemon.kill()
        mic.close()
