"""Audio sources: microphones and WAV files, both as 16 kHz mono int16 frames.

Every source yields :class:`Frame` objects of ``FRAME_SAMPLES`` samples (32 ms, the window the
silero VAD model reads), stamped with the monotonic time edge received them, so the pipeline can
tell how long audio waited before it was processed.

Dependencies, and why:

* ``sounddevice`` for microphones: a small cffi binding to PortAudio (Debian ``libportaudio2``)
  that runs on ALSA, PulseAudio and PipeWire alike and delivers blocks from PortAudio's own
  thread, so a slow consumer shows up as counted overflows instead of silently stretched time.
  It is imported only when a microphone is opened: WAV input works without PortAudio.
* ``soxr`` for resampling: the libsoxr resampler (wheels for x86_64 and aarch64), with a
  streaming mode for microphones that cannot capture at 16 kHz.
* WAV files are parsed here rather than with :mod:`wave`, which (before Python 3.12) rejects
  32-bit float and ``WAVE_FORMAT_EXTENSIBLE`` files, both common from recorders and DAWs, and
  rather than with ``soundfile``: libsndfile's C parsers (MPEG, ADPCM, ... inside a WAV) would
  meet every HTTP upload, with vaguer errors, and its aarch64 wheel needs glibc 2.28 (JetPack 4
  has 2.27); docs/robustness.md has the comparison.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import struct
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger("edge.audio")

SAMPLE_RATE = 16000
"""The rate every source delivers and every STT engine reads."""
FRAME_SAMPLES = 512
"""Samples per frame: 32 ms at 16 kHz, silero VAD's window."""
DEFAULT_MAX_WAV_SECONDS = 600.0


class AudioError(Exception):
    """Audio input is unusable: a bad file, a missing device, PortAudio absent.

    The message names the file or device and says what was expected.
    """


class AudioTooLong(AudioError):
    """A WAV file holds more audio than the caller's limit (the message names the limit's setting)."""


@dataclasses.dataclass(frozen=True)
class Frame:
    """One block of 16 kHz mono audio."""

    samples: np.ndarray
    """``FRAME_SAMPLES`` int16 samples."""
    captured_at: float
    """``time.monotonic()`` when edge received the samples (PortAudio callback, or WAV decoding)."""


class AudioSource(Protocol):
    """Anything that yields frames: iterate it once; ``stop()`` ends the iteration from another thread."""

    description: str

    def __iter__(self) -> Iterator[Frame]: ...

    def stop(self) -> None: ...


# --------------------------------------------------------------------------- WAV files

_PCM = 1
_FLOAT = 3
_EXTENSIBLE = 0xFFFE


