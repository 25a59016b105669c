"""Audio sources: WAV decoding of every common format, clear errors, real PortAudio capture."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge.audio import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AudioError,
    SamplesSource,
    StreamSource,
    WavSource,
    frames_of,
    read_wav,
)

from speech_helpers import FifoFeeder, alsa_capture_config, write_wav

ROOT = Path(__file__).resolve().parent.parent


def tone(rate: int, seconds: float = 0.5, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(samples))


@pytest.mark.parametrize(
    "rate,channels,bits,fmt,extensible",
    [
        (16000, 1, 16, "pcm", False),
        (44100, 2, 16, "pcm", False),
        (8000, 1, 8, "pcm", False),
        (48000, 2, 24, "pcm", False),
        (22050, 1, 32, "pcm", False),
        (32000, 1, 32, "float", False),
        (48000, 6, 32, "float", True),
        (11025, 1, 64, "float", False),
        (96000, 2, 24, "pcm", True),
    ],
)
def test_wav_formats_become_16k_mono_int16(tmp_path, rate, channels, bits, fmt, extensible):
    path = write_wav(tmp_path / "x.wav", tone(rate, channels=channels), rate, bits, fmt, extensible)
    samples, info = read_wav(path)
    assert (info.rate, info.channels, info.bits, info.float) == (rate, channels, bits, fmt == "float")
    assert samples.dtype == np.int16 and samples.ndim == 1
    assert abs(len(samples) - SAMPLE_RATE // 2) <= 2
    assert abs(peak_hz(samples) - 440.0) < 5.0
    body = samples[1000:-1000].astype(np.float64) / 32768
    assert np.sqrt(np.mean(body**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)  # amplitude kept, channels averaged


def test_frames_are_whole_and_padded(tmp_path):
    path = write_wav(tmp_path / "x.wav", tone(16000, seconds=0.1), 16000)  # 1600 samples
    frames = list(WavSource(path))
    assert [len(f.samples) for f in frames] == [FRAME_SAMPLES] * 4
    assert np.all(frames[-1].samples[1600 - 3 * FRAME_SAMPLES :] == 0)
    assert all(a.captured_at <= b.captured_at for a, b in zip(frames, frames[1:]))
    assert len(list(frames_of(np.zeros(1024, dtype=np.int16)))) == 2


def test_truncated_data_keeps_what_is_there(tmp_path):
    path = write_wav(tmp_path / "x.wav", tone(16000, seconds=0.5), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3001])  # cut mid-sample, as an interrupted recorder leaves it
    samples, info = read_wav(path)
    assert len(samples) == (8000 * 2 - 3001) // 2 and info.frames == len(samples)


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "not a WAV file"),
        (b"hello, I am a text file, not audio", "not a WAV file"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt \x04\x00\x00\x00\x01\x00\x01\x00", "corrupt WAV header"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, content, expected):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=expected) as err:
        read_wav(path)
    assert str(path) in str(err.value)


def test_header_problems(tmp_path):
    good = write_wav(tmp_path / "g.wav", tone(16000), 16000).read_bytes()
    bad_align = bytearray(good)
    bad_align[32:34] = (7).to_bytes(2, "little")
    (tmp_path / "a.wav").write_bytes(bytes(bad_align))
    with pytest.raises(AudioError, match="block align 7"):
        read_wav(tmp_path / "a.wav")
    mp3 = bytearray(good)
    mp3[20:22] = (0x55).to_bytes(2, "little")
    (tmp_path / "m.wav").write_bytes(bytes(mp3))
    with pytest.raises(AudioError, match="0x0055 is not supported"):
        read_wav(tmp_path / "m.wav")
    empty = write_wav(tmp_path / "e.wav", np.zeros(0), 16000)
    with pytest.raises(AudioError, match="contains no audio samples"):
        read_wav(empty)
    with pytest.raises(AudioError, match="no such file"):
        read_wav(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="is a directory"):
        read_wav(tmp_path)


def test_too_long_is_refused_from_the_header(tmp_path):
    path = write_wav(tmp_path / "long.wav", tone(8000, seconds=3.0), 8000)
    with pytest.raises(AudioError, match=r"3\.0 s of audio is longer than the limit of 2 s"):
        read_wav(path, max_seconds=2)
    assert len(read_wav(path, max_seconds=3.5)[0]) == 3 * SAMPLE_RATE


def _capture(tmp_path: Path, conf: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALSA_CONFIG_PATH": str(conf), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


CAPTURE = """
import json, numpy as np
from edge.audio import MicSource
src = MicSource({device!r}, rate={rate!r}, channels={channels!r})
got = []
for frame in src:
    got.append(frame.samples)
    if len(got) * 512 >= {n}:
        break
