"""Wake-word engines: the activation stage in front of command recognition.

One small streaming interface, :class:`WakeEngine`, with an implementation per engine in this
package. The live loop feeds every frame of 16 kHz mono int16 audio to ``process`` and starts
listening for a command when it returns a :class:`WakeHit`.

* ``micro`` (``edge.wake.micro``): microWakeWord models through PyPI ``pymicro-wakeword``, whose
  wheel carries the four models Home Assistant's voice hardware uses and the TFLite C runtime, so
  a neural wake word needs no download; user-supplied models (``.json`` + ``.tflite``) load too.
* ``pocketsphinx`` (``edge.wake.keyphrase``): keyphrase spotting for any phrase whose words are in
  the en-us dictionary of the pocketsphinx wheel (already a runtime dependency for STT).
* ``vosk`` (``edge.wake.vosk``): a runtime grammar of the phrases plus ``[unk]`` on an installed
  Vosk model, for languages PocketSphinx has no model for.

:func:`create_engine` applies the ``--wake PHRASE`` rule: a phrase a shipped or configured
microWakeWord model was trained for uses that model, any other phrase keyphrase spotting. Every
engine it returns is wrapped in :class:`Metered`, which counts the stage's CPU time per second of
audio for the profiler.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import WakeError, WakeSettings, normalize
from edge.settings import SettingsError, from_mapping, load_yaml

SAMPLE_RATE = 16000
FRAME = 512  # samples per frame, as edge.audio delivers them
ENGINES = ("micro", "pocketsphinx", "vosk")
# Spellings people use for the shipped models' phrases.
ALIASES = {"ok nabu": "okay nabu"}


@dataclasses.dataclass(frozen=True)
class WakeHit:
    """The wake phrase was detected."""

    phrase: str
    """The phrase that fired, as configured (e.g. ``hey jarvis``)."""
    engine: str
    """``micro`` (microWakeWord), ``pocketsphinx`` (keyphrase spotting) or ``vosk`` (grammar)."""
    score: float
    """The engine's score that crossed the threshold (probability, or keyphrase score)."""
    end_sample: int
    """Samples fed since the last ``reset()`` at which the phrase ended (where a command may start)."""


class WakeEngine(abc.ABC):
    """A streaming wake-word detector for one or more phrases."""

    name: str = ""
    """Engine name as it appears in ``WakeHit.engine`` and in configuration."""

    @abc.abstractmethod
    def process(self, samples: np.ndarray) -> WakeHit | None:
        """Feed 16 kHz mono int16 samples (any length); return a hit when a phrase ends in them."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget all audio fed so far (after a hit, or when scoring is suspended during playback)."""

    @property
    @abc.abstractmethod
    def phrases(self) -> tuple[str, ...]:
        """The phrases this engine listens for."""

    def thresholds(self) -> dict[str, float]:
        """The threshold in force per phrase, in the engine's own unit (see :class:`WakeSettings`)."""
        return {}

    def process_all(self, samples: np.ndarray, frame: int = FRAME) -> list[WakeHit]:
        """Stream a whole buffer through :meth:`process` in live-loop sized frames; every hit, in order."""
        hits = [self.process(samples[start : start + frame]) for start in range(0, len(samples), frame)]
        return [h for h in hits if h is not None]

    def scan(self, samples: np.ndarray) -> dict[str, float]:
        """The highest score each phrase reaches anywhere in ``samples`` (``-inf`` if none), whatever the
        threshold: what calibration reads. Forgets the audio fed before and after (like ``reset``)."""
        raise NotImplementedError(f"the {self.name} engine cannot be calibrated")

    def close(self) -> None:
        """Release native resources (interpreters, decoders); the engine is unusable afterwards."""


def check_samples(samples: np.ndarray) -> np.ndarray:
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise ValueError(f"wake engines read 1-D int16 samples at 16 kHz, got {samples.dtype} of shape {samples.shape}")
    return samples


def canonical(phrase: str) -> str:
    key = normalize(phrase)
    return ALIASES.get(key, key)


# --------------------------------------------------------------------------- the --wake rule


