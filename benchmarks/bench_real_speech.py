#!/usr/bin/env python3
"""Spoken commands end to end, per STT engine: real recordings and synthetic speech, clean and in noise.

Every utterance goes through the real command line, ``edge-intent --model PKG --wav ... --json``
(one process per package, engine and condition), exactly as a user runs it. Reported per engine
(PocketSphinx with its general LM, PocketSphinx adapted to the package, Whisper tiny.en, Whisper
base):

* WER of the transcript (spoken form on both sides);
* intent accuracy, and **command acceptance**: intent and every slot value exact (an
  out-of-scope recording must be rejected);
* RTF (recogniser time / audio), end-of-speech -> intent p50 / p90 (the pipeline's ``total``);
* daemon RSS with that engine (``edge-intent serve`` after recognising a few recordings).

Sets:

* ``real``: ``real-speech/`` of the data root (edge/datasets.py: ``--data DIR``, ``$EDGE_DATA``,
  ``../shared/data``; 59 recordings of real people): the Home Assistant
  commands with Home Assistant's own English intents and the recordings' entity fixtures as
  ``--lists``, and the rhasspy-speech commands with their grammar
  (tests/fixtures/grammars/rhasspy_speech_en.yaml). The expected intent and slots of a recording
  are the grammar's exact parse of its transcript; recordings marked out of scope must be rejected.
  With ``--real-noise`` the same recordings are also mixed with the recorded babble and music and
  pink noise at 10 and 5 dB SNR.
* ``synthetic``: held-out sentences of the one-intent ordering context examples/tea_order.yaml
  spoken by flite and Piper voices, clean and mixed with recorded babble, music and pink noise at
  10 and 5 dB SNR (``benchmarks/speech_corpus.py``).

Packages are trained with ``edge-train`` into ``runs/`` the first time (a few minutes each).

    .venv/bin/python benchmarks/bench_real_speech.py                 # everything
    .venv/bin/python benchmarks/bench_real_speech.py --quick         # Whisper tiny.en + PocketSphinx, fewer clips
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.speech_corpus import NOISES, Noise, Voices, hash_text  # noqa: E402
from edge import datasets  # noqa: E402
from edge.audio import SAMPLE_RATE  # noqa: E402
from edge.stt import word_errors  # noqa: E402
from edge.textnorm import spoken_form  # noqa: E402

RUNS = ROOT / "runs"
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "work-tmp" / "bench-real-speech"
TEA = ROOT / "examples" / "tea_order.yaml"
RHASSPY = ROOT / "tests" / "fixtures" / "grammars" / "rhasspy_speech_en.yaml"
ENGINES = {
    "pocketsphinx": ["--stt", "pocketsphinx", "--no-adapt"],
    "pocketsphinx+adapted": ["--stt", "pocketsphinx"],
    "whisper-tiny.en": ["--stt", "whisper", "--stt-model", "tiny.en"],
    "whisper-base": ["--stt", "whisper", "--stt-model", "base"],
}
CONDITIONS = [("clean", None, None)] + [(f"{kind} {snr} dB", kind, snr) for snr in (10, 5) for kind in NOISES]


# --------------------------------------------------------------------------- packages


def package(name: str, data: Path, extra: list[str] = ()) -> Path:
    out = RUNS / f"bench-{name}"
    if not (out / "manifest.json").is_file():
        print(f"training {name} from {data} ...", file=sys.stderr, flush=True)
        subprocess.run(
            [
                str(ROOT / ".venv" / "bin" / "edge-train"),
                str(data),
                *extra,
                "--out",
                str(out),
                "--work",
                str(RUNS / f"bench-{name}-work"),
            ],
            check=True,
            cwd=ROOT,
        )
    return out


def expected(grammar, text: str | None) -> dict | None:
    """The command a transcript stands for: the grammar's exact parse (None: out of scope)."""
    if not text:
        return None
    # The parse of the reference itself: its sentence is the reference word for word (its cost may
    # still be above 0, e.g. a number read through a range list).
    m = grammar.match(text, max_distance=0.25)
    if m is None or m.text != spoken_form(text):
        return None
    slots = {s.name: s.value for s in m.slots}
    slots.update({k: v for k, v in m.fixed_slots.items() if k not in slots})
    return {"intent": m.intent, "slots": slots}


