"""microWakeWord engine: small streaming TFLite models, the ones Home Assistant's voice hardware runs.

PyPI ``pymicro-wakeword`` (Apache-2.0) was chosen because its wheel carries everything: the
TFLite C runtime (no TensorFlow), the microWakeWord feature frontend (``pymicro-features``) and
the trained models for "okay nabu", "hey jarvis", "alexa" and "hey mycroft", so a neural wake
word works with zero downloads, at about a hundredth of a core on a Pi-class CPU. Models the
ESPHome community publishes (a ``.json`` manifest plus its ``.tflite``) load by path.

The frontend turns every 10 ms of audio into 40 features; each model runs once per ``stride``
feature frames (30 ms) and the mean of the last ``sliding_window_size`` probabilities is compared
with ``probability_cutoff`` (both from the model's JSON unless overridden). We drive the frontend
ourselves rather than through ``MicroWakeWordFeatures`` only to know at which sample a phrase ended.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from edge.wake import SAMPLE_RATE, WakeEngine, WakeError, WakeHit, canonical, check_samples, check_threshold

CHUNK = 160  # samples per 10 ms feature step
_FEATURES = 40  # frontend output per step, the models' input width


@dataclasses.dataclass(frozen=True)
class MicroModel:
    """A microWakeWord model manifest, checked."""

    phrase: str
    """The wake word the model was trained for, as its JSON says (``Hey Jarvis``)."""
    json_path: Path
    tflite_path: Path
    probability_cutoff: float
    sliding_window_size: int
    trained_languages: tuple[str, ...] = ()
    key: str = "models"
    """The configuration key it came from, for messages."""


def _package_dir() -> Path | None:
    try:
        import pymicro_wakeword
    except ImportError:
        return None
    return Path(pymicro_wakeword.__file__).parent


def shipped_models() -> dict[str, MicroModel]:
    """Canonical phrase -> the models inside the pymicro-wakeword wheel."""
    root = _package_dir()
    if root is None:
        return {}
    models = [read_model(p) for p in sorted((root / "models").glob("*.json"))]
    return {canonical(m.phrase): m for m in models}


def available_models(paths: tuple[str, ...] | list[str] = ()) -> dict[str, MicroModel]:
    """Shipped models plus the user's (which win for the same phrase); bad user models raise :class:`WakeError`."""
    models = shipped_models()
    for i, path in enumerate(paths):
        model = read_model(path, key=f"models[{i}]")
        models[canonical(model.phrase)] = model
    return models


def read_model(path: str | Path, key: str = "models") -> MicroModel:
    """Read and check a microWakeWord ``.json`` and the ``.tflite`` it names."""
    path = Path(path).expanduser()
    where = f"{key}: {path}"
    if path.suffix == ".tflite":
        raise WakeError(
            f"{where}: give the model's .json manifest (it names the .tflite and its cutoff), not the .tflite"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WakeError(f"{where}: file not found; expected a microWakeWord model manifest (.json)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WakeError(f"{where}: not a microWakeWord model manifest (not JSON: {exc})") from None
    if not isinstance(config, dict) or config.get("type") != "micro" or not isinstance(config.get("micro"), dict):
        raise WakeError(
            f'{where}: not a microWakeWord model manifest (expected a JSON object with "type": "micro" '
            'and a "micro" section)'
        )
    phrase = config.get("wake_word")
    if not isinstance(phrase, str) or not canonical(phrase):
        raise WakeError(f"{where}: wake_word is {phrase!r}; expected the phrase the model was trained for")
    micro = config["micro"]
    cutoff = micro.get("probability_cutoff")
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)) or not 0 < cutoff < 1:
        raise WakeError(f"{where}: micro.probability_cutoff is {cutoff!r}; expected a number between 0 and 1")
    window = micro.get("sliding_window_size")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise WakeError(f"{where}: micro.sliding_window_size is {window!r}; expected a whole number >= 1")
    name = config.get("model")
    if not isinstance(name, str) or not name:
        raise WakeError(f"{where}: model is {name!r}; expected the file name of the .tflite beside it")
    tflite = path.parent / name
    try:
        with tflite.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise WakeError(f"{where}: its model file {tflite} cannot be read ({exc.strerror})") from None
    if len(head) < 8 or head[4:8] != b"TFL3":  # the TFLite flatbuffer's file identifier
        raise WakeError(f"{where}: {tflite} is not a TFLite model (no TFL3 identifier)")
    languages = config.get("trained_languages") or ()
    return MicroModel(
        phrase=phrase,
        json_path=path,
        tflite_path=tflite,
        probability_cutoff=float(cutoff),
        sliding_window_size=window,
        trained_languages=tuple(str(x) for x in languages),
        key=key,
    )


def _runtime_library() -> Path:
    root = _package_dir()
    lib = next(iter(sorted((root / "lib").glob("*tensorflowlite_c.*"))), None) if root else None
    if lib is None:
        raise WakeError(
            "the microWakeWord engine needs pymicro-wakeword with its TFLite C library "
            "(pip install pymicro-wakeword; wheels exist for x86_64 and aarch64)"
        )
    return lib


DETECTION_LAG_SAMPLES = 16000 * 250 // 1000
"""How far before the detection the command may already have begun."""


