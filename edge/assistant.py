"""The composition root: the chain built from the settings, once.

::

    source (mic | WAV | stream) ─▶ front end (denoise) ─▶ wake ─▶ VAD ─▶ STT ─▶ Recognizer ─▶ Event ─▶ outputs

:meth:`Assistant.from_settings` turns a :class:`edge.config.Config` into the parts of that chain:
the device profile, the intent classifier behind its profiled :class:`Recognizer`, and factories
for the per-stream stages (an endpointer, an STT engine and a wake engine hold the state of one
stream, so each stream gets its own). ``edge-intent`` (text, ``--wav``, ``--mic``), the service
(``edge-intent serve``: microphone, HTTP, Wyoming, MQTT) and the benchmarks all take their chain
from here; none of them wires a stage itself.

Use::

    from edge.assistant import Assistant
    from edge.audio import WavSource

    assistant = Assistant.from_settings(config.load("examples/config.yaml"))
    for result in assistant.results(WavSource("command.wav")):
        print(result.intent, result.slot_dict())
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from edge.config import Config
from edge.events import Event
from edge.result import Result
from edge.settings import SettingsError

if TYPE_CHECKING:
    import numpy as np

    from edge.audio import AudioSource, Frame, MicSource
    from edge.classifier import IntentClassifier
    from edge.config import AudioSettings
    from edge.liveloop import LiveLoop, LiveLoopSettings
    from edge.outputs import Fanout, Output
    from edge.outputs.hermes import NluQuery
    from edge.outputs.metrics import Metrics
    from edge.pipeline import Pipeline
    from edge.playback import Player
    from edge.profiler import Profiler
    from edge.profiles import Profile
    from edge.stt import SttEngine, Transcript
    from edge.vad import Endpointer
    from edge.wake import WakeEngine, WakeSettings

log = logging.getLogger("edge.assistant")

RECOGNIZER_WAIT_S = 0.5
"""How long :meth:`Assistant.recognize` waits for its speech stages when another request has them."""


class Busy(Exception):
    """The stages a request needs are in use by another request; retry later."""


class Recognizer:
    """The intent classifier shared by every path (microphone, HTTP, Wyoming, MQTT).

    One classification at a time (a LiteRT interpreter must not be entered from two threads, and
    the profiler's counters are not locked), each one profiled; a reload swaps the model in
    between two classifications.
    """

    def __init__(self, classifier: IntentClassifier, profiler: Profiler) -> None:
        self.classifier = classifier
        self.profiler = profiler
        self._lock = threading.Lock()

    def classify(self, text: str) -> Result:
        with self._lock, self.profiler.track() as rec:
            result = self.classifier.classify(text)
            rec.finish(result)
        return result

    def classify_transcript(self, transcript: Transcript) -> Result:
        """:meth:`classify` for the pipeline: the recogniser's n-best tried against the grammar first."""
        with self._lock, self.profiler.track() as rec:
            result = self.classifier.classify_transcript(transcript)
            rec.finish(result)
        return result

    def swap(self, classifier: IntentClassifier | None = None, profiler: Profiler | None = None) -> Profiler | None:
        """Use a new classifier and/or profiler from the next classification on; returns the replaced profiler."""
        with self._lock:
            old = None
            if classifier is not None:
                self.classifier = classifier
            if profiler is not None:
                old, self.profiler = self.profiler, profiler
                profiler.bind(self.classifier)
        return old


@dataclasses.dataclass
class SpeechStages:
    """The per-stream stages of the speech path: they hold one stream's state, so each stream has its own."""

    endpointer: Endpointer
    stt: SttEngine


@dataclasses.dataclass(frozen=True)
class Recognition:
    """What :meth:`Assistant.recognize` heard in one request's audio."""

    results: list[Result]
    expired: bool
    """The time limit ended the recognition before the audio did."""
    heard_s: float
    """Audio recognised, in seconds."""


class Assistant:
    """The assembled chain; see the module docstring. Build it with :meth:`from_settings`."""

    def __init__(self, config: Config, profile: Profile, recognizer: Recognizer, source: str = "(defaults)") -> None:
        self.config = config
        self.profile = profile
        self.recognizer = recognizer
        self.source = source
        """Where the settings came from (a file, ``(defaults)``, an option): errors name it."""
        self.metrics: Metrics | None = None
        self.fanout: Fanout | None = None
        self.on_listen: Callable[[], None] | None = None
        """What a listen request from an output (the MQTT listen topic) does; set by the service."""
        self._outputs: dict[str, Output] = {}
        self._request_lock = threading.Lock()
        self._request_stages: SpeechStages | None = None

    # --- building -------------------------------------------------------------------------------------

    @classmethod
    def from_settings(
        cls, config: Config, *, source: str = "(defaults)", classifier: IntentClassifier | None = None
    ) -> Assistant:
        """Detect the device profile, load the intent model and its profiler; per-stream stages come later.

        ``classifier``: an intent model loaded already (the CLI loads it after checking the audio
        options; tests share one), instead of the one the ``model`` settings name.
        """
        from edge.profiler import Profiler
        from edge.profiles import detect

        profile = detect(override=config.profile).profile
        classifier = classifier or load_classifier(config, profile)
        profiler = Profiler.create(config.profiler, profile=profile)
        profiler.bind(classifier)
        return cls(config, profile, Recognizer(classifier, profiler), source)

    @property
    def classifier(self) -> IntentClassifier:
        return self.recognizer.classifier

    @property
    def stt_name(self) -> str:
        """The STT engine the settings and the profile pick (``pocketsphinx``, ``vosk``, ``whisper``)."""
        from edge.stt import resolve_engine

        stt = self.config.stt
        return resolve_engine(stt.engine, stt.model, self.profile.stt)

    def new_endpointer(self) -> Endpointer:
        from edge.vad import Endpointer

        return Endpointer(self.config.vad)

    def new_stt(self) -> SttEngine:
        """An STT engine as the profile and the settings pick it, with the intent model's adaptation."""
        from edge.stt import create_engine

        return create_engine(self.config.stt, package=self.classifier.package, profile=self.profile)

    def new_speech_stages(self) -> SpeechStages:
        return SpeechStages(self.new_endpointer(), self.new_stt())

    def new_wake(self, phrases: tuple[str, ...] | None = None, *, settings: WakeSettings | None = None) -> WakeEngine:
        """A wake engine for the configured phrases (or those of ``settings``), or for ``phrases`` (model
        names or phrases). An engine that cannot be built is a :class:`SettingsError` naming the ``wake`` section.
        """
        settings = settings or self.config.wake
        return wake_engine(settings if phrases is None else settings.for_phrases(phrases), self.source)

    def wants_wake(self) -> bool:
        return self.config.liveloop.activation == "wake"

    def open_microphone(self) -> MicSource:
        """The configured input device, with its stale-audio watchdog and the one backoff policy."""
        return microphone(self.config.audio)

    def front_end(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        """The microphone's frames through noise suppression and gain, when the settings ask for them."""
        from edge.denoise import denoised

        return denoised(frames, self.config.audio.front_end)

    def pipeline(
        self,
        source: AudioSource,
        stages: SpeechStages,
        on_partial: Callable[[str], None] | None = None,
    ) -> Pipeline:
        from edge.pipeline import Pipeline

        return Pipeline(source, stages.endpointer, stages.stt, self.recognizer, on_partial=on_partial)

    def live_loop(
        self,
        source: AudioSource,
        stages: SpeechStages,
        wake: WakeEngine | None,
        *,
        on_event: Callable[[Event], None] | None = None,
        on_partial: Callable[[str], None] | None = None,
        player: Player | None = None,
        feedback: bool = True,
        settings: LiveLoopSettings | None = None,
    ) -> LiveLoop:
        """The live loop over ``source``: activation, limits and feedback from the ``liveloop`` settings
        (or ``settings``). ``feedback=False`` plays no sounds (recordings are processed faster than real time).
        """
        from edge.liveloop import FeedbackSettings, LiveLoop

        settings = settings or self.config.liveloop
        if not feedback:
            settings = dataclasses.replace(settings, feedback=FeedbackSettings())
        pipeline = self.pipeline(source, stages, on_partial)
        return LiveLoop(source, stages.endpointer, pipeline, wake, settings, player=player, on_event=on_event)

    def results(self, source: AudioSource, stages: SpeechStages | None = None) -> Iterator[Result]:
        """Every utterance of a finite source (a WAV file, samples in memory), one Result each."""
        return self.pipeline(source, stages or self.new_speech_stages()).run()

    # --- requests (HTTP, Wyoming, MQTT) --------------------------------------------------------------

    def classify_text(self, text: str) -> Result:
        """Raises :class:`edge.classifier.InputError` for unusable text."""
        return self.recognizer.classify(text)

    def recognize(self, samples: np.ndarray, timeout_s: float, name: str = "request body") -> Recognition:
        """Every utterance in 16 kHz samples, within ``timeout_s`` of wall time.

        One request at a time on stages of their own (built on first use; the microphone has its
        own): a request that finds them busy for longer than a short command takes to recognise
        gets :class:`Busy` rather than a queue. When the time runs out the utterance in flight is
        closed (the stages are ready for the next request) and the recognition says ``expired``.
        """
        from edge.audio import SamplesSource

        if not self._request_lock.acquire(timeout=RECOGNIZER_WAIT_S):
            raise Busy("another recognition request is being processed (one at a time)")
        try:
            if self._request_stages is None:
                self._request_stages = self.new_speech_stages()
            source = _Deadline(SamplesSource(samples, name), timeout_s)
            results = list(self.results(source, self._request_stages))
        finally:
            self._request_lock.release()
        return Recognition(results, source.expired, source.seconds)

    def nlu_query(self, query: NluQuery) -> Event:
        """A Hermes ``hermes/nlu/query``: classified, and published with the query's ids to every output.

        An intent outside the query's ``intentFilter`` is answered as not recognised. Raises
        :class:`edge.classifier.InputError` for text that cannot be classified.
        """
        result = self.recognizer.classify(query.input)
        if query.intent_filter is not None and result.intent not in query.intent_filter:
            result = dataclasses.replace(result, intent=None, confidence=None)
        event = dataclasses.replace(Event.from_result(result), data={"hermes": query.context()})
        self.emit(event)
        return event

    # --- outputs ---------------------------------------------------------------------------------------

    def build_outputs(self, old: Config | None = None) -> None:
        """Metrics, stdout, MQTT and hooks from the settings; on reload, those whose settings did not change are kept
        (an MQTT session and its queue). Anything that fails raises before the running outputs are touched."""
        from edge.outputs import Fanout
        from edge.outputs.hooks import HookRunner
        from edge.outputs.metrics import Metrics
        from edge.outputs.mqtt import MqttOutput
        from edge.outputs.stdout import StdoutOutput

        c = self.config
        if self.metrics is None:
            self.metrics = Metrics(self.recognizer.profiler)
        metrics = self.metrics
        wanted: dict[str, tuple[Any, Callable[[], Output]]] = {}
        if c.stdout.enabled:
            wanted["stdout"] = (c.stdout, StdoutOutput)
        if c.mqtt.enabled:
            wanted["mqtt"] = (
                c.mqtt,
                lambda: MqttOutput(c.mqtt, metrics, on_listen=self._listen_requested, on_query=self.nlu_query),
            )
        if c.hooks.commands:
            wanted["hooks"] = (c.hooks, lambda: HookRunner(c.hooks, metrics))
        outputs: dict[str, Output] = {}
        try:
            for name, (settings, make) in wanted.items():
                if old is not None and name in self._outputs and getattr(old, name) == settings:
                    outputs[name] = self._outputs[name]
                else:
                    outputs[name] = make()
        except Exception:  # keep the running outputs; drop only the ones just made
            for name, output in outputs.items():
                if self._outputs.get(name) is not output:
                    output.close()
            raise
        retired = [o for name, o in self._outputs.items() if outputs.get(name) is not o]
        self._outputs = outputs
        self.fanout = Fanout([metrics, *outputs.values()], on_error=metrics.error)
        metrics.set_model(self.classifier.model_label, self.classifier.backend_label, self.stt_name)
        for output in retired:
            output.close()

    def emit(self, event: Event) -> None:
        """Publish to every output (outputs must have been built)."""
        assert self.fanout is not None, "build_outputs() first"
        self.fanout.publish(event)

    def count(self, event: Event) -> None:
        """Count an event in the metrics without publishing it (``?publish=false``)."""
        if self.metrics is not None:
            self.metrics.publish(event)

    def _listen_requested(self) -> None:
        if self.on_listen is not None:
            self.on_listen()

    # --- reload ---------------------------------------------------------------------------------------------

    def reconfigure(self, new: Config, profile: Profile) -> tuple[bool, bool]:
        """Swap in the parts of ``new`` that differ: (classifier replaced, speech stages replaced).

        Builds what changed before touching anything, so a model that will not load leaves the
        running chain as it was. Outputs are rebuilt by :meth:`build_outputs`.
        """
        from edge.profiler import Profiler

        old = self.config
        classifier = None
        if new.model != old.model or profile != self.profile:
            classifier = load_classifier(new, profile)
        self.profile = profile
        if classifier is not None:
            self.recognizer.swap(classifier=classifier)
        if new.profiler != old.profiler:
            replaced = self.recognizer.swap(profiler=Profiler.create(new.profiler, profile=profile))
            if self.metrics is not None:
                self.metrics.profiler = self.recognizer.profiler
            if replaced is not None:
                replaced.close()
        speech = classifier is not None or new.stt != old.stt or new.vad != old.vad
        self.config = new
        if speech:
            with self._request_lock:
                self._request_stages = None
        return classifier is not None, speech

    def close(self) -> None:
        """Deliver what the outputs hold, write the profiler's records."""
        if self.fanout is not None:
            self.fanout.close()
        self.recognizer.profiler.close()


def load_classifier(config: Config, profile: Profile) -> IntentClassifier:
    """The intent model the ``model`` settings name, run as the profile says (unless the settings force it)."""
    from edge.classifier import IntentClassifier

    m = config.model
    classifier = IntentClassifier.load(
        m.name, backend=m.backend, precision=m.precision, threads=m.threads, profile=profile
    )
    if m.threshold is not None:
        classifier.threshold = m.threshold
    return classifier


def wake_engine(settings: WakeSettings, source: str, key: str = "wake") -> WakeEngine:
    """The wake engine for ``settings``; one that cannot be built is a :class:`SettingsError` naming ``source``
    and ``key`` (the settings section, or nothing where ``source`` is the option that gave the phrases)."""
    from edge import wake

    try:
        return wake.create_engine(settings)
    except wake.WakeError as exc:
        raise SettingsError(source, key, str(exc)) from None


def microphone(audio: AudioSettings) -> MicSource:
    """The input device of the ``audio`` settings, with its stale-audio watchdog and the one backoff policy."""
    from edge.audio import MicSource

    return MicSource(audio.device, stale_seconds=audio.stale_s, backoff=audio.backoff)


def wake_settings_for(settings: WakeSettings, phrases: tuple[str, ...]) -> WakeSettings:
    """``settings`` listening for ``phrases`` instead, keeping the calibrated thresholds of those phrases."""
    from edge import wake

    keep = {wake.normalize(p) for p in phrases}
    thresholds = {p: v for p, v in settings.thresholds.items() if wake.normalize(p) in keep}
    return dataclasses.replace(settings, phrases=tuple(phrases), thresholds=thresholds)


class _Deadline:
    """The frames of a source until ``seconds`` of wall-clock time have passed (then ``expired``)."""

    def __init__(self, source: AudioSource, seconds: float) -> None:
        import time

        self._clock = time.monotonic
        self.source = source
        self.description = source.description
        self.deadline = self._clock() + seconds
        self.expired = False
        self.seconds = 0.0  # audio let through

    def __iter__(self) -> Iterator[Frame]:
        from edge.audio import SAMPLE_RATE

        for frame in self.source:
            if self._clock() > self.deadline:
                self.expired = True
                return
            self.seconds += len(frame.samples) / SAMPLE_RATE
            yield frame

    def stop(self) -> None:
        self.source.stop()


__all__ = [
    "Assistant",
    "Busy",
    "Recognition",
    "Recognizer",
    "SpeechStages",
    "load_classifier",
    "microphone",
    "wake_engine",
    "wake_settings_for",
]
