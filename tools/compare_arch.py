"""Do the shipped model files give the same answers on two machines? Dump on each, compare anywhere.

    python -m tools.compare_arch dump --out x86_64.npz [--data ../shared/data/hwu64/test.jsonl] [--model NAME|DIR]
    python -m tools.compare_arch compare x86_64.npz aarch64.npz [--markdown FILE] [--min-agreement 0.99]
    python -m tools.compare_arch compare-results x86_64.jsonl aarch64.jsonl


``dump`` runs every backend x precision the package ships (and this machine can run) through
``edge.classifier`` exactly as ``edge-intent`` does, one sentence at a time, and keeps the raw
model outputs (intent and slot logits) with the decoded answers. ``compare`` reports, per
backend and precision, how often the two machines agree (best-guess intent, the intent after the
out-of-scope rule, the slots) and the largest absolute difference of any logit, with each side's
intent accuracy, over the sentences both dumps ran (``dump --sample`` runs fewer where emulation
makes a full run too slow). It exits 1 when a variant is missing on one
side, the inputs differ, or intent agreement is below ``--min-agreement``. ``compare-results``
compares two ``edge-intent --json`` outputs (one line per WAV file, matched by file name): the
transcript, intent, best guess and slots must be the same.

Only runtime dependencies are used, so it runs in a device's runtime-only venv.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np

from edge import datasets

from .data import read_jsonl

FORMAT = "edge-compare-arch/1"


class RecordingBackend:
    """Passes calls to the real backend and keeps the outputs of the last one."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.last: dict[str, np.ndarray] = {}

    def run(self, inputs):
        self.last = self.inner.run(inputs)
        return self.last

    def __getattr__(self, name):
        return getattr(self.inner, name)


def parse_sample(spec: str | None) -> dict[str, int]:
    """``--sample``: ``N`` (every variant) or ``KEY=N,...`` with KEY a precision, a backend or backend/precision."""
    if not spec or spec == "all":
        return {}
    out = {}
    for item in spec.split(","):
        key, _, n = item.rpartition("=")
        if not n.isdigit() or int(n) < 1:
            raise ValueError(
                f"--sample {spec!r}: {item!r} is not N or KEY=N with N >= 1 (KEY: int8, fp32, onnx, tflite, onnx/int8, ...)"
            )
        out[key or "*"] = int(n)
    return out


def sample_indices(n_texts: int, key: str, sample: dict[str, int]) -> list[int]:
    """Evenly spaced sentences of the file (it is sorted by intent, so every part of it is represented)."""
    backend, _, precision = key.partition("/")
    n = next((sample[k] for k in (key, precision, backend, "*") if k in sample), n_texts)
    if n >= n_texts:
        return list(range(n_texts))
    return sorted({int(round(i)) for i in np.linspace(0, n_texts - 1, n)})


def dump(data: Path, out: Path, model: str | None = None, sample: dict[str, int] | None = None) -> dict:
    from edge.backends import BackendUnavailable
    from edge.classifier import IntentClassifier
    from edge.package import find_package

    examples = read_jsonl(data)
    texts = [e.text for e in examples]
    package = find_package(model)
    meta: dict = {
        "format": FORMAT,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "data": str(data),
        "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
        "model": f"{package.name}@{package.version}",
        "texts": texts,
        "gold": [e.intent for e in examples],
        "variants": {},
    }
    arrays: dict[str, np.ndarray] = {}
    for variant in package.variants:
        key = f"{variant.backend}/{variant.precision}"
        try:
            clf = IntentClassifier.load(package, backend=variant.backend, precision=variant.precision, threads=1)
        except BackendUnavailable as exc:
            meta["variants"][key] = {"unavailable": str(exc)}
            print(f"compare_arch: {key}: unavailable here: {exc}", file=sys.stderr)
            continue
        recorder = RecordingBackend(clf.backend)
        clf.backend = recorder
        indices = sample_indices(len(texts), key, sample or {})
        intent_logits, slot_logits, lengths, answers = [], [], [], []
        for i in indices:
            result = clf.classify(texts[i])
            intent_logits.append(recorder.last["intent_logits"][0].astype(np.float32))
            slots = recorder.last["slot_logits"][0][: result.seq_len].astype(np.float32)
            slot_logits.append(slots)
            lengths.append(len(slots))
            answers.append({"guess": result.guess, "intent": result.intent, "slots": result.slot_dict()})
        arrays[f"{key}/indices"] = np.asarray(indices, dtype=np.int32)
        arrays[f"{key}/intent_logits"] = np.stack(intent_logits)
        arrays[f"{key}/slot_logits"] = np.concatenate(slot_logits)
        arrays[f"{key}/slot_lengths"] = np.asarray(lengths, dtype=np.int32)
        meta["variants"][key] = {"runtime": clf.backend.describe(), "answers": answers}
        print(
            f"compare_arch: {key}: {len(indices)} of {len(texts)} sentences on {meta['machine']} "
            f"({clf.backend.describe()})",
            file=sys.stderr,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, meta=np.array(json.dumps(meta)), **arrays)
    return meta


