"""Evaluate a model package through the runtime: intent accuracy, exact-span slot F1, out-of-scope.

    python -m tools.evaluate --model models/squeezebert-hwu64 --data ../shared/data/hwu64/test.jsonl [--write]

Every backend x precision the package ships (and this machine can run) is scored with the same
``edge.classifier`` the device uses, so the numbers are the device's numbers, not PyTorch's.
``--write`` stores them in the manifest's ``metrics`` (checksums are rewritten too).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .data import Example, read_jsonl
from .scoring import span_f1


def predict(classifier, examples: list[Example]) -> list:
    return [classifier.classify(ex.text) for ex in examples]


def score(results, examples: list[Example], oos_results=None) -> dict:
    """Metrics for one variant. Accuracy counts an out-of-scope rejection of an in-scope sentence as wrong."""
    in_scope = [(r, e) for r, e in zip(results, examples) if e.intent is not None]
    acc = sum(r.intent == e.intent for r, e in in_scope) / max(1, len(in_scope))
    raw = sum(r.guess == e.intent for r, e in in_scope) / max(1, len(in_scope))
    gold, pred = [], []
    for r, e in in_scope:
        same_text = r.text == e.text
        gold.append(
            {
                (g.start, g.end, g.entity) if same_text else (e.text[g.start : g.end].lower(), g.entity)
                for g in e.entities
            }
        )
        pred.append({(s.start, s.end, s.name) if same_text else (s.text.lower(), s.name) for s in r.slots if s.text})
    out = {
        "n": len(in_scope),
        "intent_accuracy": round(acc, 4),
        "intent_accuracy_without_oos_rule": round(raw, 4),
        "slot_f1": round(span_f1(gold, pred), 4),
        "in_scope_rejected": round(sum(r.intent is None for r, _ in in_scope) / max(1, len(in_scope)), 4),
        # The whole command right: intent and every slot's (canonical) value, as an action would use them.
        "exact_match": round(
            sum(r.intent == e.intent and _values(r.slots, "name") == _values(e.entities, "entity") for r, e in in_scope)
            / max(1, len(in_scope)),
            4,
        ),
    }
    labelled_oos = [r for r, e in zip(results, examples) if e.intent is None]
    if oos_results is not None:
        labelled_oos = labelled_oos + list(oos_results)
    if labelled_oos:
        out["oos_n"] = len(labelled_oos)
        out["oos_rejected"] = round(sum(r.intent is None for r in labelled_oos) / len(labelled_oos), 4)
    return out


def _values(slots, kind: str) -> list[tuple[str, str]]:
    # slots a template sets without words ("domain: light") are not labelled spans: they are left out
    return sorted(
        (getattr(s, kind), " ".join(str(s.value).lower().split()))
        for s in slots
        if getattr(s, "text", "x") or getattr(s, "end", 1)
    )


def evaluate_package(
    package_dir: Path, examples: list[Example], oos: list[Example] | None = None, variants=None, threads: int = 1
) -> dict[str, dict]:
    """Metrics per variant. A package with a grammar is scored twice: every variant's model alone, and
    the whole runtime (grammar first, then the model) once, as ``<first variant>+grammar`` (the grammar's
    part is the same for every variant)."""
    from edge.backends import BackendUnavailable
    from edge.classifier import IntentClassifier
    from edge.package import ModelPackage

    package = ModelPackage.load(package_dir)
    metrics: dict[str, dict] = {}
    with_grammar = package.grammar_file() is not None
    for v in variants or package.variants:
        key = f"{v.backend}/{v.precision}"
        try:
            clf = IntentClassifier.load(
                package, backend=v.backend, precision=v.precision, threads=threads, match_templates=False
            )
        except BackendUnavailable as exc:
            metrics[key] = {"skipped": str(exc)}
            continue
        metrics[key] = score(predict(clf, examples), examples, predict(clf, oos) if oos else None)
        if with_grammar:
            clf = IntentClassifier.load(package, backend=v.backend, precision=v.precision, threads=threads)
            metrics[f"{key}+grammar"] = score(predict(clf, examples), examples, predict(clf, oos) if oos else None)
            with_grammar = False
    return metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="tools.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="labelled JSONL ({text, intent, entities})")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--write", action="store_true", help="store the metrics in the package manifest")
    args = p.parse_args(argv)
    metrics = evaluate_package(args.model, read_jsonl(args.data), threads=args.threads)
    print(f"{'variant':14} {'n':>5} {'intent acc':>10} {'slot F1':>8} {'rejected':>9}")
    for key, m in metrics.items():
        if "skipped" in m:
            print(f"{key:14} skipped: {m['skipped']}")
            continue
        print(
            f"{key:14} {m['n']:5d} {m['intent_accuracy'] * 100:9.2f}% {m['slot_f1'] * 100:7.2f} {m['in_scope_rejected'] * 100:8.2f}%"
        )
    if args.write:
        from edge.package import MANIFEST, write_manifest

        manifest = json.loads((args.model / MANIFEST).read_text())
        manifest.setdefault("metrics", {}).setdefault("evaluations", {})[args.data.name] = metrics
        write_manifest(args.model, manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
