"""Shared by the speech tests: real speech from Debian flite, WAV writing, an ALSA file capture device."""

from __future__ import annotations

import collections
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

from edge.audio import FRAME_SAMPLES, SAMPLE_RATE, read_wav

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


def write_wav(
    path: Path, samples: np.ndarray, rate: int, bits: int = 16, fmt: str = "pcm", extensible: bool = False
) -> Path:
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


class FifoMic:
    """A microphone for PortAudio: an ALSA file PCM reads ``tmp/fifo_name``, a FIFO that a thread
    fills with 16 kHz int16 audio at ``speed`` times real time: what :meth:`say` queued, else silence.

    ``conf`` is the ALSA configuration to put in ``ALSA_CONFIG_PATH`` (with ``playback``, the
    default device also plays into that file; see :func:`alsa_capture_config`). Until
    :meth:`create` (or with ``create=True``), the device is missing and opening it fails.

    Writes are whole frames (``FRAME_SAMPLES``): the ALSA file plugin pads a short read with stale samples.
    A reader that goes away (PortAudio probing the device, or the watchdog reopening it) is waited
    for, and what it had not read yet goes to the next one: the first write end stays open for the
    device's life, because closing the last one would discard what the pipe holds.
    """

    def __init__(
        self,
        tmp: Path,
        create: bool = True,
        speed: float = 1.0,
        fifo_name: str = "mic.fifo",
        playback: Path | None = None,
    ) -> None:
        self.path = tmp / fifo_name
        # Faster than real time keeps the suite short where the CPU keeps up; under emulation
        # (script/test-aarch64) it does not, and a backlog hides the stalls the tests make.
        self.speed = min(speed, 1.0) if os.environ.get("EDGE_EMULATED") else speed
        self.conf = alsa_capture_config(tmp, self.path, playback=playback)
        self._queue: collections.deque[list] = collections.deque()
        self._halt, self._mute = threading.Event(), threading.Event()
        self.thread: threading.Thread | None = None
        if create:
            self.create()

    def create(self) -> None:
        """The device appears (again)."""
        self._halt.set()  # the writer of a device that vanished lets go of it now
        os.mkfifo(self.path)
        self._halt, self._mute = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, args=(self._halt, self._mute), daemon=True)
        self.thread.start()

    def say(self, samples: np.ndarray) -> threading.Event:
        """Play int16 samples after what is queued; the event is set once the last one is written."""
        done = threading.Event()
        self._queue.append([samples, done])
        return done

    def quiet(self, seconds: float) -> threading.Event:
        """After what is queued, write nothing for ``seconds`` with the FIFO kept open: a stalled
        microphone, whose reads block in the driver."""
        done = threading.Event()
        self._queue.append([float(seconds), done])
        return done

    def vanish(self) -> None:
        """The device goes away mid-stream, like a USB microphone pulled out: its audio stops (a read
        in the driver blocks) and opening it fails until :meth:`create` brings it back."""
        self._mute.set()
        self.path.unlink()

    def close(self) -> None:
        self._halt.set()
        if self.thread is not None:
            self.thread.join(5)

    def _next_block(self) -> bytes | float:
        """The next frame of samples to write, or the seconds to stay quiet."""
        while self._queue:
            item = self._queue[0]
            what, done = item
            if isinstance(what, float):
                self._queue.popleft()
                done.set()  # set when the quiet starts: the test knows the stall is under way
                return what
            if not len(what):
                self._queue.popleft()
                done.set()
                continue
            block, item[0] = what[:FRAME_SAMPLES], what[FRAME_SAMPLES:]
            if not len(item[0]):
                self._queue.popleft()
                done.set()
            return np.pad(block, (0, FRAME_SAMPLES - len(block))).astype("<i2").tobytes()
        return bytes(2 * FRAME_SAMPLES)

    def _run(self, halt: threading.Event, mute: threading.Event) -> None:
        fd: int | None = None
        due = 0.0
        while not halt.is_set():
            if mute.is_set():
                halt.wait(0.05)
                continue
            block = self._next_block()
            if isinstance(block, float):
                halt.wait(block)
                due = time.monotonic()
                continue
            fd, reader_new = self._write(fd, block, halt)
            if fd is None:
                break
            due = time.monotonic() if reader_new else due
            due += FRAME_SAMPLES / SAMPLE_RATE / self.speed
            time.sleep(max(0.0, due - time.monotonic()))
        if fd is not None:
            os.close(fd)

    def _write(self, fd: int | None, block: bytes, halt: threading.Event) -> tuple[int | None, bool]:
        """Write ``block`` once a reader is there; (the write end, whether it had to wait for a reader)."""
        waited = False
        while not halt.is_set():
            if fd is None:
                fd = self._await_reader(halt)
                if fd is None:
                    return None, waited
                os.set_blocking(fd, True)
                waited = True
            try:
                os.write(fd, block)
                return fd, waited
            except BrokenPipeError:
                probe = self._await_reader(halt)
                if probe is None:
                    return fd, waited
                os.close(probe)
                waited = True
        return fd, waited

    def _await_reader(self, halt: threading.Event) -> int | None:
        """A write end, opened once a reader is there (``None`` if halted first)."""
        while not halt.is_set():
            try:
                return os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno not in (errno.ENXIO, errno.ENOENT):  # no reader yet; the device is away
                    raise
                time.sleep(0.005)
        return None


class FifoFeeder:
    """A scripted :class:`FifoMic` at ``path``: ``segments`` are ``(samples, pause_s)``, each played at
    ``speed`` times real time and followed by ``pause_s`` of a stalled device; silence after them
    until :meth:`finish`. ``done`` is set once every segment has been written."""

    def __init__(self, path: Path, segments: list[tuple[np.ndarray, float]], speed: float = 3.0) -> None:
        self.mic = FifoMic(path.parent, create=False, speed=speed, fifo_name=path.name)
        self.done = threading.Event()
        for samples, pause in segments:
            self.done = self.mic.say(samples)
            if pause:
                self.mic.quiet(pause)
        if not segments:
            self.done.set()

    def start(self) -> None:
        self.mic.create()

    def finish(self) -> None:
        self.mic.close()
