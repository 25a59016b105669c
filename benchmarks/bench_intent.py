"""Classification latency of the shipped model: per backend, Python overhead, grouped vs dense, vs PyTorch.

    .venv/bin/python benchmarks/bench_intent.py [--rounds 3] [--out benchmarks/results]

Everything is measured side by side in one run, round-robin, 1 thread, so machine noise hits
every configuration alike:
- p50 / p99 of ``IntentClassifier.classify`` (tokenize + infer + decode) on HWU64 test sentences,
  for all of them and for those of at most 16 word pieces (issue targets: p50 <= 1 ms, p99 <= 3 ms);
- the share of that time spent outside the runtime's own invoke call (target <= 25 %);
- the same weights in HF ``transformers`` PyTorch fp32 eager (needs the [train] extra; the
  training checkpoint in ``runs/``, or else the weights restored from the package's fp32 ONNX
  file by tools/from_package.py), for the >= 10x target;
- the dense (groups=1) candidate's int8 files, when the training work directory still has them,
  for the grouped/dense speed ratio per backend.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def percentiles(xs):
    a = np.asarray(xs)
    return {
        "p50": round(float(np.percentile(a, 50)), 4),
        "p90": round(float(np.percentile(a, 90)), 4),
        "p99": round(float(np.percentile(a, 99)), 4),
        "mean": round(float(a.mean()), 4),
    }


class TorchRunner:
    """The trained checkpoint in HF transformers PyTorch eager, same tokenizer, 1 thread."""

    def __init__(self, checkpoint: Path, package: Path, tokenizer):
        import torch

        from tools.from_package import restore
        from tools.model import load

        torch.set_num_threads(1)
        self.torch = torch
        # Without the training work directory (a fresh clone), the same weights come back out of the
        # package's fp32 ONNX file; restore() checks them against it.
        if checkpoint.exists():
            self.model, self.source = load(checkpoint)[0], str(checkpoint)
        else:
            self.model, self.source = restore(package), f"{package} (restored from model.fp32.onnx)"
        self.model.eval()
        self.tokenizer = tokenizer

    def classify(self, text):
        t0 = time.perf_counter()
        ids = self.tokenizer.encode(text).ids
        with self.torch.no_grad():
            x = self.torch.tensor([ids])
            intent, slots, _ = self.model(x, self.torch.ones_like(x))
            probs = self.torch.softmax(intent, -1)
            probs.argmax(), slots.argmax(-1)
        return (time.perf_counter() - t0) * 1000


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=str(REPO / "models" / "squeezebert-hwu64"))
    p.add_argument("--work", default=str(REPO / "runs" / "squeezebert-hwu64"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--limit", type=int, default=400, help="test sentences per round")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    from edge import datasets

    datasets.add_argument(p)
    args = p.parse_args(argv)

    from edge.classifier import IntentClassifier

    try:
        texts = [row["text"] for row in datasets.read_rows("hwu64", "test.jsonl", args.data)][: args.limit]
    except datasets.DataSetMissing as exc:
        sys.exit(f"bench_intent: {exc}")
    configs = {}
    for backend in ("onnx", "tflite"):
        configs[f"shipped {backend}/int8"] = IntentClassifier.load(
            args.model, backend=backend, precision="int8", threads=1
        )
    manifest = json.loads((Path(args.model) / "manifest.json").read_text())
    shipped_groups = manifest["variants"][0].get("groups", 1)
    other = Path(args.work) / ("staged-dense" if shipped_groups > 1 else "staged-g4")
    if other.exists():
        for backend in ("onnx", "tflite"):
            configs[f"{other.name[7:]} {backend}/int8"] = IntentClassifier.load(
                str(other), backend=backend, precision="int8", threads=1
            )
    short = {t for t in texts if len(configs["shipped onnx/int8"].tokenizer.encode(t).ids) <= 16}

    torch_runner, torch_note = None, ""
    ckpt = Path(args.work) / (f"student-g{shipped_groups}.pt" if shipped_groups > 1 else "teacher.pt")
    try:
        torch_runner = TorchRunner(ckpt, Path(args.model), configs["shipped onnx/int8"].tokenizer)
    except ImportError as exc:
        torch_note = f"PyTorch baseline not run (needs the [train] extra): {exc}"

    totals = {k: [] for k in configs}
    totals_short = {k: [] for k in configs}
    overhead = {k: [] for k in configs}
    torch_ms, torch_short = [], []
    for _ in range(args.rounds):
        for name, clf in configs.items():
            for t in texts[:20]:
                clf.classify(t)
            for t in texts:
                r = clf.classify(t)
                total = r.latency_ms["total"]
                totals[name].append(total)
                if t in short:
                    totals_short[name].append(total)
                overhead[name].append(max(0.0, total - clf.backend.last_invoke_ms) / total)
        if torch_runner:
            for t in texts[:10]:
                torch_runner.classify(t)
            for t in texts:
                ms = torch_runner.classify(t)
                torch_ms.append(ms)
                if t in short:
                    torch_short.append(ms)

    results = {
        "sentences": len(texts),
        "short_sentences": len(short),
        "rounds": args.rounds,
        "threads": 1,
        "configs": {},
    }
    for name in configs:
        results["configs"][name] = {
            "all": percentiles(totals[name]),
            "le16_tokens": percentiles(totals_short[name]),
            "outside_invoke_share": round(float(np.mean(overhead[name])), 4),
            "runtime": configs[name].backend.describe(),
        }
    if torch_runner:
        results["pytorch_fp32_eager"] = {
            "all": percentiles(torch_ms),
            "le16_tokens": percentiles(torch_short),
            "weights": torch_runner.source,
        }
        for name in configs:
            results["configs"][name]["speedup_vs_pytorch_le16_p50"] = round(
                results["pytorch_fp32_eager"]["le16_tokens"]["p50"] / results["configs"][name]["le16_tokens"]["p50"], 2
            )
    else:
        results["pytorch_fp32_eager"] = torch_note
    other_name = other.name[7:]
    for backend in ("onnx", "tflite"):
        shipped, alt = f"shipped {backend}/int8", f"{other_name} {backend}/int8"
        if alt in results["configs"]:
            grouped, dense = (shipped, alt) if shipped_groups > 1 else (alt, shipped)
            results.setdefault("dense_over_grouped_p50", {})[backend] = round(
                results["configs"][dense]["le16_tokens"]["p50"] / results["configs"][grouped]["le16_tokens"]["p50"], 2
            )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "intent.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"HWU64 test, {len(texts)} sentences ({len(short)} of <= 16 word pieces) x {args.rounds} rounds, 1 thread, ms per command (tokenize + infer + decode)",
        "",
        "| configuration | p50 (<=16) | p99 (<=16) | p50 (all) | p99 (all) | outside invoke | vs PyTorch (p50, <=16) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results["configs"].items():
        lines.append(
            f"| {name} | {r['le16_tokens']['p50']:.3f} | {r['le16_tokens']['p99']:.3f} | {r['all']['p50']:.3f} | "
            f"{r['all']['p99']:.3f} | {r['outside_invoke_share'] * 100:.1f}% | {r.get('speedup_vs_pytorch_le16_p50', '-')}x |"
        )
    if torch_runner:
        t = results["pytorch_fp32_eager"]
        lines.append(
            f"| HF transformers PyTorch fp32 eager | {t['le16_tokens']['p50']:.3f} | {t['le16_tokens']['p99']:.3f} | "
            f"{t['all']['p50']:.3f} | {t['all']['p99']:.3f} | - | 1x |"
        )
    else:
        lines.append(f"\n{torch_note}")
    if "dense_over_grouped_p50" in results:
        lines.append(
            "\nGrouped (g4) speed-up over dense, p50 at <= 16 word pieces: "
            + ", ".join(f"{k} {v}x" for k, v in results["dense_over_grouped_p50"].items())
        )
    (out / "intent.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
