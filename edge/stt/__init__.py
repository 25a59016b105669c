"""Offline speech-to-text: one streaming interface, three engines, and a registry that picks one.

* PocketSphinx (``edge.stt.pocketsphinx``): its PyPI wheel ships a US English acoustic model,
  dictionary and language model, so speech works with no download; the fallback everywhere.
* Vosk (``edge.stt.vosk``): Kaldi models, but the English model is a 40 MB download
  (``edge-models fetch vosk-small-en-us``); used when one is installed and asked for.
* Whisper (``edge.stt.whisper``): faster-whisper + CTranslate2 int8, weights from PyPI wheels
  (``edge.stt.whisper_models``); far fewer word errors on real voices, and too slow for the
  smallest boards, so the device profile decides.

An engine is fed 16 kHz mono int16 samples as they arrive (``accept``), can show what it has
heard so far (``partial``) and finishes the utterance with ``final``, which returns a
:class:`Transcript` (with the engine's n-best ``alternatives`` where it has them) and leaves the
engine ready for the next utterance. Every engine prefers the
words and phrases of the intent model when its package carries adaptation artefacts
(``edge.stt.adapt``, built by ``tools/stt_adapt.py``).
"""

from __future__ import annotations

import abc
import dataclasses
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from edge.config import SttEngineName as EngineName
from edge.config import SttSettings

if TYPE_CHECKING:
    from edge.package import ModelPackage
    from edge.profiles import Profile

ENGINES = ("pocketsphinx", "vosk", "whisper")


class SttError(Exception):
    """An engine or its model cannot be used; the message says which and what to do."""


@dataclasses.dataclass(frozen=True)
class Word:
    text: str
    start: float | None
    """Seconds from the start of the utterance (``None``: the engine does not time words)."""
    end: float | None
    confidence: float | None
    """Posterior probability of the word (0..1) where the engine computes one."""


@dataclasses.dataclass(frozen=True)
class Hypothesis:
    """One of an engine's n-best transcripts."""

    text: str
    score: float
    """The engine's score: higher is better; comparable only within one utterance and engine."""


class Decoded(NamedTuple):
    """What an engine's ``_final`` returns for one utterance."""

    text: str
    words: list[Word]
    alternatives: tuple[Hypothesis, ...] = ()


@dataclasses.dataclass(frozen=True)
class Transcript:
    text: str
    words: tuple[Word, ...]
    engine: str
    """Engine and the language model it used, e.g. ``pocketsphinx+adapted``."""
    audio_ms: float = 0.0
    """Duration of the audio the engine heard for this utterance."""
    alternatives: tuple[Hypothesis, ...] = ()
    """The engine's n-best transcripts, best first (the first is ``text``); empty if it gives none."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "engine": self.engine,
            "text": self.text,
            "audio_ms": round(self.audio_ms, 1),
            "words": [
                {
                    "word": w.text,
                    "start": _round(w.start, 3),
                    "end": _round(w.end, 3),
                    "confidence": _round(w.confidence, 4),
                }
                for w in self.words
            ],
        }
        if len(self.alternatives) > 1:
            data["alternatives"] = [{"text": h.text, "score": round(h.score, 4)} for h in self.alternatives]
        return data


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class SttEngine(abc.ABC):
    """A streaming recogniser for one utterance at a time."""

    name: str
    """Registry name plus what shapes its output, e.g. ``vosk+grammar``."""

    def __init__(self) -> None:
        self._samples = 0

    def accept(self, samples: np.ndarray) -> None:
        """Feed the next 16 kHz mono int16 samples of the current utterance."""
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise ValueError(
                f"STT engines read 1-D int16 samples at 16 kHz, got {samples.dtype} of shape {samples.shape}"
            )
        self._samples += len(samples)
        self._accept(samples.tobytes())

    @abc.abstractmethod
    def _accept(self, pcm: bytes) -> None: ...

    @abc.abstractmethod
    def partial(self) -> str:
        """The best guess for what has been said so far in this utterance."""

    def final(self) -> Transcript:
        """End the utterance and return its transcript; the engine is then ready for the next one."""
        decoded = self._final()
        audio_ms = self._samples / 16.0
        self._samples = 0
        return Transcript(
            text=decoded.text,
            words=tuple(decoded.words),
            engine=self.name,
            audio_ms=audio_ms,
            alternatives=decoded.alternatives,
        )

    @abc.abstractmethod
    def _final(self) -> Decoded: ...

    def describe(self) -> str:
        return self.name


def word_errors(reference: str, hypothesis: str) -> int:
    """Substitutions + deletions + insertions between two word sequences (for WER)."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def available_engines() -> dict[str, str | None]:
    """Engine name -> ``None`` when usable, else why not."""
    out: dict[str, str | None] = {}
    out["pocketsphinx"] = None if importlib.util.find_spec("pocketsphinx") else "pip install pocketsphinx"
    if importlib.util.find_spec("vosk") is None:
        out["vosk"] = "pip install vosk"
    else:
        from edge.stt.vosk_fetch import find_model

        out["vosk"] = None if find_model() else "no Vosk model installed (edge-models fetch vosk-small-en-us)"
    missing = [m for m in ("ctranslate2", "faster_whisper") if importlib.util.find_spec(m) is None]
    if missing:
        out["whisper"] = f"pip install 'edge-intent[whisper]' ({', '.join(missing)} missing)"
    else:
        from edge.stt.whisper_models import installed

        out["whisper"] = installed()["tiny.en"]
    return out


