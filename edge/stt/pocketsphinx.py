"""PocketSphinx engine: the fallback everywhere, because its wheel carries a complete US English model.

PocketSphinx 5 decodes in real time on one Pi core with an n-gram language model. With an intent
model's adaptation artefacts it loads the domain LM (the training sentences mixed with the general
English LM, see ``edge.stt.adapt``) and the matching smaller dictionary instead of the 72k-word
general ones. A package trained from an intents file also carries its templates as a JSGF grammar
(``grammar``: ``stt.pocketsphinx_search: grammar``), which hears only the commands it lists: the
measurements behind the default (LM) are in docs/speech.md.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from edge.stt import Decoded, Hypothesis, SttEngine, SttError, Word

_FRAME_S = 0.01  # PocketSphinx frames are 10 ms
N_BEST = 5
_ALT_PRON = re.compile(r"\(\d+\)$")


def _is_filler(word: str) -> bool:
    return word.startswith(("<", "[")) or word == ""


class PocketSphinxEngine(SttEngine):
    """Streaming PocketSphinx decoder; word confidences are lattice posteriors."""

    def __init__(
        self,
        hmm: str | None = None,
        lm: str | Path | None = None,
        dict: str | Path | None = None,
        adaptation: dict[str, Any] | None = None,
        search: str = "lm",
    ) -> None:
        super().__init__()
        try:
            import pocketsphinx
        except ImportError:
            raise SttError(
                "the PocketSphinx engine needs the Python package pocketsphinx (pip install pocketsphinx)"
            ) from None
        jsgf = None
        if search not in ("lm", "grammar"):
            raise SttError(f"PocketSphinx search {search!r}: expected lm or grammar")
        if search == "grammar":
            jsgf = (adaptation or {}).get("jsgf")
            if jsgf is None:
                raise SttError(
                    "PocketSphinx grammar search needs a package trained from an intents file "
                    "(its stt/commands.jsgf); this package has none: use the lm search"
                )
        if adaptation:
            lm = lm or adaptation.get("lm")
            dict = dict or adaptation.get("dict")
        kwargs: dict[str, Any] = {"loglevel": "FATAL", "samprate": 16000, "bestpath": True}
        if hmm:
            if not (Path(hmm) / "mdef").is_file():
                raise SttError(f"{hmm}: not a PocketSphinx acoustic model directory (no mdef file)")
            kwargs["hmm"] = str(hmm)
        if jsgf:
            kwargs["jsgf"] = str(jsgf)
        elif lm:
            kwargs["lm"] = str(lm)
        if dict:
            kwargs["dict"] = str(dict)
        try:
            self._decoder = pocketsphinx.Decoder(**kwargs)
        except (RuntimeError, ValueError) as exc:
            raise SttError(
                f"PocketSphinx could not load its model ({', '.join(f'{k}={v}' for k, v in kwargs.items())}): {exc}"
            ) from None
        self.name = "pocketsphinx+grammar" if jsgf else "pocketsphinx+adapted" if lm else "pocketsphinx"
        self._in_utt = False

    def _accept(self, pcm: bytes) -> None:
        if not self._in_utt:
            self._decoder.start_utt()
            self._in_utt = True
        self._decoder.process_raw(pcm, False, False)

    def partial(self) -> str:
        hyp = self._decoder.hyp() if self._in_utt else None
        return _clean(hyp.hypstr) if hyp else ""

    def _final(self) -> Decoded:
        if not self._in_utt:
            return Decoded("", [])
        self._decoder.end_utt()
        self._in_utt = False
        words = [
            Word(
                _ALT_PRON.sub("", seg.word),
                seg.start_frame * _FRAME_S,
                (seg.end_frame + 1) * _FRAME_S,
                min(1.0, float(seg.prob)),
            )
            for seg in self._decoder.seg()
            if not _is_filler(seg.word)
        ]
        text = " ".join(w.text for w in words)
        return Decoded(text, words, self._alternatives(text))

    def _alternatives(self, best: str) -> tuple[Hypothesis, ...]:
        """The lattice's n-best, filler words removed; the first is the best path's text."""
        out = {best: Hypothesis(best, 0.0)} if best else {}
        for hyp in itertools.islice(self._decoder.nbest(), N_BEST * 2):
            if hyp is None:  # an utterance of silence: the lattice has entries without a hypothesis
                continue
            text = _clean(hyp.hypstr)
            if text and text not in out:
                out[text] = Hypothesis(text, float(hyp.score))
            if len(out) >= N_BEST:
                break
        return tuple(out.values())

    def describe(self) -> str:
        cfg = self._decoder.config
        return f"{self.name} (lm {Path(cfg['lm']).name}, dict {Path(cfg['dict']).name})"


def _clean(hypstr: str) -> str:
    return " ".join(_ALT_PRON.sub("", w) for w in hypstr.split() if not _is_filler(w))