# --------------------------------------------------------------------------- running edge-intent


def run_cli(pkg: Path, engine: str, wavs: list[Path]) -> dict[str, list[dict]]:
    """JSON results per file from one ``edge-intent --wav`` process."""
    cmd = [
        str(ROOT / ".venv" / "bin" / "edge-intent"),
        "--model",
        str(pkg),
        *ENGINES[engine],
        "--json",
        "--wav",
        *map(str, wavs),
    ]
    env = {**os.environ, "EDGE_PROFILE_OVERRIDE": "/nonexistent"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    out: dict[str, list[dict]] = {str(w): [] for w in wavs}
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        out.setdefault(row.get("file"), []).append(row)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd[:8])} ... failed: {proc.stderr[-2000:]}")
    return out


def command_of(rows: list[dict]) -> dict | None:
    """What edge-intent understood from one file: its utterance with an intent (the last one)."""
    understood = [r for r in rows if r.get("intent")]
    if not understood:
        return None
    r = understood[-1]
    return {"intent": r["intent"], "slots": r.get("slots", {})}


def same(got: dict | None, want: dict | None) -> bool:
    if got is None or want is None:
        return got is None and want is None
    if got["intent"] != want["intent"]:
        return False
    norm = lambda d: {k: str(v) for k, v in d.items()}  # noqa: E731
    return norm(got["slots"]) == norm(want["slots"])


def score(items: list[dict], results: dict[str, list[dict]]) -> dict:
    errors = words = intent_ok = accepted = 0
    latencies, rtf_num, rtf_den = [], 0.0, 0.0
    failures = []
    for item in items:
        rows = results.get(str(item["wav"]), [])
        heard = " ".join(r.get("transcript", {}).get("text", r.get("text", "")) for r in rows if r.get("text"))
        heard = " ".join(r.get("text", "") for r in rows)
        if item["text"]:
            ref = spoken_form(item["text"])
            errors += word_errors(ref, spoken_form(heard))
            words += len(ref.split())
        got = command_of(rows)
        want = item["expected"]
        intent_ok += (got or {}).get("intent") == (want or {}).get("intent")
        ok = same(got, want)
        accepted += ok
        if not ok:
            failures.append(
                {"file": Path(item["wav"]).name, "said": item["text"], "heard": heard, "got": got, "want": want}
            )
        for r in rows:
            lat = r.get("latency_ms", {})
            if "total" in lat:
                latencies.append(lat["total"])
            audio = r.get("transcript", {}).get("audio_ms")
            if audio and "stt" in lat:
                rtf_num += lat["stt"]
                rtf_den += audio
    n = max(1, len(items))
    return {
        "n": len(items),
        "wer": round(errors / max(1, words), 4),
        "intent_accuracy": round(intent_ok / n, 4),
        "command_acceptance": round(accepted / n, 4),
        "rtf": round(rtf_num / rtf_den, 4) if rtf_den else None,
        "eos_to_intent_ms_p50": round(float(np.percentile(latencies, 50)), 1) if latencies else None,
        "eos_to_intent_ms_p90": round(float(np.percentile(latencies, 90)), 1) if latencies else None,
        "failures": failures[:40],
    }


# --------------------------------------------------------------------------- data sets


def real_sets(data_dir: str | None = None) -> dict[str, tuple[Path, list[dict]]]:
    from edge.grammar import Grammar

    try:
        manifest = datasets.read_rows("real-speech", "manifest.jsonl", data_dir)
    except datasets.DataSetMissing as exc:
        print(f"{exc}: the real set is skipped", file=sys.stderr)
        return {}
    shared = datasets.find("real-speech", data_dir)
    sets = {}
    rhasspy = package("rhasspy", RHASSPY)
    g = Grammar.from_file(rhasspy / "grammar.json")
    sets["real: rhasspy-speech"] = (
        rhasspy,
        [
            {"wav": shared / m["file"], "text": m["text"], "expected": expected(g, m["text"])}
            for m in manifest
            if m["file"].startswith("rhasspy-speech/")
        ],
    )
    fixtures = shared / "speech-to-phrase" / "fixtures_en.yaml"
    try:
        ha = package("ha-en", Path("ha:en"), ["--lists", str(fixtures)])
    except subprocess.CalledProcessError:
        print(
            "Home Assistant's intents could not be trained (home-assistant-intents installed? edge-train ha:en)",
            file=sys.stderr,
        )
        return sets
    g = Grammar.from_file(ha / "grammar.json")
    sets["real: home assistant"] = (
        ha,
        [
            {
                "wav": shared / m["file"],
                "text": m["text"],
                "expected": None if m.get("out_of_scope") else expected(g, m["text"]),
            }
            for m in manifest
            if m["file"].startswith("speech-to-phrase/")
        ],
    )
    return sets


