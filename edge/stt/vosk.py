"""Vosk engine: Kaldi models, for devices where the 40 MB English model has been fetched.

Small Vosk models (``vosk-model-small-*``) keep their decoding graph split (``HCLr.fst`` and
``Gr.fst``), which lets a recogniser swap the language model at run time for one Vosk builds
from a list of phrases (a bigram over their words). With an intent model's adaptation artefacts
that list is the training sentences plus ``[unk]`` and common English words (``edge.stt.adapt``),
so in-domain phrases are preferred and other speech still comes out as words or ``[unk]``.
Models with a static graph ignore the grammar (Vosk says so) and decode with their own LM.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.stt import Decoded, SttEngine, SttError, Word

_MODELS: dict[str, Any] = {}  # model dir -> vosk.Model: loading takes seconds, share it per process


def load_model(model_dir: str | Path) -> Any:
    try:
        import vosk
    except ImportError:
        raise SttError("the Vosk engine needs the Python package vosk (pip install vosk)") from None
    model_dir = Path(model_dir)
    key = str(model_dir.resolve())
    if key not in _MODELS:
        if not (model_dir / "am" / "final.mdl").is_file():
            raise SttError(f"{model_dir}: not a Vosk model directory (expected am/final.mdl, conf/, graph/)")
        vosk.SetLogLevel(-1)
        try:
            _MODELS[key] = vosk.Model(str(model_dir))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise SttError(f"{model_dir}: Vosk could not load the model ({exc})") from None
    return _MODELS[key]


class VoskEngine(SttEngine):
    """Streaming Kaldi recogniser; word confidences are Vosk's (MBR posteriors)."""

    def __init__(
        self, model_dir: str | Path, grammar: list[str] | None = None, adaptation: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        import vosk

        self.model_dir = Path(model_dir)
        model = load_model(self.model_dir)
        if grammar is None and adaptation and adaptation.get("grammar"):
            grammar = json.loads(Path(adaptation["grammar"]).read_text(encoding="utf-8"))
        if grammar:
            self._rec = vosk.KaldiRecognizer(model, 16000, json.dumps(grammar, ensure_ascii=False))
            self.name = "vosk+grammar"
        else:
            self._rec = vosk.KaldiRecognizer(model, 16000)
            self.name = "vosk"
        self._rec.SetWords(True)
        self._segments: list[dict[str, Any]] = []

    def _accept(self, pcm: bytes) -> None:
        # Vosk endpoints on its own too; keep what it closed so the utterance stays whole.
        if self._rec.AcceptWaveform(pcm):
            self._segments.append(json.loads(self._rec.Result()))

    def partial(self) -> str:
        done = " ".join(s.get("text", "") for s in self._segments)
        current = json.loads(self._rec.PartialResult()).get("partial", "")
        return " ".join(t for t in (done, current) if t)

    def _final(self) -> Decoded:
        segments = self._segments + [json.loads(self._rec.FinalResult())]
        self._segments = []
        words = [
            Word(w["word"], float(w["start"]), float(w["end"]), float(w["conf"]))
            for seg in segments
            for w in seg.get("result", [])
        ]
        return Decoded(" ".join(w.text for w in words), words)

    def describe(self) -> str:
        return f"{self.name} ({self.model_dir})"
