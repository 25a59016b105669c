#!/usr/bin/env python3
"""Spoken check of a package trained from an intents file: flite speech -> ``edge-intent --wav``.

Commands from the worked example (examples/smart_home.yaml) are spoken by Debian ``flite``
voices and classified by the real command line, ``edge-intent --model PKG --wav ... --json``,
twice: with the STT adaptation that ``edge-train`` built into the package, and with
``--no-adapt`` (the recogniser's general English model). Two sets of commands:

* held-out expansions: template sentences the model was not trained on (drawn with another seed
  and checked against the package's training sentences);
* the hand-written paraphrases (examples/smart_home.paraphrases.jsonl), which no template produces.

A command counts as right when its intent is right (out-of-scope lines must be rejected), and
as exactly right when every slot's canonical value is right too. Writes
``benchmarks/results/templates.json`` and ``templates.md``.

    .venv/bin/edge-train examples/smart_home.yaml --eval examples/smart_home.paraphrases.jsonl --out runs/smart-home-pkg
    .venv/bin/python benchmarks/bench_templates.py --model runs/smart-home-pkg
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.stt import word_errors  # noqa: E402
from edge.stt.adapt import spoken_form  # noqa: E402

EXAMPLE = ROOT / "examples" / "smart_home.yaml"
PARAPHRASES = ROOT / "examples" / "smart_home.paraphrases.jsonl"


def commands(model: Path, per_intent: int, seed: int) -> dict[str, list[dict]]:
    from tools.data import read_jsonl
    from tools.templates import expand_intents_file

    trained = set((model / "training_sentences.txt").read_text(encoding="utf-8").splitlines())
    expansion = expand_intents_file(EXAMPLE, per_intent=per_intent, seed=seed)
    rng = random.Random(seed)
    by_intent: dict[str, list] = {}
    for e in expansion.heldout:
        if e.text not in trained:
            by_intent.setdefault(e.intent, []).append(e)
    held = [x for name in sorted(by_intent) for x in rng.sample(by_intent[name], min(per_intent, len(by_intent[name])))]
    as_row = lambda e: {"text": e.text, "intent": e.intent, "slots": _slots(e)}  # noqa: E731
    return {
        "held-out expansions": [as_row(e) for e in held],
        "paraphrases": [as_row(e) for e in read_jsonl(PARAPHRASES)],
    }


def _slots(e) -> dict[str, str]:
    out: dict = {}
    for ent in e.entities:
        out.setdefault(ent.entity, []).append(ent.value)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def _same_slots(got: dict, want: dict) -> bool:
    norm = lambda d: {k: sorted(str(x).lower() for x in (v if isinstance(v, list) else [v])) for k, v in d.items()}  # noqa: E731
    return norm(got) == norm(want)


def synthesise(rows: list[tuple[str, dict]], voices: list[str], cache: Path) -> list[tuple[Path, str, dict]]:
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for voice in voices:
        for set_name, row in rows:
            key = hashlib.sha1(f"{voice}|{row['text']}".encode()).hexdigest()[:12]
            path = cache / f"{voice}-{key}.wav"
            if not path.exists():
                subprocess.run(
                    ["flite", "-voice", voice, "-t", row["text"], "-o", str(path)], check=True, capture_output=True
                )
            out.append((path, set_name, {**row, "voice": voice}))
    return out


def classify(model: Path, wavs: list[Path], stt: str, adapt: bool) -> tuple[dict[str, list[dict]], float]:
    """Run edge-intent --wav over every file (one process, as a user would); results per file."""
    cmd = [
        sys.executable,
        "-m",
        "edge.cli.intent",
        "--model",
        str(model),
        "--wav",
        *map(str, wavs),
        "--json",
        "--stt",
        stt,
        "--profile",
        "generic-x86_64" if platform.machine() == "x86_64" else "generic-aarch64",
    ]
    if not adapt:
        cmd.append("--no-adapt")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"edge-intent failed ({proc.returncode}): {proc.stderr[-2000:]}")
    results: dict[str, list[dict]] = {}
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        results.setdefault(row["file"], []).append(row)
    return results, seconds


def score(items: list[tuple[Path, str, dict]], results: dict[str, list[dict]]) -> dict:
    per_set: dict[str, dict] = {}
    for path, set_name, row in items:
        s = per_set.setdefault(
            set_name,
            {"n": 0, "intent": 0, "exact": 0, "errors": 0, "words": 0, "oos_n": 0, "oos_rejected": 0, "wrong": []},
        )
        got = [r for r in results.get(str(path), []) if r.get("text")]
        heard = " ".join(r["text"] for r in got)
        ref = spoken_form(row["text"])
        s["errors"] += word_errors(ref, spoken_form(heard))
        s["words"] += len(ref.split())
        # One utterance per command: a split or a miss is wrong.
        r = got[0] if len(got) == 1 else {"intent": "(split or missed)", "slots": {}}
        if row["intent"] is None:
            s["oos_n"] += 1
            s["oos_rejected"] += r["intent"] is None
            continue
        s["n"] += 1
        ok = r["intent"] == row["intent"]
        s["intent"] += ok
        exact = ok and _same_slots(r.get("slots", {}), row["slots"])
        s["exact"] += exact
        if not exact and len(s["wrong"]) < 12:
            s["wrong"].append(
                {
                    "said": row["text"],
                    "voice": row["voice"],
                    "heard": heard,
                    "intent": r["intent"],
                    "slots": r.get("slots", {}),
                    "want": [row["intent"], row["slots"]],
                }
            )
    out = {}
    for set_name, s in per_set.items():
        out[set_name] = {
            "commands": s["n"],
            "intent_accuracy": round(s["intent"] / max(1, s["n"]), 4),
            "exact_accuracy": round(s["exact"] / max(1, s["n"]), 4),
            "wer": round(s["errors"] / max(1, s["words"]), 4),
            "out_of_scope": s["oos_n"],
            "out_of_scope_rejected": round(s["oos_rejected"] / s["oos_n"], 4) if s["oos_n"] else None,
            "examples_wrong": s["wrong"],
        }
    return out


def text_accuracy(model: Path, rows: list[tuple[str, dict]]) -> dict:
    from edge.classifier import IntentClassifier

    clf = IntentClassifier.load(str(model), backend="onnx", precision="int8", threads=1)
    out: dict = {}
    for set_name, row in rows:
        if row["intent"] is None:
            continue
        r = clf.classify(row["text"])
        s = out.setdefault(set_name, [0, 0, 0])
        s[0] += 1
        s[1] += r.intent == row["intent"]
        s[2] += r.intent == row["intent"] and _same_slots(r.slot_dict(), row["slots"])
    return {
        k: {"commands": n, "intent_accuracy": round(i / n, 4), "exact_accuracy": round(x / n, 4)}
        for k, (n, i, x) in out.items()
    }


def markdown(report: dict) -> str:
    lines = [
        f"Spoken commands from `examples/smart_home.yaml` (model `{report['model']}`), flite voices "
        f"{', '.join(report['voices'])}, through `edge-intent --wav --json` ({report['utterances']} utterances "
        f"per configuration), host {report['host']}.",
        "",
        "| STT | command set | commands | WER | intent accuracy | intent + slots exact | out-of-scope rejected |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for config, sets in report["configurations"].items():
        for set_name, m in sets.items():
            if not isinstance(m, dict):
                continue
            oos = (
                "-"
                if m["out_of_scope_rejected"] is None
                else f"{m['out_of_scope_rejected']:.1%} of {m['out_of_scope']}"
            )
            lines.append(
                f"| {config} | {set_name} | {m['commands']} | {m['wer']:.1%} | {m['intent_accuracy']:.1%} | "
                f"{m['exact_accuracy']:.1%} | {oos} |"
            )
    lines += ["", "Typed (no speech), same commands, ONNX int8:", ""]
    for set_name, m in report["text"].items():
        lines.append(
            f"- {set_name}: intent {m['intent_accuracy']:.1%}, intent + slots exact {m['exact_accuracy']:.1%} "
            f"({m['commands']} commands)"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", type=Path, default=ROOT / "runs" / "smart-home-pkg", help="package trained from the example"
    )
    p.add_argument("--voices", nargs="+", default=["slt", "rms"])
    p.add_argument("--per-intent", type=int, default=6, help="held-out expansions per intent")
    p.add_argument("--seed", type=int, default=29, help="seed of the held-out draw (not the training seed)")
    p.add_argument("--stt", default="pocketsphinx", choices=["pocketsphinx", "vosk"])
    p.add_argument("--cache", type=Path, default=ROOT / "work-tmp" / "templates-bench")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "templates")
    args = p.parse_args()
    if shutil.which("flite") is None:
        p.error("needs Debian's flite to synthesise speech (apt-get install flite)")
    if not (args.model / "manifest.json").is_file():
        p.error(f"{args.model}: no model package; train one first (see the docstring)")
    sets = commands(args.model, args.per_intent, args.seed)
    rows = [(name, row) for name, group in sets.items() for row in group]
    items = synthesise(rows, args.voices, args.cache)
    report = {
        "model": str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model),
        "voices": args.voices,
        "utterances": len(items),
        "host": platform.machine(),
        "sets": {k: len(v) for k, v in sets.items()},
        "configurations": {},
        "text": text_accuracy(args.model, rows),
    }
    for adapt in (True, False):
        name = f"{args.stt}{'+adapted' if adapt else ''}"
        results, seconds = classify(args.model, [i[0] for i in items], args.stt, adapt)
        report["configurations"][name] = {**score(items, results), "seconds": round(seconds, 1)}
        print(
            name,
            json.dumps(
                {
                    k: {m: v[m] for m in ("intent_accuracy", "exact_accuracy", "wer")}
                    for k, v in report["configurations"][name].items()
                    if isinstance(v, dict)
                }
            ),
            file=sys.stderr,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    args.out.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
