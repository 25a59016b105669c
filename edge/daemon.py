"""``edge-intent serve``: the always-on voice command service, and ``edge-intent install-service``.

What it assembles, top to bottom::

    microphone (MicSource + watchdog) ─▶ LiveLoop (wake ─▶ VAD ─▶ STT ─▶ Recognizer) ─▶ Event ─▶ Fanout ─▶ stdout | MQTT | hooks | metrics
    HTTP API (POST /v1/intent, /v1/recognize) ──────────────────────────▶ Recognizer ─▶ Event ─┘
    Wyoming (edge.wyoming_server: asr, intent, wake for Home Assistant) ─▶ STT / Recognizer / wake engines
    POST /v1/listen, MQTT edge/listen ─▶ LiveLoop.listen_once ─┘

``liveloop.activation`` picks what starts a command: ``wake`` (the default: the wake word, "hey
jarvis" unless ``wake.phrases`` says otherwise), ``vad`` (every utterance) or ``api`` (only a
listen request). Wake words, timeouts and not-understood speech are events like intents, so
every output sees them.

Lifecycle, as systemd sees it (``systemd/edge-intent.service``, ``Type=notify``):

* start: the configuration is checked, the models (intent, STT, wake word) are loaded, the
  outputs, the HTTP and the Wyoming servers are started, then ``READY=1`` is sent (``sdnotify``, the small
  pure-Python client of systemd's notification socket); the microphone is opened after that,
  and retried with backoff (logged) while it is missing, so a USB microphone plugged in later is
  picked up. Once open, :class:`edge.audio.MicSource`'s stale-audio watchdog reopens it (by
  name) when it goes silent.
* ``WATCHDOG=1`` is sent from the main loop only, and only while audio frames advance and no
  state of the live loop has outlived its limit (:meth:`Listener.progressing`); while the
  microphone is missing at start it is sent every half second (a restart would not bring it
  back). A deaf or hung loop stops the pings and systemd restarts the service.
* SIGHUP: the configuration is read again; if it is valid the parts whose settings changed are
  rebuilt and a new live loop takes over after the command in flight, on the same microphone
  stream unless the ``audio`` section changed; the Wyoming server is restarted when its own section
  changed, else it takes the new engines for its next requests; if not valid, the error is logged
  and the running configuration stays.
* SIGTERM (or Ctrl-C): the command in flight is heard to its end, within the live loop's
  limits, classified and published; then the HTTP and Wyoming servers stop, queued MQTT events and running
  hooks are given their time, the profiler writes what it holds, and the process exits 0.

``/healthz`` gets its body from :meth:`Daemon.health` alone: the live loop's
:class:`edge.liveloop.LoopStatus` (state, time in state, age of the last frame); it is
unhealthy when the status reports problems. ``/metrics`` adds the loop's status and the wake
stage's CPU time per second of audio.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from edge.config import DEFAULT_CONFIG_PATH, AudioSettings, Config
from edge.events import Event
from edge.result import Result

if TYPE_CHECKING:
    import numpy as np

    from edge.audio import Frame, MicSource
    from edge.classifier import IntentClassifier
    from edge.liveloop import LiveLoop, LoopStatus
    from edge.outputs import Fanout, Output
    from edge.outputs.hermes import NluQuery
    from edge.outputs.http import HttpApi
    from edge.wyoming_server import Services, WyomingServer
    from edge.profiler import Profiler
    from edge.profiles import Profile
    from edge.stt import SttEngine, Transcript
    from edge.vad import Endpointer
    from edge.wake import WakeEngine, WakeSettings

PROG = "edge-intent serve"
RECOGNIZER_WAIT_S = 0.5
"""How long ``POST /v1/recognize`` waits for the HTTP recogniser when another request has it."""
log = logging.getLogger("edge.daemon")


# --------------------------------------------------------------------------- systemd notification


class Notifier:
    """``sd_notify`` messages: READY, RELOADING, STOPPING, STATUS, and watchdog pings at half the interval."""

    def __init__(self) -> None:
        import sdnotify

        self._sd = sdnotify.SystemdNotifier()
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.watchdog_interval = int(usec) / 2e6 if enabled else None
        self._last_ping = 0.0

    def notify(self, *lines: str) -> None:
        self._sd.notify("\n".join(lines))

    def due(self) -> bool:
        """A watchdog ping is due (at most every half watchdog interval; cheap enough to ask per frame)."""
        return self.watchdog_interval is not None and time.monotonic() - self._last_ping >= self.watchdog_interval

    def ping(self) -> None:
        if self.due():
            self._last_ping = time.monotonic()
            self._sd.notify("WATCHDOG=1")


# --------------------------------------------------------------------------- classification


class Recognizer:
    """The intent classifier shared by the microphone loop and HTTP requests.

    One classification at a time (a LiteRT interpreter must not be entered from two threads, and
    the profiler's counters are not locked), each one profiled; a reload swaps the model in
    between two classifications.
    """

    def __init__(self, classifier: "IntentClassifier", profiler: "Profiler") -> None:
        self.classifier = classifier
        self.profiler = profiler
        self._lock = threading.Lock()

    def classify(self, text: str) -> Result:
        with self._lock:
            with self.profiler.track() as rec:
                result = self.classifier.classify(text)
                rec.finish(result)
        return result

    def classify_transcript(self, transcript: "Transcript") -> Result:
        """:meth:`classify` for the pipeline: the recogniser's n-best tried against the grammar first."""
        with self._lock:
            with self.profiler.track() as rec:
                result = self.classifier.classify_transcript(transcript)
                rec.finish(result)
        return result

    def swap(self, classifier: "IntentClassifier | None" = None, profiler: "Profiler | None" = None) -> "Profiler | None":
        """Use a new classifier and/or profiler from the next classification on; returns the replaced profiler."""
        with self._lock:
            old = None
            if classifier is not None:
                self.classifier = classifier
            if profiler is not None:
                old, self.profiler = self.profiler, profiler
                profiler.bind(self.classifier)
        return old


# --------------------------------------------------------------------------- the microphone path


SpeechParts = Callable[[], "tuple[Endpointer, SttEngine]"]
"""Builds a fresh VAD and STT engine (for the microphone loop, or for HTTP /v1/recognize)."""


class Listener:
    """The microphone path: :class:`edge.audio.MicSource` ─▶ :class:`edge.liveloop.LiveLoop` ─▶ Events.

    The live loop owns activation (wake word, every utterance, or on request), the limits of every
    state and the feedback sounds; the microphone's own watchdog reopens a device that went silent.
    What is left here: opening the microphone the first time (retried with backoff while it is
    missing, since a USB microphone may be plugged in after boot), rebuilding the loop on reload
    between commands while the stream stays open, and the status for ``/healthz`` and the
    systemd watchdog. ``tick`` is called for every frame, on the main thread.
    """

    def __init__(self, config: Config, parts: SpeechParts, recognizer: Recognizer,
                 emit: Callable[[Event], None], tick: Callable[[], None], source: str = "(defaults)") -> None:
        self.source = source
        self._retired: list[WakeEngine] = []  # engines replaced by a reload, closed when their loop ends
        self.audio = config.audio
        self.settings = config.liveloop
        self._wake_settings = config.wake
        self._make_parts = parts
        # Built now, so that the models load (and a bad wake configuration is refused) before READY.
        self._parts = parts()
        self.wake = self._make_wake(config.wake) if config.liveloop.activation == "wake" else None
        self.recognizer = recognizer
        self.emit = emit
        self.tick = tick
        self.state = "starting"
        self.device = ""
        self.opened = 0
        self.loop: LiveLoop | None = None
        self._mic: MicSource | None = None
        self._frames: Any = None  # the open microphone's frame generator
        self._stopping = threading.Event()
        self._rebuild = False
        self._reopen = False
        self._last_frames = -1

    def _make_wake(self, settings: "WakeSettings") -> "WakeEngine":
        from edge import wake

        try:
            return wake.create_engine(settings)
        except wake.WakeError as exc:
            from edge.settings import SettingsError

            raise SettingsError(self.source, "wake", str(exc)) from None

    # --- control, from the main thread (signal handlers, reload) ------------------------------------

    def stop(self) -> None:
        """Stop after the command in flight, if any (the live loop bounds how long that takes)."""
        self._stopping.set()
        if self.loop is not None:
            # The loop stops its source (the tap, and with it the microphone) at once when nothing is
            # in flight, else when the command ends or its limits run out: that also ends a wait for
            # a device that went silent. With no loop yet, _run_loop sees the flag.
            self.loop.stop()

    def reconfigure(self, config: Config, parts: SpeechParts | None = None) -> None:
        """Rebuild the loop after the command in flight; the stream stays open unless ``audio`` changed.

        Anything that cannot be built (a wake model) raises here, before the running loop is touched.
        """
        wake_changed = config.wake != self._wake_settings or (config.liveloop.activation == "wake") != (self.wake is not None)
        if parts is None and not wake_changed and config.liveloop == self.settings and config.audio == self.audio:
            return
        if wake_changed:
            new_wake = self._make_wake(config.wake) if config.liveloop.activation == "wake" else None
            old_wake, self.wake, self._wake_settings = self.wake, new_wake, config.wake
            if old_wake is not None:  # the running loop holds it until it ends: close it then
                self._retired.append(old_wake)
        if parts is not None:
            self._make_parts = parts
            self._parts = parts()
        self._reopen = config.audio != self.audio
        self.audio, self.settings = config.audio, config.liveloop
        self._rebuild = True
        if self.loop is not None:
            self.loop.stop()

    def status(self) -> "LoopStatus | None":
        return self.loop.status() if self.loop is not None else None

    def health(self) -> dict[str, Any]:
        status = self.status()
        source = status.source if status is not None else {}
        age = status.last_frame_age_s if status is not None and status.running else None
        return {"state": self.state, "device": self.device, "opened": self.opened,
                "commands": sum(status.events.get(k, 0) for k in ("intent", "not_understood")) if status else 0,
                "last_frame_age_s": None if age is None else round(age, 3),
                "overflows": source.get("overflows", 0), "reopens": source.get("reopens", 0)}

    def progressing(self) -> bool:
        """For the systemd watchdog: frames arrived since the last call and no state outlived its limit."""
        if self.state == "waiting_for_microphone":
            return True  # the open loop is alive; restarting would not bring the device back
        status = self.status()
        if status is None:
            return False
        moved, self._last_frames = status.frames != self._last_frames, status.frames
        return moved and not status.stuck

    # --- the loop ------------------------------------------------------------------------------------

    def run(self) -> None:
        """Listen until :meth:`stop`; returns after the last command was published."""
        from edge.audio import AudioError, refresh_devices

        delay = self.audio.retry_min_s
        failed_before = False
        try:
            while not self._stopping.is_set():
                try:
                    if self._mic is None:
                        if self.opened or failed_before:
                            refresh_devices()  # PortAudio lists devices once: see one plugged in since
                        self._mic = self._open()
                        self._frames = iter(self._mic)
                        self.opened += 1
                        log.info("listening on %s", self.device)
                    self._run_loop(self._frames)
                    failed_before = False
                    delay = self.audio.retry_min_s
                except AudioError as exc:
                    self._close_mic()
                    if self._stopping.is_set():
                        break
                    self.state = "waiting_for_microphone"
                    log.warning("microphone unavailable: %s; retrying in %g s", exc, delay)
                    if not failed_before:
                        self.emit(Event(type="error", data={"stage": "audio", "message": str(exc)}))
                    failed_before = True
                    self._wait(delay)
                    delay = min(delay * 2, self.audio.retry_max_s)
        finally:
            self._close_mic()
            self.state = "stopped"
            for engine in [*self._retired, *([self.wake] if self.wake is not None else [])]:
                engine.close()

    def _open(self) -> "MicSource":
        from edge.audio import MicSource

        a = self.audio
        mic = MicSource(a.device, stale_seconds=a.stale_s, backoff_seconds=(a.retry_min_s, a.retry_max_s))
        self.device = mic.description
        return mic

    def _run_loop(self, frames: Iterator["Frame"]) -> None:
        """One live loop over the open stream, until stop, a reload, or the microphone giving up."""
        from edge.audio import AudioError
        from edge.denoise import denoised
        from edge.liveloop import LiveLoop
        from edge.pipeline import Pipeline

        assert self._mic is not None
        vad, stt = self._parts
        tap = _Tap(denoised(frames, self.audio.front_end), self._mic, self._frame, final=self._stopping.is_set)
        self.loop = LiveLoop(Pipeline(tap, vad, stt, self.recognizer), self.wake, self.settings, on_event=self.emit)
        if self._stopping.is_set():
            # SIGTERM came while the microphone was opening (right after READY): stop() found no
            # loop and no microphone to stop, and this loop would wait for frames that may never come.
            return
        self.state = "listening"
        try:
            for _ in self.loop.run():
                pass  # on_event publishes every event, in the loop's acting state
        except AudioError:
            raise
        except Exception as exc:  # a failing stage must not end the service; systemd would restart it anyway
            log.exception("live loop failed")
            self.emit(Event(type="error", data={"stage": "pipeline", "message": f"{type(exc).__name__}: {exc}"}))
            self._parts = self._make_parts()
            return
        for engine in self._retired:
            engine.close()
        self._retired = []
        if self._stopping.is_set():
            return
        if tap.exhausted:  # the watchdog gave up on the device: open it afresh
            raise AudioError(f"{self.device} stopped delivering audio")
        if self._rebuild:
            self._rebuild = False
            if self._reopen:
                self._reopen = False
                self._close_mic()
                log.info("audio settings changed; microphone reopened")
            else:
                log.info("speech settings reloaded; microphone stream kept open")

    def _close_mic(self) -> None:
        if self._mic is not None:
            self._mic.stop()
            self._frames.close()  # closes the PortAudio stream
            self._mic = self._frames = None

    def _frame(self) -> None:
        self.tick()

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and time.monotonic() < deadline:
            self.tick()
            self._stopping.wait(min(0.5, max(0.0, deadline - time.monotonic())))


class _Tap:
    """The frames of the open microphone for one :class:`LiveLoop`; ``stop`` ends the loop, not the stream.

    A reload builds a new loop over the same stream, so the device is not closed and reopened
    for a settings change; the microphone's counters (``stats``) are passed through for the
    loop's status. When the service is stopping (``final()``), ``stop`` stops the microphone
    too: a loop waiting on a silent device would get no next frame to stop at.
    """

    realtime = True

    def __init__(self, frames: Iterator["Frame"], mic: "MicSource", on_frame: Callable[[], None],
                 final: Callable[[], bool]) -> None:
        self.frames = frames
        self.mic = mic
        self.on_frame = on_frame
        self.final = final
        self.description = mic.description
        self.exhausted = False
        self._stopped = threading.Event()

    def __iter__(self) -> Iterator["Frame"]:
        for frame in self.frames:
            yield frame
            self.on_frame()
            if self._stopped.is_set():
                return
        self.exhausted = True

    def stats(self) -> dict[str, Any]:
        return self.mic.stats()

    def stop(self) -> None:
        self._stopped.set()
        if self.final():
            self.mic.stop()


class _Deadline:
    """The frames of a source until ``seconds`` of wall-clock time have passed (then ``expired``)."""

    def __init__(self, source: Any, seconds: float) -> None:
        self.source = source
        self.description = source.description
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self.seconds = 0.0  # audio let through

    def __iter__(self) -> Iterator["Frame"]:
        for frame in self.source:
            if time.monotonic() > self.deadline:
                self.expired = True
                return
            self.seconds += len(frame.samples) / 16000
            yield frame

    def stop(self) -> None:
        self.source.stop()


# --------------------------------------------------------------------------- the daemon


class Daemon:
    """Owns the parts, runs the main loop, handles signals' requests; see the module docstring."""

    def __init__(self, config: Config, config_path: str | None, notifier: Notifier | None = None,
                 http_override: str | None = None, no_mic: bool = False, wyoming_override: str | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.http_override = http_override
        self.wyoming_override = wyoming_override
        self.no_mic = no_mic
        self.started = time.monotonic()
        self.reloads = 0
        self.reload_error: str | None = None
        self._stop = threading.Event()
        self._reload = False
        self.listener: Listener | None = None
        self.http: HttpApi | None = None
        self.wyoming: WyomingServer | None = None
        self.fanout: Fanout | None = None
        self._outputs: dict[str, Output] = {}
        self._speech_lock = threading.Lock()
        self._http_parts: tuple[Endpointer, SttEngine] | None = None

    # --- start -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Load models, start outputs and HTTP, then tell systemd we are ready (the microphone opens in run)."""
        from edge.outputs.metrics import Metrics
        from edge.profiler import Profiler
        from edge.profiles import detect

        c = self.config
        self.profile: Profile = detect(override=c.profile).profile
        classifier = self._load_classifier(c, self.profile)
        profiler = Profiler.create(c.profiler, profile=self.profile)
        profiler.bind(classifier)
        self.recognizer = Recognizer(classifier, profiler)
        self.metrics: Metrics = Metrics(profiler)
        self._speech_parts = self._parts_factory(c, classifier)
        self.metrics.set_model(classifier.model_label, classifier.backend_label, self._stt_name(c))
        self._build_outputs(c)
        self._start_http(c)
        self._start_wyoming(c)
        if self._mic_enabled(c):
            self.listener = Listener(c, self._speech_parts, self.recognizer, self.emit, self.tick,
                                     source=self.config_path or "(defaults)")
        where = f"; HTTP on {self.http.url}" if self.http else ""
        where += f"; Wyoming on {self.wyoming.uri}" if self.wyoming else ""
        log.info("ready: %s on %s%s", classifier.model_label, classifier.backend_label, where)
        self.notifier.notify("READY=1", f"STATUS=ready: {classifier.model_label} on {classifier.backend_label}{where}")

    def _mic_enabled(self, c: Config) -> bool:
        return c.audio.enabled and not self.no_mic

    def _stt_name(self, c: Config) -> str:
        from edge.stt import resolve_engine

        return resolve_engine(c.stt.engine, c.stt.model, self.profile.stt)

    def _load_classifier(self, c: Config, profile: "Profile") -> "IntentClassifier":
        from edge.classifier import IntentClassifier

        m = c.model
        classifier = IntentClassifier.load(m.name, backend=m.backend, precision=m.precision, threads=m.threads,
                                           profile=profile)
        if m.threshold is not None:
            classifier.threshold = m.threshold
        return classifier

    def _parts_factory(self, c: Config, classifier: "IntentClassifier") -> SpeechParts:
        from edge.vad import Endpointer

        vad_settings, create_stt = c.vad, self._stt_factory(c, classifier)

        def parts() -> "tuple[Endpointer, SttEngine]":
            return Endpointer(vad_settings), create_stt()

        return parts

    def _stt_factory(self, c: Config, classifier: "IntentClassifier") -> Callable[[], "SttEngine"]:
        """Builds the STT engine the microphone path uses: the profile's engine, the package's adaptation."""
        from edge.stt import create_engine

        stt_settings, package, profile = c.stt, classifier.package, self.profile
        return lambda: create_engine(stt_settings, package=package, profile=profile)

    def _build_outputs(self, c: Config, old: Config | None = None) -> None:
        """Build the outputs; on reload keep those whose settings did not change (an MQTT session, its queue)."""
        from edge.outputs import Fanout
        from edge.outputs.hooks import HookRunner
        from edge.outputs.mqtt import MqttOutput
        from edge.outputs.stdout import StdoutOutput

        wanted: dict[str, tuple[Any, Callable[[], Output]]] = {}
        if c.stdout.enabled:
            wanted["stdout"] = (c.stdout, StdoutOutput)
        if c.mqtt.enabled:
            wanted["mqtt"] = (c.mqtt, lambda: MqttOutput(c.mqtt, self.metrics, on_listen=self.listen_in_background,
                                                         on_query=self.nlu_query))
        if c.hooks.commands:
            wanted["hooks"] = (c.hooks, lambda: HookRunner(c.hooks, self.metrics))
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
        self.fanout = Fanout([self.metrics, *outputs.values()], on_error=self.metrics.error)
        for output in retired:
            output.close()

    def _wyoming_services(self, c: Config) -> "Services":
        """What the Wyoming server answers with: the shared classifier, the STT and wake engines of this configuration."""
        from edge import wake
        from edge.settings import SettingsError
        from edge.wyoming_server import Services, wake_models

        classifier = self.recognizer.classifier
        publish = c.wyoming.publish
        wake_settings = c.wake

        def create_wake(phrases: tuple[str, ...] | None) -> "WakeEngine":
            return wake.create_engine(wake_settings if phrases is None else wake_settings.for_phrases(phrases))

        try:
            listed = wake_models(wake_settings, classifier.package.language)
        except wake.WakeError as exc:
            raise SettingsError(self.config_path or "(defaults)", "wake", str(exc)) from None
        return Services(classify=lambda text: self.classify_text(text, publish).result,  # type: ignore[return-value]
                        create_stt=self._stt_factory(c, classifier), create_wake=create_wake,
                        stt_name=self._stt_name(c), model_label=classifier.model_label,
                        language=classifier.package.language, wake_models=listed)

    def _start_wyoming(self, c: Config) -> None:
        from edge.wyoming_server import WyomingServer

        if not c.wyoming.enabled:
            self.wyoming = None
            return
        server = WyomingServer(c.wyoming, self._wyoming_services(c))
        try:
            server.start()
        except OSError as exc:
            exc.edge_setting = f"wyoming.listen {c.wyoming.listen}"  # type: ignore[attr-defined]
            raise
        self.wyoming = server

    def _start_http(self, c: Config) -> None:
        from edge.outputs.http import HttpApi

        if not c.http.enabled:
            self.http = None
            return
        self.http = HttpApi(c.http, self, self.metrics)
        self.http.start()

    # --- what the outputs and the API call -----------------------------------------------------------

    def emit(self, event: Event) -> None:
        assert self.fanout is not None
        self.fanout.publish(event)

    def classify_text(self, text: str, publish: bool) -> Event:
        """``POST /v1/intent``: raises :class:`edge.classifier.InputError` for unusable text."""
        event = Event.from_result(self.recognizer.classify(text))
        self._published(event, publish)
        return event

    def nlu_query(self, query: "NluQuery") -> Event:
        """A Hermes ``hermes/nlu/query`` (MQTT): classified, and published with the query's ids to every output.

        An intent outside the query's ``intentFilter`` is answered as not recognised. Raises
        :class:`edge.classifier.InputError` for text that cannot be classified.
        """
        result = self.recognizer.classify(query.input)
        if query.intent_filter is not None and result.intent not in query.intent_filter:
            result = dataclasses.replace(result, intent=None, confidence=None)
        event = dataclasses.replace(Event.from_result(result), data={"hermes": query.context()})
        self.emit(event)
        return event

    def recognize_wav(self, body: bytes, publish: bool) -> list[Event]:
        """``POST /v1/recognize``: one event per utterance in the WAV; raises AudioError for a bad file."""
        from edge.audio import SamplesSource
        from edge.pipeline import Pipeline

        from edge.outputs.http import RequestError

        limits = self.config.http
        samples = decode_wav(body, limits.max_wav_seconds, "http.max_wav_seconds")
        # One VAD + STT for HTTP, built on first use (the microphone has its own). Busy for longer than
        # a short command takes to recognise: say so, rather than queue behind up to recognize_timeout_s.
        if not self._speech_lock.acquire(timeout=RECOGNIZER_WAIT_S):
            raise RequestError(503, "busy: another POST /v1/recognize is being recognised (one at a time); "
                                    "retry later", {"Retry-After": "1"})
        try:
            if self._http_parts is None:
                self._http_parts = self._speech_parts()
            vad, stt = self._http_parts
            source = _Deadline(SamplesSource(samples, "request body"), limits.recognize_timeout_s)
            results = list(Pipeline(source, vad, stt, self.recognizer).run())
        finally:
            self._speech_lock.release()
        if source.expired:  # the pipeline closed the utterance in flight: the recogniser is ready for the next
            raise RequestError(413, f"recognising the request body took longer than {limits.recognize_timeout_s:g} s "
                                    f"(http.recognize_timeout_s), after {source.seconds:.1f} of "
                                    f"{len(samples) / 16000:.1f} s of audio; send shorter audio")
        events = [Event.from_result(r) for r in results]
        for event in events:
            self._published(event, publish)
        return events

    def _published(self, event: Event, publish: bool) -> None:
        if publish:
            self.emit(event)
        else:
            self.metrics.publish(event)  # counted all the same

    def listen(self, timeout: float | None = None) -> Event:
        """``POST /v1/listen`` and the MQTT listen topic: take one command now (any activation mode).

        Raises :class:`LookupError` when there is no microphone loop to listen with, and
        :class:`TimeoutError` when none of the loop's limits ended the request in time.
        """
        listener = self.listener
        loop = listener.loop if listener is not None else None
        if loop is None or listener is None or listener.state != "listening":
            why = "the microphone is off (audio.enabled: false or --no-mic)" if listener is None else \
                f"the microphone is not open ({listener.state})"
            raise LookupError(f"cannot listen: {why}")
        s = listener.settings
        limit = s.no_speech_timeout_s + s.command_max_s + s.recognise_timeout_s + s.act_timeout_s + 2.0
        return loop.listen_once(timeout if timeout is not None else limit)

    def listen_in_background(self) -> None:
        """For the MQTT listen topic: paho's network thread must not wait for the command."""
        def run() -> None:
            try:
                self.listen()
            except (LookupError, TimeoutError) as exc:
                log.warning("MQTT listen request: %s", exc)

        threading.Thread(target=run, name="edge-listen", daemon=True).start()

    def metrics_text(self) -> bytes:
        """The outputs' metrics, the profiler's summary, the live loop's state and the wake stage's cost."""
        body = self.metrics.text()
        status = self.listener.status() if self.listener is not None else None
        if status is not None:
            body += status.metrics_text().encode()
        wake = self.listener.wake if self.listener is not None else None
        if wake is not None and hasattr(wake, "metrics_text"):
            body += wake.metrics_text().encode()
        return body

    def health(self) -> tuple[bool, dict[str, Any]]:
        """The one source of ``GET /healthz``: (healthy, body)."""
        mic = self.listener.health() if self.listener is not None else {"state": "disabled"}
        status = self.listener.status() if self.listener is not None else None
        problems = status.problems(self.config.audio.max_frame_age_s) if status is not None else []
        healthy = not self._stop.is_set() and not problems and (self.listener is None or mic["state"] == "listening")
        classifier = self.recognizer.classifier
        body = {
            "status": "ok" if healthy else ("stopping" if self._stop.is_set() else "degraded"),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "model": classifier.model_label,
            "backend": classifier.backend_label,
            "profile": self.profile.name,
            "microphone": mic,
            "loop": status.to_dict() if status is not None else None,
            "outputs": self.fanout.health() if self.fanout else {},
            "wyoming": self.wyoming.health() if self.wyoming else None,
            "config": self.config_path or "(defaults)",
            "reloads": self.reloads,
        }
        if problems:
            body["problems"] = problems
        if self.reload_error:
            body["reload_error"] = self.reload_error
        return healthy, body

    # --- the main loop -----------------------------------------------------------------------------

    def run(self) -> None:
        """The main loop: the microphone's frames, or a half-second tick without one; returns on stop."""
        if self.listener is not None and not self._stop.is_set():
            self.listener.run()
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(0.5)

    def tick(self) -> None:
        """Called from the main loop only: watchdog ping (only while the live loop makes progress), pending reload."""
        if self.notifier.due() and (self.listener is None or self.listener.progressing()):
            self.notifier.ping()
        if self._reload:
            self._reload = False
            self.reload()

    def request_stop(self) -> None:
        """From the SIGTERM handler."""
        if self._stop.is_set():
            return
        log.info("stopping")
        self.notifier.notify("STOPPING=1")
        self._stop.set()
        if self.listener is not None:
            self.listener.stop()

    def request_reload(self) -> None:
        """From the SIGHUP handler: the main loop reloads at its next tick."""
        self._reload = True

    def reload(self) -> None:
        from edge import config as config_mod
        from edge.settings import SettingsError

        self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
        try:
            new = apply_overrides(config_mod.load(self.config_path), self.http_override, self.no_mic,
                                  self.wyoming_override)
            self._apply(new)
        except Exception as exc:  # SettingsError, a model that will not load, a port in use: keep running as we are
            message = str(exc) if isinstance(exc, SettingsError) else f"{type(exc).__name__}: {exc}"
            self.reload_error = message
            log.error("reload failed, the running configuration stays: %s", message)
            self.notifier.notify("READY=1", f"STATUS=reload failed: {message[:200]}")
            return
        self.reloads += 1
        self.reload_error = None
        log.info("configuration reloaded from %s", self.config_path or "(defaults)")
        self.notifier.notify("READY=1", "STATUS=configuration reloaded")

    def _apply(self, new: Config) -> None:
        """Swap in what changed; anything that fails raises before the running parts are touched."""
        from edge.profiler import Profiler
        from edge.profiles import detect

        old = self.config
        profile = detect(override=new.profile).profile if new.profile != old.profile else self.profile
        classifier = None
        if new.model != old.model or profile != self.profile:
            classifier = self._load_classifier(new, profile)
        self.profile = profile
        if classifier is not None:
            self.recognizer.swap(classifier=classifier)
        if new.profiler != old.profiler:
            replaced = self.recognizer.swap(profiler=Profiler.create(new.profiler, profile=profile))
            self.metrics.profiler = self.recognizer.profiler
            if replaced is not None:
                replaced.close()
        parts = None
        if classifier is not None or new.stt != old.stt or new.vad != old.vad:
            parts = self._speech_parts = self._parts_factory(new, self.recognizer.classifier)
            with self._speech_lock:
                self._http_parts = None
        if self.listener is not None:
            self.listener.reconfigure(new, parts)
        if self._mic_enabled(new) != self._mic_enabled(old):
            log.warning("audio.enabled changed: that takes a restart (systemctl restart edge-intent)")
        c = self.recognizer.classifier
        self.metrics.set_model(c.model_label, c.backend_label, self._stt_name(new))
        self._build_outputs(new, old)
        if new.http != old.http:
            if self.http is not None:
                self.http.close()
            self._start_http(new)
        if new.wyoming != old.wyoming:
            if self.wyoming is not None:
                self.wyoming.close()
            self._start_wyoming(new)
        elif self.wyoming is not None and (classifier is not None or parts is not None or new.wake != old.wake):
            self.wyoming.update(self._wyoming_services(new))
        self.config = new

    def close(self) -> None:
        """Stop serving, deliver what is queued, write the profiler's records."""
        if self.http is not None:
            self.http.close()
        if self.wyoming is not None:
            self.wyoming.close()
        if self.fanout is not None:
            self.fanout.close()
        self.recognizer.profiler.close()
        log.info("stopped")


# --------------------------------------------------------------------------- helpers


def decode_wav(body: bytes, max_seconds: float, limit_name: str) -> "np.ndarray":
    """A WAV file in memory as 16 kHz mono int16 (any format :func:`edge.audio.read_wav` reads)."""
    from edge.audio import read_wav_bytes

    return read_wav_bytes(body, "request body", max_seconds, limit_name)[0]


def apply_overrides(config: Config, http: str | None = None, no_mic: bool = False,
                    wyoming: str | None = None) -> Config:
    """``--http``, ``--wyoming`` and ``--no-mic`` on top of the file (checked like the file: a public HTTP
    address needs a token)."""
    from edge.config import check
    from edge.settings import SettingsError

    if http is not None:
        config = dataclasses.replace(config, http=dataclasses.replace(config.http, listen=http, enabled=True))
        config = check(config, "--http")
    if wyoming is not None:
        try:
            settings = dataclasses.replace(config.wyoming, listen=wyoming, enabled=True)
        except ValueError as exc:
            raise SettingsError("--wyoming", "wyoming", str(exc)) from None
        config = check(dataclasses.replace(config, wyoming=settings), "--wyoming")
    if no_mic:
        config = dataclasses.replace(config, audio=dataclasses.replace(config.audio, enabled=False))
    return config


class _JournalFormatter(logging.Formatter):
    """``<N>`` syslog priority prefixes, which journald turns into message priorities."""

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self.PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose >= 2 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(name)s: %(message)s"
    # Under systemd stderr is the journal (it sets JOURNAL_STREAM) and adds its own timestamps.
    handler.setFormatter(_JournalFormatter(fmt) if os.environ.get("JOURNAL_STREAM")
                         else logging.Formatter("%(asctime)s " + fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if verbose < 1:
        for noisy in ("edge.outputs.mqtt.paho",):
            logging.getLogger(noisy).setLevel(logging.WARNING)


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Run the voice command service: microphone and HTTP API in; "
                                "stdout, HTTP, MQTT and hooks out. Reloads its configuration on SIGHUP.")
    p.add_argument("--config", metavar="FILE",
                   help=f"YAML configuration (default {DEFAULT_CONFIG_PATH}; built-in defaults when that is missing)")
    p.add_argument("--http", metavar="HOST:PORT", help="serve the HTTP API here (overrides http.listen)")
    p.add_argument("--wyoming", metavar="URI", help="serve the Wyoming protocol (Home Assistant, wyoming-satellite) "
                   "here: tcp://HOST:PORT or unix:///PATH (turns wyoming.enabled on, overrides wyoming.listen)")
    p.add_argument("--no-mic", action="store_true", help="no microphone: the HTTP API only")
    p.add_argument("--check", action="store_true", help="check the configuration, print it as JSON and exit")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    return p


def main(argv: list[str] | None = None) -> int:
    from edge import config as config_mod
    from edge.backends import BackendUnavailable
    from edge.cli import fail
    from edge.package import PackageError
    from edge.settings import SettingsError
    from edge.stt import SttError

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    path = args.config
    if path is None and Path(DEFAULT_CONFIG_PATH).is_file():
        path = DEFAULT_CONFIG_PATH
    try:
        config = apply_overrides(config_mod.load(path), args.http, args.no_mic, args.wyoming)
    except SettingsError as exc:
        return fail(PROG, str(exc))
    if args.check:
        import json

        from edge.settings import to_mapping

        shown = to_mapping(config)
        for section, key in (("http", "token"), ("mqtt", "password")):
            if shown[section][key]:
                shown[section][key] = "(set)"
        print(json.dumps(shown, indent=2))
        return 0
    if path is None:
        log.info("no configuration file (%s is missing): using the defaults", DEFAULT_CONFIG_PATH)

    daemon = Daemon(config, path, http_override=args.http, no_mic=args.no_mic, wyoming_override=args.wyoming)
    # Handlers go in before the models load, so a SIGTERM during start-up still ends cleanly.
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    try:
        daemon.start()
    except (PackageError, BackendUnavailable, SttError, SettingsError) as exc:
        return fail(PROG, str(exc), code=1)
    except OSError as exc:  # a port is taken, or the address is not on this machine
        where = getattr(exc, "edge_setting", None) or f"http.listen {config.http.listen}"
        return fail(PROG, f"{where}: {exc.strerror or exc}", code=1)
    try:
        daemon.run()
    finally:
        daemon.close()
    return 0


# --------------------------------------------------------------------------- install-service


def install_service(argv: list[str] | None = None) -> int:
    """``edge-intent install-service``: the unit, its user and a starting configuration, in place."""
    from edge.cli import fail

    p = argparse.ArgumentParser(prog="edge-intent install-service",
                                description="Install the systemd service: unit file, system user 'edge' (in group "
                                            "audio), /etc/edge/config.yaml (when missing). Run as root.")
    p.add_argument("--root", default="/", help="install below this directory instead of / (for images; "
                                               "then nothing is started)")
    p.add_argument("--no-start", action="store_true", help="install, but do not enable and start the service")
    args = p.parse_args(argv)
    root = Path(args.root)
    templates = Path(__file__).resolve().parent.parent / "systemd"
    example = Path(__file__).resolve().parent.parent / "examples" / "config.yaml"
    if not (templates / "edge-intent.service").is_file():
        return fail("edge-intent install-service", f"{templates}/edge-intent.service is missing: install-service "
                    "works from a source checkout; see README, 'Running as a service', for the manual steps", 1)
    live = root == Path("/")
    if live and os.geteuid() != 0:
        return fail("edge-intent install-service", "run it as root (sudo), or give --root DIR to write an image", 1)
    # The console script beside this interpreter (a venv's bin/); not resolved, a venv's python is a symlink.
    unit = render_unit((templates / "edge-intent.service").read_text(), Path(sys.executable).parent / "edge-intent")
    written = []
    for rel, text, mode in (("etc/systemd/system/edge-intent.service", unit, 0o644),
                            ("etc/sysusers.d/edge-intent.conf", (templates / "edge-intent.sysusers").read_text(), 0o644)):
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
        written.append(target)
    config = root / "etc/edge/config.yaml"
    if not config.exists() and example.is_file():
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(example.read_text())
        config.chmod(0o640)
        written.append(config)
    for path in written:
        print(f"wrote {path}")
    if not live:
        return 0
    import subprocess

    steps = [["systemd-sysusers", str(root / "etc/sysusers.d/edge-intent.conf")], ["chgrp", "edge", str(config)],
             ["systemctl", "daemon-reload"]]
    if not args.no_start:
        steps.append(["systemctl", "enable", "--now", "edge-intent.service"])
    for step in steps:
        print("$", " ".join(step))
        if subprocess.run(step).returncode != 0:
            return fail("edge-intent install-service", f"{step[0]} failed (see above)", 1)
    return 0


def render_unit(template: str, executable: Path) -> str:
    """The unit with this installation's ``edge-intent``; a checkout under /home or /root stays readable."""
    install_dir = executable.parent.parent
    unit = template.replace("/opt/edge/venv/bin/edge-intent", str(executable))
    if str(install_dir).startswith(("/home/", "/root/")):
        # ProtectHome= hides home directories; make just this installation visible, read-only.
        checkout = install_dir.parent if install_dir.name.startswith(".venv") else install_dir
        unit = unit.replace("ProtectHome=yes", f"ProtectHome=tmpfs\nBindReadOnlyPaths={checkout}")
    return unit


__all__ = ["Daemon", "Listener", "Notifier", "Recognizer", "apply_overrides", "decode_wav", "install_service", "main",
           "render_unit"]
