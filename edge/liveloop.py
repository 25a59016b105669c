"""The always-on live loop: an explicit state machine in front of the speech pipeline.

::

    waiting ──wake word / speech / listen request──▶ capturing ──end of speech──▶ recognising
       ▲                                                │                           │
       │                     no speech, too long ───────┤                           ▼
       └──────────────────── feedback ◀──────────── acting (events to outputs) ◀────┘

Every state has a limit, and every way out of a state ends in ``waiting`` with an
:class:`edge.events.Event` (``wake``, ``intent``, ``not_understood``, ``timeout``, ``error``), so
the loop can neither hang nor lose a command:

* ``waiting``: wake mode feeds the wake-word engine; vad mode the endpointer (every utterance is
  a command); api mode only waits for :meth:`LiveLoop.listen_once`. No limit: it is the rest state.
* ``capturing``: the command after the wake word is the rest of the same utterance ("hey jarvis,
  turn off the kitchen lights", taken from a short ring buffer at ``WakeHit.end_sample``) or the
  next utterance. ``no_speech_timeout_s`` without speech, or speech going on for more than
  ``command_max_s`` (a TV), ends it with a ``timeout`` event.
* ``recognising``: STT finalisation and classification, on a helper thread, given at most
  ``recognise_timeout_s``.
* ``acting``: the ``on_event`` callbacks (the daemon's outputs), given at most ``act_timeout_s``.
* ``feedback``: an optional short sound; nothing is scored until it has played plus
  ``playback_holdoff_ms``.

Time is counted in *samples*, not seconds of wall clock, for everything the audio decides
(capture limits, playback suppression): the same state machine then runs a microphone in real
time and hours of synthesised audio from a fast source in minutes, with identical timing.
Only the recognising and acting limits are wall time, because they bound computation.

Playback suppression: every sound edge plays goes through :class:`edge.playback.Player`, which
reports how long the output will be busy; the loop maps that onto the audio clock (correcting
for frames still queued from before the sound started) and neither the wake engine nor the
VAD/STT sees that audio, nor the hold-off after it, so the device never answers itself.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.audio import FRAME_SAMPLES, SAMPLE_RATE, AudioSource, Frame
from edge.config import Activation, FeedbackSettings, LiveLoopSettings
from edge.events import Event
from edge.pipeline import Pipeline
from edge.vad import Endpointer, VadStep

if TYPE_CHECKING:
    from edge.playback import Player, Sound
    from edge.wake import WakeEngine, WakeHit

log = logging.getLogger("edge.liveloop")


class State(str, enum.Enum):
    WAITING = "waiting"
    CAPTURING = "capturing"
    RECOGNISING = "recognising"
    ACTING = "acting"
    FEEDBACK = "feedback"
    STOPPED = "stopped"


@dataclasses.dataclass(frozen=True)
class LoopStatus:
    """A read-only snapshot of the loop, for ``/healthz`` and ``/metrics``."""

    running: bool
    activation: str
    state: str
    state_seconds: float
    """Wall-clock time in the current state."""
    state_audio_seconds: float
    """Audio consumed in the current state."""
    state_limit_seconds: float | None
    """The current state's limit (audio time while capturing or in feedback, wall time while
    recognising or acting; ``None`` while waiting)."""
    last_frame_age_s: float | None
    """Seconds since the loop last received an audio frame, or since it started if none came yet
    (``None`` before it started)."""
    audio_seconds: float
    frames: int
    """Frames processed: a counter that moves while the loop makes progress (for the systemd watchdog)."""
    suppressed_seconds: float
    """Audio not scored because edge itself was playing sound."""
    events: dict[str, int]
    timeouts: dict[str, int]
    """Timeout events by reason."""
    source: dict[str, Any]
    """The audio source's own counters (the microphone watchdog's reopen attempts, overflows)."""
    wake: dict[str, Any] | None
    """The wake stage's summary (engine, CPU per audio second, hits) when it keeps one."""

    @property
    def stuck(self) -> bool:
        """The current state has outlived its limit by more than a second (it never should)."""
        if self.state_limit_seconds is None:
            return False
        spent = self.state_seconds if self.state in (State.RECOGNISING, State.ACTING) else self.state_audio_seconds
        return spent > self.state_limit_seconds + 1.0

    def problems(self, max_frame_age_s: float = 5.0) -> list[str]:
        """Why the loop is unhealthy (empty when healthy): no audio for too long, or a stuck state."""
        found = []
        if self.running and self.last_frame_age_s is not None and self.last_frame_age_s > max_frame_age_s:
            found.append(f"no audio frame for {self.last_frame_age_s:.1f} s (limit {max_frame_age_s:g} s)")
        if self.stuck:
            found.append(
                f"in state {self.state} for {self.state_seconds:.1f} s, past its limit of "
                f"{self.state_limit_seconds:g} s"
            )
        return found

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("state_seconds", "state_audio_seconds", "audio_seconds", "suppressed_seconds"):
            data[key] = round(data[key], 3)
        if self.last_frame_age_s is not None:
            data["last_frame_age_s"] = round(self.last_frame_age_s, 3)
        data["stuck"] = self.stuck
        return data

    def metric_families(self, prefix: str = "edge_") -> list[Any]:
        """The status as Prometheus metric families, for the service's ``/metrics``."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        p = prefix
        state = GaugeMetricFamily(
            f"{p}liveloop_state", "Current state of the live loop (1 for the current one).", labels=["state"]
        )
        for s in State:
            state.add_metric([s.value], int(s.value == self.state))
        age = math.nan if self.last_frame_age_s is None else self.last_frame_age_s
        families = [
            state,
            GaugeMetricFamily(
                f"{p}liveloop_state_seconds", "Wall-clock time in the current state.", value=self.state_seconds
            ),
            GaugeMetricFamily(f"{p}audio_last_frame_age_seconds", "Seconds since the last audio frame.", value=age),
            CounterMetricFamily(f"{p}audio_seconds", "Audio processed by the live loop.", value=self.audio_seconds),
            CounterMetricFamily(
                f"{p}audio_suppressed_seconds", "Audio ignored while edge played sound.", value=self.suppressed_seconds
            ),
        ]
        events = CounterMetricFamily(f"{p}liveloop_events", "Events emitted by the live loop.", labels=["type"])
        for key, value in sorted(self.events.items()):
            events.add_metric([key], value)
        timeouts = CounterMetricFamily(f"{p}liveloop_timeouts", "Timeout events by reason.", labels=["reason"])
        for key, value in sorted(self.timeouts.items()):
            timeouts.add_metric([key], value)
        families += [events, timeouts]
        for key, help_text in (
            ("reopen_attempts", "Attempts to reopen the audio device after it went silent."),
            ("stalls", "Times the audio device delivered nothing for the watchdog's limit."),
            ("overflows", "Audio blocks lost because processing fell behind."),
        ):
            if key in self.source:
                families.append(CounterMetricFamily(f"{p}audio_{key}", help_text, value=self.source[key]))
        return families

    def metrics_text(self, prefix: str = "edge_") -> str:
        """:meth:`metric_families` in the Prometheus text format."""
        from edge.prometheus import render

        return render(self.metric_families(prefix)).decode()


class _Ring:
    """The last few seconds of audio, addressable by absolute sample position."""

    def __init__(self, seconds: float) -> None:
        self._frames: collections.deque[tuple[int, np.ndarray]] = collections.deque(
            maxlen=max(1, int(seconds * SAMPLE_RATE / FRAME_SAMPLES))
        )

    def append(self, start: int, samples: np.ndarray) -> None:
        self._frames.append((start, samples))

    @property
    def start(self) -> int:
        return self._frames[0][0] if self._frames else 0

    def since(self, position: int) -> np.ndarray:
        parts = [s[max(0, position - start) :] for start, s in self._frames if start + len(s) > position]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


class _Request:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.event: Event | None = None


def _bounded(
    fn: Callable[[], Any], timeout: float, name: str
) -> tuple[bool, Any, BaseException | None, threading.Thread]:
    """Run ``fn`` on a helper thread for at most ``timeout`` s: (finished, value, error, thread).

    A helper thread rather than the loop's own, so a stage that hangs costs its command, not the
    service: the loop times it out, reports it and goes back to waiting.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # reported as an error event by the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), box.get("value"), box.get("error"), thread


