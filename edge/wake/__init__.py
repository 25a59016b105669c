"""Wake-word engines: the activation stage in front of command recognition.

One small streaming interface, :class:`WakeEngine`, with an implementation per engine in this
package. The live loop feeds every frame of 16 kHz mono int16 audio to ``process`` and starts
listening for a command when it returns a :class:`WakeHit`.
"""

from __future__ import annotations

import abc
import dataclasses

import numpy as np


class WakeError(Exception):
    """A wake-word configuration or model is unusable; the message names the key or file and the offending value."""


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


__all__ = ["WakeEngine", "WakeHit", "WakeError"]