@dataclasses.dataclass(frozen=True)
class WavInfo:
    """What the header of a WAV file says."""

    rate: int
    channels: int
    bits: int
    float: bool
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def read_wav(
    path: str | Path, max_seconds: float = DEFAULT_MAX_WAV_SECONDS, limit_name: str = "--max-seconds"
) -> tuple[np.ndarray, WavInfo]:
    """Decode a WAV file to 16 kHz mono int16, whatever its rate, channel count and sample format.

    Accepts PCM 8/16/24/32-bit and IEEE float 32/64-bit, plain or ``WAVE_FORMAT_EXTENSIBLE``.
    Raises :class:`AudioError` for anything else and for empty files, and :class:`AudioTooLong`
    for files longer than ``max_seconds`` (checked from the header, before reading the samples;
    the message says to raise ``limit_name``, the option or setting that gave the limit).
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            info, data = _parse_wav(fh, path, max_seconds, limit_name)
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AudioError(f"{path}: is a directory, expected a WAV file") from None
    except PermissionError:
        raise AudioError(f"{path}: permission denied") from None
    return _decoded(data, info), info


def read_wav_bytes(
    data: bytes, name: str, max_seconds: float = DEFAULT_MAX_WAV_SECONDS, limit_name: str = "--max-seconds"
) -> tuple[np.ndarray, WavInfo]:
    """:func:`read_wav` for a WAV file in memory (an HTTP request body); messages say ``name`` for the file."""
    import io

    info, samples = _parse_wav(io.BytesIO(data), name, max_seconds, limit_name)
    return _decoded(samples, info), info


def _decoded(data: bytes, info: WavInfo) -> np.ndarray:
    samples = _to_float(data, info)
    if info.channels > 1:
        samples = samples.reshape(-1, info.channels).mean(axis=1)
    return to_int16(resample(samples, info.rate))


def _parse_wav(fh: Any, path: Path | str, max_seconds: float, limit_name: str) -> tuple[WavInfo, bytes]:
    header = fh.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise AudioError(f"{path}: not a WAV file (expected a RIFF/WAVE header)")
    fmt: tuple[int, int, int, int, int] | None = None
    while True:
        chunk = fh.read(8)
        if len(chunk) < 8:
            break
        chunk_id, size = struct.unpack("<4sI", chunk)
        if chunk_id == b"fmt ":
            body = fh.read(min(size, 1 << 16) + (size & 1))
            if size < 16:
                raise AudioError(f"{path}: corrupt WAV header (fmt chunk of {size} bytes, expected at least 16)")
            if len(body) < min(size, 40):
                raise AudioError(
                    f"{path}: corrupt WAV header (the fmt chunk says {size} bytes, the file ends after {len(body)})"
                )
            if size > 1 << 16:
                raise AudioError(f"{path}: corrupt WAV header (fmt chunk of {size} bytes, expected 16 to 40)")
            tag, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == _EXTENSIBLE:
                if size < 40:
                    raise AudioError(f"{path}: corrupt WAV header (extensible fmt chunk of {size} bytes, expected 40)")
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, block_align, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioError(f"{path}: corrupt WAV header (data chunk before the fmt chunk)")
            # Streaming writers leave the size at 0xFFFFFFFF: judge the length by what the file holds.
            info = _check_format(path, fmt, min(size, _remaining(fh)))
            if info.seconds > max_seconds:
                raise AudioTooLong(
                    f"{path}: {info.seconds:.1f} s of audio is longer than the limit of "
                    f"{max_seconds:g} s ({limit_name})"
                )
            # Recorders that were interrupted, or wrote to a pipe, leave a data size larger than
            # the file: keep every whole sample frame that is there.
            data = fh.read(size)
            whole = len(data) - len(data) % (info.channels * info.bits // 8)
            if whole == 0:
                raise AudioError(f"{path}: the WAV file contains no audio samples")
            return dataclasses.replace(info, frames=whole // (info.channels * info.bits // 8)), data[:whole]
        else:
            fh.seek(size + (size & 1), 1)
    if fmt is None:
        raise AudioError(f"{path}: corrupt WAV file (no fmt chunk)")
    raise AudioError(f"{path}: the WAV file contains no audio samples (no data chunk)")


def _remaining(fh: Any) -> int:
    try:
        here = fh.tell()
        end = fh.seek(0, os.SEEK_END)
        fh.seek(here)
        return end - here
    except (OSError, ValueError):  # not seekable: the header's word
        return 1 << 62


def _check_format(path: Path | str, fmt: tuple[int, int, int, int, int], size: int) -> WavInfo:
    tag, channels, rate, block_align, bits = fmt
    if tag == _PCM and bits not in (8, 16, 24, 32) or tag == _FLOAT and bits not in (32, 64):
        raise AudioError(f"{path}: {bits}-bit samples are not supported (PCM 8/16/24/32-bit or float 32/64-bit)")
    if tag not in (_PCM, _FLOAT):
        raise AudioError(f"{path}: WAV encoding {tag:#06x} is not supported (expected PCM or IEEE float, uncompressed)")
    if not 1 <= channels <= 32:
        raise AudioError(f"{path}: corrupt WAV header ({channels} channels)")
    if not 1000 <= rate <= 768000:
        raise AudioError(f"{path}: corrupt WAV header (sample rate {rate} Hz)")
    if block_align != channels * bits // 8:
        raise AudioError(f"{path}: corrupt WAV header (block align {block_align}, expected {channels * bits // 8})")
    return WavInfo(rate=rate, channels=channels, bits=bits, float=tag == _FLOAT, frames=size // block_align)


def _to_float(data: bytes, info: WavInfo) -> np.ndarray:
    if (
        info.float
    ):  # any bytes are some float: NaN and infinities (and float64 beyond float32) become silence or full scale
        with np.errstate(over="ignore", invalid="ignore"):
            samples = np.frombuffer(data, dtype="<f4" if info.bits == 32 else "<f8").astype(np.float32)
        return np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    if info.bits == 8:  # 8-bit WAV is unsigned
        return (np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    if info.bits == 24:
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3)
        ints = raw[:, 0].astype(np.int32) | raw[:, 1].astype(np.int32) << 8 | raw[:, 2].astype(np.int32) << 16
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        return ints.astype(np.float32) / float(1 << 23)
    dtype = "<i2" if info.bits == 16 else "<i4"
    return np.frombuffer(data, dtype=dtype).astype(np.float32) / float(1 << (info.bits - 1))


def resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """Float mono samples at ``rate`` to ``SAMPLE_RATE``."""
    if rate == SAMPLE_RATE:
        return samples
    import soxr

    return soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ")


def to_int16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 32767 / 32768) * 32768.0).astype(np.int16)


def frames_of(samples: np.ndarray, frame_samples: int = FRAME_SAMPLES) -> Iterator[np.ndarray]:
    """Cut int16 samples into whole frames, zero-padding the last one."""
    for start in range(0, len(samples), frame_samples):
        frame = samples[start : start + frame_samples]
        if len(frame) < frame_samples:
            frame = np.concatenate([frame, np.zeros(frame_samples - len(frame), dtype=np.int16)])
        yield frame


class PcmConverter:
    """Raw interleaved PCM of any rate, sample width and channel count, arriving in chunks, as 16 kHz mono int16.

    For audio streamed over a network protocol (Wyoming's ``audio-chunk``): 8-bit samples are
    unsigned (as in WAV), wider ones signed little-endian; channels are averaged; the rate is
    converted by a streaming soxr resampler, so chunk boundaries leave no clicks. A chunk may end
    inside a sample frame: the rest is kept for the next one.
    """

    def __init__(self, rate: int, width: int, channels: int) -> None:
        for name, value in (("rate", rate), ("width", width), ("channels", channels)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise AudioError(f"audio {name} {value!r} is not a whole number")
        if width not in (1, 2, 3, 4):
            raise AudioError(f"audio width {width} bytes is not supported; allowed 1, 2, 3 or 4 (8 to 32-bit PCM)")
        if not 1 <= channels <= 32:
            raise AudioError(f"audio channels {channels} is out of range; allowed 1..32")
        if not 1000 <= rate <= 768000:
            raise AudioError(f"audio rate {rate} Hz is out of range; allowed 1000..768000")
        self.rate, self.width, self.channels = rate, width, channels
        self._info = WavInfo(rate=rate, channels=channels, bits=width * 8, float=False, frames=0)
        self._rest = b""
        self._resampler = None
        if rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def same_format(self, rate: int, width: int, channels: int) -> bool:
        return (rate, width, channels) == (self.rate, self.width, self.channels)

    def convert(self, pcm: bytes) -> np.ndarray:
        """The next chunk's samples at 16 kHz mono int16 (the resampler may hold a few back until :meth:`flush`)."""
        block = self.width * self.channels
        data = self._rest + pcm
        whole = len(data) - len(data) % block
        self._rest = data[whole:]
        if self._resampler is None and self.channels == 1 and self.width == 2:
            return np.frombuffer(data[:whole], dtype="<i2").astype(np.int16)
        samples = _to_float(data[:whole], self._info)
        if self.channels > 1:
            samples = samples.reshape(-1, self.channels).mean(axis=1)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples.astype(np.float32))
        return to_int16(samples)

    def flush(self) -> np.ndarray:
        """What the resampler still holds, at the end of the stream."""
        self._rest = b""
        if self._resampler is None:
            return np.zeros(0, dtype=np.int16)
        return to_int16(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))