def noisy_real_sets(sets: dict, noise: Noise, conditions) -> dict[str, tuple[Path, list[dict]]]:
    """Every real set again, each recording mixed with noise (its own offset into the noise, seeded)."""
    from edge.audio import read_wav

    out = {}
    wav_dir = CACHE / "real-noisy"
    wav_dir.mkdir(parents=True, exist_ok=True)
    for set_name, (pkg, items) in sets.items():
        for label, kind, snr in conditions:
            if kind is None:
                continue
            crng = random.Random(f"{set_name} {label}")
            noisy = []
            for i, item in enumerate(items):
                path = wav_dir / f"{set_name.split(': ')[-1].replace(' ', '_')}-{label.replace(' ', '_')}-{i:03d}.wav"
                if not path.exists():
                    speech, _ = read_wav(item["wav"])
                    _write_wav(path, noise.mixed(speech, kind, snr, crng))
                noisy.append({**item, "wav": path})
            out[f"{set_name}, {label}"] = (pkg, noisy)
    return out


def synthetic_set(n_sentences: int, voices: Voices, noise: Noise, conditions) -> dict[str, tuple[Path, list[dict]]]:
    from edge.grammar import Grammar
    from tools.templates import expand_intents_file

    tea = package("tea", TEA)
    g = Grammar.from_file(tea / "grammar.json")
    trained = (
        set((tea / "training_sentences.txt").read_text().splitlines())
        if (tea / "training_sentences.txt").exists()
        else set()
    )
    held = [e for e in expand_intents_file(TEA, seed=977, max_sentences=3000).heldout if e.text not in trained]
    rng = random.Random(5)
    rng.shuffle(held)
    sentences = [e.text for e in held[:n_sentences]]
    out = {}
    wav_dir = CACHE / "synthetic"
    wav_dir.mkdir(parents=True, exist_ok=True)
    for label, kind, snr in conditions:
        items = []
        crng = random.Random(hash(label) & 0xFFFF)
        for i, text in enumerate(sentences):
            voice = voices.names[i % len(voices.names)]
            speech = np.concatenate(
                [
                    np.zeros(int(0.5 * SAMPLE_RATE), np.int16),
                    voices.say(text, voice),
                    np.zeros(int(0.8 * SAMPLE_RATE), np.int16),
                ]
            )
            if kind is not None:
                speech = noise.mixed(speech, kind, snr, crng)
            # named by the text too: another package holds out other sentences
            path = wav_dir / f"{label.replace(' ', '_')}-{i:03d}-{voice}-{hash_text(text):08x}.wav"
            if not path.exists():
                _write_wav(path, speech)
            items.append({"wav": path, "text": text, "expected": expected(g, text)})
        out[f"synthetic: {label}"] = (tea, items)
    return out


def _write_wav(path: Path, samples: np.ndarray) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(samples.astype("<i2").tobytes())


# --------------------------------------------------------------------------- daemon memory


def daemon_rss(pkg: Path, engine: str, wavs: list[Path]) -> float | None:
    """RSS (MB) of ``edge-intent serve`` with this engine after recognising ``wavs`` over HTTP."""
    args = ENGINES[engine]
    stt = {"engine": args[1], "adapt": "--no-adapt" not in args}
    if "--stt-model" in args:
        stt["model"] = args[args.index("--stt-model") + 1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(
            json.dumps(
                {"model": {"name": str(pkg)}, "stt": stt, "audio": {"enabled": False}, "stdout": {"enabled": False}}
            )
        )
        proc = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "edge-intent"),
                "serve",
                "--config",
                str(config),
                "--http",
                f"127.0.0.1:{port}",
                "--no-mic",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                    break
                except OSError:
                    time.sleep(0.5)
            for wav in wavs:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/v1/recognize?publish=false",
                    data=wav.read_bytes(),
                    headers={"Content-Type": "audio/wav"},
                )
                urllib.request.urlopen(req, timeout=120).read()
            status = Path(f"/proc/{proc.pid}/status").read_text()
            return round(
                int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024, 1
            )
        except (OSError, StopIteration) as exc:
            print(f"daemon RSS for {engine}: {exc}", file=sys.stderr)
            return None
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


