"""LiteRT (TFLite) backend: ``ai_edge_litert`` first, ``tflite_runtime`` as the fallback.

LiteRT with XNNPACK is the fastest CPU path for small int8 transformers on Arm, and its
interpreter is a few MB where ONNX Runtime is tens. TFLite graphs have fixed shapes, so the
exported file carries one signature per sequence length (``seq16``, ``seq32``, ...), all sharing
one set of weights; we pad each input to the shortest signature that fits and cut the padding
off the per-token outputs again.

``tflite-runtime`` 2.14 (its last release) cannot load ops newer than it knows; the manifest
lists for each file the runtimes it was verified with, and we refuse a mismatch up front with
an explanation instead of failing inside the interpreter.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path

import numpy as np

from edge.backends import Backend, BackendUnavailable

log = logging.getLogger("edge.backends.litert")


_RUNTIMES = (("ai-edge-litert", "ai_edge_litert"), ("tflite-runtime", "tflite_runtime"))
"""TFLite interpreters in order of preference: (pip name, import name)."""


def installed_runtimes() -> list[str]:
    """The TFLite interpreters installed here, preferred first (not imported)."""
    # find_spec, not import: the availability check runs in every process that picks a backend,
    # and importing the interpreter costs ~9 MB of resident memory in a daemon that uses ONNX Runtime.
    return [name for name, package in _RUNTIMES if importlib.util.find_spec(package) is not None]


def _import_interpreter(allowed: tuple[str, ...] = ()):
    """(runtime name, module) of the first installed TFLite interpreter (of ``allowed``, if given) that imports."""
    errors = []
    installed = installed_runtimes()
    for runtime in [r for r in installed if r in allowed] or installed:
        try:
            return runtime, _load_named(runtime)
        except ImportError as exc:  # installed but broken (e.g. built against another numpy)
            errors.append(f"{runtime}: {exc}")
    if errors:
        raise BackendUnavailable(
            "no TFLite interpreter imports: " + "; ".join(errors) + " (pip install ai-edge-litert)"
        )
    raise BackendUnavailable("neither ai-edge-litert nor tflite-runtime is installed (pip install ai-edge-litert)")


def unavailable_reason() -> str | None:
    if not installed_runtimes():
        return "neither ai-edge-litert nor tflite-runtime is installed"
    return None


class LiteRtBackend(Backend):
    name = "tflite"

    def __init__(
        self, model_file: Path, threads: int, xnnpack: bool, runtimes: tuple[str, ...], runtime: str | None = None
    ):
        if runtime is None:
            runtime, module = _import_interpreter(runtimes)
        else:
            module = _load_named(runtime)
        if runtimes and runtime not in runtimes:
            raise BackendUnavailable(
                f"{model_file}: needs {' or '.join(runtimes)}, but only {runtime} is installed "
                f"(pip install ai-edge-litert)"
            )
        kwargs = {"model_path": str(model_file), "num_threads": threads}
        if not xnnpack:
            kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self.interpreter = module.Interpreter(**kwargs)
        except (ValueError, RuntimeError) as exc:
            raise BackendUnavailable(f"{model_file}: {runtime} cannot load it: {exc}") from None
        self.runtime = runtime
        self.threads = threads
        self.xnnpack = xnnpack
        self.runners: list[tuple[int, object, dict[str, np.dtype]]] = []
        for key in self.interpreter.get_signature_list():
            if not key.startswith("seq"):
                continue
            runner = self.interpreter.get_signature_runner(key)
            dtypes = {name: d["dtype"] for name, d in runner.get_input_details().items()}
            self.runners.append((int(key[3:]), runner, dtypes))
        if not self.runners:
            raise BackendUnavailable(f"{model_file}: no seq<N> signatures; not an edge intent model")
        self.runners.sort(key=lambda r: r[0])
        self.max_len = self.runners[-1][0]
        # XNNPACK packs weights on each signature's first invoke (~100 ms): pay it at load, not on
        # the user's first command.
        for bucket, runner, dtypes in self.runners:
            runner(**{name: np.ones((1, bucket), dtype) for name, dtype in dtypes.items()})

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        length = next(iter(inputs.values())).shape[1]
        for bucket, runner, dtypes in self.runners:  # noqa: B007 (the runner found is used after the loop)
            if bucket >= length:
                break
        else:
            raise ValueError(f"sequence of {length} tokens is longer than the model's {self.max_len}")
        feed = {}
        for name, dtype in dtypes.items():
            x = inputs[name]
            if bucket != length:
                x = np.pad(x, ((0, 0), (0, bucket - length)))
            feed[name] = x.astype(dtype, copy=False)
        t0 = time.perf_counter()
        outputs = runner(**feed)
        self.last_invoke_ms = (time.perf_counter() - t0) * 1000.0
        return {k: (v[:, :length] if v.ndim == 3 else v) for k, v in outputs.items()}

    def describe(self) -> str:
        buckets = ", ".join(str(b) for b, _, _ in self.runners)
        return f"{self.runtime}, {self.threads} thread(s), XNNPACK {'on' if self.xnnpack else 'off'}, sequence lengths {buckets}"


def _load_named(runtime: str):
    if runtime == "ai-edge-litert":
        from ai_edge_litert import interpreter
    elif runtime == "tflite-runtime":
        from tflite_runtime import interpreter
    else:
        raise ValueError(f"unknown TFLite runtime {runtime!r}; allowed: ai-edge-litert, tflite-runtime")
    return interpreter


def open_backend(
    model_file: Path, threads: int, profile=None, runtimes: tuple[str, ...] = (), runtime: str | None = None
) -> LiteRtBackend:
    xnnpack = profile.tflite.xnnpack if profile is not None else True
    return LiteRtBackend(model_file, threads, xnnpack, runtimes, runtime)
