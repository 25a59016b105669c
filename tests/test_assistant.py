"""The composition root: the whole chain built once from the shipped example configuration, a WAV file through it.

Real parts throughout: the example config as `edge-intent serve` reads it (package data), the
device profile's STT engine, silero VAD, microWakeWord, the shipped intent model, flite speech.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge import config as config_mod
from edge import resources
from edge.assistant import Assistant
from edge.audio import SamplesSource, WavSource
from edge.events import Event

from speech_helpers import need_flite, silence, speak, write_wav


@pytest.fixture(scope="module")
def assistant():
    example = config_mod.load(resources.path("examples/config.yaml"))
    built = Assistant.from_settings(example, source="examples/config.yaml")
    yield built
    built.close()


def test_the_example_config_builds_the_chain_and_a_wav_goes_through_it(assistant, tmp_path):
    need_flite()
    assert assistant.config.liveloop.activation == "wake"  # the service's default: nothing happens without it
    command = speak("hey jarvis, turn off the lights in the kitchen", "rms", tmp_path, lead_s=0.5, tail_s=1.5)
    other = speak("i think we should buy more bread tomorrow", "rms", tmp_path, lead_s=0.5, tail_s=1.5)
    audio = np.concatenate([other, silence(1.0), command]).astype(np.float32) / 32768  # write_wav takes floats
    wav = write_wav(tmp_path / "command.wav", audio, 16000)
    stages = assistant.new_speech_stages()
    wake = assistant.new_wake()
    try:
        events = list(assistant.live_loop(WavSource(wav), stages, wake, feedback=False).run())
    finally:
        wake.close()
    assert [e.type for e in events] == ["wake", "intent"], [e.to_dict() for e in events]
    assert events[0].data["phrase"] == "hey jarvis"
    result = events[1].result
    assert result.intent == "iot_hue_lightoff" and result.slot_dict().get("house_place") == "kitchen"
    assert result.transcript["engine"].startswith(assistant.stt_name)  # the profile's engine, from one place

    # The same stages again, without the wake word: every utterance of the file is a result.
    results = list(assistant.results(WavSource(wav), stages))
    assert [r.intent for r in results][-1] == "iot_hue_lightoff"


def test_requests_share_the_profiled_recognizer_and_publish_to_the_outputs(assistant, tmp_path, capsys):
    need_flite()
    recorded = assistant.recognizer.profiler.recorded
    result = assistant.classify_text("set an alarm for seven am")
    assert result.intent == "alarm_set" and assistant.recognizer.profiler.recorded == recorded + 1

    samples = speak("play some jazz music", "slt", tmp_path)
    heard = assistant.recognize(samples, timeout_s=60)
    assert not heard.expired and [r.intent for r in heard.results] == ["play_music"]
    assert heard.heard_s == pytest.approx(len(samples) / 16000, abs=0.05)

    quiet = dataclasses.replace(assistant.config, mqtt=dataclasses.replace(assistant.config.mqtt, enabled=False))
    assistant.config = quiet
    assistant.build_outputs()
    assistant.emit(Event.from_result(result))
    assert '"intent": "alarm_set"' in capsys.readouterr().out  # stdout, the example config's output
    assert b'edge_events_total{intent="alarm_set",type="intent"} 1.0' in assistant.metrics.text()


def test_a_request_past_its_time_limit_is_cut_and_the_stages_recover(assistant, tmp_path):
    need_flite()
    samples = np.concatenate([speak("what time is it", "rms", tmp_path)] * 6)
    cut = assistant.recognize(samples, timeout_s=0.0)
    assert cut.expired and cut.heard_s < len(samples) / 16000
    again = assistant.recognize(speak("what time is it", "rms", tmp_path), timeout_s=60)
    assert not again.expired and [r.intent for r in again.results] == ["datetime_query"]
    assert list(assistant.results(SamplesSource(silence(1.0)))) == []
