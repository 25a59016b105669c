"""Sound output: the one place edge plays audio (feedback sounds after a wake word or a command).

Playback has its own module because the live loop must never hear itself: everything edge
plays goes through a :class:`Player`, which tells its listeners (the live loop) how long the
output will be busy *before* the first sample leaves, so wake and speech scoring can be
suspended for that long plus a hold-off (``edge.liveloop``).

Dependency: ``sounddevice`` (PortAudio), already used for capture, imported only when a sound
is actually played. A device without an audio output is normal for a headless satellite: the
player says so in one log line and every later sound is skipped quietly.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.audio import PORTAUDIO_LOCK, SAMPLE_RATE, AudioError, _sounddevice, find_input_device, read_wav

log = logging.getLogger("edge.playback")

MAX_SOUND_SECONDS = 10.0
"""Feedback sounds are short; a longer file is refused when it is loaded (it would deafen the loop)."""


@dataclasses.dataclass(frozen=True)
class Sound:
    """A decoded sound, 16 kHz mono int16."""

    samples: np.ndarray
    name: str
    """Where it came from (a file path), for logs."""

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def load_sound(path: str | Path, key: str = "feedback") -> Sound:
    """Decode a WAV file for playback; errors name ``key`` and the file and say what is expected."""
    try:
        samples, _ = read_wav(path, max_seconds=MAX_SOUND_SECONDS)
    except AudioError as exc:
        raise AudioError(f"{key}: {exc} (expected a short WAV file, at most {MAX_SOUND_SECONDS:g} s)") from None
    return Sound(samples, str(path))


class Player:
    """Plays sounds one after another on a background thread; :meth:`play` never blocks."""

    def __init__(self, device: str | int | None = None) -> None:
        self.device = device
        self.played = 0
        """Sounds that reached an output device."""
        self.skipped = 0
        """Sounds dropped because there is no output device."""
        self._listeners: list[Callable[[float], None]] = []
        self._queue: queue.Queue[Sound] = queue.Queue()
        self._quiet_at = 0.0  # time.monotonic() when everything queued has been played
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._output: tuple[int, int] | None = None  # (device index, rate), found on first use
        self._unavailable: str | None = None

    def add_listener(self, listener: Callable[[float], None]) -> None:
        """``listener(seconds)`` is called as a sound is queued, with how long the output will now be busy."""
        self._listeners.append(listener)

    def play(self, sound: Sound) -> float:
        """Queue ``sound``; returns the seconds until the output is quiet again (0.0 when nothing will play)."""
        if not self._available():
            self.skipped += 1
            return 0.0
        with self._lock:
            now = time.monotonic()
            self._quiet_at = max(self._quiet_at, now) + sound.seconds
            busy = self._quiet_at - now
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._worker, name="edge-playback", daemon=True)
                self._thread.start()
            self._queue.put(sound)
        for listener in self._listeners:
            listener(busy)
        return busy

    @property
    def playing(self) -> bool:
        return time.monotonic() < self._quiet_at

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything queued has been played; False if ``timeout`` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.playing or not self._queue.empty():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _available(self) -> bool:
        if self._output is not None:
            return True
        if self._unavailable is not None:
            return False
        try:
            self._output = self._find_output()
        except AudioError as exc:
            self._unavailable = str(exc)
            log.warning("playback: %s; feedback sounds are skipped", exc)
            return False
        return True

    def _find_output(self) -> tuple[int, int]:
        sd = _sounddevice()
        device = find_input_device(self.device, output=True)
        try:
            sd.check_output_settings(device=device.index, samplerate=SAMPLE_RATE, channels=1, dtype="int16")
            return device.index, SAMPLE_RATE
        except (sd.PortAudioError, ValueError):
            return device.index, int(device.default_rate)

    def _worker(self) -> None:
        sd = _sounddevice()
        while True:
            try:
                sound = self._queue.get(timeout=1.0)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            assert self._output is not None
            index, rate = self._output
            samples = sound.samples
            if rate != SAMPLE_RATE:
                import soxr

                samples = (soxr.resample(samples.astype(np.float32) / 32768.0, SAMPLE_RATE, rate) * 32767).astype(
                    np.int16
                )
            try:
                with PORTAUDIO_LOCK:  # the microphone's watchdog must not re-initialise PortAudio mid-sound
                    sd.play(samples, rate, device=index, blocking=True)
                self.played += 1
            except (sd.PortAudioError, ValueError) as exc:
                log.warning("playback: %s could not be played: %s", sound.name, exc)


__all__ = ["MAX_SOUND_SECONDS", "Player", "Sound", "load_sound"]
