"""``edge-intent calibrate-wake``: choose each wake phrase's threshold and write it to the local config.

    edge-intent calibrate-wake --wake "hey computer" [--positive DIR|WAV ...] [--negative DIR|WAV ...]

Without recordings, speech is synthesised with flite (several voices and speaking rates): the
phrase followed by a command, and sentences of other speech. The chosen thresholds are written,
with the phrases and engine, to ``~/.config/edge/wake.yaml`` (``$XDG_CONFIG_HOME/edge/wake.yaml``)
or ``--out FILE``: a file with one key, ``wake``, that the daemon configuration can include and
``edge.wake.load_settings`` reads (it is replaced whole, atomically).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path

from edge.cli import fail, setup_logging

PROG = "edge-intent calibrate-wake"


DESCRIPTION = (
    "Pick a threshold per wake phrase from speech of the phrase and of other speech, and write it into "
    "the local wake configuration."
)
HELP = "pick a wake phrase's threshold from speech and write it into the local wake configuration"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wake",
        action="append",
        metavar="PHRASE",
        help="wake phrase to calibrate (repeat for several; default: the phrases in the config)",
    )
    p.add_argument(
        "--engine",
        choices=["auto", "micro", "pocketsphinx", "vosk"],
        help="engine (default: the config's, else auto: microWakeWord for its phrases, else PocketSphinx)",
    )
    p.add_argument(
        "--wake-model", action="append", metavar="JSON", help="a microWakeWord model manifest to use (repeatable)"
    )
    p.add_argument("--vosk-model", metavar="DIR", help="Vosk model directory (engine vosk)")
    p.add_argument(
        "--positive",
        action="append",
        metavar="PATH",
        help="recordings of the phrase: WAV files or directories of them, one utterance each "
        "(only with a single --wake phrase; default: synthesised)",
    )
    p.add_argument(
        "--negative",
        action="append",
        metavar="PATH",
        help="recordings of other speech without the phrase, any length (default: synthesised sentences)",
    )
    p.add_argument(
        "--negatives", type=int, default=120, metavar="N", help="synthesised other-speech sentences (default 120)"
    )
    p.add_argument(
        "--sentences",
        metavar="FILE",
        help="text for the synthesised other speech: one sentence a line "
        "or JSON lines with 'text' (default: the model package's evaluation sample, eval_sample.jsonl)",
    )
    # The defaults are the calibration module's, looked up when it runs: building this parser must stay cheap.
    p.add_argument("--voices", help="flite voices to synthesise with (comma-separated; default: slt, rms, awb, kal16)")
    p.add_argument("--rates", help="speaking-rate stretches (comma-separated; >1 is slower; default: 0.85, 1, 1.2)")
    p.add_argument(
        "--max-frr", type=float, default=0.05, help="share of phrase clips the threshold may lose (default 0.05)"
    )
    p.add_argument("--config", metavar="FILE", help="wake config to start from (default: --out when it exists)")
    p.add_argument("--out", metavar="FILE", help="where to write (default: ~/.config/edge/wake.yaml)")
    p.add_argument("--dry-run", action="store_true", help="print the result, write nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-v", "--verbose", action="count", default=0)


def main(argv: list[str] | None = None) -> int:
    return calibrate_wake(build_parser().parse_args(sys.argv[1:] if argv is None else argv))


def calibrate_wake(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from edge.settings import SettingsError
    from edge.wake import WakeError

    try:
        return run(args)
    except (WakeError, SettingsError) as exc:
        return fail(PROG, str(exc))


def run(args: argparse.Namespace) -> int:
    from edge.settings import load_yaml
    from edge.wake import WakeSettings, create_engine, load_settings, local_config_path
    from edge.wake import calibrate as cal

    out = Path(args.out).expanduser() if args.out else local_config_path()
    start = Path(args.config).expanduser() if args.config else (out if out.exists() else None)
    base = load_settings(start) if start else WakeSettings()
    if not 0 <= args.max_frr < 1:
        return fail(PROG, f"--max-frr {args.max_frr}: expected a share between 0 and 1")
    changes: dict = {"thresholds": {}}  # calibrate from scratch: the scan must not depend on old thresholds
    if args.wake:
        changes["phrases"] = tuple(args.wake)
    if args.engine:
        changes["engine"] = args.engine
    if args.wake_model:
        changes["models"] = tuple(base.models) + tuple(str(Path(m).expanduser().resolve()) for m in args.wake_model)
    if args.vosk_model:
        changes["vosk_model"] = str(Path(args.vosk_model).expanduser().resolve())
    settings = dataclasses.replace(base, **changes)
    if args.positive and len(settings.phrases) > 1:
        return fail(PROG, "--positive recordings can only be given for a single --wake phrase")
    voices_text = args.voices if args.voices is not None else ",".join(cal.VOICES)
    rates_text = args.rates if args.rates is not None else ",".join(f"{r:g}" for r in cal.RATES)
    voices = [v for v in voices_text.split(",") if v]
    try:
        rates = [float(r) for r in rates_text.split(",") if r]
    except ValueError:
        return fail(PROG, f"--rates {rates_text!r}: expected numbers separated by commas, e.g. 0.85,1,1.2")

    engine = create_engine(settings)
    previous = {p: base.threshold(p) for p in settings.phrases}
    previous = {p: v if v is not None else engine.thresholds().get(p) for p, v in previous.items()}
    if args.positive:
        positives = {settings.phrases[0]: cal.load_recordings(args.positive)}
    else:
        positives = {p: cal.synthetic_positives(p, voices, rates) for p in settings.phrases}
    negatives = (
        cal.load_recordings(args.negative)
        if args.negative
        else cal.synthetic_negatives(args.negatives, voices, rates, source=args.sentences)
    )
    results = cal.calibrate(engine, positives, negatives, previous, max_frr=args.max_frr)
    engine.close()

    final = dataclasses.replace(settings, thresholds={r.phrase: r.threshold for r in results})
    written = None
    if not args.dry_run:
        existing = load_yaml(out) if out.exists() else None
        if isinstance(existing, dict) and set(existing) - {"wake"}:
            return fail(
                PROG,
                f"{out}: has keys besides wake ({', '.join(sorted(map(str, set(existing) - {'wake'})))}); "
                "write the wake settings to a file of their own with --out and include it",
            )
        written = write_config(out, final, results)
    if args.json:
        print(
            json.dumps(
                {"results": [r.to_dict() for r in results], "written": str(written) if written else None}, indent=2
            )
        )
    else:
        print(report(results, written))
    return 0


def report(results, written: Path | None) -> str:
    lines = []
    for r in results:
        prev = "default" if r.previous is None else f"{r.previous:g}"
        lines.append(
            f"{r.phrase!r} ({r.engine}): threshold {r.threshold:g} (was {prev}); phrase clips detected "
            f"{r.detected}/{r.positives}; other speech {r.negatives} clips ({r.negative_s / 60:.1f} min), "
            f"false accepts {r.false_accepts}"
        )
        if r.note:
            lines.append(f"  note: {r.note}")
    lines.append(f"written to {written}" if written else "nothing written (--dry-run)")
    return "\n".join(lines)


def write_config(path: Path, settings, results) -> Path:
    """Write ``settings`` under ``wake:`` to ``path`` (only the keys that differ from the defaults, and the phrases)."""
    import yaml

    from edge.settings import to_mapping
    from edge.wake import WakeSettings

    default = to_mapping(WakeSettings())
    mapping = {
        k: v for k, v in to_mapping(settings).items() if k in ("phrases", "engine", "thresholds") or v != default[k]
    }
    data = {"wake": mapping}
    stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    summary = "; ".join(
        f"{r.phrase}: {r.detected}/{r.positives} phrase clips, {r.false_accepts} false accepts in "
        f"{r.negative_s / 60:.1f} min"
        for r in results
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        f"# written by edge-intent calibrate-wake, {stamp}\n# {summary}\n"
        + yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )
    tmp.replace(path)
    return path


if __name__ == "__main__":
    sys.exit(main())
