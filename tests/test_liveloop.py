"""The live loop's state machine on real speech (flite), real VAD, STT, wake engines and intent model.

Audio comes from fast in-memory sources: the loop keeps time in samples, so these runs take a
fraction of the audio's duration and every timeout lands at the same audio position it would
on a microphone. Real PortAudio capture is in test_liveloop_capture.py.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.audio import SAMPLE_RATE, SamplesSource, StreamSource
from edge.liveloop import FeedbackSettings, LiveLoop, LiveLoopSettings, State
from edge.pipeline import Pipeline
from edge.settings import SettingsError, from_mapping
from edge.vad import Endpointer

from speech_helpers import silence, speak, write_wav

UNRELATED = ["i think we should buy more bread tomorrow", "the game starts at eight tonight"]
# Continuous speech like a TV's: sentences joined by pauses shorter than the endpointer's 480 ms.
TV = [
    ("and now the news at nine o clock tonight", "rms"),
    ("the minister said that the budget would be announced next week", "awb"),
    ("meanwhile in sports the local team won again by three goals", "kal"),
    ("the weather tomorrow will be cloudy with some rain in the north", "rms"),
]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("liveloop")


@pytest.fixture(scope="module")
def parts(tmp):
    """Speech without flite's padding, so the test decides every pause."""

    def say(text: str, voice: str = "rms") -> np.ndarray:
        return speak(text, voice, tmp, lead_s=0.0, tail_s=0.0)

    return say


@pytest.fixture(scope="module")
def classifier(shipped_classifier):
    return shipped_classifier


@pytest.fixture(scope="module")
def stt(classifier):
    from edge.stt import SttSettings, create_engine

    return create_engine(SttSettings(), package=classifier.package)


def trimmed(samples: np.ndarray) -> np.ndarray:
    """Without the silence flite puts around a sentence."""
    loud = np.flatnonzero(np.abs(samples) > 300)
    return samples[loud[0] : loud[-1] + 1]


def tv_speech(parts) -> np.ndarray:
    return np.concatenate([np.concatenate([trimmed(parts(text, voice)), silence(0.12)]) for text, voice in TV])


def wake_engine(phrase: str = "hey jarvis"):
    from edge.wake import WakeSettings, create_engine

    return create_engine(WakeSettings(phrases=(phrase,)))


def live_loop(source, stt, classifier, wake, settings, **kwargs):
    """The loop over one stream, its endpointer the pipeline's own (as edge.assistant builds it)."""
    vad = Endpointer()
    return LiveLoop(source, vad, Pipeline(source, vad, stt, classifier), wake, settings, **kwargs)


def run(audio, stt, classifier, activation="wake", wake=None, **settings):
    loop = live_loop(SamplesSource(audio), stt, classifier, wake, LiveLoopSettings(activation=activation, **settings))
    events = list(loop.run())
    return events, loop


def summary(events):
    return [(e.type, e.result.intent if e.result else e.data.get("reason")) for e in events]


def seconds(*pieces: np.ndarray) -> list[float]:
    """Where each piece starts, in seconds, when they are concatenated."""
    return list(np.cumsum([0] + [len(p) for p in pieces])[:-1] / SAMPLE_RATE)


