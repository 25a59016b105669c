"""PocketSphinx keyphrase spotting: a wake word for any phrase, with no model to train or download.

PocketSphinx is already the default STT engine, and its wheel carries the en-us acoustic model and
the 130k-entry CMU dictionary, so any phrase whose words are in that dictionary (or that gets a
pronunciation under ``wake.words``) can be spotted. The keyphrase search scores the phrase's HMM
against a phone loop every 10 ms and fires when their likelihood ratio passes the phrase's
threshold; it costs a few hundredths of a core.

PocketSphinx reports *that* a phrase fired, not by how much. To give every hit a score (and to
calibrate in one pass) each phrase is registered as a ladder of copies at rising thresholds, the
copies told apart by an alias of the first word with the same pronunciation. When any copy fires,
the search clears every keyphrase at once, so the copies that fired together give the phrase's
log-likelihood ratio at that moment to within a rung: that is the score, and a hit counts when it
reaches the phrase's threshold. Calibration (``scan``) and detection run the very same ladder,
so a calibrated threshold means the same thing at run time. The copies share the phone loop,
which is most of the cost: 30 copies cost hardly more than one (docs/liveloop.md).
Thresholds are log10 of PocketSphinx's ``kws_threshold`` (-20 means 1e-20), because YAML reads a
bare ``1e-20`` as a string.

Noise is this engine's weak side, and no decoder option fixes it (measured on the wake benchmark,
``benchmarks/results/wake.md``): at 10 dB SNR the phrase's score falls from a median of +50 to
about -30 while other speech tops out near -22.5 in an hour, because the en-us acoustic model was
trained on clean speech and its phone loop explains noisy frames better than the phrase does. Two
things make it worse in practice and were checked: the model's ``feat.params`` (``remove_noise yes``,
``cmn batch``) override decoder arguments, and live CMN (which batch becomes when streaming) keeps
the mean of the last 5-8 s, so right after the noise changes the features are off. A perfect
per-clip mean (or ten seconds of the same noise first) more than halves the misses at -42.5, but
that threshold lets 17 false wakes an hour through; at -20 (none an hour) it changes nothing.
``remove_noise`` off, a wider beam and other phone-loop penalties measured no better. What helps
some is WebRTC noise suppression in front (``audio.noise_suppression``, :mod:`edge.denoise`) for
steady noise. A threshold closer above other speech than calibration's midpoint was tried too and
dropped: six minutes of other speech can top out 25 units below what an hour reaches.

Adapting the acoustic model to noisy speech (``tools/adapt_acoustic.py``: MLLR or MAP with
sphinxtrain, on synthesised sentences in other noises, also behind noise suppression) does not fix
it either: the phrase and the phone loop it is scored against gain alike, so 10 dB scores move by
a few units, not the 20-40 needed, and at equal thresholds the benchmark's misses do not change.
No adapted model ships; ``wake.acoustic_model`` (:func:`model_args`, default ``stock``) loads one
made for a user's own voice and room.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from edge.wake import WakeEngine, WakeError, WakeHit, check_samples, check_threshold, normalize

DEFAULT_THRESHOLD = -20.0
"""log10 kws threshold for a phrase that has not been calibrated (PocketSphinx's usual 1e-20)."""
LOWEST, HIGHEST = -100.0, 100.0
"""Allowed thresholds."""
FLOOR = -60.0
"""Where the score ladder starts (lower if a phrase's threshold is lower); scores below it are not seen."""
STEP = 2.5
"""Spacing of the ladder, the resolution of scores and calibrated thresholds (log10 units)."""
PHONE_LOOP = 1e-5
"""PocketSphinx's ``kws_plp``, the phone loop's penalty. Its default (0.1) lets the phone loop absorb the
phrase as soon as noise blurs it; at 1e-5 the benchmark's 10 dB clips are found far more often
(measured on 60 clips: FRR 58 % instead of 93 % at the threshold with no false accepts) and clean
speech no worse, with the false accepts this adds held off by the (calibrated) threshold."""
_FRAME = 160  # samples per PocketSphinx frame (10 ms)
_PARTS = {"mllr_matrix": "mllr", "means": "mean", "variances": "var"}  # adapted parts -> Decoder arguments
_EXPECTED = (
    "expected 'stock', the name of an installed adapted acoustic model directory, a PocketSphinx "
    "model directory (with mdef), a directory with mllr_matrix and/or means + variances, or an MLLR transform file"
)


def model_args(acoustic_model: str) -> dict[str, str]:
    """The PocketSphinx ``Decoder`` arguments for ``wake.acoustic_model`` (see :class:`edge.wake.WakeSettings`)."""
    if acoustic_model == "stock":
        return {}
    path = Path(acoustic_model).expanduser()
    if not path.exists() and os.sep not in acoustic_model and not acoustic_model.startswith("."):
        from edge.package import search_dirs  # a bare name: installed beside the intent models

        found = next((d / acoustic_model for d in search_dirs() if (d / acoustic_model).is_dir()), None)
        if found is None:
            raise WakeError(
                f"acoustic_model: {acoustic_model!r} is neither a file nor an installed model (searched "
                f"{', '.join(str(d) for d in search_dirs())}); {_EXPECTED}"
            )
        path = found
    if path.is_file():
        return {"mllr": str(path)}
    if not path.is_dir():
        raise WakeError(f"acoustic_model: {acoustic_model}: no such file or directory; {_EXPECTED}")
    if (path / "mdef").is_file():
        return {"hmm": str(path)}
    args = {arg: str(path / name) for name, arg in _PARTS.items() if (path / name).is_file()}
    if not args or ("mean" in args) != ("var" in args):
        names = sorted(p.name for p in path.iterdir())
        found = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "") or "nothing"
        raise WakeError(f"acoustic_model: {acoustic_model}: holds no usable model parts (found: {found}); {_EXPECTED}")
    return args