class StreamSource:
    """16 kHz mono int16 audio from an iterable of sample arrays of any length, as whole frames.

    The arrays are pulled only as frames are consumed, so hours of synthesised audio can stream
    through without being held in memory (the soak benchmark does this). By default frames come
    as fast as the consumer takes them, which is what tests and soak runs want: the live loop
    keeps its time in samples, so its timeouts mean the same at any speed. ``speed`` paces the
    frames instead (1.0 = real time, like a microphone; 4.0 = four times faster).
    """

    def __init__(
        self,
        chunks: Iterable[np.ndarray],
        description: str = "stream",
        frame_samples: int = FRAME_SAMPLES,
        speed: float | None = None,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be a positive number (1.0 = real time), got {speed!r}")
        self.chunks = chunks
        self.frame_samples = frame_samples
        self.description = description
        self.speed = speed
        self._stop = threading.Event()

    @property
    def realtime(self) -> bool:
        """True when frames are paced like a microphone's (``speed`` set)."""
        return self.speed is not None

    def __iter__(self) -> Iterator[Frame]:
        pending = np.zeros(0, dtype=np.int16)
        start = time.monotonic()
        sent = 0
        for chunk in self.chunks:
            if chunk.dtype != np.int16 or chunk.ndim != 1:
                raise ValueError(
                    f"{self.description}: expected 1-D int16 samples at 16 kHz, got {chunk.dtype} of shape {chunk.shape}"
                )
            pending = np.concatenate([pending, chunk]) if len(pending) else chunk
            whole = len(pending) - len(pending) % self.frame_samples
            for offset in range(0, whole, self.frame_samples):
                if self._stop.is_set():
                    return
                sent += self.frame_samples
                yield Frame(self._pace(pending[offset : offset + self.frame_samples], start, sent), time.monotonic())
            pending = pending[whole:]
        if len(pending) and not self._stop.is_set():
            last = np.concatenate([pending, np.zeros(self.frame_samples - len(pending), dtype=np.int16)])
            yield Frame(self._pace(last, start, sent + self.frame_samples), time.monotonic())

    def _pace(self, samples: np.ndarray, start: float, sent: int) -> np.ndarray:
        if self.speed is not None:
            # A frame is ready once the audio it ends with has "happened" at this speed.
            wait = start + sent / SAMPLE_RATE / self.speed - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)
        return samples

    def stop(self) -> None:
        self._stop.set()


