#!/usr/bin/env python3
"""Speech benchmark: WER, intent accuracy, real-time factor and end-of-speech -> intent latency.

HWU64 *test* sentences (from ../shared/data, edge/datasets.py; never used for adaptation, which reads
only the training sentences) are spoken by Debian ``flite`` voices, padded with silence, and run through the real
pipeline (WAV source -> silero VAD -> STT -> intent model) once per STT configuration:

* ``pocketsphinx``: the general English LM of the PocketSphinx wheel;
* ``pocketsphinx+adapted``: the package's domain LM (``tools/stt_adapt.py``);
* ``vosk`` / ``vosk+grammar``: only when a Vosk English model is installed.

Writes ``benchmarks/results/speech.json`` and ``speech.md`` and prints the table.

    nice -n 10 .venv/bin/python benchmarks/bench_speech.py            # 200 sentences x slt, rms
    .venv/bin/python benchmarks/bench_speech.py --sentences 20 --split dev   # a quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge import datasets  # noqa: E402
from edge.audio import SAMPLE_RATE, SamplesSource, read_wav  # noqa: E402
from edge.pipeline import Pipeline  # noqa: E402
from edge.stt import word_errors  # noqa: E402
from edge.stt.adapt import spoken_form  # noqa: E402
from edge.vad import Endpointer, VadSettings  # noqa: E402

LEAD_IN_S, TAIL_S = 0.4, 1.2


def synthesise(text: str, voice: str, path: Path) -> np.ndarray:
    """Speak ``text`` with a flite voice and pad it with silence, as a person pausing would."""
    if not path.exists():
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True)
    samples, _ = read_wav(path)
    pad = lambda s: np.zeros(int(s * SAMPLE_RATE), dtype=np.int16)  # noqa: E731
    return np.concatenate([pad(LEAD_IN_S), samples, pad(TAIL_S)])


def pick(split: str, n: int, seed: int, data_dir: str | None = None) -> list[dict]:
    rows = datasets.read_rows("hwu64", f"{split}.jsonl", data_dir)
    return random.Random(seed).sample(rows, min(n, len(rows)))


def make_engines(names: list[str], package, adaptation_dir: Path, data_dir: str | None = None) -> dict:
    from edge.stt.adapt import artefacts, build
    from edge.stt.pocketsphinx import PocketSphinxEngine

    engines = {}
    adapted = artefacts(package, "pocketsphinx") if package is not None else None
    vosk_adapted = artefacts(package, "vosk") if package is not None else None
    if adapted is None and any(n.endswith(("adapted", "grammar")) for n in names):
        # No artefacts in the package yet: build them from the training split, as tools/stt_adapt.py would.
        sentences = package.training_sentences() if package is not None else []
        if not sentences:
            sentences = [row["text"] for row in datasets.read_rows("hwu64", "train.jsonl", data_dir)]
        built = build(sentences, adaptation_dir / "stt")
        adapted = {k: adaptation_dir / v for k, v in built["pocketsphinx"].items()}
        vosk_adapted = {k: adaptation_dir / v for k, v in built["vosk"].items()}
    for name in names:
        if name == "pocketsphinx":
            engines[name] = PocketSphinxEngine()
        elif name == "pocketsphinx+adapted":
            engines[name] = PocketSphinxEngine(adaptation=adapted)
        elif name.startswith("vosk"):
            from edge.stt.vosk import VoskEngine
            from edge.stt.vosk_fetch import find_model

            model = find_model()
            if model is None:
                print(f"skipping {name}: no Vosk English model installed", file=sys.stderr)
                continue
            engines[name] = VoskEngine(model, adaptation=vosk_adapted if name == "vosk+grammar" else None)
    return engines


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(args: argparse.Namespace) -> dict:
    classifier = None
    package = None
    if not args.no_intent:
        from edge.classifier import IntentClassifier

        classifier = IntentClassifier.load(args.model)
        package = classifier.package
    rows = pick(args.split, args.sentences, args.seed, args.data)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    audio = {}
    for voice in args.voices:
        for i, row in enumerate(rows):
            audio[(voice, i)] = synthesise(row["text"], voice, cache / f"{args.split}-{voice}-{i:04d}.wav")
    with tempfile.TemporaryDirectory() as tmp:
        engines = make_engines(args.engines, package, Path(tmp), args.data)
    vad = Endpointer(VadSettings())
    text_accuracy = None
    if classifier is not None:
        text_accuracy = sum(classifier.classify(r["text"]).intent == r["intent"] for r in rows) / len(rows)
    report = {
        "split": args.split,
        "sentences": len(rows),
        "voices": args.voices,
        "engines": {},
        "intent_accuracy_on_text": text_accuracy,
        "host": platform.machine(),
        "vad": VadSettings().__dict__,
    }
    for name, engine in engines.items():
        errors = ref_words = correct = utterances = 0
        latencies, stt_final, classify_ms, rtf_stt, rtf_pipeline = [], [], [], [], []
        for (_voice, i), samples in audio.items():
            row = rows[i]
            start = time.perf_counter()
            results = list(Pipeline(SamplesSource(samples), vad, engine, classifier).run())
            wall = time.perf_counter() - start
            utterances += len(results)
            hyp = " ".join(r.text for r in results)
            ref = spoken_form(row["text"])
            errors += word_errors(ref, spoken_form(hyp))
            ref_words += len(ref.split())
            if classifier is not None:
                # A command is right when its one utterance is; splits or misses count as wrong.
                correct += len(results) == 1 and results[0].intent == row["intent"]
            for r in results:
                latencies.append(r.latency_ms["total"])
                stt_final.append(r.latency_ms["stt"])
                classify_ms.append(r.latency_ms["classify"])
                if r.transcript["audio_ms"]:
                    rtf_stt.append((r.transcript["stt_stream_ms"] + r.latency_ms["stt"]) / r.transcript["audio_ms"])
            rtf_pipeline.append(wall / (len(samples) / SAMPLE_RATE))
        n = len(audio)
        report["engines"][name] = {
            "utterances": n,
            "segments_found": utterances,
            "wer": round(errors / ref_words, 4),
            "intent_accuracy": round(correct / n, 4) if classifier is not None else None,
            "rtf_stt_mean": round(statistics.mean(rtf_stt), 4),
            "rtf_pipeline_mean": round(statistics.mean(rtf_pipeline), 4),
            "latency_ms_p50": round(percentile(latencies, 50), 1),
            "latency_ms_p90": round(percentile(latencies, 90), 1),
            "stt_final_ms_p50": round(percentile(stt_final, 50), 1),
            "classify_ms_p50": round(percentile(classify_ms, 50), 1),
            "describe": engine.describe(),
        }
        print(name, json.dumps(report["engines"][name]), file=sys.stderr)
    return report


def markdown(report: dict) -> str:
    lines = [
        f"Speech benchmark: {report['sentences']} HWU64 {report['split']} sentences x flite voices "
        f"{', '.join(report['voices'])} ({report['sentences'] * len(report['voices'])} utterances), host {report['host']}.",
        "",
        "| STT | WER | intent accuracy | RTF (STT, per second of utterance) | RTF (whole pipeline, per second of input) | end-of-speech → intent p50 | p90 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in report["engines"].items():
        acc = "n/a" if e["intent_accuracy"] is None else f"{e['intent_accuracy']:.1%}"
        lines.append(
            f"| {name} | {e['wer']:.1%} | {acc} | {e['rtf_stt_mean']:.3f} | {e['rtf_pipeline_mean']:.3f} | "
            f"{e['latency_ms_p50']:.0f} ms | {e['latency_ms_p90']:.0f} ms |"
        )
    if report["intent_accuracy_on_text"] is None:
        lines += ["", "Intent accuracy not measured (run without --no-intent once the model package is installed)."]
    else:
        lines += ["", f"Intent accuracy on the written sentences (no speech): {report['intent_accuracy_on_text']:.1%}."]
    lines += [
        "",
        f"End-of-speech → intent runs from the frame that closes the utterance (after "
        f"{report['vad']['trailing_silence_ms']} ms of trailing silence) to the Result: "
        "STT finalisation plus classification.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="test", choices=["test", "dev"])
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--voices", nargs="+", default=["slt", "rms"])
    parser.add_argument(
        "--engines", nargs="+", default=["pocketsphinx", "pocketsphinx+adapted", "vosk", "vosk+grammar"]
    )
    parser.add_argument("--model", default=None, help="intent model package (default: the installed default)")
    parser.add_argument("--no-intent", action="store_true", help="STT only (no intent model)")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--cache", default=str(ROOT / "work-tmp" / "speech-bench"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speech"))
    datasets.add_argument(parser)
    args = parser.parse_args()
    if shutil.which("flite") is None:
        parser.error("needs Debian's flite to synthesise speech (apt-get install flite)")
    try:
        report = run(args)
    except datasets.DataSetMissing as exc:
        sys.exit(f"bench_speech: {exc}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    out.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
