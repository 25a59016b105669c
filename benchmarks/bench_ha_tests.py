#!/usr/bin/env python3
"""Home Assistant's own test sentences against a package trained on Home Assistant's intents.

The home-assistant/intents repository's ``tests/<lang>`` folder holds sentences with the intent
and slots Home Assistant expects. Train with its fixtures as the lists, then score the package on
the sentences::

    .venv/bin/edge-train ha:en --lists tests/en/_fixtures.yaml --out runs/ha-en
    .venv/bin/python benchmarks/bench_ha_tests.py --tests tests/en --model runs/ha-en

Test files come in two layouts: ``<domain>_<Intent>.yaml`` (each test names its intent) and
``<Intent>/<case>.yaml`` (the folder's intent; such files usually bring devices of their own).
Sentences of intents the package has not got are counted apart (the tests and the package need
not be of one version). ``name`` / ``area`` values are scored where the sentence says the value,
the file has no devices of its own (the model only knows the fixtures' names) and the value is not
``all``; ids are mapped to names and apostrophes and case ignored. The model alone is scored
(``match_templates=False``) beside the runtime, which answers in-grammar sentences from the
templates. Writes ``benchmarks/results/ha-tests.{json,md}`` with counts only (the sentences are
Home Assistant's data, not this repository's); ``--misses`` prints the runtime's misses.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCORED_SLOTS = ("name", "area")
OWN_DEVICES = ("entities", "areas", "floors")


def _key(value: str) -> str:
    return " ".join(str(value).replace("'", "").replace("’", "").lower().split())


def id_names(fixtures: dict) -> dict[str, str]:
    """Fixture ids (``kitchen_id``, ``light.kitchen``) to the names a sentence says."""
    names = {}
    for group in OWN_DEVICES:
        for item in fixtures.get(group) or []:
            if isinstance(item, dict) and item.get("id") and item.get("name"):
                names[str(item["id"])] = str(item["name"])
    return names


def cases(tests_dir: Path) -> list[dict]:
    """Every test sentence with its file, expected intent and the slots to score."""
    names = id_names(yaml.safe_load((tests_dir / "_fixtures.yaml").read_text(encoding="utf-8")) or {})
    rows = []
    for path in sorted(tests_dir.rglob("*.yaml")):
        if path.name.startswith("_"):
            continue
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        own_devices = any(doc.get(k) for k in OWN_DEVICES)
        folder_intent = path.parent.name if path.parent != tests_dir else None
        for test in doc.get("tests") or []:
            intent = test.get("intent") or test.get("intents") or {}  # one stored file says `intents:`
            name = intent.get("name") or folder_intent
            slots = intent.get("slots", test.get("slots")) or {}
            slots = slots if isinstance(slots, dict) else {}  # one stored test has `slots: amber`
            for sentence in test.get("sentences") or []:
                scored = {}
                for slot in SCORED_SLOTS:
                    values = slots.get(slot)
                    values = values if isinstance(values, list) else [values] if values is not None else []
                    said = [names.get(str(v), str(v)) for v in values]
                    said = [v for v in said if _key(v) != "all" and _key(v) in _key(sentence)]
                    if said and not own_devices:
                        scored[slot] = said
                rows.append(
                    {
                        "file": str(path.relative_to(tests_dir)),
                        "text": sentence,
                        "intent": name,
                        "slots": scored,
                        "own_devices": own_devices,
                    }
                )
    return rows


def _got(result, slot: str) -> list[str]:
    value = result.slot_dict().get(slot)
    return [] if value is None else [str(v) for v in (value if isinstance(value, list) else [value])]


def score(classifier, rows: list[dict], known: set[str]) -> dict:
    in_package = [r for r in rows if r["intent"] in known]
    intent_right = slot_total = slot_right = 0
    misses = []
    t0 = time.perf_counter()
    for row in in_package:
        result = classifier.classify(row["text"])
        ok_intent = result.intent == row["intent"]
        intent_right += ok_intent
        wrong_slots = {}
        for slot, expected in row["slots"].items():
            got = {_key(v) for v in _got(result, slot)}
            slot_total += len(expected)
            right = sum(_key(v) in got for v in expected)
            slot_right += right
            if right < len(expected):
                wrong_slots[slot] = {"expected": expected, "got": _got(result, slot)}
        if not ok_intent or wrong_slots:
            misses.append({**row, "got_intent": result.intent, "got_slots": result.slot_dict(), "wrong": wrong_slots})
    seconds = time.perf_counter() - t0
    no_own = [r for r in in_package if not r["own_devices"]]
    no_own_right = len(no_own) - sum(1 for m in misses if not m["own_devices"] and m["got_intent"] != m["intent"])
    return {
        "sentences": len(in_package),
        "intent_accuracy": intent_right / max(1, len(in_package)),
        "intent_right": intent_right,
        "intent_accuracy_without_own_devices": no_own_right / max(1, len(no_own)),
        "sentences_without_own_devices": len(no_own),
        "name_area_values": slot_total,
        "name_area_accuracy": slot_right / max(1, slot_total),
        "name_area_right": slot_right,
        "ms_per_sentence": 1000 * seconds / max(1, len(in_package)),
        "misses": misses,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tests", type=Path, required=True, help="the intents repository's tests/<lang> folder")
    ap.add_argument("--model", type=Path, required=True, help="a package trained with those tests' fixtures")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results", help="where to write ha-tests.{json,md}"
    )
    ap.add_argument("--misses", action="store_true", help="print each sentence the runtime got wrong")
    args = ap.parse_args(argv)
    if not (args.tests / "_fixtures.yaml").is_file():
        ap.error(f"--tests {args.tests}: expected a tests/<lang> folder with _fixtures.yaml in it")

    from edge.classifier import IntentClassifier

    rows = cases(args.tests)
    runtime = IntentClassifier.load(args.model)
    known = set(runtime.labels)
    unknown = Counter(r["intent"] for r in rows if r["intent"] not in known)
    report = {
        "tests": str(args.tests),
        "model": str(args.model),
        "machine": platform.machine(),
        "sentences_total": len(rows),
        "sentences_of_intents_not_in_package": sum(unknown.values()),
        "intents_not_in_package": dict(sorted(unknown.items())),
        "model_alone": score(IntentClassifier.load(args.model, match_templates=False), rows, known),
        "runtime": score(runtime, rows, known),
    }
    misses = {label: report[label].pop("misses") for label in ("model_alone", "runtime")}
    for label, rows_missed in misses.items():
        wrong = Counter(f"{m['intent']} -> {m['got_intent']}" for m in rows_missed if m["intent"] != m["got_intent"])
        report[label]["intent_confusions"] = dict(wrong.most_common())
        report[label]["misses_by_file"] = dict(Counter(m["file"] for m in rows_missed).most_common())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ha-tests.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = [
        f"# Home Assistant's test sentences ({args.tests.name}), package {args.model.name}",
        "",
        f"{report['sentences_total']} sentences; {report['sentences_of_intents_not_in_package']} are of intents "
        "the package has not got and are not scored.",
        "",
        "| | sentences | intent | intent, files without devices of their own | name / area values |",
        "|---|---:|---:|---:|---:|",
    ]
    for label in ("model_alone", "runtime"):
        s = report[label]
        lines.append(
            f"| {label.replace('_', ' ')} | {s['sentences']} | {100 * s['intent_accuracy']:.1f} % ({s['intent_right']}) "
            f"| {100 * s['intent_accuracy_without_own_devices']:.1f} % of {s['sentences_without_own_devices']} "
            f"| {100 * s['name_area_accuracy']:.1f} % of {s['name_area_values']} |"
        )
    lines += ["", "Runtime intent confusions (expected -> answered):", ""]
    lines += [f"- {pair}: {n}" for pair, n in report["runtime"]["intent_confusions"].items()]
    (args.out / "ha-tests.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    if args.misses:
        for m in misses["runtime"]:
            print(f"- {m['text']!r}: {m['intent']} -> {m['got_intent']} {m['wrong'] or ''} ({m['file']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
