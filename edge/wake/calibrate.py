"""Pick a threshold per wake phrase from speech of the phrase and of other speech.

Each engine ``scan``\\ s a clip and reports the highest score each phrase reached in it, whatever
the threshold, so one pass over the audio gives every clip's score. The threshold then sits in
the middle of the gap between the highest score any other speech reached (none of it may wake the
device) and the score that keeps ``1 - max_frr`` of the phrase clips, so both sides get a margin.
When the two overlap, false wakes win: the threshold goes just above the other speech, and the
result says how many phrase clips that loses.

Speech comes from recordings (WAV files) or is synthesised with Debian's ``flite`` (several
voices and speaking rates): the phrase followed by a command, and sentences of the intent
domain as other speech: the model package's evaluation sample (commands written for its intents,
``eval_sample.jsonl``), else a built-in list, or ``--sentences FILE``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edge.audio import AudioError, read_wav
from edge.wake import SAMPLE_RATE, WakeEngine, WakeError

VOICES = ("slt", "rms", "awb", "kal16")
RATES = (0.85, 1.0, 1.2)
MAX_RECORDING_S = 4 * 3600.0
# Other speech when no model package with an evaluation sample is installed.
FALLBACK_SENTENCES = (
    "turn off the lights in the kitchen",
    "what is the weather like tomorrow",
    "set an alarm for seven am",
    "play some jazz music",
    "remind me to call my mother tonight",
    "how much is a train ticket to paris",
    "what time is it in tokyo",
    "add milk to my shopping list",
    "tell me a joke",
    "is it going to rain today",
    "turn the volume down",
    "what is on my calendar for friday",
    "order a pizza for dinner",
    "how long will it take to drive to work",
    "dim the lights in the living room",
    "read me the latest news",
    "send an email to john about the meeting",
    "what is the capital of australia",
    "start the vacuum cleaner",
    "how many calories are in an apple",
    "wake me up at six thirty",
    "find a recipe for pancakes",
    "who won the football game last night",
    "book a table for two at eight",
    "what does my day look like",
)


class CalibrationError(WakeError):
    """Calibration cannot run (no speech to calibrate on, or no synthesiser)."""


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The threshold chosen for one phrase and what it does on the calibration speech."""

    phrase: str
    engine: str
    threshold: float
    previous: float | None
    """The threshold in force before (the configured or default one)."""
    positives: int
    detected: int
    """Phrase clips whose score reaches the threshold."""
    negatives: int
    negative_s: float
    false_accepts: int
    """Other-speech clips whose score reaches the threshold (0 unless the two overlap)."""
    positive_scores: tuple[float, ...]
    negative_max: float | None
    note: str = ""

    @property
    def frr(self) -> float:
        return 1 - self.detected / self.positives if self.positives else 0.0

    def to_dict(self) -> dict:
        finite = [s for s in self.positive_scores if math.isfinite(s)]
        return {
            "phrase": self.phrase,
            "engine": self.engine,
            "threshold": self.threshold,
            "previous": self.previous,
            "positives": self.positives,
            "detected": self.detected,
            "frr": round(self.frr, 4),
            "negatives": self.negatives,
            "negative_s": round(self.negative_s, 1),
            "false_accepts": self.false_accepts,
            "positive_score_min": min(finite) if finite else None,
            "positive_score_median": float(np.median(finite)) if finite else None,
            "negative_score_max": self.negative_max,
            "note": self.note,
        }


# --------------------------------------------------------------------------- choosing


@dataclasses.dataclass(frozen=True)
class Scale:
    """How an engine's scores and thresholds behave."""

    low: float
    """The lowest score the engine reports for a clip without the phrase (what 'never heard' counts as)."""
    high: float
    step: float | None = None
    """Scores come in rungs of this size from ``low`` (PocketSphinx): thresholds are rungs too."""
    strict: bool = False
    """A hit needs score > threshold (microWakeWord), not >=."""


def scale_of(engine_name: str) -> Scale:
    if engine_name == "pocketsphinx":
        from edge.wake.keyphrase import FLOOR, HIGHEST, STEP

        return Scale(FLOOR, HIGHEST, STEP)
    if engine_name == "micro":
        return Scale(0.0, 1.0, strict=True)
    return Scale(0.0, 1.0)


