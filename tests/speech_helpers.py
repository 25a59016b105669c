"""Shared by the speech tests: real speech from Debian flite, WAV writing, an ALSA file capture device."""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.audio import SAMPLE_RATE, read_wav

FIXTURES = Path(__file__).parent / "fixtures" / "speech"


def need_flite() -> None:
    if shutil.which("flite") is None:
        pytest.skip("Debian package flite is not installed (script/setup installs it)")


def speak(text: str, voice: str, tmp: Path, lead_s: float = 0.4, tail_s: float = 1.0) -> np.ndarray:
    """``text`` spoken by a flite voice as 16 kHz int16, with silence around it."""
    need_flite()
    path = tmp / f"{voice}-{abs(hash(text))}.wav"
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True)
    samples, _ = read_wav(path)
    return np.concatenate([silence(lead_s), samples, silence(tail_s)])


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.int16)


def write_wav(path: Path, samples: np.ndarray, rate: int, bits: int = 16, fmt: str = "pcm",
              extensible: bool = False) -> Path:
    """Write float samples in [-1, 1] (shape (n,) or (n, channels)) in the given WAV format."""
    data = samples.reshape(len(samples), -1) if samples.ndim > 1 else samples.reshape(-1, 1)
    channels = data.shape[1]
    if fmt == "float":
        raw = data.astype("<f4" if bits == 32 else "<f8").tobytes()
    elif bits == 8:
        raw = np.clip(data * 128 + 128, 0, 255).astype(np.uint8).tobytes()
    elif bits == 24:
        ints = np.clip(data * (1 << 23), -(1 << 23), (1 << 23) - 1).astype("<i4")
        raw = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        dtype = "<i2" if bits == 16 else "<i4"
        raw = np.clip(data * (1 << (bits - 1)), -(1 << (bits - 1)), (1 << (bits - 1)) - 1).astype(dtype).tobytes()
    tag = 3 if fmt == "float" else 1
    block = channels * bits // 8
    if extensible:
        guid = struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt_chunk = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0) + guid
    else:
        fmt_chunk = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk
    body += b"LIST" + struct.pack("<I", 4) + b"INFO"  # an unrelated chunk readers must skip
    body += b"data" + struct.pack("<I", len(raw)) + raw + (b"\x00" if len(raw) % 2 else b"")
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def alsa_capture_config(tmp: Path, raw: Path | None, name: str = "edgefile", playback: Path | None = None) -> Path:
    """An ALSA configuration whose only capture device plays ``raw`` (s16le, at the rate it is opened with).

    Point ``ALSA_CONFIG_PATH`` at it before PortAudio starts (in a child process). With
    ``raw=None`` the configuration has no device at all. ``raw`` may be a FIFO (see
    :class:`FifoFeeder`). With ``playback``, the default device also plays: every sound is
    appended to that file (raw samples), through a second PCM, as the file plugin would write
    captured audio there too.
    """
    conf = tmp / "asound.conf"
    if raw is None:
        # PortAudio aborts without a default PCM; one that cannot be opened is left out of its list.
        conf.write_text('pcm.!default { type file slave.pcm "nosuch" file "/dev/null" }\n')
        return conf
    text = f"""
pcm.{name} {{
    type file
    slave.pcm {{ type null }}
    file "/dev/null"
    infile "{raw}"
    format "raw"
    hint {{ show on description "edge test capture" }}
}}
"""
    if playback is None:
        text += f"pcm.!default pcm.{name}\n"
    else:
        text += f"""
pcm.edgeout {{
    type file
    slave.pcm {{ type null }}
    file "|cat >> '{playback}'"
    format "raw"
}}
pcm.!default {{ type asym capture.pcm "{name}" playback.pcm "edgeout" }}
"""
    conf.write_text(text)
    return conf


class FifoFeeder(threading.Thread):
    """Feeds int16 audio into a FIFO, the ``infile`` of an ALSA file PCM, like a microphone would.

    ``segments`` are ``(samples, pause_s)``: each is written at ``speed`` times real time, then the
    writer goes quiet for ``pause_s`` while keeping the FIFO open, so the capture device delivers
    nothing (a stalled microphone). Afterwards silence follows until :meth:`finish`. Writes are
    whole 512-sample blocks: the ALSA file plugin pads a short read with stale samples. A reader
    that goes away (PortAudio probing the device, or the watchdog reopening it) is waited for,
    and what it had not read yet goes to the next one.
    """

    def __init__(self, path: Path, segments: list[tuple[np.ndarray, float]], speed: float = 3.0) -> None:
        super().__init__(daemon=True)
        self.path, self.segments, self.speed = path, segments, speed
        self.done = threading.Event()
        """Set once every segment has been written (silence follows)."""
        self._halt = threading.Event()
        self._fd: int | None = None
        os.mkfifo(path)

    def _await_reader(self) -> int | None:
        """A second write end, opened once a reader is there (``None`` if finished first)."""
        while not self._halt.is_set():
            try:
                return os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
                time.sleep(0.005)
        return None

    def _write(self, block: bytes) -> bool:
        # The first write end stays open throughout: closing the last one would discard what
        # the pipe holds for the next reader.
        while not self._halt.is_set():
            if self._fd is None:
                self._fd = self._await_reader()
                if self._fd is None:
                    return False
                os.set_blocking(self._fd, True)
            try:
                os.write(self._fd, block)
                return True
            except BrokenPipeError:
                probe = self._await_reader()
                if probe is None:
                    return False
                os.close(probe)
        return False

    def _play(self, samples: np.ndarray) -> bool:
        start = time.monotonic()
        for n, offset in enumerate(range(0, len(samples), 512)):
            block = samples[offset:offset + 512]
            block = np.concatenate([block, np.zeros(512 - len(block), dtype=np.int16)]) if len(block) < 512 else block
            if not self._write(block.astype("<i2").tobytes()):
                return False
            wait = start + (n + 1) * 512 / SAMPLE_RATE / self.speed - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        return True

    def run(self) -> None:
        for samples, pause in self.segments:
            if not self._play(samples) or self._halt.wait(pause):
                break
        self.done.set()
        while not self._halt.is_set() and self._play(silence(0.5)):
            pass
        if self._fd is not None:
            os.close(self._fd)

    def finish(self) -> None:
        self._halt.set()
        self.join(5)
