#!/usr/bin/env python3
"""Adapt PocketSphinx's en-us acoustic model to noisy speech (MLLR and/or MAP), as CMU Sphinx documents it.

Why: the en-us model in the pocketsphinx wheel was trained on clean speech; at 10 dB SNR its phone
loop explains noisy frames better than a keyphrase does, and no decoder option fixes that (see
``edge/wake/keyphrase.py``). "Adapting the default acoustic model" (cmusphinx.github.io) is the
documented fix: features with ``sphinx_fe``, statistics with ``bw``, then a global MLLR transform
(``mllr_solve``: 39x40 numbers, generalises) and/or MAP re-estimated means and variances
(``map_adapt``: every Gaussian moves). Debian's ``sphinxtrain`` has ``bw``/``mllr_solve``/
``map_adapt``, ``sphinxbase-utils`` ``sphinx_fe``, ``pocketsphinx`` ``pocketsphinx_mdef_convert``
(``script/setup --dev`` installs them).

What the wheel's model lacks, and how this script fills it in: ``bw`` reads a text ``mdef`` (the
wheel has the binary one: ``pocketsphinx_mdef_convert -text``) and full ``mixture_weights`` (the
wheel has only ``sendump``, the same weights 8-bit log-quantised: expanded here, see
:func:`sendump_to_mixw`). The model is PTM with three sub-vector streams (``-svspec`` in
``feat.params``), which ``bw`` is told too.

The data is kept apart from what ``benchmarks/bench_wake.py`` measures:

* sentences: HWU64 *train* sentences (from ../shared/data, see edge/datasets.py) from the middle of the benchmark's shuffled order (it takes
  its other speech from the first 1,286 and its babble from the last 900; its phrase clips use
  *dev*, calibration *test*), minus any with a wake phrase's words in them;
* voices: flite slt, rms, kal16, kal — awb and Piper's joe are held out, so the benchmark shows
  whether it generalises to voices it never heard;
* noise: white, brown, band-limited (telephone-like) noise, a fan/mains hum and 3-talker babble of
  adaptation sentences, at 0/5/10/15/20 dB SNR, and a share of clean speech so clean does not
  regress (the benchmark uses pink noise and babble of other sentences at 10 dB).

    nice -n 5 .venv/bin/python tools/adapt_acoustic.py --out models/my-room     # then wake.acoustic_model: my-room
    .venv/bin/python tools/adapt_acoustic.py --utterances 8 --work /tmp/a --out /tmp/a/model   # a smoke run

Seeded: the same arguments give the same corpus and the same transform, bit for bit (2.3 min
here for 1,200 sentences, 57 min of audio). ``--method mllr`` writes ``mllr_matrix``, ``map``
writes ``means`` + ``variances``; either directory is a ``wake.acoustic_model``. Measured on the
wake benchmark (README, ``benchmarks/results/wake-adapted.md``): neither brings 10 dB misses down
at an equal threshold, so no adapted model ships; the tool is for adapting to one's own room.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge import datasets  # noqa: E402
from edge.audio import SAMPLE_RATE  # noqa: E402
from edge.denoise import Denoiser, DenoiseSettings  # noqa: E402
from edge.wake import normalize  # noqa: E402
from edge.wake.calibrate import CalibrationError, synthesize  # noqa: E402

SPHINXTRAIN = Path("/usr/lib/sphinxtrain")
BENCH_VOICES = ("slt", "rms", "awb", "kal16", "kal", "piper-joe")  # what bench_wake.py speaks with
VOICES = ("slt", "rms", "kal16", "kal")  # awb and piper-joe held out
NOISES = ("white", "brown", "band", "hum", "babble")
KNOWN_NOISES = NOISES + ("pink",)
SNRS = (0.0, 5.0, 10.0, 15.0, 20.0)
CLEAN_SHARE = 0.2
# Sentences bench_wake.py takes from its shuffled HWU64 train list: other speech from the front, babble from the back.
BENCH_FRONT, BENCH_BACK = 1500, 1000
PHRASE_WORDS = {"hey", "computer", "jarvis"}


class AdaptError(RuntimeError):
    """A tool is missing or failed; the message says which and how to get it."""


# --------------------------------------------------------------------------- the base model


def base_model() -> Path:
    import pocketsphinx

    return Path(pocketsphinx.get_model_path()) / "en-us" / "en-us"


def base_dict() -> Path:
    import pocketsphinx

    return Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"


def read_sendump(path: Path) -> np.ndarray:
    """PocketSphinx's ``sendump`` as mixture weights, shape (senones, streams, densities).

    The file holds, after a header of strings, per stream and codeword a byte per senone: the
    weight's -log base 1.0001, shifted right by ``mixw_shift`` (10). Expanding loses nothing ``bw``
    needs; each mixture is renormalised because the quantisation leaves sums slightly off 1."""
    data = path.read_bytes()
    pos, fields = 0, {}

    def string() -> str | None:
        nonlocal pos
        n = struct.unpack_from("<I", data, pos)[0]
        pos += 4
        if n == 0:
            return None
        text = data[pos : pos + n - 1].decode("ascii", "replace")
        pos += n
        return text

    string()  # the title
    while (line := string()) is not None:
        key, _, value = line.partition(" ")
        fields[key] = value
    if int(fields.get("cluster_count", "0")) != 0:
        raise AdaptError(f"{path}: clustered sendump files are not supported")
    streams, shift = int(fields.get("feature_count", "1")), int(fields.get("mixw_shift", "10"))
    densities, senones = struct.unpack_from("<II", data, pos)
    pos += 8
    raw = np.frombuffer(data, np.uint8, streams * densities * senones, pos).reshape(streams, densities, senones)
    mixw = np.power(1.0001, -(raw.astype(np.float64) * (1 << shift)))
    mixw = mixw.transpose(2, 0, 1)
    return (mixw / mixw.sum(axis=2, keepdims=True)).astype(np.float32)


def write_s3(path: Path, array: np.ndarray) -> None:
    """A Sphinx-III binary parameter file (``s3`` header, byte-order word, dims, float32 data)."""
    head = b"s3\nversion 1.0\n"
    pad = (4 - (len(head) + len(b"endhdr\n")) % 4) % 4
    with path.open("wb") as f:
        f.write(head + b" " * pad + b"endhdr\n" + struct.pack("=i", 0x11223344))
        f.write(struct.pack("=" + "I" * (array.ndim + 1), *array.shape, array.size))
        f.write(np.ascontiguousarray(array, np.float32).tobytes())


def sendump_to_mixw(model: Path, out: Path) -> None:
    write_s3(out, read_sendump(model / "sendump"))


def prepare_base(work: Path) -> Path:
    """The wheel's model in the form bw reads: text mdef and full mixture weights."""
    base = work / "base"
    if (base / "mixture_weights").exists():
        return base
    base.mkdir(parents=True, exist_ok=True)
    src = base_model()
    for name in ("means", "variances", "transition_matrices", "noisedict", "feat.params"):
        shutil.copy(src / name, base / name)
    run(["pocketsphinx_mdef_convert", "-text", str(src / "mdef"), str(base / "mdef.txt")], "pocketsphinx")
    sendump_to_mixw(src, base / "mixture_weights.tmp")
    (base / "mixture_weights.tmp").rename(base / "mixture_weights")
    return base