class SamplesSource(StreamSource):
    """16 kHz mono int16 samples already in memory, as frames (as fast as consumed, or paced by ``speed``)."""

    def __init__(
        self,
        samples: np.ndarray,
        description: str = "samples",
        frame_samples: int = FRAME_SAMPLES,
        speed: float | None = None,
    ) -> None:
        self.samples = samples
        super().__init__([samples], description, frame_samples, speed)


class WavSource(SamplesSource):
    """A WAV file as frames; the file is decoded (and checked) when the source is created."""

    def __init__(
        self,
        path: str | Path,
        max_seconds: float = DEFAULT_MAX_WAV_SECONDS,
        frame_samples: int = FRAME_SAMPLES,
        speed: float | None = None,
    ) -> None:
        self.path = Path(path)
        samples, self.info = read_wav(self.path, max_seconds)
        description = f"{self.path} ({self.info.rate} Hz, {self.info.channels} ch, {self.info.seconds:.2f} s)"
        super().__init__(samples, description, frame_samples, speed)


# --------------------------------------------------------------------------- microphones


@dataclasses.dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    hostapi: str
    channels: int
    default_rate: float
    default: bool

    def __str__(self) -> str:
        mark = "*" if self.default else " "
        return f"{mark} {self.index:>3}  {self.name}  ({self.hostapi}, {self.channels} ch, {self.default_rate:g} Hz)"


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as exc:  # the Python module is there, libportaudio is not
        raise AudioError(f"microphone input needs PortAudio (Debian package libportaudio2): {exc}") from None
    except ImportError:
        raise AudioError("microphone input needs the Python package sounddevice (pip install sounddevice)") from None
    return sounddevice


