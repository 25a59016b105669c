"""The service's microphone path: :class:`edge.audio.MicSource` ─▶ :class:`edge.liveloop.LiveLoop` ─▶ events.

The live loop owns activation (wake word, every utterance, or on request), the limits of every
state and the feedback sounds; the microphone's own watchdog reopens a device that went silent.
What is left here: opening the microphone the first time (retried under the same
:class:`edge.audio.Backoff` policy as the watchdog while it is missing, since a USB microphone may
be plugged in after boot), rebuilding the loop on reload between commands while the stream stays
open, and the status for ``/healthz`` and the systemd watchdog.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from edge.events import Event

if TYPE_CHECKING:
    from edge.assistant import Assistant
    from edge.audio import Frame, MicSource
    from edge.config import Config
    from edge.liveloop import LiveLoop, LoopStatus
    from edge.wake import WakeEngine

log = logging.getLogger("edge.service")


class Listener:
    """Listens until :meth:`stop`; ``tick`` is called for every frame (and while waiting), on the main thread."""

    def __init__(self, assistant: Assistant, emit: Callable[[Event], None], tick: Callable[[], None]) -> None:
        self.assistant = assistant
        config = assistant.config
        self._retired: list[WakeEngine] = []  # engines replaced by a reload, closed when their loop ends
        self.audio = config.audio
        self.settings = config.liveloop
        self._wake_settings = config.wake
        # Built now, so that the models load (and a bad wake configuration is refused) before READY.
        self._stages = assistant.new_speech_stages()
        self.wake = assistant.new_wake() if config.liveloop.activation == "wake" else None
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

    # --- control, from the main thread (signal handlers, reload) ------------------------------------

    def stop(self) -> None:
        """Stop after the command in flight, if any (the live loop bounds how long that takes)."""
        self._stopping.set()
        if self.loop is not None:
            # The loop stops its source (the tap, and with it the microphone) at once when nothing is
            # in flight, else when the command ends or its limits run out: that also ends a wait for
            # a device that went silent. With no loop yet, _run_loop sees the flag.
            self.loop.stop()

    def reconfigure(self, config: Config, speech_changed: bool) -> None:
        """Rebuild the loop after the command in flight; the stream stays open unless ``audio`` changed.

        Anything that cannot be built (a wake model) raises here, before the running loop is touched.
        """
        wants_wake = config.liveloop.activation == "wake"
        wake_changed = config.wake != self._wake_settings or wants_wake != (self.wake is not None)
        unchanged = config.liveloop == self.settings and config.audio == self.audio
        if not speech_changed and not wake_changed and unchanged:
            return
        if wake_changed:
            new_wake = self.assistant.new_wake(settings=config.wake) if wants_wake else None
            old_wake, self.wake, self._wake_settings = self.wake, new_wake, config.wake
            if old_wake is not None:  # the running loop holds it until it ends: close it then
                self._retired.append(old_wake)
        if speech_changed:
            self._stages = self.assistant.new_speech_stages()
        self._reopen = config.audio != self.audio
        self.audio, self.settings = config.audio, config.liveloop
        self._rebuild = True
        if self.loop is not None:
            self.loop.stop()

    def status(self) -> LoopStatus | None:
        return self.loop.status() if self.loop is not None else None

    def health(self) -> dict[str, Any]:
        status = self.status()
        source = status.source if status is not None else {}
        age = status.last_frame_age_s if status is not None and status.running else None
        commands = sum(status.events.get(k, 0) for k in ("intent", "not_understood")) if status else 0
        return {
            "state": self.state,
            "device": self.device,
            "opened": self.opened,
            "commands": commands,
            "last_frame_age_s": None if age is None else round(age, 3),
            "overflows": source.get("overflows", 0),
            "reopens": source.get("reopens", 0),
        }

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

        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    if self._mic is None:
                        if self.opened or failures:
                            refresh_devices()  # PortAudio lists devices once: see one plugged in since
                        self._mic = self.assistant.open_microphone()
                        self.device = self._mic.description
                        self._frames = iter(self._mic)
                        self.opened += 1
                        log.info("listening on %s", self.device)
                    self._run_loop(self._frames)
                    failures = 0
                except AudioError as exc:
                    self._close_mic()
                    if self._stopping.is_set():
                        break
                    self.state = "waiting_for_microphone"
                    failures += 1
                    delay = self.audio.backoff.delay(failures)
                    log.warning("microphone unavailable: %s; retrying in %g s", exc, delay)
                    if failures == 1:
                        self.emit(Event(type="error", data={"stage": "audio", "message": str(exc)}))
                    self._wait(delay)
        finally:
            self._close_mic()
            self.state = "stopped"
            for engine in [*self._retired, *([self.wake] if self.wake is not None else [])]:
                engine.close()

    def _run_loop(self, frames: Iterator[Frame]) -> None:
        """One live loop over the open stream, until stop, a reload, or the microphone giving up."""
        from edge.audio import AudioError

        assert self._mic is not None
        tap = _Tap(self.assistant.front_end(frames), self._mic, self.tick, final=self._stopping.is_set)
        self.loop = self.assistant.live_loop(tap, self._stages, self.wake, on_event=self.emit, settings=self.settings)
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
            self._stages = self.assistant.new_speech_stages()
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

    def __init__(
        self, frames: Iterator[Frame], mic: MicSource, on_frame: Callable[[], None], final: Callable[[], bool]
    ) -> None:
        self.frames = frames
        self.mic = mic
        self.on_frame = on_frame
        self.final = final
        self.description = mic.description
        self.exhausted = False
        self._stopped = threading.Event()

    def __iter__(self) -> Iterator[Frame]:
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


__all__ = ["Listener"]
