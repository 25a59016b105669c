#!/usr/bin/env python3
"""Soak benchmark: hours of household audio through the full live loop, faster than real time.

A deterministic timeline (``--seed``) of synthesised household audio:

* **wake + command pairs** (>= 300): "hey jarvis" then an HWU64 *test* command, each in one of
  four flite voices (slt, rms, awb, kal16) at three speaking rates; 5 % say nothing after the
  wake word (the no-speech timeout must end them), 5 % ramble on for more than ten seconds (the
  command cap must cut them);
* **conversation**: HWU64 *train* sentences (none containing "jarvis") with short pauses;
* **TV**: a minute or less of continuous speech, sometimes over music;
* **music-like noise**: synthetic melodies over bass, with drums (tones, harmonics, noise bursts);
* **silence**: a low noise floor.

It streams (``edge.audio.StreamSource``, as fast as the loop consumes it) through the real live
loop in wake mode: microWakeWord, silero VAD, PocketSphinx (adapted), the shipped intent model.
Every wake event is matched to a pair (or counted as a false wake) and must be followed by the
command's outcome (intent, not understood, or timeout) before the next wake: a wake without one
is a *lost* command. A monitor thread samples ``LiveLoop.status()`` for stuck states; RSS is
sampled along the audio. Synthesised speech is cached under ``runs/soak/`` (gitignored).

Writes ``benchmarks/results/soak.json`` and prints a summary.

    nice -n 10 .venv/bin/python benchmarks/bench_soak.py           # 2 h of audio, 320 pairs
    .venv/bin/python benchmarks/bench_soak.py --quick              # 6 min, 16 pairs: a look
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import platform
import random
import resource
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge import datasets  # noqa: E402
from edge.assistant import Assistant  # noqa: E402
from edge.audio import SAMPLE_RATE, StreamSource  # noqa: E402
from edge.config import Config, ModelSettings  # noqa: E402
from edge.liveloop import LiveLoopSettings  # noqa: E402
from edge.stt import SttSettings  # noqa: E402
from edge.wake import WakeSettings  # noqa: E402
from edge.wake.calibrate import synthesize  # noqa: E402

CACHE = ROOT / "runs" / "soak"
WAKE = "hey jarvis"
VOICES = ("slt", "rms", "awb", "kal16")
RATES = (0.9, 1.0, 1.1)


# --------------------------------------------------------------------------- audio


def say(text: str, voice: str, rate: float) -> np.ndarray:
    path = CACHE / "tts" / f"{voice}-{rate:g}-{zlib.crc32(text.encode())}.npy"
    if path.exists():
        return np.load(path)
    samples = synthesize(text, voice, rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, samples)
    return samples


def trim(samples: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > 300)
    return samples[loud[0] : loud[-1] + 1] if len(loud) else samples


def floor(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A quiet room: noise about 60 dB below full scale."""
    return rng.normal(0, 30, int(seconds * SAMPLE_RATE)).astype(np.int16)


