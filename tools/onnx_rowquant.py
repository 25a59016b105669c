"""ONNX int8 that computes what LiteRT's dynamic-range kernels compute.

``onnxruntime.quantization.quantize_dynamic`` quantises each matmul's activations with one
uint8 scale and zero point for the whole tensor (``DynamicQuantizeLinear``). LiteRT's hybrid
``FULLY_CONNECTED`` (what ai-edge-quantizer's ``dynamic_wi8_afp32`` recipe produces) quantises
every row - every token - on its own, symmetrically to int8. The two int8 files therefore
round differently, and on borderline sentences they disagree (98.9 % agreement on HWU64 test
for the session-1 model, against 100 % for fp32). One token with large activations also costs
every other token of the sentence precision in the per-tensor scheme.

This module rewrites an fp32 ONNX graph in matmul form so that every matmul with a constant
weight runs the LiteRT scheme with standard ONNX operators:

    s     = max(|x|, over the last axis) / 127            (one scale per token)
    x_q   = int8(clip(round(x / s), -127, 127))
    y     = float(MatMulInteger(x_q, W_q)) * s * w_scale   (W_q per output channel, symmetric)

and the word-embedding ``Gather`` reads an int8 table with one scale per row, as the TFLite int8
file does. The weights are quantised with the same rule as ai-edge-quantizer (symmetric,
per output channel, max-abs / 127), so both files hold the same integers.

onnxruntime's quantiser has no per-row activation mode, which is why this is written here and
not configured there; ``MatMulInteger`` with int8 inputs on both sides is a standard ONNX op
that onnxruntime runs with its integer GEMM kernels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QMAX = 127.0
TINY = 1e-12
ACT_LEVELS = 127.0


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel (columns of an ONNX ``[K, N]`` matmul weight)."""
    scale = np.maximum(np.abs(w).max(axis=0), TINY) / QMAX
    q = np.clip(np.round(w / scale), -QMAX, QMAX).astype(np.int8)
    return q, scale.astype(np.float32)