class LiveLoop:
    """Drives the stages of one stream with a wake word, limits and feedback, through their interfaces only.

    The frames come from ``source``; the ``endpointer`` (VAD) opens and closes each command; the
    ``pipeline`` takes the frames of a command (``feed``) and turns the closed utterance into a
    result (``finish``, or ``abandon`` for one cut off). :mod:`edge.assistant` builds the three for
    one stream (the endpointer is the pipeline's own).

    Iterate :meth:`run` for the events (or pass ``on_event``, which runs in the ``acting`` state);
    :meth:`stop`, :meth:`listen_once` and :meth:`status` are safe from other threads.
    """

    def __init__(
        self,
        source: AudioSource,
        endpointer: Endpointer,
        pipeline: Pipeline,
        wake: WakeEngine | None = None,
        settings: LiveLoopSettings | None = None,
        player: Player | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.source = source
        self.vad = endpointer
        self.pipeline = pipeline
        self.wake = wake
        self.settings = settings or LiveLoopSettings()
        self.on_event = on_event
        s = self.settings
        if s.activation == "wake" and wake is None:
            raise ValueError("activation 'wake' needs a wake engine (edge.wake.create_engine)")
        fb = s.feedback
        self.player = player
        self._sounds: dict[str, Sound] = {}
        if any((fb.wake, fb.intent, fb.not_understood)):
            from edge.playback import Player, load_sound

            for key in ("wake", "intent", "not_understood"):
                if getattr(fb, key):
                    self._sounds[key] = load_sound(getattr(fb, key), key=f"feedback.{key}")
            if self.player is None:
                self.player = Player(fb.device)
        if self.player is not None:
            self.player.add_listener(self._on_playback)
        self._rate = SAMPLE_RATE
        self._realtime = bool(getattr(self.source, "realtime", False))
        self._lock = threading.Lock()
        self._requests: collections.deque[_Request] = collections.deque()
        self._request: _Request | None = None
        self._stopping = threading.Event()
        self._stop_timer: threading.Timer | None = None
        self._running = False
        self._finished = False
        self._pending: list[Event] = []
        self._counts: collections.Counter[str] = collections.Counter()
        self._timeouts: collections.Counter[str] = collections.Counter()
        self._ring = _Ring(s.ring_ms / 1000)
        self._pos = 0
        self._frames = 0
        self._last_frame_at: float | None = None
        self._last_frame: Frame | None = None
        self._state = State.WAITING
        self._state_limit: float | None = None
        self._state_since = time.monotonic()
        self._state_pos = 0
        self._playback: list[float] = []  # (seconds) announced by the player, not yet on the audio clock
        self._suppress_until = 0
        self._suppressed = 0
        self._was_suppressed = False
        self._wake_base = 0
        self._carry = np.zeros(0, dtype=np.int16)
        self._listen_from = 0
        self._cpos = 0  # audio position of the next frame the command capture takes
        self._utt_start: int | None = None
        self._late: threading.Thread | None = None  # a recognition that outlived its limit

    # ------------------------------------------------------------------ public API

    def run(self) -> Iterator[Event]:
        """Process the source until it ends or :meth:`stop`; yields every event as it happens."""
        self._running = True
        self._last_frame_at = time.monotonic()  # a source that never delivers ages from the start
        self.vad.reset()
        if self.wake is not None:
            self.wake.reset()  # the engine may have heard another stream before this one
        self._enter(State.WAITING)
        try:
            for frame in self.source:
                self._frame(frame)
                if self._pending:
                    yield from self._drain()
                if self._stopping.is_set() and self._state is State.WAITING:
                    break
            self._end_of_audio()
            yield from self._drain()
        finally:
            self._running = False
            self._enter(State.STOPPED)
            self.source.stop()
            if self._stop_timer is not None:
                self._stop_timer.cancel()
            with self._lock:
                self._finished = True
                pending = list(self._requests) + ([self._request] if self._request else [])
                self._requests.clear()
                self._request = None
            for req in pending:
                self._resolve(req, self._stopped_event())
            if self._late is not None:
                # The caller may reuse the STT engine: let a recognition that ran out of time finish.
                self._late.join(max(10.0, self.settings.recognise_timeout_s))

    def stop(self) -> None:
        """Stop after the command in flight (if any) has been recognised and reported."""
        self._stopping.set()
        if self._state in (State.WAITING, State.FEEDBACK, State.STOPPED):
            self.source.stop()
        elif self._stop_timer is None:
            # A command in flight ends within its limits; if the audio itself stalls, stop anyway.
            s = self.settings
            grace = s.command_max_s + s.no_speech_timeout_s + s.recognise_timeout_s + s.act_timeout_s + 1.0
            self._stop_timer = threading.Timer(grace, self.source.stop)
            self._stop_timer.daemon = True
            self._stop_timer.start()

    def listen_once(self, timeout: float | None = None) -> Event:
        """Take one command now, whatever the activation mode; returns its event.

        The event is ``intent``, ``not_understood``, ``timeout`` (no speech, or too long) or
        ``error`` (the loop stopped). It is also emitted like any other event. Raises
        :class:`TimeoutError` when ``timeout`` seconds pass first.
        """
        req = _Request()
        with self._lock:
            if self._finished:
                return self._stopped_event()
            self._requests.append(req)
        if not req.done.wait(timeout):
            with self._lock:
                if req in self._requests:
                    self._requests.remove(req)
            raise TimeoutError(f"no command within {timeout:g} s")
        assert req.event is not None
        return req.event

    def status(self) -> LoopStatus:
        now = time.monotonic()
        state = self._state
        stats = getattr(self.source, "stats", None)
        wake = getattr(self.wake, "summary", None)
        return LoopStatus(
            running=self._running,
            activation=self.settings.activation,
            state=state.value,
            state_seconds=now - self._state_since,
            state_audio_seconds=(self._pos - self._state_pos) / self._rate,
            state_limit_seconds=self._state_limit,
            last_frame_age_s=None if self._last_frame_at is None else now - self._last_frame_at,
            audio_seconds=self._pos / self._rate,
            frames=self._frames,
            suppressed_seconds=self._suppressed / self._rate,
            events=dict(self._counts),
            timeouts=dict(self._timeouts),
            source=stats() if callable(stats) else {},
            wake=wake() if callable(wake) else None,
        )

    # ------------------------------------------------------------------ states

    def _enter(self, state: State, limit: float | None = None) -> None:
        if state is State.WAITING and self._state is not State.WAITING:
            if self.wake is not None:
                self.wake.reset()
            self._wake_base = self._pos
        self._state = state
        self._state_limit = limit
        self._state_since = time.monotonic()
        self._state_pos = self._pos

    def _frame(self, frame: Frame) -> None:
        start = self._pos
        n = len(frame.samples)
        self._pos += n
        self._frames += 1
        self._last_frame_at = time.monotonic()
        self._last_frame = frame
        self._ring.append(start, frame.samples)
        if self._playback:
            self._schedule_suppression(frame)
        if start < self._suppress_until:
            self._suppressed += n
            self._was_suppressed = True
            return
        if self._was_suppressed:
            self._resume(start)
        if self._state is State.FEEDBACK:
            self._enter(State.WAITING)
            self._wake_base = start
        if self._state is State.WAITING:
            self._waiting(frame, start)
        elif self._state is State.CAPTURING:
            self._capture(frame)

    def _waiting(self, frame: Frame, start: int) -> None:
        if self._requests:
            with self._lock:
                self._request = self._requests.popleft() if self._requests else None
            if self._request is not None:
                self.vad.reset()
                if self._start_capture(start):
                    self._capture(frame)
                return
        mode = self.settings.activation
        if mode == "wake":
            assert self.wake is not None
            hit = self.wake.process(frame.samples)
            if hit is not None:
                self._on_wake(hit, frame)
        elif mode == "vad":
            picked_up = time.monotonic()
            t0 = time.perf_counter()
            step = self.vad.step(frame)
            vad_ms = (time.perf_counter() - t0) * 1000
            if step.started and self._start_capture(start):
                self._utt_start = start
                self._cpos = self._pos
                self._after_vad(step, frame, picked_up, vad_ms)

    def _on_wake(self, hit: WakeHit, frame: Frame) -> None:
        end = min(self._pos, max(self._ring.start, self._wake_base + hit.end_sample))
        self._emit(
            Event(
                "wake",
                data={
                    "phrase": hit.phrase,
                    "engine": hit.engine,
                    "score": round(float(hit.score), 4),
                    "audio_s": round(end / self._rate, 3),
                },
            )
        )
        self.wake.reset()
        self.vad.reset()
        if not self._start_capture(self._pos):
            return
        busy = self._play("wake")
        if busy:
            self._state_limit = (self._state_limit or 0.0) + busy + self.settings.playback_holdoff_ms / 1000
            return  # the command is the next utterance after the sound
        # The command may have started already: feed what followed the wake word from the ring; the
        # wait for speech still counts from the detection (``end`` may lie before it).
        self._cpos = end
        self._listen_from = max(end, self._pos)
        self._carry = self._ring.since(end)
        self._capture(None, frame.captured_at)

    def _start_capture(self, position: int) -> bool:
        if self._late is not None:
            if self._late.is_alive():
                self._emit(
                    Event(
                        "error",
                        data={
                            "stage": "recognise",
                            "audio_s": round(position / self._rate, 3),
                            "message": "the recogniser is still busy with a command that ran out "
                            "of time; this command is skipped",
                        },
                    )
                )
                self._finish_request(None)
                self._enter(State.WAITING)
                return False
            self._late = None
        s = self.settings
        self._enter(State.CAPTURING, s.no_speech_timeout_s + s.command_max_s)
        self._listen_from = self._cpos = position
        self._utt_start = None
        self._carry = np.zeros(0, dtype=np.int16)
        return True

    def _capture(self, frame: Frame | None, captured_at: float | None = None) -> None:
        """Frames of the command go to the VAD in whole frames (the ring's tail may start mid-frame)."""
        if frame is not None:
            if not len(self._carry):
                self._capture_frame(frame)
                return
            self._carry = np.concatenate([self._carry, frame.samples])
            captured_at = frame.captured_at
        while len(self._carry) >= FRAME_SAMPLES and self._state is State.CAPTURING:
            chunk, self._carry = self._carry[:FRAME_SAMPLES], self._carry[FRAME_SAMPLES:]
            self._capture_frame(Frame(chunk, captured_at if captured_at is not None else time.monotonic()))

    def _capture_frame(self, frame: Frame) -> None:
        picked_up = time.monotonic()
        t0 = time.perf_counter()
        step = self.vad.step(frame)
        vad_ms = (time.perf_counter() - t0) * 1000
        self._cpos += len(frame.samples)
        if self._utt_start is None:
            if step.started:
                self._utt_start = self._cpos
            elif self._cpos - self._listen_from >= self.settings.no_speech_timeout_s * self._rate:
                self.vad.reset()
                self._timeout("capturing", "no_speech", self.settings.no_speech_timeout_s)
                return
        self._after_vad(step, frame, picked_up, vad_ms)

    def _after_vad(self, step: VadStep, frame: Frame, picked_up: float, vad_ms: float) -> None:
        if step.ended:
            self._recognise(step, frame, picked_up, vad_ms)
            return
        self.pipeline.feed(step)
        if self._utt_start is not None and self._cpos - self._utt_start >= self.settings.command_max_s * self._rate:
            transcript = self.pipeline.abandon()
            self.vad.reset()
            self._timeout("capturing", "command_too_long", self.settings.command_max_s, text=transcript.text)

    def _recognise(self, step: VadStep, closing: Frame, picked_up: float, vad_ms: float) -> None:
        limit = self.settings.recognise_timeout_s
        self._enter(State.RECOGNISING, limit)
        done, result, error, thread = _bounded(
            lambda: self.pipeline.finish(step, closing, picked_up, vad_ms), limit, "edge-recognise"
        )
        if not done:
            self._late = thread
            self._timeout("recognising", "recognition_time", limit)
            return
        if error is not None:
            log.error("recognition failed: %s", error)
            self._act(Event("error", data={"stage": "recognise", "message": str(error)}))
            return
        event = Event.from_result(result)
        self._act(dataclasses.replace(event, data={"audio_s": round(self._pos / self._rate, 3)}))

    def _timeout(self, state: str, reason: str, after_s: float, **extra: Any) -> None:
        self._timeouts[reason] += 1
        self._act(
            Event(
                "timeout",
                data={
                    "state": state,
                    "reason": reason,
                    "after_s": after_s,
                    "audio_s": round(self._pos / self._rate, 3),
                    **extra,
                },
            )
        )

    def _act(self, event: Event) -> None:
        """Report the command's outcome, play its feedback sound, and go back to waiting."""
        self._enter(State.ACTING, self.settings.act_timeout_s)
        self._emit(event)
        self._finish_request(event)
        busy = self._play("intent" if event.type == "intent" else "not_understood")
        if busy:
            self._enter(State.FEEDBACK, busy + self.settings.playback_holdoff_ms / 1000)
        else:
            self._enter(State.WAITING)

    def _end_of_audio(self) -> None:
        """The source ended: a command in flight is finished with what was heard."""
        if self._state is not State.CAPTURING:
            return
        step = self.vad.flush()
        if step.ended and self._last_frame is not None and self._utt_start is not None:
            self._recognise(step, self._last_frame, time.monotonic(), 0.0)
        else:
            if self._utt_start is not None:
                self.pipeline.abandon()
            self._timeout("capturing", "end_of_audio", (self._pos - self._state_pos) / self._rate)

    # ------------------------------------------------------------------ events

    def _emit(self, event: Event) -> None:
        self._counts[event.type] += 1
        self._pending.append(event)
        if self.on_event is None:
            return
        done, _, error, _ = _bounded(lambda: self.on_event(event), self.settings.act_timeout_s, "edge-act")
        if not done:
            self._timeouts["act_time"] += 1
            log.error("the outputs took longer than %g s for a %s event", self.settings.act_timeout_s, event.type)
        elif error is not None:
            log.error("an output failed on a %s event: %s", event.type, error)

    def _drain(self) -> Iterator[Event]:
        pending, self._pending = self._pending, []
        yield from pending

    def _finish_request(self, event: Event | None) -> None:
        with self._lock:
            req, self._request = self._request, None
        if req is not None:
            self._resolve(req, event or Event("error", data={"stage": "liveloop", "message": "command skipped"}))

    @staticmethod
    def _stopped_event() -> Event:
        return Event("error", data={"stage": "liveloop", "message": "the live loop has stopped"})

    @staticmethod
    def _resolve(req: _Request, event: Event) -> None:
        req.event = event
        req.done.set()

    # ------------------------------------------------------------------ playback

    def _play(self, key: str) -> float:
        """Play a feedback sound; the seconds the output is busy (0.0 when nothing plays)."""
        sound = self._sounds.get(key)
        if sound is None or self.player is None:
            return 0.0
        return self.player.play(sound)

    def _on_playback(self, seconds: float) -> None:
        # Called on whichever thread started the sound; the loop's thread puts it on the audio clock.
        self._playback.append(seconds)

    def _schedule_suppression(self, frame: Frame) -> None:
        # Frames still queued from before the sound started must not eat into the window: the
        # sound reaches the microphone ``lag`` seconds of audio after this frame.
        lag = max(0.0, time.monotonic() - frame.captured_at) if self._realtime else 0.0
        holdoff = self.settings.playback_holdoff_ms / 1000
        while self._playback:
            seconds = self._playback.pop(0)
            end = self._pos - len(frame.samples) + int((lag + seconds + holdoff) * self._rate)
            self._suppress_until = max(self._suppress_until, end)

    def _resume(self, start: int) -> None:
        """Scoring resumes after playback: engines must not join audio across the gap."""
        self._was_suppressed = False
        if self._state is State.WAITING:
            if self.wake is not None:
                self.wake.reset()
            self._wake_base = start
            self.vad.reset()
        elif self._state is State.CAPTURING and self._utt_start is None:
            self.vad.reset()
            self._listen_from = self._cpos = start


__all__ = ["Activation", "FeedbackSettings", "LiveLoop", "LiveLoopSettings", "LoopStatus", "State"]
