"""``edge-intent serve``: the always-on voice command service, as systemd runs it.

What it runs, top to bottom (the chain itself comes from :mod:`edge.assistant`)::

    microphone (Listener) ─▶ LiveLoop (wake ─▶ VAD ─▶ STT ─▶ Recognizer) ─▶ Event ─▶ Fanout ─▶ stdout | MQTT | hooks | metrics
    HTTP API (edge.service.http: POST /v1/intent, /v1/recognize) ─────────▶ Recognizer ─▶ Event ─┘
    Wyoming (edge.service.wyoming: asr, intent, wake for Home Assistant) ─▶ STT / Recognizer / wake engines
    POST /v1/listen, MQTT edge/listen ─▶ LiveLoop.listen_once ─┘

``liveloop.activation`` picks what starts a command: ``wake`` (the default: the wake word, "hey
jarvis" unless ``wake.phrases`` says otherwise), ``vad`` (every utterance) or ``api`` (only a
listen request). Wake words, timeouts and not-understood speech are events like intents, so
every output sees them.

Lifecycle, as systemd sees it (``systemd/edge-intent.service``, ``Type=notify``):

* start: the configuration is checked, the models (intent, STT, wake word) are loaded, the
  outputs, the HTTP and the Wyoming servers are started, then ``READY=1`` is sent; the microphone
  is opened after that, and retried with backoff (logged) while it is missing, so a USB
  microphone plugged in later is picked up. Once open, :class:`edge.audio.MicSource`'s
  stale-audio watchdog reopens it (by name) when it goes silent.
* ``WATCHDOG=1`` is sent from the main loop only, and only while audio frames advance and no
  state of the live loop has outlived its limit (:meth:`Listener.progressing`); while the
  microphone is missing at start it is sent every half second (a restart would not bring it
  back). A deaf or hung loop stops the pings and systemd restarts the service.
* SIGHUP: the configuration is read again; if it is valid the parts whose settings changed are
  rebuilt (:mod:`edge.service.reload`) and a new live loop takes over after the command in flight,
  on the same microphone stream unless the ``audio`` section changed; the Wyoming server is
  restarted when its own section changed, else it takes the new engines for its next requests;
  if not valid, the error is logged and the running configuration stays.
* SIGTERM (or Ctrl-C): the command in flight is heard to its end, within the live loop's
  limits, classified and published; then the HTTP and Wyoming servers stop, queued MQTT events
  and running hooks are given their time, the profiler writes what it holds, and the process exits 0.

``/healthz`` gets its body from :meth:`Service.health` alone: the live loop's
:class:`edge.liveloop.LoopStatus` (state, time in state, age of the last frame); it is unhealthy
when the status reports problems. ``/metrics`` adds the loop's status and the wake stage's CPU
time per second of audio.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from edge.config import Config
from edge.events import Event
from edge.service.reload import Overrides, changes
from edge.service.systemd import Notifier

if TYPE_CHECKING:
    from edge.assistant import Assistant
    from edge.service.http import HttpApi
    from edge.service.listener import Listener
    from edge.service.wyoming import Services, WyomingServer
    from edge.wake import WakeEngine

log = logging.getLogger("edge.service")


class Service:
    """Owns the servers and the microphone listener around one :class:`Assistant`; runs the main loop."""

    def __init__(
        self,
        config: Config,
        config_path: str | None,
        notifier: Notifier | None = None,
        overrides: Overrides = Overrides(),
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.source = config_path or "(defaults)"
        self.notifier = notifier or Notifier()
        self.overrides = overrides
        self.started = time.monotonic()
        self.reloads = 0
        self.reload_error: str | None = None
        self._stop = threading.Event()
        self._reload = False
        self.assistant: Assistant | None = None
        self.listener: Listener | None = None
        self.http: HttpApi | None = None
        self.wyoming: WyomingServer | None = None

    # --- start -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Build the chain, start outputs and servers, then tell systemd we are ready (the microphone opens in run)."""
        from edge.assistant import Assistant
        from edge.service.listener import Listener

        assistant = self.assistant = Assistant.from_settings(self.config, source=self.source)
        assistant.on_listen = self.listen_in_background
        assistant.build_outputs()
        self._start_http(self.config)
        self._start_wyoming(self.config)
        if self.config.audio.enabled:
            self.listener = Listener(assistant, assistant.emit, self.tick)
        classifier = assistant.classifier
        where = f"; HTTP on {self.http.url}" if self.http else ""
        where += f"; Wyoming on {self.wyoming.uri}" if self.wyoming else ""
        log.info("ready: %s on %s%s", classifier.model_label, classifier.backend_label, where)
        self.notifier.notify("READY=1", f"STATUS=ready: {classifier.model_label} on {classifier.backend_label}{where}")

    def _wyoming_services(self) -> Services:
        """What the Wyoming server answers with: the shared classifier, the STT and wake engines of this configuration."""
        from edge import wake
        from edge.service.wyoming import Services, wake_models
        from edge.settings import SettingsError

        assistant = self._assistant
        c = assistant.config
        publish = c.wyoming.publish
        classifier = assistant.classifier

        def create_wake(phrases: tuple[str, ...] | None) -> WakeEngine:
            return wake.create_engine(c.wake if phrases is None else c.wake.for_phrases(phrases))

        try:
            listed = wake_models(c.wake, classifier.package.language)
        except wake.WakeError as exc:
            raise SettingsError(self.source, "wake", str(exc)) from None
        return Services(
            classify=lambda text: self.classify_text(text, publish).result,  # type: ignore[arg-type,return-value]
            create_stt=assistant.new_stt,
            create_wake=create_wake,
            stt_name=assistant.stt_name,
            model_label=classifier.model_label,
            language=classifier.package.language,
            wake_models=listed,
        )

    def _start_wyoming(self, c: Config) -> None:
        from edge.service.wyoming import WyomingServer

        if not c.wyoming.enabled:
            self.wyoming = None
            return
        server = WyomingServer(c.wyoming, self._wyoming_services())
        try:
            server.start()
        except OSError as exc:
            exc.edge_setting = f"wyoming.listen {c.wyoming.listen}"  # type: ignore[attr-defined]
            raise
        self.wyoming = server

    def _start_http(self, c: Config) -> None:
        from edge.service.http import HttpApi

        if not c.http.enabled:
            self.http = None
            return
        self.http = HttpApi(c.http, self, self._assistant.metrics)
        self.http.start()

    @property
    def _assistant(self) -> Assistant:
        assert self.assistant is not None, "start() first"
        return self.assistant

    # --- what the HTTP API calls (edge.service.http.Api) -------------------------------------------------

    def classify_text(self, text: str, publish: bool) -> Event:
        """``POST /v1/intent``: raises :class:`edge.classifier.InputError` for unusable text."""
        event = Event.from_result(self._assistant.classify_text(text))
        self._published(event, publish)
        return event

    def recognize_wav(self, body: bytes, publish: bool) -> list[Event]:
        """``POST /v1/recognize``: one event per utterance in the WAV; raises AudioError for a bad file."""
        from edge.assistant import Busy
        from edge.audio import SAMPLE_RATE, read_wav_bytes
        from edge.service.http import RequestError

        limits = self.config.http
        samples = read_wav_bytes(body, "request body", limits.max_wav_seconds, "http.max_wav_seconds")[0]
        try:
            heard = self._assistant.recognize(samples, limits.recognize_timeout_s)
        except Busy:
            raise RequestError(
                503,
                "busy: another POST /v1/recognize is being recognised (one at a time); retry later",
                {"Retry-After": "1"},
            ) from None
        if heard.expired:
            raise RequestError(
                413,
                f"recognising the request body took longer than {limits.recognize_timeout_s:g} s "
                f"(http.recognize_timeout_s), after {heard.heard_s:.1f} of {len(samples) / SAMPLE_RATE:.1f} s "
                "of audio; send shorter audio",
            )
        events = [Event.from_result(r) for r in heard.results]
        for event in events:
            self._published(event, publish)
        return events

    def _published(self, event: Event, publish: bool) -> None:
        if publish:
            self._assistant.emit(event)
        else:
            self._assistant.count(event)  # counted all the same

    def listen(self, timeout: float | None = None) -> Event:
        """``POST /v1/listen`` and the MQTT listen topic: take one command now (any activation mode).

        Raises :class:`LookupError` when there is no microphone loop to listen with, and
        :class:`TimeoutError` when none of the loop's limits ended the request in time.
        """
        listener = self.listener
        loop = listener.loop if listener is not None else None
        if loop is None or listener is None or listener.state != "listening":
            why = (
                "the microphone is off (audio.enabled: false or --no-mic)"
                if listener is None
                else f"the microphone is not open ({listener.state})"
            )
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
        metrics = self._assistant.metrics
        assert metrics is not None
        listener = self.listener
        return metrics.text(
            status=listener.status() if listener is not None else None,
            wake=listener.wake if listener is not None else None,
        )

    def health(self) -> tuple[bool, dict[str, Any]]:
        """The one source of ``GET /healthz``: (healthy, body)."""
        mic = self.listener.health() if self.listener is not None else {"state": "disabled"}
        status = self.listener.status() if self.listener is not None else None
        problems = status.problems(self.config.audio.max_frame_age_s) if status is not None else []
        stopping = self._stop.is_set()
        healthy = not stopping and not problems and (self.listener is None or mic["state"] == "listening")
        assistant = self._assistant
        classifier = assistant.classifier
        body = {
            "status": "ok" if healthy else ("stopping" if stopping else "degraded"),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "model": classifier.model_label,
            "backend": classifier.backend_label,
            "profile": assistant.profile.name,
            "microphone": mic,
            "loop": status.to_dict() if status is not None else None,
            "outputs": assistant.fanout.health() if assistant.fanout else {},
            "wyoming": self.wyoming.health() if self.wyoming else None,
            "config": self.source,
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

        self.notifier.notify("RELOADING=1", self.notifier.monotonic_usec())
        try:
            self._apply(self.overrides.apply(config_mod.load(self.config_path)))
        except Exception as exc:  # SettingsError, a model that will not load, a port in use: keep running as we are
            message = str(exc) if isinstance(exc, SettingsError) else f"{type(exc).__name__}: {exc}"
            self.reload_error = message
            log.error("reload failed, the running configuration stays: %s", message)
            self.notifier.notify("READY=1", f"STATUS=reload failed: {message[:200]}")
            return
        self.reloads += 1
        self.reload_error = None
        log.info("configuration reloaded from %s", self.source)
        self.notifier.notify("READY=1", "STATUS=configuration reloaded")

    def _apply(self, new: Config) -> None:
        """Swap in what changed; a part that fails to build raises before it replaces the running one."""
        from edge.profiles import detect

        assistant = self._assistant
        old = self.config
        changed = changes(old, new)
        profile = detect(override=new.profile).profile if changed.profile else assistant.profile
        classifier_changed, speech_changed = assistant.reconfigure(new, profile)
        if self.listener is not None:
            self.listener.reconfigure(new, speech_changed)
        if changed.microphone_enabled:
            log.warning("audio.enabled changed: that takes a restart (systemctl restart edge-intent)")
        assistant.build_outputs(old)
        if changed.http:
            if self.http is not None:
                self.http.close()
            self._start_http(new)
        if changed.wyoming:
            if self.wyoming is not None:
                self.wyoming.close()
            self._start_wyoming(new)
        elif self.wyoming is not None and (classifier_changed or speech_changed or changed.wake):
            self.wyoming.update(self._wyoming_services())
        self.config = new

    def close(self) -> None:
        """Stop serving, deliver what is queued, write the profiler's records."""
        if self.http is not None:
            self.http.close()
        if self.wyoming is not None:
            self.wyoming.close()
        if self.assistant is not None:
            self.assistant.close()
        log.info("stopped")


__all__ = ["Service"]