np.save({out!r}, np.concatenate(got))
print(json.dumps({{"rate": src.rate, "channels": src.channels, "description": src.description}}))
"""


def test_microphone_capture_through_portaudio(tmp_path):
    pytest.importorskip("sounddevice")
    signal_ = (tone(16000, seconds=1.0, freq=300.0) * 32767).astype("<i2")
    raw = tmp_path / "in.raw"
    raw.write_bytes(signal_.tobytes())
    conf = alsa_capture_config(tmp_path, raw)
    out = tmp_path / "out.npy"
    proc = _capture(tmp_path, conf, CAPTURE.format(device="edgefile", rate=None, channels=None, n=16000, out=str(out)))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert (info["rate"], info["channels"]) == (16000, 1)
    got = np.load(out)[:16000]
    assert np.array_equal(got, signal_)  # 16 kHz mono passes through bit-exact


def test_microphone_resamples_and_mixes_down(tmp_path):
    pytest.importorskip("sounddevice")
    stereo = (tone(48000, seconds=1.0, freq=500.0, channels=2) * 32767).astype("<i2")
    raw = tmp_path / "in.raw"
    raw.write_bytes(stereo.tobytes())
    conf = alsa_capture_config(tmp_path, raw)
    out = tmp_path / "out.npy"
    proc = _capture(tmp_path, conf, CAPTURE.format(device=None, rate=48000, channels=2, n=16000, out=str(out)))
    assert proc.returncode == 0, proc.stderr
    got = np.load(out)[2000:14000]
    assert abs(peak_hz(got) - 500.0) < 5.0
    assert np.sqrt(np.mean((got / 32768) ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_device_errors_list_the_devices(tmp_path):
    pytest.importorskip("sounddevice")
    conf = alsa_capture_config(tmp_path, tmp_path / "in.raw")
    (tmp_path / "in.raw").write_bytes(b"\0" * 3200)
    code = (
        "from edge.audio import MicSource, AudioError\ntry:\n    MicSource({!r})\nexcept AudioError as e:\n    print(e)"
    )
    proc = _capture(tmp_path, conf, code.format("no-such-mic"))
    assert "no input device matches 'no-such-mic'" in proc.stdout and "edgefile" in proc.stdout
    proc = _capture(tmp_path, conf, code.format("99"))
    assert "audio device 99 is not an input device" in proc.stdout and "edgefile" in proc.stdout
    (tmp_path / "none").mkdir()
    empty = alsa_capture_config(tmp_path / "none", None)
    proc = _capture(tmp_path, empty, code.format(None))
    assert "no audio input device found" in proc.stdout


def test_stream_source_reframes_any_chunks_and_paces_on_request():
    rng = np.random.default_rng(0)
    audio = rng.integers(-3000, 3000, size=5000, dtype=np.int16)
    cuts = [0, 7, 600, 601, 2048, 4999, 5000]
    chunks = [audio[a:b] for a, b in zip(cuts, cuts[1:])]
    frames = list(StreamSource(chunks))
    joined = np.concatenate([f.samples for f in frames])
    assert all(len(f.samples) == FRAME_SAMPLES for f in frames) and len(frames) == 10
    assert np.array_equal(joined[:5000], audio) and not joined[5000:].any()
    assert not StreamSource([]).realtime and SamplesSource(audio, speed=1.0).realtime
    # Paced at 4x real time, 0.5 s of audio cannot come out in less than 0.125 s.
    start = time.monotonic()
    assert len(list(SamplesSource(np.zeros(8000, dtype=np.int16), speed=4.0))) == 16
    assert time.monotonic() - start >= 0.12
    with pytest.raises(ValueError, match="expected 1-D int16 samples"):
        list(StreamSource([np.zeros(512, dtype=np.float32)], description="synth"))
    with pytest.raises(ValueError, match="speed must be a positive number"):
        SamplesSource(audio, speed=0)


STALL = """
import json, logging, sys, numpy as np
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
from edge.audio import Backoff, MicSource
src = MicSource("edgefile", stale_seconds=0.4, backoff=Backoff(0.2, 1.0))
got = []
for frame in src:
    got.append(frame.samples.copy())
    if len(got) * 512 >= {n}:
        break
np.save({out!r}, np.concatenate(got))
print(json.dumps(src.stats()))
"""


def test_stalled_capture_is_reopened_and_resumes(tmp_path):
    """A FIFO-backed capture device whose writer pauses: the watchdog reopens it, nothing is lost."""
    pytest.importorskip("sounddevice")
    ramp = (np.arange(3 * 16384) % 30000).astype(np.int16)
    fifo = tmp_path / "mic.fifo"
    feeder = FifoFeeder(fifo, [(ramp[:16384], 1.6), (ramp[16384:], 0.0)], speed=4.0)
    feeder.start()
    conf = alsa_capture_config(tmp_path, fifo)
    out = tmp_path / "out.npy"
    try:
        proc = _capture(tmp_path, conf, STALL.format(n=len(ramp), out=str(out)))
    finally:
        feeder.finish()
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["stalls"] >= 1 and stats["reopens"] >= 1 and stats["reopen_attempts"] >= stats["reopens"]
    assert "no audio for 0.4 s from 'edgefile'; reopening it (attempt 1)" in proc.stderr
    assert "capture resumed on edgefile" in proc.stderr
    assert np.array_equal(np.load(out)[: len(ramp)], ramp)  # every sample, in order, across the stall
