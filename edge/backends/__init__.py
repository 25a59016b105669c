"""Inference backends behind one small interface, and the registry that picks one per profile.

A backend runs one model file: ``run({"input_ids": (1, L), "attention_mask": (1, L)})`` returns
``{"intent_logits": (1, n_intents), "slot_logits": (1, L, n_tags)}`` as numpy arrays. It knows
nothing about tokenizers or labels; the classifier does. Backends are imported lazily so a
device with only one runtime installed never pays for, or fails on, the other.
"""

from __future__ import annotations

import abc
import importlib
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("edge.backends")

BACKENDS = ("onnx", "tflite")
INSTALL_HINTS = {
    "onnx": "pip install onnxruntime   (Jetson: NVIDIA's onnxruntime-gpu wheel for JetPack)",
    "tflite": "pip install ai-edge-litert   (or, where it has no wheel: pip install tflite-runtime)",
}


class BackendUnavailable(RuntimeError):
    """The backend's runtime is not installed, or cannot load this model file."""


class Backend(abc.ABC):
    name: str = ""
    last_invoke_ms: float = 0.0
    """Time spent inside the runtime's own invoke during the last ``run`` (the rest is Python overhead)."""

    @abc.abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on one batch; ``inputs`` are int64 arrays of shape (batch, seq_len)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line: runtime, version, threads, providers or delegates in use."""


def _module(name: str):
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; allowed: {', '.join(BACKENDS)}")
    return importlib.import_module(f"edge.backends.{'onnx' if name == 'onnx' else 'litert'}")


def available_backends() -> dict[str, str | None]:
    """Each backend name -> ``None`` when usable here, else the reason it is not."""
    out: dict[str, str | None] = {}
    for name in BACKENDS:
        try:
            out[name] = _module(name).unavailable_reason()
        except ImportError as exc:  # pragma: no cover - our own modules always import
            out[name] = str(exc)
    return out


def unavailable_error(name: str, reason: str) -> BackendUnavailable:
    """The one message for a backend that cannot run here: why, and how to install it."""
    hint = INSTALL_HINTS.get(name, "allowed backends: " + ", ".join(BACKENDS))
    return BackendUnavailable(f"backend {name!r} is not available: {reason}. Install it: {hint}")


def create_backend(
    name: str, model_file: str | Path, threads: int = 1, profile=None, runtimes: tuple[str, ...] = ()
) -> Backend:
    """Open ``model_file`` with backend ``name``; ``runtimes`` are the interpreters the file was checked with."""
    module = _module(name)
    reason = module.unavailable_reason()
    if reason:
        raise unavailable_error(name, reason)
    return module.open_backend(Path(model_file), threads=threads, profile=profile, runtimes=runtimes)
