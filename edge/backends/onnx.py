"""ONNX Runtime backend.

ONNX Runtime is the one runtime with wheels for every target (Pi OS aarch64, JetPack's CUDA and
TensorRT providers, x86) and a dynamic-shape graph, so a 6-token command costs 6 tokens of work.
The int8 files use ``MatMulInteger`` (dynamic quantisation of the 1x1 convolutions exported in
matmul form), which is where ONNX Runtime's integer kernels are fast.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from edge.backends import Backend, BackendUnavailable

log = logging.getLogger("edge.backends.onnx")
_warned: set[str] = set()

_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def unavailable_reason() -> str | None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "the Python package onnxruntime is not installed"
    return None


def choose_providers(wanted: tuple[str, ...], available: list[str]) -> list[str]:
    """Keep the wanted providers this build has, in order; say once which are missing."""
    chosen = [p for p in wanted if p in available]
    for p in wanted:
        if p not in available and p not in _warned:
            _warned.add(p)
            fallback = chosen[0] if chosen else "CPUExecutionProvider"
            log.warning(
                "ONNX Runtime provider %s is not available in this onnxruntime build; falling back to %s", p, fallback
            )
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, model_file: Path, threads: int, providers: tuple[str, ...], graph_optimization: str):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[graph_optimization])
        # Spinning worker threads burn a core between commands; a voice device is idle most of the time.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.threads = threads
        self.providers = choose_providers(providers, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(model_file), sess_options=options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BackendUnavailable(f"{model_file}: ONNX Runtime cannot load it: {exc}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.version = ort.__version__
        warm = np.ones((1, 8), np.int64)  # first run allocates arenas; keep that out of the first command
        self.session.run(self.output_names, {name: warm for name in self.input_names})

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {name: inputs[name] for name in self.input_names}
        t0 = time.perf_counter()
        outputs = self.session.run(self.output_names, feed)
        self.last_invoke_ms = (time.perf_counter() - t0) * 1000.0
        return dict(zip(self.output_names, outputs))

    def describe(self) -> str:
        return (
            f"onnxruntime {self.version}, {self.threads} thread(s), providers {', '.join(self.session.get_providers())}"
        )


def open_backend(model_file: Path, threads: int, profile=None, runtimes: tuple[str, ...] = ()) -> OnnxBackend:
    providers = ("CPUExecutionProvider",)
    level = "all"
    if profile is not None:
        providers, level = profile.onnx.providers, profile.onnx.graph_optimization
    return OnnxBackend(model_file, threads, providers, level)
