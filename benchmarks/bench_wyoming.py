#!/usr/bin/env python3
"""Wyoming benchmark: what Home Assistant waits for, against ``edge-intent serve --wyoming`` as a subprocess.

With the ``wyoming`` library's ``AsyncTcpClient``, as Home Assistant's integration talks:

* **recognize**: ``recognize`` → ``intent`` round trips, one client and four at once (HWU64-style
  commands; the classifier is shared, so four clients queue for it);
* **asr**: flite-spoken commands streamed as 1024-sample chunks in real time, as Home Assistant
  relays a microphone, 16 kHz mono and 44.1 kHz stereo (converted by edge): the time from
  ``audio-stop`` to ``transcript`` (what the person waits for after Home Assistant's VAD ends the
  command), and the word error rate of the transcript in spoken form (``edge.textnorm``: no
  case, punctuation or digits); then four transcriptions streamed as fast as the socket
  takes them, one client after another and four at once (wall time);
* **wake**: "hey jarvis" after another sentence, streamed in real time: detections, and the delay
  between the end of the phrase's audio and the ``detection`` arriving.

Writes ``benchmarks/results/wyoming-<engine>.json`` and ``.md`` and prints the table.

    .venv/bin/python benchmarks/bench_wyoming.py                      # the device profile's STT engine
    .venv/bin/python benchmarks/bench_wyoming.py --stt pocketsphinx
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_wyoming import wyoming_address  # noqa: E402

from edge.stt import word_errors  # noqa: E402
from edge.textnorm import spoken_form  # noqa: E402

from speech_helpers import speak  # noqa: E402
from test_daemon import Daemon  # noqa: E402

COMMANDS = [
    "turn off the lights in the kitchen",
    "what is the weather like in london",
    "set an alarm for seven am",
    "play some jazz music",
    "what time is it",
    "remind me to call mom tomorrow",
    "how many calories are in an apple",
    "turn the volume down",
]
VOICES = ["slt", "rms", "awb", "kal"]


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


async def recognize_round_trips(host: str, port: int, clients: int, per_client: int) -> list[float]:
    from wyoming.client import AsyncTcpClient
    from wyoming.intent import Recognize

    async def one(index: int) -> list[float]:
        times = []
        async with AsyncTcpClient(host, port) as client:
            for i in range(per_client):
                start = time.perf_counter()
                await client.write_event(Recognize(text=COMMANDS[(index + i) % len(COMMANDS)]).event())
                await client.read_event()
                times.append((time.perf_counter() - start) * 1000)
        return times

    return [t for times in await asyncio.gather(*(one(i) for i in range(clients))) for t in times]


async def asr_model(host: str, port: int) -> str:
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe, Info

    async with AsyncTcpClient(host, port) as client:
        await client.write_event(Describe().event())
        return Info.from_event(await client.read_event()).asr[0].models[0].name


def pcm(samples: np.ndarray, rate: int, channels: int) -> bytes:
    import soxr

    audio = soxr.resample(samples.astype(np.float32) / 32768.0, 16000, rate) if rate != 16000 else samples / 32768.0
    data = np.clip(audio * 32768, -32768, 32767).astype("<i2")
    return (np.repeat(data[:, None], channels, axis=1) if channels > 1 else data).tobytes()


async def transcribe(
    host: str, port: int, audio: bytes, rate: int, channels: int, realtime: bool = False
) -> tuple[str, float]:
    from wyoming.asr import Transcribe, Transcript
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient

    step = 1024 * 2 * channels
    async with AsyncTcpClient(host, port) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=rate, width=2, channels=channels).event())
        begin = time.perf_counter()
        for offset in range(0, len(audio), step):
            await client.write_event(
                AudioChunk(rate=rate, width=2, channels=channels, audio=audio[offset : offset + step]).event()
            )
            if realtime:
                await asyncio.sleep(max(0.0, begin + (offset + step) / (2 * channels * rate) - time.perf_counter()))
        start = time.perf_counter()
        await client.write_event(AudioStop().event())
        while True:
            event = await client.read_event()
            if Transcript.is_type(event.type):
                return Transcript.from_event(event).text, (time.perf_counter() - start) * 1000


async def wake_delays(host: str, port: int, streams: list[tuple[np.ndarray, int]]) -> list[float | None]:
    """Per stream (samples, where the phrase ends): seconds from that point's real time to the detection."""
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.wake import Detect, Detection

    delays: list[float | None] = []
    for samples, phrase_end in streams:
        async with AsyncTcpClient(host, port) as client:
            await client.write_event(Detect(names=["hey_jarvis"]).event())
            await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            begin = time.perf_counter()
            detected: list[float] = []

            async def listen() -> None:
                while True:
                    event = await client.read_event()
                    if event is None or not Detection.is_type(event.type):
                        return
                    detected.append(time.perf_counter())

            listener = asyncio.ensure_future(listen())
            for offset in range(0, len(samples), 1024):  # real time, as a satellite's microphone delivers
                await client.write_event(
                    AudioChunk(rate=16000, width=2, channels=1, audio=samples[offset : offset + 1024].tobytes()).event()
                )
                await asyncio.sleep(max(0.0, begin + (offset + 1024) / 16000 - time.perf_counter()))
            await client.write_event(AudioStop().event())
            await asyncio.sleep(0.3)
            listener.cancel()
            delays.append(detected[0] - (begin + phrase_end / 16000) if detected else None)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--stt",
        default="auto",
        help="stt.engine for the daemon (default: the profile's); the results go to wyoming-<engine>.json / .md",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-wyoming-"))
    spoken = [(text, voice, speak(text, voice, tmp)) for text in COMMANDS for voice in VOICES[:2]]
    other = speak("the game starts at eight tonight", "awb", tmp)
    wake_streams = []
    for voice in VOICES:
        phrase = speak("hey jarvis", voice, tmp, tail_s=0.0)
        wake_streams.append((np.concatenate([other, phrase, np.zeros(16000, np.int16)]), len(other) + len(phrase)))
    daemon = Daemon(
        tmp,
        'wyoming: {enabled: true, listen: "tcp://127.0.0.1:0"}\nhttp: {enabled: false}\n'
        f"stt: {{engine: {args.stt}}}\n",
        "--no-mic",
    )
    try:
        host, port = wyoming_address(daemon)
        results: dict = {
            "host": platform.machine(),
            "python": platform.python_version(),
            "stt": asyncio.run(asr_model(host, port)),
        }
        one = asyncio.run(recognize_round_trips(host, port, 1, 200))
        four = asyncio.run(recognize_round_trips(host, port, 4, 100))
        results["recognize_ms"] = {
            "1 client": {"p50": percentile(one, 50), "p99": percentile(one, 99)},
            "4 clients": {"p50": percentile(four, 50), "p99": percentile(four, 99)},
        }
        for rate, channels in ((16000, 1), (44100, 2)):
            latencies, errors, words = [], 0, 0
            for text, _voice, samples in spoken:
                heard, ms = asyncio.run(transcribe(host, port, pcm(samples, rate, channels), rate, channels, True))
                latencies.append(ms)
                errors += word_errors(text, spoken_form(heard))  # Whisper writes "Set an alarm for 7 a.m."
                words += len(text.split())
            results[f"asr_{rate}_{channels}ch"] = {
                "utterances": len(spoken),
                "stop_to_transcript_ms_p50": percentile(latencies, 50),
                "p90": percentile(latencies, 90),
                "wer": errors / words,
            }
        batch = [pcm(s, 16000, 1) for _, _, s in spoken[:4]]

        async def sequential() -> float:
            start = time.perf_counter()
            for audio in batch:
                await transcribe(host, port, audio, 16000, 1)
            return time.perf_counter() - start

        async def parallel() -> float:
            start = time.perf_counter()
            await asyncio.gather(*(transcribe(host, port, audio, 16000, 1) for audio in batch))
            return time.perf_counter() - start

        results["asr_4_utterances_s"] = {
            "one client after another": asyncio.run(sequential()),
            "4 clients at once": asyncio.run(parallel()),
        }
        delays = asyncio.run(wake_delays(host, port, wake_streams))
        found = [d for d in delays if d is not None]
        results["wake"] = {
            "streams": len(delays),
            "detected": len(found),
            "delay_after_phrase_ms": [round(d * 1000) for d in found],
        }
    finally:
        daemon.stop()
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    name = f"wyoming-{results['stt'].split('+')[0].split('-')[0]}"
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"STT engine: {results['stt']}", "", "| measure | value |", "|---|---|"]
    for key in ("1 client", "4 clients"):
        r = results["recognize_ms"][key]
        lines.append(f"| recognize → intent, {key} | p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms |")
    for key, label in (("asr_16000_1ch", "16 kHz mono"), ("asr_44100_2ch", "44.1 kHz stereo")):
        r = results[key]
        lines.append(
            f"| audio-stop → transcript, {label}, real time ({r['utterances']} flite utterances) | p50 "
            f"{r['stop_to_transcript_ms_p50']:.0f} ms, p90 {r['p90']:.0f} ms, WER {r['wer']:.1%} |"
        )
    r = results["asr_4_utterances_s"]
    lines.append(
        f"| 4 transcriptions at full speed: one after another / 4 clients at once | "
        f"{r['one client after another']:.2f} s / "
        f"{r['4 clients at once']:.2f} s |"
    )
    r = results["wake"]
    lines.append(
        f"| hey jarvis detected (4 flite voices, real time) | {r['detected']}/{r['streams']}, "
        f"{', '.join(str(d) for d in r['delay_after_phrase_ms'])} ms after the phrase's audio ends |"
    )
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
