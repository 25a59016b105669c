"""``edge-intent``: classify text, WAV files or the microphone; ``serve``, ``install-service`` and
``calibrate-wake`` are its subcommands (``edge.cli.serve``, ``edge.cli.wake``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge.cli import fail, serve, setup_logging, speech, wake

PROG = "edge-intent"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Offline intent recognition: text, WAV or microphone in, intent and slots out."
    )
    src = p.add_argument_group("input (one of)")
    src.add_argument("--text", help="classify this text")
    src.add_argument(
        "--text-file",
        metavar="FILE",
        help="classify each line of FILE ('-' for stdin); prints one JSON line per utterance",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per result")
    p.add_argument(
        "--show-profile", action="store_true", help="print the device profile in use and why it was chosen, then exit"
    )
    m = p.add_argument_group("model and runtime")
    m.add_argument("--model", help="model package name or directory (default: the shipped squeezebert-hwu64)")
    m.add_argument("--backend", choices=["onnx", "tflite"], help="override the profile's backend order")
    m.add_argument("--precision", choices=["int8", "fp32"], help="override the profile's precision")
    m.add_argument("--threads", type=int, help="inference threads (default: the profile's)")
    m.add_argument("--profile", help="device profile name or YAML path (default: detected; also EDGE_PROFILE)")
    p.add_argument(
        "--profile-log", metavar="FILE", help="append one profiler record per inference to FILE (JSON lines, rotated)"
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    speech.add_arguments(p)
    commands = p.add_subparsers(
        title="commands",
        metavar="COMMAND",
        dest="command",
        description="without a command: classify the input given by the options above",
    )
    for name, help_text, description, add, run in (
        ("serve", serve.SERVE_HELP, serve.SERVE_DESCRIPTION, serve.add_serve_arguments, serve.serve),
        (
            "install-service",
            serve.INSTALL_HELP,
            serve.INSTALL_DESCRIPTION,
            serve.add_install_arguments,
            serve.install_service,
        ),
        ("calibrate-wake", wake.HELP, wake.DESCRIPTION, wake.add_arguments, wake.calibrate_wake),
    ):
        command = commands.add_parser(name, help=help_text, description=description, prog=f"{PROG} {name}")
        add(command)
        command.set_defaults(run=run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is not None:
        return args.run(args)
    setup_logging(args.verbose)
    from edge.assistant import Assistant
    from edge.backends import BackendUnavailable
    from edge.classifier import InputError, IntentClassifier
    from edge.config import Config
    from edge.package import PackageError
    from edge.profiler import ProfilerSettings
    from edge.profiles import detect
    from edge.settings import SettingsError

    if args.threads is not None and not 1 <= args.threads <= 64:
        return fail(PROG, f"--threads {args.threads}: expected 1..64")
    try:
        detection = detect(override=args.profile)
    except SettingsError as exc:
        return fail(PROG, str(exc))
    if args.show_profile:
        return show_profile(detection, args)

    def load_classifier() -> IntentClassifier:
        return IntentClassifier.load(
            args.model, backend=args.backend, precision=args.precision, threads=args.threads, profile=detection.profile
        )

    try:
        if speech.wants_speech(args):
            return speech.run(args, load_classifier)
        if args.text is None and args.text_file is None:
            build_parser().print_usage(sys.stderr)
            return fail(PROG, "give --text, --text-file, --wav or --mic")
        settings = Config(profile=args.profile, profiler=ProfilerSettings(path=args.profile_log or ""))
        assistant = Assistant.from_settings(settings, source=PROG, classifier=load_classifier())
        recognizer = assistant.recognizer
        try:
            if args.text is not None:
                try:
                    result = recognizer.classify(args.text)
                except InputError as exc:
                    return fail(PROG, f"--text: {exc}")
                print(
                    json.dumps(with_profile(result.to_dict(), recognizer.profiler), ensure_ascii=False)
                    if args.json
                    else format_result(result, assistant.classifier, recognizer.profiler.last)
                )
                if result.truncated:
                    print(
                        f"{PROG}: warning: the text was longer than the model reads; only its start was classified",
                        file=sys.stderr,
                    )
                return 0
            return classify_lines(recognizer, args.text_file)
        finally:
            assistant.close()
    except (PackageError, BackendUnavailable, SettingsError) as exc:
        return fail(PROG, str(exc))
    except KeyboardInterrupt:
        return 130


def with_profile(data: dict, profiler) -> dict:
    """Add the profiler's energy and CPU figures for this inference to a result's JSON."""
    rec = profiler.last
    if rec is not None:
        data["profile"] = {k: rec.get(k) for k in ("cpu_ms", "rss_mb", "energy_mj", "energy_method")}
    return data


def classify_lines(recognizer, source: str) -> int:
    """One JSON line per input line; a bad line yields an error object and the batch goes on."""
    from edge.classifier import InputError

    if source == "-":
        stream = sys.stdin.buffer
    else:
        path = Path(source)
        if not path.is_file():
            return fail(PROG, f"--text-file {source}: no such file")
        stream = path.open("rb")
    errors = 0
    with stream:
        for number, raw in enumerate(stream, 1):
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                out = with_profile(recognizer.classify(line).to_dict(), recognizer.profiler)
                out["line"] = number
            except InputError as exc:
                errors += 1
                out = {"line": number, "error": str(exc)}
            print(json.dumps(out, ensure_ascii=False), flush=False)
    sys.stdout.flush()
    if errors:
        print(f'{PROG}: {errors} line(s) could not be classified (see their "error" fields)', file=sys.stderr)
    return 1 if errors else 0


def format_result(result, classifier=None, record: dict | None = None) -> str:
    lines = [result.text]
    if result.intent is None:
        threshold = f" < threshold {classifier.threshold:.2f}" if classifier else ""
        lines.append(
            f"  intent    (out of scope: best guess {result.guess} at {result.guess_confidence:.2f}{threshold})"
        )
    else:
        lines.append(f"  intent    {result.intent}  ({result.confidence:.2f})")
    for slot in result.slots:
        shown = slot.value if slot.value == slot.text else f"{slot.value}  (said: {slot.text})"
        lines.append(f"  slot      {slot.name} = {shown}")
    if result.transcript:
        lines.insert(1, f"  heard     {result.transcript.get('engine', '')}")
    stages = ", ".join(f"{k} {v:.2f}" for k, v in result.latency_ms.items() if k != "total")
    lines.append(f"  latency   {result.latency_ms.get('total', 0):.2f} ms ({stages})  {result.backend}  {result.model}")
    if record and record.get("energy_mj") is not None:
        lines.append(
            f"  energy    {record['energy_mj']:.2f} mJ ({record['energy_method']}), CPU {record['cpu_ms']:.2f} ms"
        )
    return "\n".join(lines)


def show_profile(detection, args) -> int:
    from edge.backends import available_backends
    from edge.settings import to_mapping

    profile = detection.profile
    if args.json:
        print(
            json.dumps(
                {"profile": to_mapping(profile), "reason": detection.reason, "backends": available_backends()}, indent=2
            )
        )
        return 0
    print(f"profile   {profile.name}: {profile.description}")
    print(f"why       {detection.reason}")
    print(
        f"backends  {', '.join(profile.backends)} (in order); precision {profile.precision}; threads {profile.threads}"
    )
    for name, reason in available_backends().items():
        print(f"          {name}: {'available' if reason is None else 'unavailable: ' + reason}")
    print(
        f"onnx      providers {', '.join(profile.onnx.providers)}; graph optimisation {profile.onnx.graph_optimization}"
    )
    print(f"tflite    XNNPACK {'on' if profile.tflite.xnnpack else 'off'}")
    print(f"stt       {profile.stt}")
    p = profile.power
    print(f"power     sensor {p.sensor}; model {p.idle_w} W idle + {p.active_w_per_core} W per busy core ({p.source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
