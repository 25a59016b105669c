"""Speech options of ``edge-intent``: ``--wav FILE...``, ``--mic``, ``--list-devices``, ``--wake PHRASE``.

The lead's parser calls :func:`add_arguments` and, when :func:`wants_speech` is true, hands over
to :func:`run` with a function that loads the intent classifier (so models are loaded once, and
only after the audio input has been checked). ``--json`` comes from that parser.

``--mic`` runs the live loop (``edge.liveloop``): every utterance is a command (``--activation
vad``, the default), or, with ``--wake PHRASE``, only what follows the wake word. ``--wav`` with
``--wake`` sends each file through the same loop, as fast as it can be processed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.assistant import Assistant, SpeechStages, microphone, wake_engine, wake_settings_for
from edge.audio import DEFAULT_MAX_WAV_SECONDS, AudioError, AudioSource, WavSource, list_devices
from edge.config import AudioSettings, Config, ModelSettings
from edge.denoise import DenoisedSource
from edge.events import Event
from edge.liveloop import FeedbackSettings, LiveLoopSettings
from edge.result import Result
from edge.settings import SettingsError
from edge.stt import ENGINES, SttError, SttSettings
from edge.vad import VadSettings
from edge.wake import WakeSettings

FILE_TRAILING_SILENCE_MS = 1000
"""--wav: silence that ends an utterance in a file (the microphone's default is shorter, for latency)."""
MIC_RETRY_S = 0.5
"""--mic: the first wait before reopening a device that went silent (the service waits longer: it has no one watching)."""

if TYPE_CHECKING:
    from edge.classifier import IntentClassifier
    from edge.wake import WakeEngine


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("speech input")
    group.add_argument(
        "--wav", nargs="+", metavar="FILE", help="classify the speech in WAV files (any rate, channels, sample format)"
    )
    group.add_argument("--mic", action="store_true", help="listen to the microphone and classify each utterance")
    group.add_argument("--list-devices", action="store_true", help="list audio input devices and exit")
    group.add_argument("--device", metavar="NAME|INDEX", help="input device for --mic (default: the system default)")
    group.add_argument(
        "--stt",
        choices=["auto", *ENGINES],
        default="auto",
        help="speech-to-text engine (default auto: the device profile's choice if installed, else pocketsphinx)",
    )
    group.add_argument(
        "--stt-model",
        metavar="NAME|DIR",
        help="Whisper: tiny.en, base or a CTranslate2 Whisper directory; Vosk: its model directory; "
        "PocketSphinx: an acoustic model directory",
    )
    group.add_argument(
        "--no-adapt", action="store_true", help="use the engine's general language model, not the intent model's"
    )
    group.add_argument(
        "--max-seconds",
        type=float,
        default=DEFAULT_MAX_WAV_SECONDS,
        metavar="S",
        help=f"refuse WAV files longer than this (default {DEFAULT_MAX_WAV_SECONDS:g})",
    )
    group.add_argument("--utterances", type=int, metavar="N", help="--mic: stop after N commands")
    group.add_argument(
        "--wake",
        action="append",
        metavar="PHRASE",
        help="listen for this wake word first and take the command that follows it (repeatable); "
        "a phrase microWakeWord has a model for (hey jarvis, okay nabu, alexa, hey mycroft) uses "
        "it, any other phrase PocketSphinx keyphrase spotting",
    )
    group.add_argument(
        "--activation",
        choices=["wake", "vad"],
        help="wake: only commands after the wake word (default with --wake); vad: every utterance is "
        "a command (default otherwise)",
    )
    group.add_argument("--feedback", metavar="WAV", help="play this short sound when the wake word is heard")
    group.add_argument("--feedback-done", metavar="WAV", help="play this short sound after each command")
    group.add_argument(
        "--stale-audio",
        type=float,
        default=2.0,
        metavar="S",
        help="--mic: reopen the device when it delivers nothing for S seconds (default 2)",
    )
    group.add_argument(
        "--noise-suppression",
        type=int,
        default=0,
        choices=range(5),
        metavar="0..4",
        help="--mic: WebRTC noise suppression before the wake word and STT (0 off, the default; "
        "helps PocketSphinx keyphrases in steady noise, costs microWakeWord accuracy)",
    )


def wants_speech(args: argparse.Namespace) -> bool:
    return bool(args.wav or args.mic or args.list_devices)


def run(args: argparse.Namespace, load_classifier: Callable[[], IntentClassifier]) -> int:
    """Carry out the speech options; returns the exit status (errors are printed, never raised).

    The options become settings (:func:`settings_from`); the chain is :mod:`edge.assistant`'s.
    The wake word and the microphone are checked before ``load_classifier`` loads the model.
    """
    json_out = bool(getattr(args, "json", False))
    try:
        if args.list_devices:
            return _list_devices()
        config = settings_from(args)
        wake = None
        if config.liveloop.activation == "wake":
            from edge.wake import local_config_path

            wake = wake_engine(config.wake, "--wake" if args.wake else str(local_config_path()), key="")
        source = microphone(config.audio) if args.mic else None
        assistant = Assistant.from_settings(config, source="edge-intent", classifier=load_classifier())
        stages = assistant.new_speech_stages()
        if source is not None:
            if config.audio.front_end.enabled:
                source = DenoisedSource(source, config.audio.front_end)
            return _listen(assistant, source, stages, wake, args, json_out)
        return _files(assistant, args.wav, stages, args.max_seconds, json_out, wake)
    except (AudioError, SttError, SettingsError, ValueError) as exc:
        print(f"edge-intent: {exc}", file=sys.stderr)
        return 1


def settings_from(args: argparse.Namespace) -> Config:
    """The speech options as the settings the service reads from its configuration file."""
    activation = args.activation or ("wake" if args.wake else "vad")
    if args.feedback and activation != "wake":
        raise ValueError("--feedback is played after the wake word: give --wake PHRASE too")
    done = args.feedback_done
    liveloop = LiveLoopSettings(
        activation=activation, feedback=FeedbackSettings(wake=args.feedback, intent=done, not_understood=done)
    )
    # A recording is usually one command: a pause inside it must not cut it in two, and waiting
    # for silence costs nothing there (no one is waiting for the end of a file).
    vad = VadSettings() if args.mic else VadSettings(trailing_silence_ms=FILE_TRAILING_SILENCE_MS)
    audio = AudioSettings(
        device=args.device,
        stale_s=args.stale_audio,
        retry_min_s=MIC_RETRY_S,
        max_frame_age_s=args.stale_audio + 1.0,
        noise_suppression=args.noise_suppression,
    )
    return Config(
        profile=getattr(args, "profile", None),
        model=ModelSettings(
            name=getattr(args, "model", None),
            backend=getattr(args, "backend", None),
            precision=getattr(args, "precision", None),
            threads=getattr(args, "threads", None),
        ),
        stt=SttSettings(engine=args.stt, model=args.stt_model, adapt=not args.no_adapt),
        vad=vad,
        audio=audio,
        liveloop=liveloop,
        wake=_wake_settings(args) if activation == "wake" else WakeSettings(),
    )


def _wake_settings(args: argparse.Namespace) -> WakeSettings:
    """``--wake`` phrases (or the local wake config's), with calibrated thresholds when there are some."""
    from edge import wake

    settings = wake.WakeSettings()
    local = wake.local_config_path()
    if local.is_file():
        settings = wake.load_settings(local)
    if not args.wake:
        return settings
    try:
        return wake_settings_for(settings, tuple(args.wake))
    except ValueError as exc:
        raise wake.WakeError(f"--wake: {exc}") from None


def _list_devices() -> int:
    devices = list_devices()
    if not devices:
        print("edge-intent: no audio input device found", file=sys.stderr)
        return 1
    print("  index  name  (host API, channels, default rate); * = default")
    for device in devices:
        print(device)
    return 0


def _files(
    assistant: Assistant,
    paths: list[str],
    stages: SpeechStages,
    max_seconds: float,
    json_out: bool,
    wake: WakeEngine | None = None,
) -> int:
    status = 0
    for path in paths:
        try:
            source = WavSource(path, max_seconds=max_seconds)
        except AudioError as exc:
            # One bad file does not stop the others; it is reported where its result would be.
            print(f"edge-intent: {exc}", file=sys.stderr)
            if json_out:
                print(json.dumps({"file": path, "error": str(exc)}), flush=True)
            status = 1
            continue
        if wake is not None:
            events = list(assistant.live_loop(source, stages, wake, feedback=False).run())  # no sounds for recordings
            for event in events:
                _emit_event(event, json_out, file=path)
            if not events:
                _emit(None, json_out, file=path)
            continue
        results = list(assistant.results(source, stages))
        if not results:
            _emit(None, json_out, file=path)
        for result in results:
            _emit(result, json_out, file=path)
    return status


def _listen(
    assistant: Assistant,
    source: AudioSource,
    stages: SpeechStages,
    wake: WakeEngine | None,
    args: argparse.Namespace,
    json_out: bool,
) -> int:
    show_partials = not json_out and sys.stderr.isatty()
    loop = assistant.live_loop(source, stages, wake, on_partial=_show_partial if show_partials else None)

    def stop(signum: int, frame: Any) -> None:
        loop.stop()  # the loop finishes the command in flight, then returns

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    waiting_for = f"say {' or '.join(repr(p) for p in wake.phrases)}, then a command" if wake else "speak a command"
    print(f"listening on {source.description}; {waiting_for}; Ctrl-C to stop", file=sys.stderr, flush=True)
    count = 0
    try:
        for event in loop.run():
            if show_partials:
                print("\r\033[K", end="", file=sys.stderr)
            _emit_event(event, json_out)
            if event.type in ("intent", "not_understood"):
                count += 1
                if args.utterances is not None and count >= args.utterances:
                    loop.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if loop.player is not None:
            loop.player.wait(timeout=10)  # a feedback sound still playing is not cut off
    stats = source.stats()
    print(
        f"stopped after {count} utterance(s); {stats['overflows']} audio overflow(s), "
        f"{stats['reopen_attempts']} device reopen attempt(s)",
        file=sys.stderr,
    )
    return 0


def _show_partial(text: str) -> None:
    print(f"\r\033[K… {text}", end="", file=sys.stderr, flush=True)


def _emit_event(event: Event, json_out: bool, file: str | None = None) -> None:
    """Commands print as results do; wake words, timeouts and errors get a line of their own."""
    if event.result is not None and not json_out:
        _emit(event.result, json_out, file)
        return
    if json_out:
        data = event.to_dict()
        print(json.dumps({"file": file, **data} if file else data, ensure_ascii=False), flush=True)
        return
    where = f"{file}: " if file else ""
    d = event.data
    if event.type == "wake":
        print(
            f"{where}[wake] {d.get('phrase')} ({d.get('engine')}, score {d.get('score')}) at {d.get('audio_s')} s",
            flush=True,
        )
    elif event.type == "timeout":
        heard = f' (heard "{d["text"]}")' if d.get("text") else ""
        print(f"{where}[timeout] {d.get('reason')} after {d.get('after_s')} s{heard}", flush=True)
    else:
        print(f"{where}[{event.type}] {d.get('message', '')}", flush=True)


def _emit(result: Result | None, json_out: bool, file: str | None = None) -> None:
    if result is None:
        if json_out:
            print(json.dumps({"file": file, "text": "", "intent": None, "note": "no speech detected"}), flush=True)
        else:
            print(f"{file}: no speech detected", flush=True)
        return
    if json_out:
        data = result.to_dict()
        if file is not None:
            data = {"file": file, **data}
        print(json.dumps(data, ensure_ascii=False), flush=True)
        return
    where = f"{file}: " if file else ""
    if result.intent is not None:
        verdict = f"{result.intent} ({result.confidence:.2f})"
    elif result.guess:
        verdict = f"out of scope (best guess {result.guess} {result.guess_confidence:.2f})"
    else:
        verdict = "nothing recognised"
    slots = "".join(f"  {k}={v}" for k, v in result.slot_dict().items())
    lat = result.latency_ms
    timing = ", ".join(f"{k} {lat[k]:.1f}" for k in ("capture", "vad", "stt", "classify", "total") if k in lat)
    print(f'{where}"{result.text}" -> {verdict}{slots}  [{timing} ms]', flush=True)


__all__ = ["add_arguments", "run", "wants_speech"]