class MicroEngine(WakeEngine):
    """One or more microWakeWord models sharing one feature frontend."""

    name = "micro"

    def __init__(
        self,
        models: list[tuple[str, MicroModel]],
        thresholds: dict[str, float | None] | None = None,
        sliding_window: int | None = None,
    ) -> None:
        from pymicro_features import MicroFrontend
        from pymicro_wakeword import MicroWakeWord

        lib = _runtime_library()
        thresholds = thresholds or {}
        self._phrases = tuple(p for p, _ in models)
        self._detectors: list[_Detector] = []
        try:
            for phrase, model in models:
                cutoff = thresholds.get(phrase)
                cutoff = (
                    model.probability_cutoff
                    if cutoff is None
                    else check_threshold(
                        "micro", phrase, cutoff, 0.0, 1.0, "probability cutoff", open_low=True, open_high=True
                    )
                )
                window = sliding_window or model.sliding_window_size
                _check_flatbuffer(lib, model)
                try:
                    mww = MicroWakeWord(
                        canonical(model.phrase).replace(" ", "_"),
                        wake_word=model.phrase,
                        tflite_model=model.tflite_path,
                        probability_cutoff=cutoff,
                        sliding_window_size=window,
                        trained_languages=list(model.trained_languages),
                        libtensorflowlite_c_path=lib,
                    )
                except (RuntimeError, ValueError) as exc:
                    raise WakeError(
                        f"{model.key}: {model.json_path}: {model.tflite_path} is not a microWakeWord model ({exc})"
                    ) from None
                self._detectors.append(_Detector(phrase, mww, cutoff))
                _check_shape(mww, model)
        except BaseException:
            self.close()
            raise
        self._frontend = MicroFrontend()
        self._pending = b""
        self._consumed = 0

    @property
    def phrases(self) -> tuple[str, ...]:
        return self._phrases

    def thresholds(self) -> dict[str, float]:
        return {d.phrase: d.cutoff for d in self._detectors}

    def process(self, samples: np.ndarray) -> WakeHit | None:
        pcm = self._pending + check_samples(samples).tobytes()
        pos, first = 0, None
        while len(pcm) - pos >= CHUNK * 2:
            result = self._frontend.process_samples(pcm[pos : pos + CHUNK * 2])
            pos += result.samples_read * 2
            self._consumed += result.samples_read
            if not result.features:
                continue
            features = np.asarray(result.features, dtype=np.float32).reshape(1, 1, _FEATURES)
            for detector in self._detectors:
                score = detector.feed(features)
                if score is not None and first is None:
                    # The detector fires once its averaged probability has risen, a little after the
                    # phrase ended: step back so the command's first sound is not cut off (Whisper
                    # reads a clipped "what time is it" as "time visit").
                    first = WakeHit(detector.phrase, self.name, score, max(0, self._consumed - DETECTION_LAG_SAMPLES))
        self._pending = pcm[pos:]
        return first

    def scan(self, samples: np.ndarray) -> dict[str, float]:
        self.reset()
        for start in range(0, len(samples), 4096):
            self.process(samples[start : start + 4096])
        peaks = {d.phrase: d.peak for d in self._detectors}
        self.reset()
        return peaks

    def reset(self) -> None:
        self._frontend.reset()
        self._pending = b""
        self._consumed = 0
        for detector in self._detectors:
            detector.reset()

    def close(self) -> None:
        for detector in self._detectors:
            detector.model.close()

    @property
    def latency_s(self) -> float:
        """Audio a detection needs after the phrase ends at least: one stride of features."""
        return max(d.model.stride for d in self._detectors) * CHUNK / SAMPLE_RATE


class _Detector:
    """One model's probabilities, with re-arming: one hit per crossing of the cutoff, not one per 30 ms."""

    def __init__(self, phrase: str, model, cutoff: float) -> None:
        self.phrase, self.model, self.cutoff = phrase, model, cutoff
        self._steps = 0
        self._armed = True
        self.peak = float("-inf")
        """Highest windowed probability since the last reset (for calibration)."""

    def feed(self, features: np.ndarray) -> float | None:
        prob = self.model.process_streaming_prob(features)
        self._steps += 1
        if self._steps % self.model.stride or prob is None:
            return None  # the model only runs every `stride` steps; in between it reports 0.0
        self.peak = max(self.peak, prob)
        if prob <= self.cutoff:
            self._armed = True
            return None
        if not self._armed:
            return None
        self._armed = False
        return float(prob)

    def reset(self) -> None:
        self.model.reset()
        self._steps = 0
        self._armed = True
        self.peak = float("-inf")


def _check_shape(mww, model: MicroModel) -> None:
    lib, tensor = mww.lib, mww.input_tensor
    dims = [lib.TfLiteTensorDim(tensor, i) for i in range(lib.TfLiteTensorNumDims(tensor))]
    if len(dims) != 3 or dims[2] != _FEATURES:
        raise WakeError(
            f"{model.key}: {model.json_path}: {model.tflite_path} is not a microWakeWord model (input shape {dims}; "
            f"expected [1, stride, {_FEATURES}] spectrogram features)"
        )


def _check_flatbuffer(lib: Path, model: MicroModel) -> None:
    """Let the TFLite runtime verify the file first: pymicro-wakeword would crash on a damaged one."""
    from pymicro_wakeword.wakeword import TfLiteWakeWord

    runtime = TfLiteWakeWord(lib).lib
    handle = runtime.TfLiteModelCreateFromFile(str(model.tflite_path.resolve()).encode("utf-8"))
    if not handle:
        raise WakeError(
            f"{model.key}: {model.json_path}: {model.tflite_path} is not a valid TFLite model "
            "(the runtime cannot read it; damaged or truncated?)"
        )
    runtime.TfLiteModelDelete(handle)
