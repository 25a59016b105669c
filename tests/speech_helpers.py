"""Shared by the speech tests: real speech from Debian flite, WAV writing, an ALSA file capture device."""

from __future__ import annotations

import shutil
import struct
import subprocess
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


def alsa_capture_config(tmp: Path, raw: Path | None, name: str = "edgefile") -> Path:
    """An ALSA configuration whose only capture device plays ``raw`` (s16le, at the rate it is opened with).

    Point ``ALSA_CONFIG_PATH`` at it before PortAudio starts (in a child process). With
    ``raw=None`` the configuration has no device at all.
    """
    conf = tmp / "asound.conf"
    if raw is None:
        # PortAudio aborts without a default PCM; one that cannot be opened is left out of its list.
        conf.write_text('pcm.!default { type file slave.pcm "nosuch" file "/dev/null" }\n')
        return conf
    conf.write_text(f"""
pcm.{name} {{
    type file
    slave.pcm {{ type null }}
    file "/dev/null"
    infile "{raw}"
    format "raw"
    hint {{ show on description "edge test capture" }}
}}
pcm.!default pcm.{name}
""")
    return conf
