"""Export and quantisation: ONNX fp32/int8 and TFLite fp32/int8 of each trained candidate.

- ONNX: ``torch.onnx.export`` of the matmul form (tools/deploy.py) with dynamic batch and
  length. The shipped int8 file quantises activations per token, as LiteRT's dynamic-range
  kernels do (tools/onnx_rowquant.py): it matches fp32 accuracy and agrees with the TFLite int8
  file far more often than ``onnxruntime.quantization``'s per-tensor dynamic mode, which is
  still built (``int8-dynamic``) together with static QDQ (calibrated on training sentences)
  so all three are measured side by side (tools/package_writer.py).
- TFLite: ``litert-torch`` (no TensorFlow needed) with one signature per sequence length,
  sharing weights; int8 by ``ai-edge-quantizer``'s dynamic ``wi8_afp32`` recipe.

Each exported file is checked against the PyTorch model on the dev sentences here (largest
logit difference); the whole-test-set checks run through the runtime in package_writer.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .deploy import DeployModel, check_against
from .finetune import collate
from .model import JointSqueezeBert
from .onnx_rowquant import quantize_rowwise

TFLITE_SEQ_LENS = (16, 32, 64)
INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("intent_logits", "slot_logits")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _NamedOutputs(torch.nn.Module):
    """TFLite signature outputs take their names from a returned dict."""

    def __init__(self, model: DeployModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        intent_logits, slot_logits = self.model(input_ids, attention_mask)
        return {"intent_logits": intent_logits, "slot_logits": slot_logits}


@contextlib.contextmanager
def _quiet():
    """The converters print pages of progress; keep them out of the user's terminal unless it fails."""
    buf = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield buf
        finally:
            logging.disable(logging.NOTSET)


def export_onnx(deploy: DeployModel, path: Path) -> None:
    ids = torch.ones((1, 8), dtype=torch.long)
    with _quiet():
        torch.onnx.export(
            deploy,
            (ids, torch.ones_like(ids)),
            str(path),
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_axes={
                "input_ids": {0: "batch", 1: "length"},
                "attention_mask": {0: "batch", 1: "length"},
                "intent_logits": {0: "batch"},
                "slot_logits": {0: "batch", 1: "length"},
            },
            opset_version=17,
            dynamo=False,
        )


def quantize_onnx_dynamic(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(
            str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul", "Gather"]
        )


def quantize_onnx_static(src: Path, dst: Path, calib: list[dict[str, np.ndarray]]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)

    with _quiet():
        quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
        )


def export_tflite(deploy: DeployModel, path: Path, seq_lens=TFLITE_SEQ_LENS) -> None:
    import litert_torch

    wrapped = _NamedOutputs(deploy).eval()
    conv = None
    for n in seq_lens:
        sample = {
            "input_ids": torch.zeros((1, n), dtype=torch.long),
            "attention_mask": torch.ones((1, n), dtype=torch.long),
        }
        conv = (litert_torch if conv is None else conv).signature(f"seq{n}", wrapped, sample_kwargs=sample)
    with _quiet():
        model = conv.convert()
        model.export(str(path))


def quantize_tflite(src: Path, dst: Path) -> None:
    from ai_edge_quantizer import quantizer, recipe

    with _quiet():
        q = quantizer.Quantizer(str(src))
        q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        q.quantize().export_model(str(dst), overwrite=True)


def quantize_tflite_int8(model: JointSqueezeBert, max_seq_len: int, dst: Path) -> None:
    """TFLite int8: the int8-embedding form converted, then its matmul weights quantised."""
    staging = dst.with_suffix(".int8emb-fp32.tflite")
    export_tflite(DeployModel(model, max_seq_len, int8_embedding=True).eval(), staging)
    quantize_tflite(staging, dst)
    staging.unlink()