def resolve_engine(engine: EngineName, model: str | None = None, preferred: str | None = None) -> str:
    """The engine ``auto`` stands for: the profile's preference when usable, else PocketSphinx."""
    if engine != "auto":
        return engine
    if model is not None:
        return preferred or "pocketsphinx"
    reasons = available_engines()
    if preferred in reasons and reasons[preferred] is None:
        return preferred
    return "pocketsphinx"


def create_engine(
    settings: SttSettings | None = None, package: ModelPackage | None = None, profile: Profile | None = None
) -> SttEngine:
    """Build the engine ``settings`` asks for (``auto``: the device profile's), adapted to ``package``."""
    from edge.stt import adapt

    settings = settings or SttSettings()
    name = resolve_engine(settings.engine, settings.model, profile.stt if profile else None)
    artefacts = adapt.artefacts(package, name) if (package is not None and settings.adapt) else None
    if name == "pocketsphinx":
        from edge.stt.pocketsphinx import PocketSphinxEngine

        return PocketSphinxEngine(hmm=settings.model, adaptation=artefacts, search=settings.pocketsphinx_search)
    if name == "vosk":
        from edge.stt.vosk import VoskEngine
        from edge.stt.vosk_fetch import find_model

        model_dir = Path(settings.model).expanduser() if settings.model else find_model()
        if model_dir is None:
            raise SttError(
                "no Vosk model is installed: run `edge-models fetch vosk-small-en-us` on a device with "
                "internet, or pass --stt-model DIR (or use --stt pocketsphinx, which needs no download)"
            )
        return VoskEngine(model_dir, adaptation=artefacts)
    if name == "whisper":
        from edge.stt.whisper import WhisperEngine

        model = settings.model or (profile.stt_model if profile else None)
        threads = settings.threads or (profile.stt_threads if profile else 1)
        prompt = adapt.whisper_prompt(artefacts)
        return WhisperEngine(model, threads=threads, beam_size=settings.beam_size, prompt=prompt)
    raise SttError(f"unknown STT engine {name!r}; available: auto, {', '.join(ENGINES)}")


__all__ = [
    "ENGINES",
    "Decoded",
    "Hypothesis",
    "SttEngine",
    "SttError",
    "SttSettings",
    "Transcript",
    "Word",
    "available_engines",
    "create_engine",
    "resolve_engine",
    "word_errors",
]