def music(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Music-like noise: a pentatonic melody with harmonics over a bass line, drums on the beat."""
    n = int(seconds * SAMPLE_RATE)
    out = np.zeros(n, dtype=np.float64)
    beat = 60.0 / rng.uniform(80, 150)
    scale = 220.0 * 2 ** (np.array([0, 3, 5, 7, 10, 12, 15, 17, 19, 22]) / 12)
    step = int(beat * SAMPLE_RATE)
    t = np.arange(step * 2) / SAMPLE_RATE
    for k, start in enumerate(range(0, n, step)):
        f = rng.choice(scale) * rng.choice([0.5, 1.0, 2.0])
        note = sum(np.sin(2 * np.pi * f * h * t) / h**1.5 for h in (1, 2, 3)) * np.exp(-t * rng.uniform(2, 6))
        if k % 2 == 0:
            note += 0.8 * np.sin(2 * np.pi * rng.choice(scale[:3]) / 4 * t) * np.exp(-t * 1.5)
        drum = rng.normal(0, 1, len(t)) * np.exp(-t * 40) * (0.6 if k % 2 else 0.3)
        piece = (note + drum)[: n - start]
        out[start : start + len(piece)] += piece
    return (out / (np.abs(out).max() + 1e-9) * rng.uniform(0.1, 0.4) * 32767).astype(np.int16)


def joined(texts: list[str], rng: random.Random, gap: tuple[float, float], trimmed: bool = False) -> np.ndarray:
    parts = []
    for text in texts:
        clip = say(text, rng.choice(VOICES), rng.choice(RATES))
        parts += [trim(clip) if trimmed else clip, np.zeros(int(rng.uniform(*gap) * SAMPLE_RATE), dtype=np.int16)]
    return np.concatenate(parts)


# --------------------------------------------------------------------------- the timeline


@dataclasses.dataclass
class Pair:
    kind: str
    """``command``, ``silent`` (nothing after the wake word) or ``ramble`` (speech past the cap)."""
    wake_start: float
    wake_end: float
    end: float
    text: str = ""
    intent: str = ""
    outcome: str = "missed_wake"
    """What the loop made of it: ``missed_wake``, or the type (and reason) of the event after its wake."""
    predicted: str | None = None
    capture_s: float | None = None


@dataclasses.dataclass
class Segment:
    kind: str
    seconds: float
    build: object  # () -> np.ndarray, called while streaming
    pair: Pair | None = None


def plan(hours: float, pairs: int, seed: int, data_dir: str | None = None) -> tuple[list[Segment], list[Pair]]:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    rows = datasets.read_rows("hwu64", "test.jsonl", data_dir)
    commands = rng.sample(rows, min(len(rows), pairs))
    chatter = [row["text"] for row in datasets.read_rows("hwu64", "train.jsonl", data_dir)]
    chatter = [t for t in chatter if "jarvis" not in t.lower()]
    segments: list[Segment] = []
    found: list[Pair] = []
    total = 0.0

    def add(kind: str, audio_fn, pair: Pair | None = None) -> None:
        nonlocal total
        audio = audio_fn()  # synthesised (and cached) now, to know the length; rebuilt from the cache later
        seconds = len(audio) / SAMPLE_RATE
        if pair is not None:
            pair.wake_start += total
            pair.wake_end += total
            pair.end = total + seconds
        segments.append(Segment(kind, seconds, audio_fn, pair))
        total += seconds

    i = 0
    while i < pairs or total < hours * 3600:
        if i < pairs:
            row = commands[i % len(commands)]
            roll = rng.random()
            kind = "silent" if roll < 0.05 else "ramble" if roll < 0.10 else "command"
            voice, rate, lead = rng.choice(VOICES), rng.choice(RATES), rng.uniform(1.5, 3.0)
            gap, cvoice, crate = rng.uniform(0.1, 0.5), rng.choice(VOICES), rng.choice(RATES)
            tail = rng.uniform(1.5, 2.5)
            ramble = [rng.choice(chatter) for _ in range(6)]
            sub = rng.random()

            def pair_audio(
                row=row,
                kind=kind,
                voice=voice,
                rate=rate,
                lead=lead,
                gap=gap,
                cvoice=cvoice,
                crate=crate,
                tail=tail,
                ramble=ramble,
                sub=sub,
            ):
                wake = say(WAKE, voice, rate)  # untrimmed: the model wants the quiet onset flite gives it
                if kind == "command":
                    after = say(row["text"], cvoice, crate)
                elif kind == "silent":
                    after = floor(5.0, np.random.default_rng(int(sub * 1e9) + 1))
                else:
                    after = joined(ramble, random.Random(sub), (0.1, 0.25), trimmed=True)
                pad = lambda s: np.zeros(int(s * SAMPLE_RATE), dtype=np.int16)  # noqa: E731
                room = lambda s: floor(s, np.random.default_rng(int(sub * 1e9)))  # noqa: E731
                return np.concatenate([room(lead), wake, pad(gap), after, room(tail)])

            loud = np.flatnonzero(np.abs(say(WAKE, voice, rate)) > 300) / SAMPLE_RATE
            pair = Pair(
                kind,
                lead + loud[0],
                lead + loud[-1],
                0.0,
                row["text"] if kind == "command" else "",
                row["intent"] if kind == "command" else "",
            )
            add("pair", pair_audio, pair)
            found.append(pair)
            i += 1
        budget = rng.uniform(8, 25) if i < pairs else rng.uniform(10, 40)
        while budget > 0:
            roll = rng.random()
            s = int(nrng.integers(1 << 30))
            if roll < 0.35:
                texts = rng.sample(chatter, rng.randint(2, 5))
                seg = ("talk", lambda texts=texts, s=s: joined(texts, random.Random(s), (0.3, 1.2)))
            elif roll < 0.55:
                texts = rng.sample(chatter, rng.randint(4, 14))
                over = rng.random() < 0.5

                def tv(texts=texts, over=over, s=s):
                    speech = joined(texts, random.Random(s), (0.1, 0.3), trimmed=True)
                    if over:  # over music 10 dB down
                        bed = music(len(speech) / SAMPLE_RATE + 0.1, np.random.default_rng(s))[: len(speech)]
                        speech = np.clip(
                            speech.astype(np.int32) + (bed.astype(np.int32) * 0.3).astype(np.int32), -32768, 32767
                        ).astype(np.int16)
                    return speech

                seg = ("tv", tv)
            elif roll < 0.8:
                secs = rng.uniform(10, 45)
                seg = ("music", lambda secs=secs, s=s: music(secs, np.random.default_rng(s)))
            else:
                secs = rng.uniform(5, 25)
                seg = ("silence", lambda secs=secs, s=s: floor(secs, np.random.default_rng(s)))
            before = total
            add(*seg)
            budget -= total - before
    return segments, found


# --------------------------------------------------------------------------- the run


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 1e6


def account(events, pairs: list[Pair], settings: LiveLoopSettings) -> dict:
    """Match wakes to pairs; every wake must be followed by its command's outcome."""
    by_start = sorted(pairs, key=lambda p: p.wake_start)
    starts = np.array([p.wake_start for p in by_start])
    false_wakes, lost, false_outcomes = 0, 0, collections.Counter()
    open_wake = None  # (pair or None, audio_s)
    for event in events:
        if event.type == "wake":
            if open_wake is not None:
                lost += 1  # the previous wake never got an outcome
            at = event.data["audio_s"]
            k = int(np.searchsorted(starts, at)) - 1
            pair = by_start[k] if k >= 0 else None
            if (
                pair is None
                or not (pair.wake_start - 0.2 <= at <= pair.wake_end + 1.5)
                or pair.outcome != "missed_wake"
            ):
                false_wakes += 1
                pair = None
            open_wake = (pair, at)
            continue
        if open_wake is None:
            lost += 1  # an outcome without a wake: cannot happen in wake mode
            continue
        pair, at = open_wake
        open_wake = None
        outcome = event.type if event.type != "timeout" else f"timeout:{event.data.get('reason')}"
        if pair is None:
            false_outcomes[outcome] += 1
            continue
        pair.outcome = outcome
        pair.predicted = event.result.intent if event.result is not None else None
        pair.capture_s = round(event.data["audio_s"] - at, 3)
    if open_wake is not None:
        lost += 1
    outcomes = collections.Counter((p.kind, p.outcome) for p in pairs)
    commands = [p for p in pairs if p.kind == "command" and p.outcome != "missed_wake"]
    cap = settings.no_speech_timeout_s + settings.command_max_s
    return {
        "pairs": len(pairs),
        "pairs_by_kind": dict(collections.Counter(p.kind for p in pairs)),
        "outcomes": {f"{k}/{o}": n for (k, o), n in sorted(outcomes.items())},
        "missed_wakes": sum(p.outcome == "missed_wake" for p in pairs),
        "false_wakes": false_wakes,
        "false_wake_outcomes": dict(false_outcomes),
        "lost": lost,
        "commands_heard": len(commands),
        "intent_correct": sum(p.predicted == p.intent for p in commands),
        "silent_timed_out": sum(p.outcome == "timeout:no_speech" for p in pairs if p.kind == "silent"),
        "ramble_cut": sum(p.outcome == "timeout:command_too_long" for p in pairs if p.kind == "ramble"),
        "longest_capture_s": max((p.capture_s for p in pairs if p.capture_s is not None), default=None),
        "capture_limit_s": cap,
    }


def run(segments: list[Segment], pairs: list[Pair], args) -> dict:
    # PocketSphinx whatever the device profile prefers: the soak's numbers are that engine's.
    config = Config(
        model=ModelSettings(threads=1),
        stt=SttSettings(engine="pocketsphinx"),
        liveloop=LiveLoopSettings(activation="wake"),
        wake=WakeSettings(phrases=(WAKE,)),
    )
    assistant = Assistant.from_settings(config, source="bench_soak")
    wake = assistant.new_wake()
    settings = config.liveloop
    total_s = sum(s.seconds for s in segments)
    rss: list[tuple[float, float]] = []

    def audio():
        position = 0.0
        for segment in segments:
            rss.append((position, rss_mb()))
            chunk = segment.build()
            yield chunk
            position += len(chunk) / SAMPLE_RATE

    loop = assistant.live_loop(StreamSource(audio(), "soak timeline"), assistant.new_speech_stages(), wake)
    samples, stuck, done = [], [], threading.Event()
    longest = collections.defaultdict(float)

    def monitor():
        while not done.wait(0.05):
            st = loop.status()
            samples.append(st.state)
            key = "state_seconds" if st.state in ("recognising", "acting") else "state_audio_seconds"
            longest[st.state] = max(longest[st.state], getattr(st, key))
            if st.stuck:
                stuck.append(st.to_dict())

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    start, cpu0 = time.monotonic(), time.process_time()
    events = []
    last_report = start
    for event in loop.run():
        events.append(event)
        if time.monotonic() - last_report > 30:
            last_report = time.monotonic()
            st = loop.status()
            print(
                f"  {st.audio_seconds / 60:6.1f} / {total_s / 60:.1f} min of audio, {len(events)} events, "
                f"{rss_mb():.0f} MB",
                file=sys.stderr,
                flush=True,
            )
    wall, cpu = time.monotonic() - start, time.process_time() - cpu0
    done.set()
    watcher.join()
    status = loop.status()
    q = total_s / 4
    first = [m for t, m in rss if t < q]
    last = [m for t, m in rss if t >= 3 * q]
    result = account(events, pairs, settings)
    result.update(
        {
            "audio_s": round(total_s, 1),
            "audio_hours": round(total_s / 3600, 3),
            "segments": dict(collections.Counter(s.kind for s in segments)),
            "segment_seconds": {
                k: round(sum(s.seconds for s in segments if s.kind == k), 1) for k in sorted({s.kind for s in segments})
            },
            "loop_audio_s": round(status.audio_seconds, 1),
            "events": dict(status.events),
            "timeouts": dict(status.timeouts),
            "false_wakes_per_hour": round(result["false_wakes"] / (total_s / 3600), 2),
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "speed_x_realtime": round(total_s / wall, 1),
            "stuck_samples": len(stuck),
            "stuck_examples": stuck[:3],
            "status_samples": len(samples),
            "longest_in_state_s": {k: round(v, 3) for k, v in longest.items()},
            "rss_mb_first_quarter": round(float(np.mean(first)), 1),
            "rss_mb_last_quarter": round(float(np.mean(last)), 1),
            "rss_growth_pct": round((np.mean(last) / np.mean(first) - 1) * 100, 2),
            "rss_mb_max": round(max(m for _, m in rss), 1),
            "wake_stage": status.wake,
        }
    )
    result["rss_growth_pct"] = float(result["rss_growth_pct"])
    result["checks"] = {
        "every_command_accounted_for": result["lost"] == 0,
        "no_stuck_state": not stuck and (result["longest_capture_s"] or 0) <= result["capture_limit_s"] + 1.0,
        "rss_growth_below_5pct": result["rss_growth_pct"] < 5.0,
        "all_audio_consumed": bool(abs(status.audio_seconds - total_s) < 0.1),
    }
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hours", type=float, default=2.0, help="audio length at least (default 2)")
    p.add_argument("--pairs", type=int, default=320, help="wake + command pairs (default 320)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="0.1 h and 16 pairs, written to soak-quick.json")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    datasets.add_argument(p)
    args = p.parse_args()
    if args.quick:
        args.hours, args.pairs = 0.1, 16
    print("planning and synthesising (cached under runs/soak/) ...", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        segments, pairs = plan(args.hours, args.pairs, args.seed, args.data)
    except datasets.DataSetMissing as exc:
        sys.exit(f"bench_soak: {exc}")
    synth_s = time.monotonic() - t0
    print(
        f"  {len(segments)} segments, {sum(s.seconds for s in segments) / 3600:.2f} h, {len(pairs)} pairs "
        f"({synth_s:.0f} s)",
        file=sys.stderr,
        flush=True,
    )
    result = run(segments, pairs, args)
    result.update(
        {
            "seed": args.seed,
            "host": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
            "wake": WAKE,
            "settings": dataclasses.asdict(LiveLoopSettings()),
        }
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("soak-quick.json" if args.quick else "soak.json")
    path.write_text(json.dumps(result, indent=1) + "\n")
    keys = (
        "audio_hours",
        "pairs",
        "missed_wakes",
        "false_wakes",
        "false_wakes_per_hour",
        "lost",
        "commands_heard",
        "intent_correct",
        "silent_timed_out",
        "ramble_cut",
        "longest_capture_s",
        "stuck_samples",
        "rss_mb_first_quarter",
        "rss_mb_last_quarter",
        "rss_growth_pct",
        "wall_s",
        "speed_x_realtime",
        "checks",
    )
    for key in keys:
        print(f"{key:24} {result[key]}")
    print(f"wrote {path}")
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
