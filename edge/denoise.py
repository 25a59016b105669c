"""Noise suppression and automatic gain for captured audio, once, before the wake word and STT.

PyPI ``webrtc-noise-gain`` (Home Assistant's binding of the WebRTC audio processing module, what
``wyoming-satellite --noise-suppression/--auto-gain`` runs) was chosen over writing a spectral
subtractor: it is the suppressor phones and browsers use, ships wheels for x86_64 and aarch64, and
costs little CPU (docs/liveloop.md has the figures). It takes 10 ms blocks of
16 kHz int16, so :class:`Denoiser` re-blocks the live loop's 32 ms frames and hands back whole
frames, up to 10 ms later than they came in.

Measured on the wake benchmark (``benchmarks/results/wake.md``): it lifts PocketSphinx keyphrase
scores in stationary (pink) noise a lot and lowers them a little in babble, which no stationary
suppressor can remove; so it is off by default and a setting for rooms with a fan, hum or hiss.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from edge.audio import Frame
from edge.config import DenoiseSettings

_BLOCK = 160  # 10 ms at 16 kHz, the only size the WebRTC module takes


class DenoiseError(ValueError):
    """The front end was asked for but cannot run; the message says what to install.

    A ``ValueError`` so that :func:`edge.settings.from_mapping` reports it with the file it came from.
    """


def check_available() -> Any:
    """The WebRTC processor class, or :class:`DenoiseError` saying how to get it."""
    try:
        from webrtc_noise_gain import AudioProcessor
    except ImportError:
        raise DenoiseError(
            "noise_suppression / auto_gain need the Python package webrtc-noise-gain "
            "(pip install 'edge-intent[denoise]'); or set both to 0"
        ) from None
    return AudioProcessor


class Denoiser:
    """Streaming WebRTC noise suppression / gain over int16 samples of any length."""

    def __init__(self, settings: DenoiseSettings) -> None:
        self.settings = settings
        self._processor = check_available()(settings.auto_gain, settings.noise_suppression)
        self._pending = np.zeros(0, dtype=np.int16)  # input not yet a whole 10 ms block
        self._ready = np.zeros(0, dtype=np.int16)  # processed, not yet handed out

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Feed samples; returns all processed samples available (whole 10 ms blocks)."""
        data = np.concatenate([self._pending, samples.astype(np.int16, copy=False)])
        whole = len(data) // _BLOCK * _BLOCK
        self._pending = data[whole:]
        out = b"".join(
            self._processor.Process10ms(data[i : i + _BLOCK].tobytes()).audio for i in range(0, whole, _BLOCK)
        )
        return np.frombuffer(out, dtype=np.int16)

    def frames(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        """The same stream, processed, in frames of the incoming frames' size; since WebRTC takes 10 ms blocks a
        frame may be complete only one incoming frame later, and carries that frame's capture time."""
        for frame in frames:
            self._ready = np.concatenate([self._ready, self.process(frame.samples)])
            size = len(frame.samples)
            while len(self._ready) >= size:
                yield Frame(self._ready[:size].copy(), frame.captured_at)
                self._ready = self._ready[size:]


def denoised(frames: Iterator[Frame], settings: DenoiseSettings) -> Iterator[Frame]:
    """``frames`` through the front end when ``settings`` turn it on, else ``frames`` untouched."""
    return Denoiser(settings).frames(frames) if settings.enabled else frames


class DenoisedSource:
    """An audio source through the front end (``edge-intent --mic --noise-suppression N``); ``stop``, the
    description and everything else (``stats``, ``realtime``) are the source's own."""

    def __init__(self, source: Any, settings: DenoiseSettings) -> None:
        self.source = source
        self.settings = settings

    def __iter__(self) -> Iterator[Frame]:
        return denoised(iter(self.source), self.settings)

    def stop(self) -> None:
        self.source.stop()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)