class KeyphraseEngine(WakeEngine):
    """Streaming PocketSphinx keyphrase search over one or more phrases, each with its own threshold."""

    name = "pocketsphinx"

    def __init__(
        self,
        phrases: list[str] | tuple[str, ...],
        thresholds: dict[str, float | None] | None = None,
        words: dict[str, str] | None = None,
        phone_loop: float = PHONE_LOOP,
        acoustic_model: str = "stock",
    ) -> None:
        try:
            import pocketsphinx
        except ImportError:
            raise WakeError(
                "the pocketsphinx wake engine needs the Python package pocketsphinx (pip install pocketsphinx)"
            ) from None
        thresholds = thresholds or {}
        self._phrases = tuple(phrases)
        model = model_args(acoustic_model)
        try:
            self._decoder = pocketsphinx.Decoder(lm=None, loglevel="FATAL", samprate=16000, kws_plp=phone_loop, **model)
        except (RuntimeError, ValueError) as exc:
            raise WakeError(
                f"acoustic_model: {acoustic_model}: PocketSphinx could not load it ({exc}); expected a model "
                "made for its en-us model (tools/adapt_acoustic.py)"
            ) from None
        self.acoustic_model = acoustic_model
        self._thresholds: dict[str, float] = {}
        self._alias: dict[str, tuple[str, float]] = {}  # first-word alias -> (phrase, threshold of that copy)
        for phrase in self._phrases:
            value = thresholds.get(phrase)
            self._thresholds[phrase] = (
                DEFAULT_THRESHOLD
                if value is None
                else check_threshold(self.name, phrase, value, LOWEST, HIGHEST, "log10 of the keyphrase threshold")
            )
        floor = min(FLOOR, *self._thresholds.values())
        levels = [floor + i * STEP for i in range(int((HIGHEST - floor) / STEP) + 1)]
        lines = []
        for phrase in self._phrases:
            tokens = normalize(phrase).split()
            for word in tokens:
                self._ensure_word(word, phrase, words or {})
            first = self._decoder.lookup_word(tokens[0])
            for level in levels:
                alias = f"{tokens[0]}__{len(self._alias)}"
                self._decoder.add_word(alias, first, False)
                self._alias[alias] = (phrase, level)
                lines.append(f"{' '.join([alias, *tokens[1:]])} /{10.0**level:.6e}/\n")
        fd, path = tempfile.mkstemp(suffix=".kws")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.writelines(lines)
            self._decoder.add_kws("wake", path)
        except RuntimeError as exc:
            raise WakeError(f"phrases: PocketSphinx refused the keyphrases {list(self._phrases)} ({exc})") from None
        finally:
            os.unlink(path)
        self._decoder.activate_search("wake")
        self._fed = 0
        self._utt_start = 0
        self._in_utt = False

    def _ensure_word(self, word: str, phrase: str, words: dict[str, str]) -> None:
        if self._decoder.lookup_word(word) is not None:
            return
        phones = next((v for k, v in words.items() if normalize(k) == word), None)
        if phones is None:
            raise WakeError(
                f"phrases: {phrase!r}: the word {word!r} is not in the PocketSphinx dictionary; give its "
                f'pronunciation under wake.words (e.g. {word}: "HH EH L OW", ARPAbet phones) or choose another phrase'
            )
        try:
            self._decoder.add_word(word, " ".join(phones.upper().split()), False)
        except RuntimeError:
            raise WakeError(
                f"words.{word}: {phones!r} is not a pronunciation PocketSphinx can use; expected ARPAbet "
                'phones of its en-us model separated by spaces (e.g. "HH EH L OW")'
            ) from None

    @property
    def phrases(self) -> tuple[str, ...]:
        return self._phrases

    def thresholds(self) -> dict[str, float]:
        return dict(self._thresholds)

    def _feed(self, samples: np.ndarray) -> None:
        if not self._in_utt:
            self._decoder.start_utt()
            self._in_utt = True
            self._utt_start = self._fed
        self._decoder.process_raw(check_samples(samples).tobytes(), False, False)
        self._fed += len(samples)

    def _detections(self) -> list[tuple[str, float, int]]:
        """(phrase, rung threshold, end sample) of every copy that fired in this utterance."""
        out = []
        for seg in self._decoder.seg():
            alias = seg.word.split()[0] if seg.word.strip() else ""
            if alias in self._alias:
                phrase, level = self._alias[alias]
                out.append((phrase, level, self._utt_start + (seg.end_frame + 1) * _FRAME))
        return out

    def process(self, samples: np.ndarray) -> WakeHit | None:
        self._feed(samples)
        if self._decoder.hyp() is None:
            return None
        scores = self._scores(self._detections())
        self._restart()  # the search has cleared its keyphrases anyway
        hits = [(end, phrase, score) for phrase, (score, end) in scores.items() if score >= self._thresholds[phrase]]
        if not hits:
            return None
        end, phrase, score = min(hits)
        return WakeHit(phrase, self.name, score, end)

    def scan(self, samples: np.ndarray) -> dict[str, float]:
        """Highest score each phrase reached anywhere in ``samples`` (``-inf`` if none), for calibration."""
        self.reset()
        self._feed(samples)
        self._decoder.end_utt()  # flush the last frames, so a phrase at the very end still counts
        self._in_utt = False
        scores = self._scores(self._detections()) if self._decoder.hyp() is not None else {}
        self.reset()
        return {p: scores.get(p, (float("-inf"), 0))[0] for p in self._phrases}

    @staticmethod
    def _scores(found: list[tuple[str, float, int]]) -> dict[str, tuple[float, int]]:
        out: dict[str, tuple[float, int]] = {}
        for phrase, level, end in found:
            top, first = out.get(phrase, (level, end))
            out[phrase] = (max(top, level), min(first, end))
        return out

    def _restart(self) -> None:
        if self._in_utt:
            self._decoder.end_utt()
            self._in_utt = False

    def reset(self) -> None:
        self._restart()
        self._fed = 0

    def close(self) -> None:
        self._restart()