def run(cmd: list[str], package: str, cwd: Path | None = None) -> str:
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).exists():
        raise AdaptError(f"{cmd[0]}: not installed (apt-get install {package}; script/setup --dev installs it)")
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise AdaptError(f"{Path(cmd[0]).name} failed (exit {done.returncode}):\n{tail}")
    return done.stdout + done.stderr


# --------------------------------------------------------------------------- the corpus


def shuffled_sentences(split: str, data_dir: str | Path | None = None) -> list[str]:
    """The HWU64 ``split``'s sentences in the fixed order the wake benchmark draws them in."""
    rows = [row["text"] for row in datasets.read_rows("hwu64", f"{split}.jsonl", data_dir)]
    random.Random(split).shuffle(rows)
    return rows


def adaptation_sentences(exclude_words: set[str] = PHRASE_WORDS, data_dir: str | Path | None = None) -> list[str]:
    """HWU64 train sentences the wake benchmark does not use."""
    rows = shuffled_sentences("train", data_dir)
    used = set(rows[:BENCH_FRONT]) | set(rows[-BENCH_BACK:])
    out, seen = [], set()
    for text in rows[BENCH_FRONT:-BENCH_BACK]:
        words = normalize(text).split()
        if text in used or text in seen or not words or exclude_words & set(words):
            continue
        seen.add(text)
        out.append(text)
    return out


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power falling as 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.maximum(np.arange(len(spectrum)), 1) ** (exponent / 2)
    return np.fft.irfft(spectrum, n)