@pytest.mark.slow
def test_wake_then_command_in_one_breath_and_nothing_for_other_speech(parts, stt, classifier):
    pieces = [
        silence(0.5),
        parts(UNRELATED[0]),
        silence(1.5),
        parts("hey jarvis, turn off the kitchen lights"),
        silence(1.5),
        parts(UNRELATED[1]),
        silence(1.0),
        parts("hey jarvis"),
        silence(0.8),
        parts("wake me up at seven am"),
        silence(1.5),
    ]
    events, loop = run(np.concatenate(pieces), stt, classifier, wake=wake_engine())
    assert summary(events) == [("wake", None), ("intent", "iot_hue_lightoff"), ("wake", None), ("intent", "alarm_set")]
    starts = seconds(*pieces)
    # The first wake lies inside "hey jarvis, turn off ...", the second inside the lone "hey jarvis".
    assert starts[3] < events[0].data["audio_s"] < starts[4]
    assert starts[7] < events[2].data["audio_s"] < starts[8] + 0.5
    assert events[1].result.slot_dict().get("house_place") == "kitchen"
    assert events[0].data["phrase"] == "hey jarvis" and events[0].data["engine"] == "micro"
    status = loop.status()
    assert status.state == State.STOPPED and status.events == {"wake": 2, "intent": 2}
    assert status.wake["hits"] == {"hey jarvis": 2} and not status.stuck


@pytest.mark.slow
def test_tv_after_the_wake_word_is_cut_at_the_cap_then_no_speech_times_out(parts, stt, classifier):
    tv = tv_speech(parts)
    assert len(tv) > 11 * SAMPLE_RATE
    pieces = [
        silence(0.5),
        parts("hey jarvis"),
        silence(0.3),
        tv,
        silence(1.5),
        parts("hey jarvis"),
        silence(6.0),
        parts("hey jarvis, turn off the kitchen lights"),
        silence(1.5),
    ]
    events, loop = run(np.concatenate(pieces), stt, classifier, wake=wake_engine())
    assert summary(events) == [
        ("wake", None),
        ("timeout", "command_too_long"),
        ("wake", None),
        ("timeout", "no_speech"),
        ("wake", None),
        ("intent", "iot_hue_lightoff"),
    ]
    starts = seconds(*pieces)
    cut = events[1].data
    assert cut["state"] == "capturing" and cut["after_s"] == 8.0 and cut["text"]  # what the TV said, for the log
    # Cut 8 s of audio after the speech began, although the run took a fraction of that in wall time.
    assert starts[3] + 7.5 < cut["audio_s"] < starts[3] + 9.0
    quiet = events[3].data
    assert starts[6] + 3.8 < quiet["audio_s"] < starts[6] + 4.8
    assert loop.status().timeouts == {"command_too_long": 1, "no_speech": 1}


@pytest.mark.slow
def test_vad_mode_every_utterance_is_a_command(parts, stt, classifier):
    pieces = [
        silence(0.5),
        parts("play some jazz music", "slt"),
        silence(1.0),
        parts("what is the weather like in london", "awb"),
        silence(1.0),
    ]
    events, _ = run(np.concatenate(pieces), stt, classifier, activation="vad")
    assert summary(events) == [("intent", "play_music"), ("intent", "weather_query")]
    assert all(set(e.result.latency_ms) >= {"vad", "stt", "classify", "total"} for e in events)


@pytest.mark.slow
def test_keyphrase_wake_word(parts, stt, classifier):
    pieces = [
        silence(0.5),
        parts(UNRELATED[1], "awb"),
        silence(1.0),
        parts("hey computer, turn off the kitchen lights", "awb"),
        silence(1.5),
    ]
    events, _ = run(np.concatenate(pieces), stt, classifier, wake=wake_engine("hey computer"))
    assert summary(events) == [("wake", None), ("intent", "iot_hue_lightoff")]
    assert events[0].data["engine"] == "pocketsphinx"


