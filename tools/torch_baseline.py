"""The PyTorch fp32 eager baseline for ``edge-profile``: the trained model as ``transformers`` runs it.

``edge-profile`` starts this module as a worker process (``python -m edge_train.torch_baseline --worker
SPEC``) when torch and transformers are installed, so the runtime itself never imports torch. It
runs the same tokenizer and decoding as the runtime (``edge.classifier.IntentClassifier`` with a
torch backend in place of ONNX Runtime / LiteRT), so the only difference measured is the engine.

The weights: a model package ships ONNX and TFLite files, not a PyTorch checkpoint, so the
baseline needs the checkpoint ``edge-train`` left in its work directory. In order, it uses
``--torch-checkpoint PATH``, then ``runs/<package name>/student-g<groups>.pt`` (``teacher.pt`` for a
dense package) under the current directory and the repository. Before timing, it checks that the
checkpoint *is* the package's model: its logits must match the package's fp32 ONNX file on a few
sentences (max |difference| reported in the notes); a checkpoint that does not match, or none at
all, makes the baseline a "not run" line with the reason, never a misleading row.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
MATCH_TOLERANCE = 1e-3
"""Largest |logit difference| between the checkpoint and the package's fp32 ONNX still called "the same weights"."""


class SkipBaseline(RuntimeError):
    """The baseline cannot be run faithfully here; the message says why."""


def checkpoint_candidates(package_name: str, groups: int, explicit: str | None) -> list[Path]:
    if explicit:
        return [Path(explicit)]
    name = f"student-g{groups}.pt" if groups > 1 else "teacher.pt"
    return [base / "runs" / package_name / name for base in dict.fromkeys([Path.cwd(), REPO_ROOT])]


def make_torch_backend(model, threads: int):
    import torch

    from edge.backends import Backend

    class TorchBackend(Backend):
        name = "torch"

        def __init__(self) -> None:
            torch.set_num_threads(threads)
            self.model = model.eval()
            self.threads = threads

        def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            t0 = time.perf_counter()
            with torch.inference_mode():
                intent, slots, _ = self.model(
                    torch.from_numpy(inputs["input_ids"]), torch.from_numpy(inputs["attention_mask"])
                )
            self.last_invoke_ms = (time.perf_counter() - t0) * 1000.0
            return {"intent_logits": intent.numpy(), "slot_logits": slots.numpy()}

        def describe(self) -> str:
            return f"PyTorch {torch.__version__} eager fp32 (transformers SqueezeBERT), {threads} thread(s)"

    return TorchBackend()


def _compare_with_onnx(clf_torch, package, threads: int, texts: list[str]) -> float:
    """Max |intent logit difference| between the torch model and the package's fp32 ONNX file."""
    from edge.backends import create_backend

    variant = package.find_variant("onnx", "fp32")
    if variant is None:
        raise SkipBaseline("the package has no fp32 ONNX file to check the checkpoint against")
    onnx = create_backend("onnx", package.verify_file(variant.file), threads=threads)
    worst = 0.0
    for text in texts:
        ids = np.asarray(clf_torch.tokenizer.encode(text).ids[: package.max_seq_len], dtype=np.int64)[None, :]
        inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        a = clf_torch.backend.run(inputs)["intent_logits"]
        b = onnx.run(inputs)["intent_logits"]
        worst = max(worst, float(np.abs(a - b).max()))
    return worst


def load_baseline(spec: dict[str, Any]):
    from edge.classifier import Choice, IntentClassifier
    from edge.package import ModelPackage

    from .model import load

    package = ModelPackage.load(spec["model"])
    groups = max((v.groups for v in package.variants), default=1)
    candidates = checkpoint_candidates(package.name, groups, spec.get("torch_checkpoint"))
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise SkipBaseline(
            "no PyTorch checkpoint of this package's weights (looked for "
            + ", ".join(str(p) for p in candidates)
            + "; pass --torch-checkpoint PATH)"
        )
    model, _ = load(found)
    threads = spec["threads"]
    choice = Choice("torch", "fp32", found, (), f"checkpoint {found}")
    clf = IntentClassifier(package, make_torch_backend(model, threads), choice, threads)
    texts = [s for s, _ in spec["sample"][:8]] or ["set an alarm for seven am", "turn off the kitchen lights"]
    diff = _compare_with_onnx(clf, package, threads, texts)
    if diff > MATCH_TOLERANCE:
        raise SkipBaseline(
            f"{found} is not the package's model: intent logits differ from the fp32 ONNX file by up to {diff:.3g}"
        )
    spec["describe"] = clf.backend.describe()
    spec["notes"] = [f"weights from {found}; intent logits match the package's fp32 ONNX file within {diff:.2g}"]
    return clf


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m edge_train.torch_baseline", description="edge-profile's PyTorch baseline worker"
    )
    p.add_argument("--worker", type=Path, required=True, help="worker spec written by edge-profile")
    args = p.parse_args(argv)
    from edge.profiling.engine import worker_main

    return worker_main(args.worker, load_baseline, skip=(SkipBaseline,))


if __name__ == "__main__":
    sys.exit(main())