def engine_for(settings: WakeSettings, micro_phrases: set[str]) -> dict[str, list[str]]:
    """Engine name -> the configured phrases it serves, by the ``--wake`` rule."""
    plan: dict[str, list[str]] = {}
    for i, phrase in enumerate(settings.phrases):
        if settings.engine == "auto":
            name = "micro" if canonical(phrase) in micro_phrases else "pocketsphinx"
        else:
            name = settings.engine
            if name == "micro" and canonical(phrase) not in micro_phrases:
                raise WakeError(
                    f"phrases[{i}]: no microWakeWord model was trained for {phrase!r}; shipped and configured "
                    f"models: {', '.join(sorted(micro_phrases))} (add a model's .json to wake.models, or use "
                    "engine: pocketsphinx)"
                )
        plan.setdefault(name, []).append(phrase)
    return plan


def create_engine(settings: WakeSettings | None = None) -> Metered:
    """Build the engine(s) ``settings`` asks for; bad phrases, models and thresholds raise :class:`WakeError`."""
    settings = settings or WakeSettings()
    from edge.wake import micro

    models = micro.available_models(settings.models)
    plan = engine_for(settings, set(models))
    engines: list[WakeEngine] = []
    try:
        for name, phrases in plan.items():
            if name == "micro":
                engines.append(
                    micro.MicroEngine(
                        [(p, models[canonical(p)]) for p in phrases],
                        thresholds={p: settings.threshold(p) for p in phrases},
                        sliding_window=settings.sliding_window,
                    )
                )
            elif name == "pocketsphinx":
                from edge.wake.keyphrase import KeyphraseEngine

                engines.append(
                    KeyphraseEngine(
                        phrases,
                        thresholds={p: settings.threshold(p) for p in phrases},
                        words=settings.words,
                        acoustic_model=settings.acoustic_model,
                    )
                )
            else:
                from edge.wake.vosk import VoskWakeEngine

                engines.append(
                    VoskWakeEngine(
                        phrases,
                        model_dir=settings.vosk_model,
                        thresholds={p: settings.threshold(p) for p in phrases},
                        fillers=settings.vosk_fillers,
                    )
                )
    except BaseException:
        for engine in engines:
            engine.close()
        raise
    return Metered(engines[0] if len(engines) == 1 else Combined(engines))