def export_all(
    candidates: dict[str, JointSqueezeBert], tokenizer, labels, work: Path, max_seq_len: int, dev_enc, seed: int = 13
) -> dict[str, dict]:
    """Export every candidate in every format; return {candidate: {variant key: info}}."""
    out_dir = work / "export"
    out_dir.mkdir(exist_ok=True)
    sample = dev_enc[:64]
    ids, mask, _, _ = collate(sample)
    calib = []
    for item in dev_enc[:: max(1, len(dev_enc) // 100)][:100]:
        arr = np.array([item.input_ids], dtype=np.int64)
        calib.append({"input_ids": arr, "attention_mask": np.ones_like(arr)})
    results: dict[str, dict] = {}
    for cand, model in candidates.items():
        model.eval()
        deploy = DeployModel(model, max_seq_len).eval()
        diff = check_against(model, deploy, ids, mask)
        if diff > 1e-3:
            raise RuntimeError(f"{cand}: export form differs from the trained model by {diff:.2e}")
        groups = model.groups.q
        files = {
            "onnx/fp32": out_dir / f"{cand}.fp32.onnx",
            "onnx/int8": out_dir / f"{cand}.int8.onnx",
            "onnx/int8-dynamic": out_dir / f"{cand}.int8-dynamic.onnx",
            "onnx/int8-static": out_dir / f"{cand}.int8-static.onnx",
            "tflite/fp32": out_dir / f"{cand}.fp32.tflite",
            "tflite/int8": out_dir / f"{cand}.int8.tflite",
        }
        steps = [
            ("onnx/fp32", lambda: export_onnx(deploy, files["onnx/fp32"])),
            ("onnx/int8", lambda: quantize_rowwise(files["onnx/fp32"], files["onnx/int8"])),
            ("onnx/int8-dynamic", lambda: quantize_onnx_dynamic(files["onnx/fp32"], files["onnx/int8-dynamic"])),
            ("onnx/int8-static", lambda: quantize_onnx_static(files["onnx/fp32"], files["onnx/int8-static"], calib)),
            ("tflite/fp32", lambda: export_tflite(deploy, files["tflite/fp32"])),
            ("tflite/int8", lambda: quantize_tflite_int8(model, max_seq_len, files["tflite/int8"])),
        ]
        results[cand] = {}
        for key, step in steps:
            if not files[key].exists():
                t0 = time.perf_counter()
                step()
                _log(f"  {cand} {key}: {files[key].stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t0:.0f} s")
            results[cand][key] = {"file": files[key], "groups": groups, "bytes": files[key].stat().st_size}
        with torch.no_grad():
            ref_int, ref_slot, _ = model(ids, mask)
        for key, info in results[cand].items():
            info["max_logit_diff"] = _max_diff(
                key, info["file"], ids.numpy(), mask.numpy(), ref_int.numpy(), ref_slot.numpy()
            )
        results[cand]["torch_eager_ms"] = _torch_latency(model, dev_enc)
    return results


def _max_diff(key, path, ids, mask, ref_int, ref_slot) -> float:
    from edge.backends import create_backend

    backend = create_backend(key.split("/")[0], path, threads=1)
    worst = 0.0
    for r in range(ids.shape[0]):
        n = int(mask[r].sum())
        out = backend.run({"input_ids": ids[r : r + 1, :n], "attention_mask": mask[r : r + 1, :n]})
        worst = max(
            worst,
            float(np.abs(out["intent_logits"][0] - ref_int[r]).max()),
            float(np.abs(out["slot_logits"][0] - ref_slot[r, :n]).max()),
        )
    return worst


def _torch_latency(model: JointSqueezeBert, dev_enc, n: int = 50) -> float:
    """Median per-sentence latency of the trained model in PyTorch eager, 1 thread (for reports)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times = []
    with torch.no_grad():
        for item in dev_enc[:n]:
            ids = torch.tensor([item.input_ids])
            t0 = time.perf_counter()
            model(ids, torch.ones_like(ids))
            times.append((time.perf_counter() - t0) * 1000)
    torch.set_num_threads(threads)
    return float(np.median(times))


def file_size_mb(path: Path) -> float:
    return os.path.getsize(path) / 1e6