@pytest.mark.slow
def test_listen_once_takes_one_command_on_request(parts, stt, classifier):
    heard_first = threading.Event()
    asked = threading.Event()
    second = threading.Event()

    def audio():
        yield np.concatenate([parts("play some jazz music"), silence(1.0)])  # nobody asked: ignored
        heard_first.set()  # the source only gets here once the loop has taken every frame above
        asked.wait(30)
        yield np.concatenate([silence(0.5), parts("wake me up at seven am"), silence(1.0)])
        second.wait(30)
        yield silence(5.0)  # asked, but nobody speaks

    loop = live_loop(StreamSource(audio()), stt, classifier, None, LiveLoopSettings(activation="api"))
    emitted = []
    runner = threading.Thread(target=lambda: emitted.extend(loop.run()))
    runner.start()
    answers = []
    for gate in (asked, second):
        assert heard_first.wait(30)
        asker = threading.Thread(target=lambda: answers.append(loop.listen_once(timeout=60)))
        asker.start()
        time.sleep(0.2)  # the request is queued before the audio goes on
        gate.set()
        asker.join(60)
    runner.join(60)
    assert [a.type for a in answers] == ["intent", "timeout"]
    assert answers[0].result.intent == "alarm_set" and answers[1].data["reason"] == "no_speech"
    assert [e.id for e in emitted] == [a.id for a in answers]  # also emitted like any event
    stopped = loop.listen_once(timeout=5)  # the loop has ended: the request is answered at once
    assert stopped.type == "error" and stopped.data["message"] == "the live loop has stopped"


@pytest.mark.slow
def test_recognition_over_its_limit_times_out_and_the_loop_carries_on(parts, stt, classifier):
    pieces = [
        silence(0.5),
        parts("turn off the kitchen lights"),
        silence(1.0),
        parts("play some jazz music"),
        silence(1.0),
    ]
    events, loop = run(np.concatenate(pieces), stt, classifier, activation="vad", recognise_timeout_s=1e-4)
    # The first recognition cannot finish in 0.1 ms: timed out. The recogniser may still be busy
    # with it when the next command starts (skipped, reported) or done (recognised, timed out too).
    assert events[0].type == "timeout" and events[0].data["reason"] == "recognition_time"
    assert events[0].data["state"] == "recognising"
    assert len(events) == 2 and events[1].type in ("timeout", "error")
    assert loop.status().state == State.STOPPED


@pytest.mark.slow
def test_on_event_runs_while_acting_and_stop_finishes_the_command_in_flight(parts, stt, classifier):
    states = []
    loop = None

    def on_event(event):
        states.append((event.type, loop.status().state))
        loop.stop()  # asked to stop mid-stream: the loop returns at the next waiting state

    pieces = [
        silence(0.5),
        parts("turn off the kitchen lights"),
        silence(1.0),
        parts("play some jazz music"),
        silence(1.0),
    ]
    loop = live_loop(
        SamplesSource(np.concatenate(pieces)),
        stt,
        classifier,
        None,
        LiveLoopSettings(activation="vad"),
        on_event=on_event,
    )
    events = list(loop.run())
    assert states == [("intent", "acting")]
    assert [e.result.intent for e in events] == ["iot_hue_lightoff"]


@pytest.mark.slow
def test_feedback_without_an_output_device_is_skipped_with_one_log_line(parts, stt, classifier, tmp, caplog):
    pytest.importorskip("sounddevice")
    from edge.audio import list_devices

    if list_devices(output=True):
        pytest.skip("this machine has an audio output; the capture tests play through a file device instead")
    sound = write_wav(tmp / "ding.wav", np.sin(np.arange(4000) / 5.0) * 0.3, 16000)
    pieces = [
        silence(0.5),
        parts("hey jarvis, turn off the kitchen lights"),
        silence(1.0),
        parts("hey jarvis"),
        silence(0.7),
        parts("play some jazz music"),
        silence(1.0),
    ]
    feedback = FeedbackSettings(wake=str(sound), intent=str(sound))
    with caplog.at_level(logging.WARNING, logger="edge.playback"):
        events, loop = run(np.concatenate(pieces), stt, classifier, wake=wake_engine(), feedback=feedback)
    assert summary(events) == [("wake", None), ("intent", "iot_hue_lightoff"), ("wake", None), ("intent", "play_music")]
    assert [r.getMessage() for r in caplog.records] == [
        "playback: no audio output device found (PortAudio lists no "
        "device with output channels); feedback sounds are skipped"
    ]
    assert loop.player.skipped == 4 and loop.status().suppressed_seconds == 0


