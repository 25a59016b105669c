"""Endpointing with the real silero model on real (flite) speech."""

from __future__ import annotations

import numpy as np
import pytest

from edge.audio import FRAME_SAMPLES, SAMPLE_RATE, SamplesSource
from edge.settings import SettingsError, from_mapping
from edge.vad import Endpointer, SileroModel, VadSettings, utterances

from speech_helpers import silence, speak

FRAME_MS = FRAME_SAMPLES * 1000 / SAMPLE_RATE


@pytest.fixture(scope="module")
def model():
    return SileroModel()


@pytest.fixture(scope="module")
def command(tmp_path_factory):
    return speak("turn off the kitchen lights", "slt", tmp_path_factory.mktemp("vad"), lead_s=0.0, tail_s=0.0)


def run(samples, model, **settings):
    ep = Endpointer(VadSettings(**settings), model)
    ep.reset()
    steps = [ep.step(f) for f in SamplesSource(samples)] + [ep.flush()]
    ep.reset()
    return steps, list(utterances(SamplesSource(samples), ep))


def test_one_command_is_one_utterance_with_its_edges(command, model):
    samples = np.concatenate([silence(1.0), command, silence(1.5)])
    steps, utts = run(samples, model)
    assert len(utts) == 1
    starts = [i for i, s in enumerate(steps) if s.started]
    ends = [(i, s) for i, s in enumerate(steps) if s.ended]
    assert len(starts) == 1 and len(ends) == 1
    end_index, end = ends[0]
    assert end.ended == "silence"
    assert end.trailing_ms >= VadSettings().trailing_silence_ms - FRAME_MS
    # The utterance holds the whole command: it starts in the lead-in, ends in the tail.
    speech_from, speech_to = 1.0, 1.0 + len(command) / SAMPLE_RATE
    released = [f for s in steps for f in s.audio]
    assert len(utts[0]) == len(released) * FRAME_SAMPLES
    assert len(utts[0]) / SAMPLE_RATE >= speech_to - speech_from
    assert (end_index + 1) * FRAME_MS / 1000 < speech_to + 1.0


def test_two_commands_two_utterances_silence_none(command, model):
    samples = np.concatenate([silence(0.5), command, silence(1.0), command, silence(1.0)])
    assert len(run(samples, model)[1]) == 2
    assert run(silence(3.0), model)[1] == []
    noise = (np.random.default_rng(0).normal(0, 30, 3 * SAMPLE_RATE)).astype(np.int16)  # a quiet room
    assert run(noise, model)[1] == []


def test_pre_roll_is_released_with_the_start(command, model):
    samples = np.concatenate([silence(1.0), command, silence(1.0)])
    with_roll = next(s for s in run(samples, model, pre_roll_ms=320)[0] if s.started)
    without = next(s for s in run(samples, model, pre_roll_ms=0)[0] if s.started)
    assert len(with_roll.audio) - len(without.audio) == round(320 / FRAME_MS)


def test_min_speech_drops_short_sounds(command, model):
    samples = np.concatenate([silence(0.5), command, silence(1.0)])
    assert run(samples, model, min_speech_ms=10000, max_utterance_ms=20000)[1] == []


def test_max_length_cuts_and_end_of_stream_closes(command, model):
    samples = np.concatenate([silence(0.3), command, silence(1.0)])
    steps, utts = run(samples, model, max_utterance_ms=700)
    assert len(utts) >= 2
    assert "max_length" in [s.ended for s in steps]
    steps, utts = run(np.concatenate([silence(0.3), command]), model)  # no trailing silence
    assert len(utts) == 1 and steps[-1].ended == "end_of_stream"


def test_settings_are_validated():
    with pytest.raises(SettingsError, match="threshold"):
        from_mapping(VadSettings, {"threshold": 1.5}, source="edge.yaml", key="vad")
    with pytest.raises(SettingsError, match="vad.silence: unknown key"):
        from_mapping(VadSettings, {"silence": 300}, source="edge.yaml", key="vad")
    assert from_mapping(VadSettings, {"trailing_silence_ms": 300}, source="x").trailing_silence_ms == 300


def test_wrong_frame_size_is_an_error(model):
    with pytest.raises(ValueError, match="frames of 512 samples"):
        model.probability(np.zeros(480, dtype=np.int16))