def load(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise SystemExit(f"compare_arch: {path}: not a dump written by 'compare_arch dump' ({exc})") from None
    meta = json.loads(str(arrays.pop("meta", np.array("{}"))))
    if meta.get("format") != FORMAT:
        raise SystemExit(f"compare_arch: {path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta, arrays


def _per_sentence(meta: dict, arrays: dict[str, np.ndarray], key: str) -> dict[int, tuple]:
    """Sentence index -> (answer, intent logits, slot logits) of one variant in one dump."""
    lengths = arrays[f"{key}/slot_lengths"]
    starts = np.concatenate([[0], np.cumsum(lengths)])
    slots = arrays[f"{key}/slot_logits"]
    return {
        int(i): (answer, arrays[f"{key}/intent_logits"][j], slots[starts[j] : starts[j + 1]])
        for j, (i, answer) in enumerate(zip(arrays[f"{key}/indices"], meta["variants"][key]["answers"]))
    }


def compare(a_path: Path, b_path: Path, min_agreement: float) -> tuple[list[dict], list[str], tuple[str, str]]:
    """One row per variant found on either side (over the sentences both ran), the problems that make
    the comparison fail, the two machines."""
    (a, a_arr), (b, b_arr) = load(a_path), load(b_path)
    machines = (a["machine"], b["machine"])
    problems = []
    if a["texts"] != b["texts"]:
        problems.append(
            f"the inputs differ: {a['data']} ({a['data_sha256'][:12]}) vs {b['data']} ({b['data_sha256'][:12]})"
        )
        return [], problems, machines
    if a["model"] != b["model"]:
        problems.append(f"the models differ: {a['model']} vs {b['model']}")
    gold = a["gold"]
    rows = []
    for key in sorted(set(a["variants"]) | set(b["variants"])):
        va, vb = a["variants"].get(key, {}), b["variants"].get(key, {})
        missing = [
            (m["machine"], v.get("unavailable", "not in the dump")) for m, v in ((a, va), (b, vb)) if "answers" not in v
        ]
        if missing:
            problems.append(f"{key}: " + "; ".join(f"not run on {machine}: {why}" for machine, why in missing))
            continue
        sa, sb = _per_sentence(a, a_arr, key), _per_sentence(b, b_arr, key)
        common = sorted(set(sa) & set(sb))
        pairs = [(sa[i], sb[i]) for i in common]
        n = len(pairs)
        if not n:
            problems.append(f"{key}: the two dumps share no sentence")
            continue
        if any(len(x[2]) != len(y[2]) for x, y in pairs):
            problems.append(f"{key}: the two machines tokenised some sentences differently")
            continue
        in_scope = [i for i in common if gold[i] is not None]

        def accuracy(side: dict) -> float:
            return sum(side[i][0]["intent"] == gold[i] for i in in_scope) / max(1, len(in_scope))

        row = {
            "variant": key,
            "n": n,
            "guess_agreement": sum(x[0]["guess"] == y[0]["guess"] for x, y in pairs) / n,
            "intent_agreement": sum(x[0]["intent"] == y[0]["intent"] for x, y in pairs) / n,
            "slot_agreement": sum(x[0]["slots"] == y[0]["slots"] for x, y in pairs) / n,
            "max_intent_logit_diff": max(float(np.abs(x[1] - y[1]).max()) for x, y in pairs),
            "max_slot_logit_diff": max(float(np.abs(x[2] - y[2]).max()) for x, y in pairs),
            "accuracy": (accuracy(sa), accuracy(sb)),
            "runtime": (va["runtime"], vb["runtime"]),
        }
        rows.append(row)
        if row["guess_agreement"] < min_agreement:
            problems.append(
                f"{key}: intents agree on {row['guess_agreement']:.2%} of sentences, below {min_agreement:.2%}"
            )
    return rows, problems, machines


RESULT_FIELDS = ("text", "intent", "guess", "slots")


def compare_results(a_path: Path, b_path: Path) -> list[str]:
    """Differences between two ``edge-intent --wav ... --json`` outputs, file by file."""

    def by_file(path: Path) -> dict[str, dict]:
        out = {}
        for number, line in enumerate(path.read_text().splitlines(), 1):
            try:
                event = json.loads(line)
                out[Path(event["file"]).name] = event
            except (ValueError, KeyError, TypeError):
                raise SystemExit(f"compare_arch: {path}:{number}: not a JSON result with a 'file' field") from None
        return out

    a, b = by_file(a_path), by_file(b_path)
    problems = [
        f"{name}: only in {path}"
        for name, path in [(n, a_path) for n in sorted(set(a) - set(b))]
        + [(n, b_path) for n in sorted(set(b) - set(a))]
    ]
    for name in sorted(set(a) & set(b)):
        diff = {k: (a[name].get(k), b[name].get(k)) for k in RESULT_FIELDS if a[name].get(k) != b[name].get(k)}
        print(
            f"{name}: {b[name].get('text')!r} -> {b[name].get('intent')} {b[name].get('slots')}  "
            f"{'same on both' if not diff else 'DIFFERENT'}"
        )
        problems += [f"{name}: {k} {x!r} vs {y!r}" for k, (x, y) in diff.items()]
    return problems


def markdown(rows: list[dict], a_machine: str, b_machine: str) -> str:
    lines = [
        f"| backend/precision | sentences | intent agreement (best guess) | after out-of-scope rule | slots agree | "
        f"max \\|Δ\\| intent logit | max \\|Δ\\| slot logit | intent accuracy {a_machine} / {b_machine} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['n']} | {r['guess_agreement']:.2%} | {r['intent_agreement']:.2%} | "
            f"{r['slot_agreement']:.2%} | {r['max_intent_logit_diff']:.3g} | {r['max_slot_logit_diff']:.3g} | "
            f"{r['accuracy'][0]:.4f} / {r['accuracy'][1]:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools.compare_arch", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="run every variant on this machine and write its logits and answers")
    d.add_argument("--out", type=Path, required=True, help="the .npz file to write")
    d.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="labelled JSONL (default: HWU64 test from $EDGE_DATA or ../shared/data, edge/datasets.py)",
    )
    d.add_argument("--model", help="model package name or directory (default: the shipped one)")
    d.add_argument(
        "--sample",
        metavar="SPEC",
        help="run only this many evenly spaced sentences: N for every variant, or "
        "KEY=N,... with KEY a precision, backend or backend/precision (default: all; compare uses the "
        "sentences both dumps ran)",
    )
    c = sub.add_parser("compare", help="compare two dumps")
    c.add_argument("first", type=Path)
    c.add_argument("second", type=Path)
    c.add_argument("--markdown", type=Path, help="also write the table to this file")
    c.add_argument(
        "--min-agreement",
        type=float,
        default=0.99,
        help="fail when best-guess intents agree on fewer sentences than this share (default 0.99)",
    )
    r = sub.add_parser("compare-results", help="compare two 'edge-intent --wav ... --json' outputs")
    r.add_argument("first", type=Path)
    r.add_argument("second", type=Path)
    args = p.parse_args(argv)
    if args.command == "dump":
        try:
            data = args.data or datasets.path("hwu64", "test.jsonl")
        except datasets.DataSetMissing as exc:
            return _fail(str(exc))
        if not data.is_file():
            return _fail(f"--data {data}: no such file")
        try:
            sample = parse_sample(args.sample)
        except ValueError as exc:
            return _fail(str(exc))
        dump(data, args.out, args.model, sample)
        return 0
    for path in (args.first, args.second):
        if not path.is_file():
            return _fail(f"{path}: no such file")
    if args.command == "compare-results":
        problems = compare_results(args.first, args.second)
        for problem in problems:
            print(f"compare_arch: {problem}", file=sys.stderr)
        return 1 if problems else 0
    rows, problems, machines = compare(args.first, args.second, args.min_agreement)
    table = markdown(rows, *machines)
    print(table)
    for r in rows:
        same = r["runtime"][0] == r["runtime"][1]
        print(
            f"{r['variant']}: "
            + (
                f"{r['runtime'][0]} on both"
                if same
                else f"{machines[0]}: {r['runtime'][0]}; {machines[1]}: {r['runtime'][1]}"
            )
        )
    if args.markdown:
        args.markdown.write_text(table + "\n")
    for problem in problems:
        print(f"compare_arch: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _fail(message: str) -> int:
    print(f"compare_arch: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