def check_threshold(
    engine: str,
    phrase: str,
    value: float,
    low: float,
    high: float,
    unit: str,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    too_low = value <= low if open_low else value < low
    too_high = value >= high if open_high else value > high
    if too_low or too_high:
        lo, hi = ("(" if open_low else "[") + f"{low:g}", f"{high:g}" + (")" if open_high else "]")
        raise WakeError(
            f"thresholds.{phrase}: {value:g} is out of range for the {engine} engine; allowed {lo}, {hi} ({unit})"
        )
    return float(value)


class Combined(WakeEngine):
    """Several engines over the same audio (e.g. a microWakeWord phrase and a keyphrase)."""

    def __init__(self, engines: list[WakeEngine]) -> None:
        self.engines = engines
        self.name = "+".join(e.name for e in engines)

    def process(self, samples: np.ndarray) -> WakeHit | None:
        hits = [h for h in (e.process(samples) for e in self.engines) if h is not None]
        return min(hits, key=lambda h: h.end_sample) if hits else None

    def reset(self) -> None:
        for engine in self.engines:
            engine.reset()

    @property
    def phrases(self) -> tuple[str, ...]:
        return tuple(p for e in self.engines for p in e.phrases)

    def thresholds(self) -> dict[str, float]:
        return {k: v for e in self.engines for k, v in e.thresholds().items()}

    def scan(self, samples: np.ndarray) -> dict[str, float]:
        return {k: v for e in self.engines for k, v in e.scan(samples).items()}

    def close(self) -> None:
        for engine in self.engines:
            engine.close()


class Metered(WakeEngine):
    """Counts the wake stage's CPU time (this thread's) per second of audio, and its hits per phrase.

    The stage runs on every frame all day, so its standing cost is what matters on a Pi Zero:
    ``cpu_per_audio_s`` is the number the profiler exposes (``/metrics``, ``edge-profile``).
    """

    def __init__(self, engine: WakeEngine) -> None:
        self.engine = engine
        self.name = engine.name
        self.cpu_s = 0.0
        self.audio_s = 0.0
        self.hits: dict[str, int] = {}

    def process(self, samples: np.ndarray) -> WakeHit | None:
        start = time.thread_time()
        hit = self.engine.process(samples)
        self.cpu_s += time.thread_time() - start
        self.audio_s += len(samples) / SAMPLE_RATE
        if hit is not None:
            self.hits[hit.phrase] = self.hits.get(hit.phrase, 0) + 1
        return hit

    def reset(self) -> None:
        self.engine.reset()

    @property
    def phrases(self) -> tuple[str, ...]:
        return self.engine.phrases

    def thresholds(self) -> dict[str, float]:
        return self.engine.thresholds()

    def scan(self, samples: np.ndarray) -> dict[str, float]:
        return self.engine.scan(samples)

    def close(self) -> None:
        self.engine.close()

    @property
    def cpu_per_audio_s(self) -> float | None:
        """CPU seconds spent per second of audio processed so far (``None`` before any audio)."""
        return self.cpu_s / self.audio_s if self.audio_s else None

    def summary(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "phrases": list(self.phrases),
            "audio_s": round(self.audio_s, 3),
            "cpu_s": round(self.cpu_s, 6),
            "cpu_per_audio_s": None if self.cpu_per_audio_s is None else round(self.cpu_per_audio_s, 6),
            "hits": dict(self.hits),
        }

    def metric_families(self, prefix: str = "edge_") -> list[Any]:
        """The counters as Prometheus metric families, for the service's ``/metrics``."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        p = prefix
        per_second = self.cpu_per_audio_s
        detections = CounterMetricFamily(f"{p}wake_detections", "Wake phrases detected.", labels=["phrase", "engine"])
        for phrase in self.phrases:
            detections.add_metric([phrase, self.name], self.hits.get(phrase, 0))
        return [
            CounterMetricFamily(f"{p}wake_cpu_seconds", "CPU time of the wake-word stage.", value=self.cpu_s),
            CounterMetricFamily(f"{p}wake_audio_seconds", "Audio fed to the wake-word stage.", value=self.audio_s),
            GaugeMetricFamily(
                f"{p}wake_cpu_per_audio_second",
                "Wake stage CPU seconds per second of audio since start.",
                value=math.nan if per_second is None else per_second,
            ),
            detections,
        ]

    def metrics_text(self, prefix: str = "edge_") -> str:
        """:meth:`metric_families` in the Prometheus text format."""
        from edge.prometheus import render

        return render(self.metric_families(prefix)).decode()


def measure_cpu(settings: WakeSettings | None = None, seconds: float = 20.0, seed: int = 0) -> dict[str, Any]:
    """The wake stage's standing cost: ``seconds`` of speech-shaped noise (pink noise at a syllable
    rhythm, with pauses) through the engine in live-loop frames, as :meth:`Metered.summary`."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    noise = np.fft.irfft(spectrum, n)
    t = np.arange(n) / SAMPLE_RATE
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.sin(2 * np.pi * 0.2 * t) > -0.3)
    audio = (noise / (np.abs(noise).max() or 1) * envelope * 12000).astype(np.int16)
    engine = create_engine(settings)
    try:
        engine.process_all(audio)
        return engine.summary()
    finally:
        engine.close()


# --------------------------------------------------------------------------- local configuration


def local_config_path() -> Path:
    """Where ``calibrate-wake`` writes by default: ``$XDG_CONFIG_HOME/edge/wake.yaml`` (``~/.config/edge/wake.yaml``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edge" / "wake.yaml"


def load_settings(path: str | Path) -> WakeSettings:
    """Read a ``wake.yaml``: a mapping with one key, ``wake``, holding :class:`WakeSettings` fields."""
    data = load_yaml(path)
    if not isinstance(data, dict) or set(data) != {"wake"}:
        raise SettingsError(str(path), "", "expected a mapping with one key, wake (the wake-word settings)")
    return from_mapping(WakeSettings, data["wake"], source=str(path), key="wake")


__all__ = [
    "ENGINES",
    "Combined",
    "Metered",
    "WakeEngine",
    "WakeError",
    "WakeHit",
    "WakeSettings",
    "canonical",
    "create_engine",
    "load_settings",
    "local_config_path",
    "measure_cpu",
    "normalize",
]