def fires(score: float, threshold: float, scale: Scale) -> bool:
    return score > threshold if scale.strict else score >= threshold


def choose_threshold(
    positives: list[float], negatives: list[float], scale: Scale, max_frr: float = 0.05
) -> tuple[float, str]:
    """The threshold and a note (empty when both goals are met on this speech)."""
    if not positives:
        raise CalibrationError("no phrase clips to calibrate on")
    never = scale.low - (scale.step or 0.0)  # a clip in which the phrase was not heard at all
    pos = sorted(p if math.isfinite(p) else never for p in positives)
    neg_max = max([n if math.isfinite(n) else never for n in negatives], default=never)
    keep = pos[min(len(pos) - 1, int(math.floor(max_frr * len(pos))))]  # the lowest score still to be kept
    note = ""
    if keep > neg_max:
        threshold = (neg_max + keep) / 2
    else:
        above = [p for p in pos if p > neg_max]
        if not above:
            raise CalibrationError(
                f"no threshold separates the phrase from other speech: other speech scored up to "
                f"{neg_max:g}, the phrase at most {pos[-1]:g}; record the phrase in the room, or "
                "choose a longer phrase"
            )
        threshold = (neg_max + above[0]) / 2
        lost = sum(1 for p in pos if p <= threshold)
        unheard = sum(1 for p in pos if p <= never)
        note = f"{lost} of {len(pos)} phrase clips fall below the threshold"
        if unheard:
            note += f" ({unheard} not heard at all, at any threshold)"
        if neg_max > never:
            note += f"; other speech scored up to {neg_max:g}"
    if scale.step:  # round onto the ladder, staying above every other-speech score
        rung = max(0, math.ceil((threshold - scale.low) / scale.step - 1e-9))
        threshold = scale.low + rung * scale.step
        if threshold <= neg_max:
            threshold += scale.step
    threshold = min(threshold, scale.high)
    return round(float(threshold), 6), note


def calibrate(
    engine: WakeEngine,
    positives: dict[str, list[np.ndarray]],
    negatives: list[np.ndarray],
    previous: dict[str, float] | None = None,
    max_frr: float = 0.05,
) -> list[Calibration]:
    """Score every clip with ``engine`` and choose each phrase's threshold.

    ``positives`` maps each phrase to clips that contain it; clips of one phrase are other speech
    for the other phrases, next to ``negatives``.
    """
    previous = previous or {}
    pos_scores: dict[str, list[float]] = {p: [] for p in engine.phrases}
    neg_scores: dict[str, list[float]] = {p: [] for p in engine.phrases}
    for phrase, clips in positives.items():
        for clip in clips:
            scores = engine.scan(clip)
            for other, score in scores.items():
                (pos_scores if other == phrase else neg_scores)[other].append(score)
    for clip in negatives:
        for phrase, score in engine.scan(clip).items():
            neg_scores[phrase].append(score)
    negative_s = sum(len(c) for c in negatives) / SAMPLE_RATE
    engines = _engine_of_phrase(engine)
    out = []
    for phrase in engine.phrases:
        scale = scale_of(engines[phrase])
        threshold, note = choose_threshold(pos_scores[phrase], neg_scores[phrase], scale, max_frr)
        finite_neg = [s for s in neg_scores[phrase] if math.isfinite(s)]
        out.append(
            Calibration(
                phrase=phrase,
                engine=engines[phrase],
                threshold=threshold,
                previous=previous.get(phrase),
                positives=len(pos_scores[phrase]),
                detected=sum(fires(s, threshold, scale) for s in pos_scores[phrase]),
                negatives=len(neg_scores[phrase]),
                negative_s=negative_s,
                false_accepts=sum(fires(s, threshold, scale) for s in neg_scores[phrase]),
                positive_scores=tuple(pos_scores[phrase]),
                negative_max=max(finite_neg) if finite_neg else None,
                note=note,
            )
        )
    return out