def band_noise(n: int, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0
    return np.fft.irfft(spectrum, n)


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """A fan or appliance: mains harmonics, a blade-rate tone with wobble, over low broadband noise."""
    t = np.arange(n) / SAMPLE_RATE
    mains = rng.choice([50.0, 60.0])
    tone = sum(rng.uniform(0.3, 1.0) / k * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 6.3)) for k in range(1, 8))
    blade = rng.uniform(90, 240)
    tone += 0.5 * np.sin(2 * np.pi * blade * t + 3 * np.sin(2 * np.pi * 0.7 * t))
    air = band_noise(n, 80, rng.uniform(1500, 4000), rng)
    return tone / np.std(tone) + 0.8 * air / np.std(air)


def mix(clip: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``noise`` scaled to ``snr_db`` below the speech (active samples' power) and added to ``clip``."""
    speech = clip.astype(np.float64)
    active = speech[np.abs(speech) > 0.02 * np.abs(speech).max()]
    p_speech = np.mean(active**2)
    noise = noise[: len(clip)].astype(np.float64)
    noise *= np.sqrt(p_speech / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return np.clip(speech + noise, -32768, 32767).astype(np.int16)


def make_noise(kind: str, n: int, rng: np.random.Generator, babble: list[np.ndarray]) -> np.ndarray:
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "brown":
        return coloured_noise(n, 2.0, rng)
    if kind == "pink":
        return coloured_noise(n, 1.0, rng)
    if kind == "band":
        low = rng.uniform(200, 500)
        return band_noise(n, low, rng.uniform(2500, 4500), rng)
    if kind == "hum":
        return hum(n, rng)
    out = np.zeros(n)
    for talk in babble:
        start = int(rng.integers(0, max(1, len(talk) // 2)))
        piece = np.tile(np.roll(talk, -start), n // max(1, len(talk)) + 1)[:n].astype(np.float64)
        out += piece / (np.std(piece) or 1)
    return out


def corpus(
    work: Path,
    n: int,
    voices: tuple[str, ...],
    seed: int,
    noises: tuple[str, ...] = NOISES,
    noise_suppression: int = 0,
    data_dir: str | Path | None = None,
) -> tuple[Path, list[dict]]:
    """``n`` utterances as 16 kHz WAVs with their condition; each drawn from its own seeded generator,
    so a WAV already on disk is the one the same arguments would make again."""
    pool = adaptation_sentences(data_dir=data_dir)
    random.Random(seed).shuffle(pool)
    texts, babble_texts = pool[:n], pool[::-1]  # babble from the other end of the pool
    wav_dir = work / f"wav-s{seed}-{'-'.join(voices)}-{'-'.join(noises)}-ns{noise_suppression}"
    wav_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, text in enumerate(texts):
        rng, nrng = random.Random(f"{seed}-{i}"), np.random.default_rng([seed, i])
        voice, rate = voices[i % len(voices)], rng.choice((0.8, 0.9, 1.0, 1.1, 1.25))
        clean = rng.random() < CLEAN_SHARE
        kind, snr = ("clean", None) if clean else (noises[i % len(noises)], rng.choice(SNRS))
        talkers = [
            (babble_texts[(3 * i + k) % len(babble_texts)], rng.choice(voices), rng.choice((0.9, 1.0, 1.1)))
            for k in range(3)
        ]
        lead, tail = rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.6)
        uid = f"a{i:05d}"
        rows.append({"id": uid, "text": text, "voice": voice, "rate": rate, "noise": kind, "snr_db": snr})
        path = wav_dir / f"{uid}.wav"
        if path.exists():
            continue
        speech = synthesize(text, voice, rate)
        clip = np.concatenate(
            [np.zeros(int(lead * SAMPLE_RATE), np.int16), speech, np.zeros(int(tail * SAMPLE_RATE), np.int16)]
        )
        if not clean:
            babble = [synthesize(t, v, r) for t, v, r in talkers] if kind == "babble" else []
            clip = mix(clip, make_noise(kind, len(clip), nrng, babble), snr)
        if noise_suppression:  # adapt to what the model hears behind the front end (audio.noise_suppression)
            clip = Denoiser(DenoiseSettings(noise_suppression=noise_suppression)).process(clip)
        write_wav16(path, clip)
    return wav_dir, rows


def write_wav16(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(samples.astype("<i2").tobytes())


def transcripts(rows: list[dict], work: Path) -> tuple[Path, Path, Path, list[dict]]:
    """fileids, transcription and a dictionary of the words used; sentences with a word the
    dictionary lacks are left out (listed in the summary)."""
    prons: dict[str, list[str]] = {}
    for line in base_dict().read_text(encoding="utf-8").splitlines():
        word, _, phones = line.partition(" ")
        prons.setdefault(word.split("(")[0], []).append(f"{word} {phones.strip()}")
    kept, lines, words = [], [], set()
    for row in rows:
        tokens = normalize(row["text"]).split()
        if not all(t in prons for t in tokens):
            row["skipped"] = "word not in the dictionary"
            continue
        kept.append(row)
        words.update(tokens)
        lines.append(f"<s> {' '.join(tokens)} </s> ({row['id']})")
    fileids, trans, dic = work / "adapt.fileids", work / "adapt.transcription", work / "adapt.dict"
    fileids.write_text("".join(f"{r['id']}\n" for r in kept), encoding="utf-8")
    trans.write_text("\n".join(lines) + "\n", encoding="utf-8")
    dic.write_text("".join(p + "\n" for w in sorted(words) for p in prons[w]), encoding="utf-8")
    return fileids, trans, dic, kept


# --------------------------------------------------------------------------- sphinxtrain


def features(work: Path, base: Path, fileids: Path, wav_dir: Path) -> None:
    (work / "feat").mkdir(exist_ok=True)
    run(
        [
            "sphinx_fe",
            "-argfile",
            str(base / "feat.params"),
            "-samprate",
            str(SAMPLE_RATE),
            "-c",
            str(fileids),
            "-di",
            str(wav_dir),
            "-do",
            str(work / "feat"),
            "-ei",
            "wav",
            "-eo",
            "mfc",
            "-mswav",
            "yes",
            # sphinx_fe drops what its VAD calls silence by default; the decoder sees every frame, so must bw
            "-remove_silence",
            "no",
        ],
        "sphinxbase-utils",
    )


def feat_args(base: Path, cmn: str) -> list[str]:
    params = dict(line.split(None, 1) for line in (base / "feat.params").read_text().splitlines() if line.strip())
    return [
        "-feat",
        params["-feat"].strip(),
        "-svspec",
        params["-svspec"].strip(),
        "-agc",
        params["-agc"].strip(),
        "-cmn",
        cmn,
    ]


def baum_welch(
    work: Path, base: Path, fileids: Path, trans: Path, dic: Path, cmn: str, means: Path | None = None
) -> Path:
    """Accumulate statistics (``bw``) over the corpus, from the base model (or other ``means``)."""
    acc = work / "acc"
    shutil.rmtree(acc, ignore_errors=True)
    acc.mkdir()
    log = run(
        [
            str(SPHINXTRAIN / "bw"),
            "-hmmdir",
            str(base),
            "-moddeffn",
            str(base / "mdef.txt"),
            "-ts2cbfn",
            ".ptm.",
            *feat_args(base, cmn),
            "-meanfn",
            str(means or base / "means"),
            "-varfn",
            str(base / "variances"),
            "-mixwfn",
            str(base / "mixture_weights"),
            "-tmatfn",
            str(base / "transition_matrices"),
            "-dictfn",
            str(dic),
            "-fdictfn",
            str(base / "noisedict"),
            "-ctlfn",
            str(fileids),
            "-lsnfn",
            str(trans),
            "-cepdir",
            str(work / "feat"),
            "-cepext",
            "mfc",
            "-accumdir",
            str(acc),
            "-timing",
            "no",
        ],
        "sphinxtrain",
    )
    (work / "bw.log").write_text(log, encoding="utf-8")
    return acc


def solve_mllr(acc: Path, base: Path, out: Path) -> None:
    run(
        [
            str(SPHINXTRAIN / "mllr_solve"),
            "-meanfn",
            str(base / "means"),
            "-varfn",
            str(base / "variances"),
            "-outmllrfn",
            str(out),
            "-accumdir",
            str(acc),
        ],
        "sphinxtrain",
    )


def solve_map(acc: Path, base: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    scratch = acc.parent / "map-scratch"
    scratch.mkdir(exist_ok=True)
    run(
        [
            str(SPHINXTRAIN / "map_adapt"),
            "-moddeffn",
            str(base / "mdef.txt"),
            "-ts2cbfn",
            ".ptm.",
            "-meanfn",
            str(base / "means"),
            "-varfn",
            str(base / "variances"),
            "-mixwfn",
            str(base / "mixture_weights"),
            "-tmatfn",
            str(base / "transition_matrices"),
            "-accumdir",
            str(acc),
            "-mapmeanfn",
            str(out / "means"),
            "-mapvarfn",
            str(out / "variances"),
            "-mapmixwfn",
            str(scratch / "mixture_weights"),
            "-maptmatfn",
            str(scratch / "transition_matrices"),
        ],
        "sphinxtrain",
    )


# --------------------------------------------------------------------------- main


def adapt(
    out: Path,
    work: Path,
    n: int,
    method: str,
    voices: tuple[str, ...],
    seed: int,
    cmn: str = "batch",
    noises: tuple[str, ...] = NOISES,
    noise_suppression: int = 0,
    data_dir: str | Path | None = None,
) -> dict:
    t0 = time.time()
    timings = {}
    base = prepare_base(work)
    wav_dir, rows = corpus(work, n, voices, seed, noises, noise_suppression, data_dir)
    timings["corpus_s"] = round(time.time() - t0, 1)
    fileids, trans, dic, kept = transcripts(rows, work)
    if not kept:
        raise AdaptError("no adaptation sentence has all its words in the dictionary")
    t = time.time()
    features(work, base, fileids, wav_dir)
    timings["features_s"] = round(time.time() - t, 1)
    t = time.time()
    acc = baum_welch(work, base, fileids, trans, dic, cmn)
    timings["bw_s"] = round(time.time() - t, 1)
    out.mkdir(parents=True, exist_ok=True)
    t = time.time()
    if method == "mllr":
        solve_mllr(acc, base, out / "mllr_matrix")
    else:
        solve_map(acc, base, out)
    timings["solve_s"] = round(time.time() - t, 1)
    timings["total_s"] = round(time.time() - t0, 1)
    audio_s = sum(wave.open(str(wav_dir / f"{r['id']}.wav")).getnframes() for r in kept) / SAMPLE_RATE
    conditions: dict[str, int] = {}
    for r in kept:
        key = r["noise"] if r["snr_db"] is None else f"{r['noise']} {r['snr_db']:g} dB"
        conditions[key] = conditions.get(key, 0) + 1
    summary = {
        "base_model": "pocketsphinx wheel en-us (PTM, 5126 senones)",
        "method": method,
        "seed": seed,
        "utterances": len(kept),
        "skipped": n - len(kept),
        "audio_s": round(audio_s, 1),
        "voices": list(voices),
        "held_out_voices": [v for v in BENCH_VOICES if v not in voices],
        "sentences": "HWU64 train, excluding those bench_wake.py uses and any with hey/computer/jarvis",
        "cmn": cmn,
        "noise_suppression": noise_suppression,
        "noises": list(noises),
        "snrs_db": list(SNRS),
        "clean_share": CLEAN_SHARE,
        "conditions": dict(sorted(conditions.items())),
        "timings": timings,
    }
    (out / "adaptation.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--out", type=Path, required=True, help="model directory to write (mllr_matrix, or means + variances)"
    )
    p.add_argument(
        "--work", type=Path, default=ROOT / "runs" / "adapt-acoustic", help="corpus, features and statistics"
    )
    p.add_argument("--utterances", type=int, default=1200)
    p.add_argument(
        "--method",
        choices=("mllr", "map"),
        default="mllr",
        help="mllr: one global transform (mllr_matrix, 5 KB); map: re-estimated means + variances (1.7 MB)",
    )
    p.add_argument("--voices", default=",".join(VOICES), help="flite voices to adapt on (the others are held out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--noise-suppression",
        type=int,
        default=0,
        choices=range(5),
        metavar="0..4",
        help="run the adaptation audio through edge.denoise first (for audio.noise_suppression)",
    )
    p.add_argument("--noises", default=",".join(NOISES), help=f"noise types to mix in, of {', '.join(KNOWN_NOISES)}")
    p.add_argument(
        "--cmn",
        choices=("live", "batch"),
        default="batch",
        help="cepstral mean normalisation in bw: live (as the streaming decoder does it) or batch (per utterance)",
    )
    datasets.add_argument(p)
    args = p.parse_args(argv)
    noises = tuple(args.noises.split(","))
    voices = tuple(args.voices.split(","))
    unknown = [n for n in noises if n not in KNOWN_NOISES]
    if unknown:
        p.error(f"--noises: {', '.join(unknown)} unknown; allowed {', '.join(KNOWN_NOISES)}")
    flite = (
        set(subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout.split(":")[-1].split())
        if shutil.which("flite")
        else set()
    )
    if not flite:
        p.error("flite is not installed (apt-get install flite); it speaks the adaptation sentences")
    if set(voices) - flite:
        p.error(f"--voices: {', '.join(sorted(set(voices) - flite))} unknown; flite has {', '.join(sorted(flite))}")
    if args.utterances < 1:
        p.error(f"--utterances: {args.utterances}; expected at least 1")
    try:
        summary = adapt(
            args.out,
            args.work,
            args.utterances,
            args.method,
            voices,
            args.seed,
            args.cmn,
            noises,
            args.noise_suppression,
            args.data,
        )
    except (AdaptError, CalibrationError, datasets.DataSetMissing) as exc:
        print(f"adapt_acoustic: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