def test_settings_are_checked_with_the_key_named(tmp):
    with pytest.raises(
        SettingsError, match=r"cfg.yaml: liveloop: command_max_s: 0 is out of range; allowed \(0, 600\]"
    ):
        from_mapping(LiveLoopSettings, {"command_max_s": 0}, source="cfg.yaml", key="liveloop")
    with pytest.raises(SettingsError, match=r"liveloop.activation: got 'push'; allowed: 'wake', 'vad', 'api'"):
        from_mapping(LiveLoopSettings, {"activation": "push"}, source="cfg.yaml", key="liveloop")
    with pytest.raises(
        SettingsError, match=r"liveloop.feedback.beep: unknown key; allowed keys: device, intent, not_understood, wake"
    ):
        from_mapping(LiveLoopSettings, {"feedback": {"beep": "x.wav"}}, source="cfg.yaml", key="liveloop")
    settings = from_mapping(
        LiveLoopSettings, {"activation": "vad", "feedback": {"intent": str(tmp / "none.wav")}}, source="cfg.yaml"
    )
    from edge.audio import AudioError

    with pytest.raises(AudioError, match=r"feedback.intent: .*none.wav: no such file \(expected a short WAV file"):
        live_loop(SamplesSource(silence(1)), None, None, None, settings)
    with pytest.raises(ValueError, match="activation 'wake' needs a wake engine"):
        live_loop(SamplesSource(silence(1)), None, None, None, LiveLoopSettings())


def test_status_turns_unhealthy_while_the_audio_stalls():
    stalled, resume = threading.Event(), threading.Event()

    def audio():
        yield silence(1.0)
        stalled.set()
        resume.wait(10)  # a microphone that stops delivering
        yield silence(1.0)

    loop = live_loop(StreamSource(audio()), None, None, None, LiveLoopSettings(activation="api"))
    runner = threading.Thread(target=lambda: list(loop.run()))
    runner.start()
    assert stalled.wait(10)
    time.sleep(0.3)
    status = loop.status()
    assert status.running and status.state == "waiting" and status.state_limit_seconds is None
    assert status.last_frame_age_s >= 0.3 and not status.stuck
    (problem,) = status.problems(max_frame_age_s=0.2)
    assert problem.startswith("no audio frame for ") and problem.endswith("s (limit 0.2 s)")
    metrics = status.metrics_text()
    assert (
        'edge_liveloop_state{state="waiting"} 1.0' in metrics
        and 'edge_liveloop_state{state="capturing"} 0.0' in metrics
    )
    (age,) = [
        float(line.split()[1]) for line in metrics.splitlines() if line.startswith("edge_audio_last_frame_age_seconds ")
    ]
    assert age >= 0.3
    resume.set()
    runner.join(10)
    status = loop.status()
    assert not status.running and status.state == "stopped" and status.problems(max_frame_age_s=0.2) == []
    assert status.audio_seconds == pytest.approx(2.0, abs=0.04) and status.frames == 63
    assert status.to_dict()["stuck"] is False


def test_cli_refuses_bad_wake_options_before_loading_anything(capsys):
    import argparse

    from edge.cli import speech as speech_cli

    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    speech_cli.add_arguments(parser)

    def not_loaded():
        raise AssertionError("the model must not be loaded for a bad option")

    assert speech_cli.run(parser.parse_args(["--wav", "x.wav", "--feedback", "ding.wav"]), not_loaded) == 1
    assert "edge-intent: --feedback is played after the wake word: give --wake PHRASE too" in capsys.readouterr().err
    assert speech_cli.run(parser.parse_args(["--wav", "x.wav", "--wake", " ,"]), not_loaded) == 1
    assert "edge-intent: --wake: phrases[0]: ' ,' is empty; expected a wake phrase" in capsys.readouterr().err
