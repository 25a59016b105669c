"""Speech options of ``edge-intent``: ``--wav FILE...``, ``--mic``, ``--list-devices``.

The lead's parser calls :func:`add_arguments` and, when :func:`wants_speech` is true, hands over
to :func:`run` with a function that loads the intent classifier (so models are loaded once, and
only after the audio input has been checked). ``--json`` comes from that parser.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterator

from edge.audio import DEFAULT_MAX_WAV_SECONDS, AudioError, MicSource, WavSource, list_devices
from edge.pipeline import Pipeline
from edge.result import Result
from edge.stt import ENGINES, SttError, SttSettings, create_engine
from edge.vad import Endpointer

if TYPE_CHECKING:
    from edge.classifier import IntentClassifier


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("speech input")
    group.add_argument("--wav", nargs="+", metavar="FILE", help="classify the speech in WAV files (any rate, channels, sample format)")
    group.add_argument("--mic", action="store_true", help="listen to the microphone and classify each utterance")
    group.add_argument("--list-devices", action="store_true", help="list audio input devices and exit")
    group.add_argument("--device", metavar="NAME|INDEX", help="input device for --mic (default: the system default)")
    group.add_argument("--stt", choices=["auto", *ENGINES], default="auto",
                       help="speech-to-text engine (default auto: the device profile's choice if installed, else pocketsphinx)")
    group.add_argument("--stt-model", metavar="DIR", help="Vosk model directory, or a PocketSphinx acoustic model directory")
    group.add_argument("--no-adapt", action="store_true", help="use the engine's general language model, not the intent model's")
    group.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_WAV_SECONDS, metavar="S",
                       help=f"refuse WAV files longer than this (default {DEFAULT_MAX_WAV_SECONDS:g})")
    group.add_argument("--utterances", type=int, metavar="N", help="--mic: stop after N utterances")


def wants_speech(args: argparse.Namespace) -> bool:
    return bool(args.wav or args.mic or args.list_devices)


def run(args: argparse.Namespace, load_classifier: Callable[[], "IntentClassifier"]) -> int:
    """Carry out the speech options; returns the exit status (errors are printed, never raised)."""
    json_out = bool(getattr(args, "json", False))
    try:
        if args.list_devices:
            return _list_devices()
        source = MicSource(args.device) if args.mic else None
        classifier = load_classifier()
        stt = create_engine(SttSettings(engine=args.stt, model=args.stt_model, adapt=not args.no_adapt),
                            package=classifier.package, preferred=_profile_stt(args))
        vad = Endpointer()
        if source is not None:
            return _listen(source, vad, stt, classifier, args, json_out)
        return _files(args.wav, vad, stt, classifier, args.max_seconds, json_out)
    except (AudioError, SttError) as exc:
        print(f"edge-intent: {exc}", file=sys.stderr)
        return 1


def _profile_stt(args: argparse.Namespace) -> str | None:
    """The STT engine the device profile prefers (``--profile`` or detected); None if there is no profile."""
    from edge import profiles

    try:
        return profiles.detect(override=getattr(args, "profile", None)).profile.stt
    except Exception:  # no profile files or an unknown name: the intent parser reports that itself
        return None


def _list_devices() -> int:
    devices = list_devices()
    if not devices:
        print("edge-intent: no audio input device found", file=sys.stderr)
        return 1
    print("  index  name  (host API, channels, default rate); * = default")
    for device in devices:
        print(device)
    return 0


def _files(paths: list[str], vad: Endpointer, stt: Any, classifier: "IntentClassifier", max_seconds: float,
           json_out: bool) -> int:
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
        results = list(Pipeline(source, vad, stt, classifier).run())
        if not results:
            _emit(None, json_out, file=path)
        for result in results:
            _emit(result, json_out, file=path)
    return status


def _listen(source: MicSource, vad: Endpointer, stt: Any, classifier: "IntentClassifier", args: argparse.Namespace,
            json_out: bool) -> int:
    def stop(signum: int, frame: Any) -> None:
        source.stop()  # the pipeline then finishes the utterance in progress and returns

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    show_partials = not json_out and sys.stderr.isatty()
    print(f"listening on {source.description}; Ctrl-C to stop", file=sys.stderr, flush=True)
    count = 0
    try:
        pipeline = Pipeline(source, vad, stt, classifier, on_partial=_show_partial if show_partials else None)
        for result in _stop_after(pipeline.run(), args.utterances, source):
            if show_partials:
                print("\r\033[K", end="", file=sys.stderr)
            _emit(result, json_out)
            count += 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"stopped after {count} utterance(s); {source.overflows} audio overflow(s)", file=sys.stderr)
    return 0


def _stop_after(results: Iterator[Result], limit: int | None, source: MicSource) -> Iterator[Result]:
    for n, result in enumerate(results, 1):
        yield result
        if limit is not None and n >= limit:
            source.stop()
            results.close()  # closes the PortAudio stream now
            return


def _show_partial(text: str) -> None:
    print(f"\r\033[K… {text}", end="", file=sys.stderr, flush=True)


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