# --------------------------------------------------------------------------- report


def report(results: dict, meta: dict) -> str:
    lines = [
        f"Spoken commands through `edge-intent --wav --json` on {meta['host']} ({meta['date']}); "
        "command = intent and every slot value exact.",
        "",
    ]
    lines += [
        "| set | engine | n | WER | intent | command | RTF | EoS->intent p50 / p90 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for set_name, per_engine in results["sets"].items():
        for engine, r in per_engine.items():
            lines.append(
                f"| {set_name} | {engine} | {r['n']} | {r['wer'] * 100:.1f}% | {r['intent_accuracy'] * 100:.1f}% | "
                f"**{r['command_acceptance'] * 100:.1f}%** | {r['rtf'] if r['rtf'] is not None else '-'} | "
                f"{r['eos_to_intent_ms_p50']} / {r['eos_to_intent_ms_p90']} |"
            )
    if results.get("daemon_rss_mb"):
        lines += [
            "",
            "Daemon RSS after recognising 5 recordings over HTTP: "
            + ", ".join(f"{k} {v} MB" for k, v in results["daemon_rss_mb"].items())
            + ".",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engines", nargs="+", choices=list(ENGINES), default=list(ENGINES))
    p.add_argument("--sets", nargs="+", choices=["real", "synthetic"], default=["real", "synthetic"])
    p.add_argument("--sentences", type=int, default=60, help="synthetic sentences per condition")
    p.add_argument(
        "--quick", action="store_true", help="Whisper tiny.en and adapted PocketSphinx, 20 synthetic sentences"
    )
    p.add_argument("--real-noise", action="store_true", help="also the real recordings mixed with noise at 10 and 5 dB")
    p.add_argument("--clean-only", action="store_true", help="no noise conditions (a latency run side by side)")
    p.add_argument("--no-rss", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS / "real-speech")
    datasets.add_argument(p)
    args = p.parse_args(argv)
    if args.quick:
        args.engines = ["pocketsphinx+adapted", "whisper-tiny.en"]
        args.sentences = 20
    sets: dict = {}
    noise = Noise()
    if "real" in args.sets:
        real = real_sets(args.data)
        sets.update(real)
        if args.real_noise:
            sets.update(noisy_real_sets(real, noise, CONDITIONS))
    if "synthetic" in args.sets:
        sets.update(
            synthetic_set(args.sentences, Voices(CACHE), noise, CONDITIONS[:1] if args.clean_only else CONDITIONS)
        )
    results: dict = {"sets": {}, "daemon_rss_mb": {}}
    for set_name, (pkg, items) in sets.items():
        results["sets"][set_name] = {}
        for engine in args.engines:
            t0 = time.time()
            r = score(items, run_cli(pkg, engine, [i["wav"] for i in items]))
            r["seconds"] = round(time.time() - t0, 1)
            results["sets"][set_name][engine] = r
            print(
                f"{set_name:32} {engine:22} command {r['command_acceptance'] * 100:5.1f}%  intent "
                f"{r['intent_accuracy'] * 100:5.1f}%  WER {r['wer'] * 100:5.1f}%  p50 {r['eos_to_intent_ms_p50']} ms",
                flush=True,
            )
    if not args.no_rss and sets:
        pkg, items = next(iter(sets.values()))
        for engine in args.engines:
            results["daemon_rss_mb"][engine] = daemon_rss(pkg, engine, [i["wav"] for i in items[:5]])
    meta = {
        "host": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
    }
    results["meta"] = meta
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    args.out.with_suffix(".md").write_text(report(results, meta))
    print(report(results, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