def list_devices(output: bool = False) -> list[InputDevice]:
    """The input (or output) devices PortAudio sees; ``default`` marks the one used without ``--device``."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default = sd.default.device[1 if output else 0]
    except sd.PortAudioError as exc:
        raise AudioError(f"cannot list audio devices: {exc}") from None
    key = "max_output_channels" if output else "max_input_channels"
    found = []
    for index, dev in enumerate(devices):
        if dev[key] > 0:
            found.append(
                InputDevice(
                    index,
                    dev["name"],
                    hostapis[dev["hostapi"]]["name"],
                    dev[key],
                    float(dev["default_samplerate"]),
                    index == default,
                )
            )
    return found


def find_input_device(spec: str | int | None = None, output: bool = False) -> InputDevice:
    """An input (or output) device by index, by (part of its) name, or the default one; errors list what exists."""
    kind = "output" if output else "input"
    devices = list_devices(output)
    listing = "\n".join(str(d) for d in devices) or "  (none)"
    if not devices:
        raise AudioError(f"no audio {kind} device found (PortAudio lists no device with {kind} channels)")
    if spec is None or spec == "":
        default = [d for d in devices if d.default]
        if default:
            return default[0]
        return devices[0]
    if isinstance(spec, int) or str(spec).strip().isdigit():
        index = int(spec)
        for d in devices:
            if d.index == index:
                return d
        raise AudioError(f"audio device {index} is not an {kind} device; {kind} devices:\n{listing}")
    needle = str(spec).lower()
    matches = [d for d in devices if needle in d.name.lower()]
    exact = [d for d in matches if d.name.lower() == needle]
    if len(exact) == 1 or len(matches) == 1:
        return (exact or matches)[0]
    if not matches:
        raise AudioError(f"no {kind} device matches {spec!r}; {kind} devices:\n{listing}")
    raise AudioError(f"{spec!r} matches several {kind} devices; use an index:\n" + "\n".join(str(d) for d in matches))


@dataclasses.dataclass(frozen=True)
class Backoff:
    """The one retry policy for an input device that is missing or went silent: the first wait, doubling
    with every failure in a row, up to the longest (the microphone's watchdog and the service's first
    open both follow it)."""

    first_s: float = 0.5
    most_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.most_s:
            raise ValueError(
                f"backoff: first wait {self.first_s!r} s and longest {self.most_s!r} s; allowed 0 < first <= longest"
            )

    def delay(self, failures: int) -> float:
        """The wait before the next attempt after ``failures`` failed attempts in a row (none before the first)."""
        return 0.0 if failures <= 0 else min(self.most_s, self.first_s * 2 ** (failures - 1))


PORTAUDIO_LOCK = threading.RLock()
"""Held while PortAudio is re-initialised (to see devices that were re-plugged) and while a sound
plays (``edge.playback``): re-initialising PortAudio closes every stream it has open."""


def refresh_devices() -> None:
    """Make PortAudio list devices again: after a USB re-enumeration its old list is out of date."""
    sd = _sounddevice()
    with PORTAUDIO_LOCK:
        sd._terminate()
        sd._initialize()


class MicSource:
    """Live capture from a PortAudio input device, with a stale-audio watchdog.

    Captures at 16 kHz mono when the device accepts it, else at the device's default rate and
    channel count, mixing down and resampling (streaming) to 16 kHz. Blocks arrive on PortAudio's
    thread and wait in a bounded queue; a full queue drops the block and counts it, as does an
    overflow PortAudio reports, so a consumer that falls behind is visible in ``overflows``.

    The watchdog: when the device delivers nothing for ``stale_seconds`` (a USB microphone that
    was unplugged or reset, a driver that stopped, a sound server that restarted), the stream is
    closed and the device opened again, found by its *name* (re-enumeration changes indexes),
    with exponential backoff between attempts; each attempt is logged and counted, and capture
    resumes when the device returns. The iteration only ends on :meth:`stop` (or, with the
    watchdog off, when the stream ends).
    """

    realtime = True
    """Frames arrive at the pace of the audio (the live loop's playback suppression relies on it)."""

    def __init__(
        self,
        device: str | int | None = None,
        frame_samples: int = FRAME_SAMPLES,
        queue_seconds: float = 10.0,
        rate: int | None = None,
        channels: int | None = None,
        stale_seconds: float | None = 2.0,
        backoff: Backoff = Backoff(),
    ) -> None:
        self._sd = _sounddevice()
        self._spec = device
        self.device = find_input_device(device)
        self.frame_samples = frame_samples
        # rate/channels force a capture format, for devices that claim 16 kHz mono and then fail at it
        self._forced = (rate, channels or 1) if rate else None
        self.rate, self.channels = self._forced or self._pick_format()
        if stale_seconds is not None and not stale_seconds > 0:
            raise ValueError(
                f"stale_seconds must be positive (or None to turn the watchdog off), got {stale_seconds!r}"
            )
        self.stale_seconds = stale_seconds
        self.backoff = backoff
        self.overflows = 0
        """Blocks PortAudio reported as overflowed plus blocks dropped because the queue was full."""
        self.last_frame_at: float | None = None
        """``time.monotonic()`` of the last block the device delivered (``None`` before the first)."""
        self.stalls = 0
        """Times the watchdog found the device silent for ``stale_seconds``."""
        self.reopen_attempts = 0
        """Attempts to open the device again after a stall (each one is logged)."""
        self.reopens = 0
        """Attempts that opened it."""
        block_seconds = frame_samples / SAMPLE_RATE
        self._queue: queue.Queue[tuple[np.ndarray, float]] = queue.Queue(
            maxsize=max(4, int(queue_seconds / block_seconds))
        )
        self._stop = threading.Event()
        self._stuck: list[threading.Thread] = []
        self._failed = 0  # reopen attempts since the device last delivered audio

    @property
    def description(self) -> str:
        return f"{self.device.name} (device {self.device.index}, {self.rate} Hz, {self.channels} ch)"

    def _pick_format(self) -> tuple[int, int]:
        sd = self._sd
        try:
            sd.check_input_settings(device=self.device.index, samplerate=SAMPLE_RATE, channels=1, dtype="int16")
            return SAMPLE_RATE, 1
        except (sd.PortAudioError, ValueError) as exc:
            first_error = exc
        rate = int(self.device.default_rate)
        for channels in (1, min(2, self.device.channels), self.device.channels):
            try:
                sd.check_input_settings(device=self.device.index, samplerate=rate, channels=channels, dtype="int16")
                return rate, channels
            except (sd.PortAudioError, ValueError):
                continue
        raise AudioError(
            f"input device {self.device.name!r} accepts neither 16 kHz mono nor its default "
            f"{rate} Hz with 1..{self.device.channels} channels of 16-bit samples "
            f"(PortAudio: {first_error})"
        )

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        now = time.monotonic()
        self.last_frame_at = now
        if status.input_overflow:
            self.overflows += 1
        try:
            self._queue.put_nowait((indata.copy(), now))
        except queue.Full:
            self.overflows += 1

    def __iter__(self) -> Iterator[Frame]:
        stream: Any = self._open()
        try:
            while True:
                ended = yield from self._frames(stream)
                self._close(stream)
                stream = None
                if ended == "stopped" or self.stale_seconds is None:
                    return
                stream = self._reopen(ended)
                if stream is None:
                    return
        finally:
            if stream is not None:
                self._close(stream)

    def _frames(self, stream: Any) -> Iterator[Frame]:
        """Frames from one open stream; returns why it ended: ``stopped``, ``stale`` or ``lost``."""
        resampler = None
        if self.rate != SAMPLE_RATE:
            import soxr

            resampler = soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        pending = np.zeros(0, dtype=np.int16)
        opened = time.monotonic()
        while not self._stop.is_set():
            try:
                block, captured_at = self._queue.get(timeout=0.1)
            except queue.Empty:
                if not stream.active:  # the device went away or its stream ended
                    return "lost"
                heard = max(opened, self.last_frame_at or opened)
                if self.stale_seconds is not None and time.monotonic() - heard > self.stale_seconds:
                    return "stale"
                continue
            if self._failed:
                log.warning("capture resumed on %s", self.description)
                self._failed = 0
            if resampler is not None or self.channels > 1:
                mono = block.astype(np.float32).mean(axis=1) / 32768.0
                if resampler is not None:
                    mono = resampler.resample_chunk(mono)
                samples = to_int16(mono)
            else:
                samples = block[:, 0]
            pending = np.concatenate([pending, samples])
            while len(pending) >= self.frame_samples:
                yield Frame(pending[: self.frame_samples], captured_at)
                pending = pending[self.frame_samples :]
        return "stopped"

    def _open(self) -> Any:
        sd = self._sd
        blocksize = max(1, round(self.frame_samples * self.rate / SAMPLE_RATE))
        try:
            stream = sd.InputStream(
                device=self.device.index,
                samplerate=self.rate,
                channels=self.channels,
                dtype="int16",
                blocksize=blocksize,
                callback=self._callback,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioError(f"cannot open input device {self.device.name!r}: {exc}") from None
        return stream

    def _close(self, stream: Any) -> None:
        # abort, not stop: nothing is waiting for the last buffers. A device stuck inside the
        # driver (a read that never returns) cannot even be aborted; it is left to finish on a
        # helper thread, and the device is opened again beside it.
        def close() -> None:
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)

        if sys.is_finalizing():
            # A generator collected at interpreter exit: no thread can start any more (trying hung
            # the daemon after SIGTERM), and the process's exit releases the device anyway.
            return
        closer = threading.Thread(target=close, name="edge-audio-close", daemon=True)
        closer.start()
        closer.join(1.0)
        if closer.is_alive():
            log.warning(
                "input device %r does not close (blocked in the driver); opening it again beside it", self.device.name
            )
            self._stuck.append(closer)

    def _reopen(self, why: str) -> Any:
        """Open the device again, by name, with backoff; ``None`` if stopped meanwhile."""
        self.stalls += 1
        what = f"no audio for {self.stale_seconds:g} s" if why == "stale" else "the stream ended"
        while not self._stop.is_set():
            # Back off while attempts keep failing or keep opening a device that stays silent.
            delay = self.backoff.delay(self._failed)
            if delay and self._stop.wait(delay):
                return None
            self._failed += 1
            self.reopen_attempts += 1
            log.warning("%s from %r; reopening it (attempt %d)", what, self.device.name, self.reopen_attempts)
            try:
                self._find_again()
                stream = self._open()
            except AudioError as exc:
                log.warning("reopening failed: %s", exc)
                continue
            self.reopens += 1
            return stream
        return None

    def _find_again(self) -> None:
        self._stuck = [t for t in self._stuck if t.is_alive()]
        if not self._stuck:  # re-initialising PortAudio would wait on a stream stuck in the driver
            refresh_devices()
        devices = list_devices()
        same = [d for d in devices if d.name == self.device.name]
        if same:
            device = same[0]
        elif self._spec is None or self._spec == "":
            device = find_input_device(None)  # the default device, whatever it is now
        else:
            raise AudioError(f"input device {self.device.name!r} is not present")
        if device != self.device:
            log.warning("%r is now device %d (was %d)", device.name, device.index, self.device.index)
        self.device = device
        if self._forced is None:
            self.rate, self.channels = self._pick_format()

    def stats(self) -> dict[str, Any]:
        """The watchdog's and the queue's counters, for ``/healthz`` and ``/metrics``."""
        age = None if self.last_frame_at is None else time.monotonic() - self.last_frame_at
        return {
            "device": self.device.name,
            "last_frame_age_s": age,
            "stalls": self.stalls,
            "reopen_attempts": self.reopen_attempts,
            "reopens": self.reopens,
            "overflows": self.overflows,
        }

    def stop(self) -> None:
        """End the iteration (safe from a signal handler or another thread)."""
        self._stop.set()


__all__ = [
    "AudioError",
    "AudioSource",
    "Backoff",
    "FRAME_SAMPLES",
    "Frame",
    "InputDevice",
    "MicSource",
    "SAMPLE_RATE",
    "PORTAUDIO_LOCK",
    "PcmConverter",
    "SamplesSource",
    "StreamSource",
    "WavInfo",
    "WavSource",
    "find_input_device",
    "frames_of",
    "list_devices",
    "read_wav",
    "refresh_devices",
    "resample",
    "to_int16",
]