def _engine_of_phrase(engine: WakeEngine) -> dict[str, str]:
    inner = getattr(engine, "engine", engine)  # Metered
    parts = getattr(inner, "engines", [inner])  # Combined
    return {p: e.name for e in parts for p in e.phrases}


# --------------------------------------------------------------------------- speech


def have_flite() -> bool:
    return shutil.which("flite") is not None


def synthesize(text: str, voice: str = "slt", stretch: float = 1.0) -> np.ndarray:
    """``text`` spoken by a flite voice, 16 kHz mono int16 (``stretch`` > 1 speaks slower)."""
    if not have_flite():
        raise CalibrationError(
            "synthesising speech needs Debian's flite (apt-get install flite); or give recordings "
            "with --positive and --negative"
        )
    with tempfile.TemporaryDirectory(prefix="edge-wake-") as tmp:
        path = Path(tmp) / "speech.wav"
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:g}", "-t", text, "-o", str(path)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not path.exists():
            raise CalibrationError(
                f"flite could not speak with voice {voice!r}: {done.stderr.strip() or done.returncode}"
            )
        samples, _ = read_wav(path)
    return samples


def pause(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.int16)


def domain_sentences() -> list[str]:
    """The default model package's evaluation sample (its domain's commands), else the built-in list."""
    from edge.package import PackageError, find_package

    try:
        rows = find_package(None).evaluation_sample()
    except PackageError:
        rows = []
    return [r["text"] for r in rows] or list(FALLBACK_SENTENCES)


def other_sentences(n: int, seed: int = 0, source: str | Path | None = None) -> list[str]:
    """``n`` sentences of other speech: from ``source`` (text lines, or JSON lines with ``text``), else
    :func:`domain_sentences` (repeated when short)."""
    if source:
        path = Path(source)
        try:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            sentences = [json.loads(line)["text"] if line.startswith("{") else line for line in lines]
        except (OSError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"{path}: cannot read sentences ({exc})") from None
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CalibrationError(f"{path}: a line starting with '{{' is not a JSON object with \"text\"") from None
        if not sentences:
            raise CalibrationError(f"{path}: no sentences in this file")
    else:
        sentences = domain_sentences()
    rng = random.Random(seed)
    rng.shuffle(sentences)
    return [sentences[i % len(sentences)] for i in range(n)]


def synthetic_positives(
    phrase: str, voices: Iterable[str] = VOICES, rates: Iterable[float] = RATES, commands: list[str] | None = None
) -> list[np.ndarray]:
    """The phrase in every voice and rate, each followed by a command as it is used."""
    voices, rates = list(voices), list(rates)
    commands = commands or other_sentences(len(voices) * len(rates), seed=1)
    clips = []
    for i, (voice, rate) in enumerate((v, r) for v in voices for r in rates):
        clips.append(
            np.concatenate(
                [
                    pause(0.4),
                    synthesize(phrase, voice, rate),
                    pause(0.2),
                    synthesize(commands[i % len(commands)], voice, rate),
                    pause(0.4),
                ]
            )
        )
    return clips


def synthetic_negatives(
    n: int, voices: Iterable[str] = VOICES, rates: Iterable[float] = RATES, source: str | Path | None = None
) -> list[np.ndarray]:
    voices, rates = list(voices), list(rates)
    return [
        np.concatenate(
            [pause(0.3), synthesize(text, voices[i % len(voices)], rates[(i // len(voices)) % len(rates)]), pause(0.3)]
        )
        for i, text in enumerate(other_sentences(n, seed=2, source=source))
    ]


def load_recordings(paths: Iterable[str | Path]) -> list[np.ndarray]:
    """WAV files, and the ``*.wav`` files in directories, as 16 kHz mono int16 clips."""
    clips = []
    for path in map(Path, paths):
        files = sorted(path.glob("*.wav")) if path.is_dir() else [path]
        if path.is_dir() and not files:
            raise CalibrationError(f"{path}: no .wav files in this directory")
        for f in files:
            try:
                samples, _ = read_wav(f, max_seconds=MAX_RECORDING_S)
            except AudioError as exc:
                raise CalibrationError(str(exc)) from None
            clips.append(np.concatenate([pause(0.2), samples, pause(0.2)]))
    return clips