def quantize_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row (an embedding table ``[V, H]``), scales shaped ``[V, 1]``."""
    scale = np.maximum(np.abs(table).max(axis=1, keepdims=True), TINY) / QMAX
    q = np.clip(np.round(table / scale), -QMAX, QMAX).astype(np.int8)
    return q, scale.astype(np.float32)


class _Graph:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.graph = model.graph
        self.inits = {t.name: t for t in self.graph.initializer}
        self._counter = 0
        self.quantized: dict[str, tuple[str, str, str]] = {}
        self._shared: dict[str, str] = {}

    def shared_consts(self) -> dict[str, str]:
        if not self._shared:
            self._shared = {
                k: self.const("rowquant/" + k, np.array(v, np.float32))
                for k, v in {"zero": 0.0, "levels": ACT_LEVELS, "tiny": TINY}.items()
            }
        return self._shared

    def name(self, base: str) -> str:
        self._counter += 1
        return f"{base}/rq{self._counter}"

    def const(self, base: str, value: np.ndarray) -> str:
        name = self.name(base)
        self.graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    def weight(self, name: str) -> np.ndarray | None:
        t = self.inits.get(name)
        return None if t is None else numpy_helper.to_array(t)

    def drop_unused_initializers(self) -> None:
        used = {i for n in self.graph.node for i in n.input} | {o.name for o in self.graph.output}
        keep = [t for t in self.graph.initializer if t.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep)


def _quantized_rows(g: _Graph, x: str, nodes: list[onnx.NodeProto]) -> tuple[str, str, str]:
    """``(x_q, scale, zero_point)`` of activation ``x``, emitted once however many matmuls read ``x``."""
    if x in g.quantized:
        return g.quantized[x]
    c = g.shared_consts()
    t = {
        k: g.name(f"{x}/{k}")
        for k in (
            "min",
            "max",
            "rmin",
            "rmax",
            "range",
            "range_safe",
            "scale",
            "neg_min",
            "zp_f",
            "zp",
            "scaled",
            "rounded",
            "shifted",
            "clipped",
            "x_q",
        )
    }
    nodes += [
        helper.make_node("ReduceMin", [x], [t["min"]], axes=[-1], keepdims=1),
        helper.make_node("ReduceMax", [x], [t["max"]], axes=[-1], keepdims=1),
        # The range always holds 0 (as in XNNPACK and TFLite) so that zeros stay exact.
        helper.make_node("Min", [t["min"], c["zero"]], [t["rmin"]]),
        helper.make_node("Max", [t["max"], c["zero"]], [t["rmax"]]),
        helper.make_node("Sub", [t["rmax"], t["rmin"]], [t["range"]]),
        helper.make_node("Max", [t["range"], c["tiny"]], [t["range_safe"]]),
        helper.make_node("Div", [t["range_safe"], c["levels"]], [t["scale"]]),
        helper.make_node("Div", [t["rmin"], t["scale"]], [t["neg_min"]]),
        helper.make_node("Neg", [t["neg_min"]], [t["zp_f"]]),
        helper.make_node("Round", [t["zp_f"]], [t["zp"]]),
        helper.make_node("Div", [x, t["scale"]], [t["scaled"]]),
        helper.make_node("Round", [t["scaled"]], [t["rounded"]]),
        helper.make_node("Add", [t["rounded"], t["zp"]], [t["shifted"]]),
        helper.make_node("Clip", [t["shifted"], c["zero"], c["levels"]], [t["clipped"]]),
        helper.make_node("Cast", [t["clipped"]], [t["x_q"]], to=TensorProto.UINT8),
    ]
    g.quantized[x] = (t["x_q"], t["scale"], t["zp"])
    return g.quantized[x]


def _rowwise_matmul(
    g: _Graph, x: str, outputs: list[str], weights: list[np.ndarray], base: str
) -> list[onnx.NodeProto]:
    """One int8 matmul for every weight that reads ``x`` (q, k and v share one), split back into ``outputs``."""
    # Activations: one scale and zero point per row (token), asymmetric, as XNNPACK's "qd8"
    # dynamic fully-connected kernels quantise them. 7 bits (0..127), not 8: onnxruntime's x86
    # AVX2 u8s8 GEMM adds pairs of u8*s8 products in int16 (VPMADDUBSW), which saturates for
    # 255*127*2 but not for 127*127*2; a full-range u8 row loses far more than the bit costs
    # (measured: mean max logit error 0.54 at 8 bits vs 0.14 at 7, against 0.32 for
    # per-tensor quantize_dynamic). int8 x int8 would avoid it but runs a reference kernel ~8x
    # slower. MatMulInteger takes only a scalar zero point, so the row zero points are applied
    # afterwards: x_q @ W_q - zp * colsum(W_q).
    nodes: list[onnx.NodeProto] = []
    x_q, scale, zp = _quantized_rows(g, x, nodes)
    # Per-output-channel scales make concatenating the weights exact: each column keeps its scale.
    w_q, w_scale = quantize_weight(np.concatenate(weights, axis=1))
    y = outputs[0] if len(outputs) == 1 else g.name(base + "/fused")
    colsum = w_q.astype(np.int32).sum(axis=0).astype(np.float32)
    c = {k: g.const(f"{base}/{k}", v) for k, v in {"W_q": w_q, "W_scale": w_scale, "W_colsum": colsum}.items()}
    t = {k: g.name(f"{base}/{k}") for k in ("acc", "acc_f", "corr", "centred", "row_scaled")}
    return (
        nodes
        + [
            helper.make_node("MatMulInteger", [x_q, c["W_q"]], [t["acc"]]),
            helper.make_node("Cast", [t["acc"]], [t["acc_f"]], to=TensorProto.FLOAT),
            helper.make_node("Mul", [zp, c["W_colsum"]], [t["corr"]]),
            helper.make_node("Sub", [t["acc_f"], t["corr"]], [t["centred"]]),
            helper.make_node("Mul", [t["centred"], scale], [t["row_scaled"]]),
            helper.make_node("Mul", [t["row_scaled"], c["W_scale"]], [y]),
        ]
        + (
            []
            if len(outputs) == 1
            else [
                helper.make_node(
                    "Split",
                    [y, g.const(base + "/split", np.array([w.shape[1] for w in weights], np.int64))],
                    list(outputs),
                    axis=-1,
                )
            ]
        )
    )


def _int8_gather(g: _Graph, node: onnx.NodeProto, table: np.ndarray) -> list[onnx.NodeProto]:
    ids, y = node.input[1], node.output[0]
    base = node.name or y
    q, scale = quantize_rows(table)
    q_name = g.const(base + "/table_q", q)
    scale_name = g.const(base + "/table_scale", scale)
    rows_q, rows_f, rows_s = (g.name(base + k) for k in ("/rows_q", "/rows_f", "/rows_scale"))
    return [
        helper.make_node("Gather", [q_name, ids], [rows_q], axis=0),
        helper.make_node("Cast", [rows_q], [rows_f], to=TensorProto.FLOAT),
        helper.make_node("Gather", [scale_name, ids], [rows_s], axis=0),
        helper.make_node("Mul", [rows_f, rows_s], [y]),
    ]


def quantize_rowwise(
    src: str | Path, dst: str | Path, min_table_rows: int = 1000, keep_fp32: tuple[str, ...] = ()
) -> dict[str, int]:
    """Write ``dst``: ``src`` (fp32, matmul form) with LiteRT-style int8 matmuls and embedding.

    Returns how many matmuls and gathers were rewritten. Matmuls whose weight is not a constant
    (attention scores and context) stay fp32, as they do in the TFLite file.
    """
    model = onnx.load(str(src))
    g = _Graph(model)
    nodes: list[onnx.NodeProto] = []
    counts = {"matmul": 0, "gather": 0}

    def quantizable(node: onnx.NodeProto) -> bool:
        w = g.weight(node.input[1]) if node.op_type == "MatMul" else None
        return w is not None and w.ndim == 2 and w.dtype == np.float32 and node.input[1] not in keep_fp32

    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in g.graph.node:
        if quantizable(node):
            readers.setdefault(node.input[0], []).append(node)
    for node in g.graph.node:
        if quantizable(node):
            group = readers.pop(node.input[0], None)
            if group is not None:  # the first reader of x emits the fused matmul for all of them
                nodes.extend(
                    _rowwise_matmul(
                        g,
                        node.input[0],
                        [n.output[0] for n in group],
                        [g.weight(n.input[1]) for n in group],
                        node.name or node.output[0],
                    )
                )
                counts["matmul"] += len(group)
            continue
        if node.op_type == "Gather" and not any(a.name == "axis" and a.i != 0 for a in node.attribute):
            table = g.weight(node.input[0])
            if table is not None and table.ndim == 2 and table.shape[0] >= min_table_rows and table.dtype == np.float32:
                nodes.extend(_int8_gather(g, node, table))
                counts["gather"] += 1
                continue
        nodes.append(node)
    del g.graph.node[:]
    g.graph.node.extend(nodes)
    g.drop_unused_initializers()
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return counts


__all__ = ["quantize_rowwise", "quantize_weight", "quantize_rows"]
