"""The speech chain: audio source -> VAD -> STT -> intent classifier, one Result per utterance.

Used by ``edge-intent --wav`` as is; the live loop (``edge.liveloop``, for ``--mic`` and the
daemon) drives the same stages frame by frame through :meth:`Pipeline.feed` and
:meth:`Pipeline.finish`, with a wake word and timeouts in front. The recogniser is fed while the person is
still speaking, so when the endpointer closes an utterance only the STT finalisation and the
classification remain: that is the end-of-speech -> intent latency, and the Result's
``latency_ms`` splits it into

* ``capture``: how long the closing frame waited between PortAudio (or the WAV decoder) and
  the pipeline; grows when processing falls behind the microphone;
* ``vad``: the VAD on the closing frame;
* ``stt``: the recogniser on the closing frame plus its finalisation;
* ``tokenize``, ``infer``, ``decode``: the classifier's stages, ``classify`` their sum;
* ``total``: all of the above, from the closing frame's capture to the Result.

The endpointer's trailing-silence wait comes before that and is reported in the transcript
(``endpoint.trailing_ms``), as are the recogniser's streaming time and the audio duration.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from edge.audio import AudioSource, Frame
from edge.result import Result
from edge.stt import SttEngine, Transcript
from edge.vad import Endpointer, VadStep

if TYPE_CHECKING:
    from edge.classifier import IntentClassifier


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class Pipeline:
    """One audio source through shared VAD, STT and classifier (build those once, reuse them)."""

    def __init__(
        self,
        source: AudioSource,
        vad: Endpointer,
        stt: SttEngine,
        classifier: IntentClassifier | None = None,
        on_partial: Callable[[str], None] | None = None,
        partial_every: int = 8,
    ) -> None:
        self.source = source
        self.vad = vad
        self.stt = stt
        self.classifier = classifier
        self.on_partial = on_partial
        self.partial_every = partial_every
        self._stream_ms = 0.0
        self._frames = 0

    def run(self) -> Iterator[Result]:
        """Yield a Result for every utterance, as soon as it ends; the source's end flushes the last one."""
        self.vad.reset()
        last: Frame | None = None
        for frame in self.source:
            picked_up = time.monotonic()
            start = time.perf_counter()
            step = self.vad.step(frame)
            vad_ms = _ms(start)
            last = frame
            if step.ended:
                yield self.finish(step, frame, picked_up, vad_ms)
            else:
                self.feed(step)
        step = self.vad.flush()
        if step.ended and last is not None:
            yield self.finish(step, last, time.monotonic(), 0.0)

    def feed(self, step: VadStep) -> None:
        """Pass the frames a VAD step released to the recogniser (the utterance goes on)."""
        start = time.perf_counter()
        for frame in step.audio:
            self.stt.accept(frame.samples)
        self._stream_ms += _ms(start)
        self._frames += len(step.audio)
        if self.on_partial and step.audio and self._frames % self.partial_every < len(step.audio):
            self.on_partial(self.stt.partial())

    def finish(self, step: VadStep, closing: Frame, picked_up: float, vad_ms: float) -> Result:
        """The step closed the utterance: finish recognition and classify it.

        ``closing`` is the frame that closed it, ``picked_up`` when the pipeline took that frame
        from the source and ``vad_ms`` what the VAD spent on it (they go into ``latency_ms``).
        """
        capture_ms = (picked_up - closing.captured_at) * 1000.0
        start = time.perf_counter()
        for frame in step.audio:
            self.stt.accept(frame.samples)
        transcript = self.stt.final()
        stt_ms = _ms(start)
        result = self._classify(transcript)
        latency = {"capture": capture_ms, "vad": vad_ms, "stt": stt_ms}
        latency.update({k: v for k, v in result.latency_ms.items() if k != "total"})
        latency["classify"] = result.latency_ms.get("total", 0.0)
        latency["total"] = capture_ms + vad_ms + stt_ms + latency["classify"]
        details = transcript.to_dict()
        details["stt_stream_ms"] = round(self._stream_ms, 3)
        details["endpoint"] = {"reason": step.ended, "trailing_ms": round(step.trailing_ms, 1)}
        self._stream_ms, self._frames = 0.0, 0
        return dataclasses.replace(result, latency_ms=latency, transcript=details)

    def abandon(self) -> Transcript:
        """End the utterance without classifying it (it ran too long): the recogniser is ready again."""
        transcript = self.stt.final()
        self._stream_ms, self._frames = 0.0, 0
        return transcript

    def _classify(self, transcript: Transcript) -> Result:
        if self.classifier is None or not transcript.text:
            # Nothing to classify (no words heard, or STT only): an out-of-scope result, never a guess.
            return Result(text=transcript.text, intent=None, confidence=None, guess="", guess_confidence=0.0)
        return self.classifier.classify_transcript(transcript)


__all__ = ["Pipeline"]
