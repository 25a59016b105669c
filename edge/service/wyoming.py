"""The Wyoming protocol server: edge as Home Assistant's speech-to-text, conversation agent and wake word.

Home Assistant (Settings → Devices & services → Wyoming Protocol) and ``wyoming-satellite`` find
out what a Wyoming service offers with ``describe`` → ``info``; this server offers three programs
on one port:

* **asr** ``edge``: ``transcribe`` (optional), ``audio-start``, ``audio-chunk``..., ``audio-stop``
  → ``transcript``. Audio of any rate, sample width and channel count is converted to 16 kHz
  mono (:class:`edge.audio.PcmConverter`); the STT engine is the one the device profile picks,
  with the intent model's adaptation, as on the microphone path. The client ends the audio (Home
  Assistant runs its own VAD), so everything between start and stop is one utterance.
* **intent** ``edge``: ``recognize`` (or ``transcript``, which is what Home Assistant's
  conversation agent sends) → ``intent`` with one entity per slot (its canonical value) or
  ``not-recognized``.
* **wake** ``edge``: ``detect`` (model names, or none for the configured phrases), then
  ``audio-chunk``... (``audio-start`` optional, as wyoming-satellite sends none) → ``detection``
  each time a phrase is heard, ``not-detected`` at ``audio-stop`` if none was. The models
  listed are the microWakeWord models shipped in the ``pymicro-wakeword`` wheel, those in
  ``wake.models`` and the configured phrases (``hey_jarvis``, ``okay_nabu``, ...).

The protocol is the PyPI ``wyoming`` library's (events, their reader and writer, the TCP/Unix
server, the zeroconf announcement); this module only answers events. Each connection has its
own stream state and its own STT and wake engines; their CPU work runs on a thread pool, so a
slow client never holds up another. The asyncio loop runs on a thread of its own, beside the
daemon's threads.

Bad input gets an ``error`` event (``text`` says what was wrong and what is expected) on that
connection only: an unknown or malformed event, audio outside a request, an unsupported
format, text or audio over the limits (``wyoming.max_text_bytes``, ``max_audio_bytes``), a
transcription silent for ``timeout_s``. A line that is not JSON is answered and skipped; what
leaves the stream unreadable (an over-long line, a payload over the limit, a timeout) is
answered, then that connection is closed. ``max_connections`` bounds the clients served at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wyoming.server import AsyncEventHandler

from edge.audio import AudioError, PcmConverter

if TYPE_CHECKING:
    from wyoming.event import Event as WyomingEvent

    from edge.config import WyomingSettings
    from edge.result import Result
    from edge.stt import SttEngine
    from edge.wake import WakeEngine, WakeSettings

log = logging.getLogger("edge.wyoming")

NOT_UNDERSTOOD_SPEECH = {"en": "Sorry, I did not understand that."}
"""What Home Assistant says for ``not-recognized``, per language; others get no text."""

ACCEPTED = (
    "describe",
    "ping",
    "transcribe",
    "audio-start",
    "audio-chunk",
    "audio-stop",
    "recognize",
    "transcript",
    "detect",
)


@dataclasses.dataclass(frozen=True)
class WakeModelInfo:
    """A wake word the server lists and detects."""

    name: str
    """Model id clients ask for in ``detect`` and get back in ``detection`` (``hey_jarvis``)."""
    phrase: str
    """The words, as the model's manifest or the configuration spells them."""
    languages: tuple[str, ...]
    engine: str
    """``micro`` or the engine a configured phrase uses."""


@dataclasses.dataclass(frozen=True)
class Services:
    """What the server answers with, built by the daemon (the server wires no stage itself)."""

    classify: Callable[[str], Result]
    """Text -> result (the daemon's shared, profiled classifier; it publishes when configured to)."""
    create_stt: Callable[[], SttEngine]
    """A fresh STT engine, as the microphone path builds it (engine, model, adaptation)."""
    create_wake: Callable[[tuple[str, ...] | None], WakeEngine]
    """A wake engine for these phrases (model names), or for the configured phrases with ``None``;
    raises :class:`edge.wake.WakeError` for phrases it cannot detect."""
    stt_name: str
    """The STT engine's name, listed as the asr model (``pocketsphinx``, ``vosk``)."""
    model_label: str
    """The intent model, listed as the intent model (``squeezebert-hwu64 1.0.0``)."""
    language: str
    """The intent model's language, for every program (BCP 47, ``en``)."""
    wake_models: tuple[WakeModelInfo, ...]


def wake_models(settings: WakeSettings, language: str) -> tuple[WakeModelInfo, ...]:
    """The shipped and configured microWakeWord models, then the configured phrases no model covers."""
    from edge.wake import canonical, engine_for, micro

    models = micro.available_models(settings.models)
    listed = {
        key: WakeModelInfo(key.replace(" ", "_"), m.phrase, tuple(m.trained_languages) or (language,), "micro")
        for key, m in models.items()
    }
    for engine, phrases in engine_for(settings, set(models)).items():
        for phrase in phrases:
            key = canonical(phrase)
            if engine != "micro" or key not in listed:
                listed[key] = WakeModelInfo(key.replace(" ", "_"), phrase, (language,), engine)
    return tuple(listed.values())


class _EngineFailure(Exception):
    """A stage failed on a worker thread: the service's fault, answered as ``internal``."""


class RequestError(Exception):
    """An event this server refuses: the ``error`` event's code and text; ``fatal`` closes the connection."""

    def __init__(self, code: str, text: str, fatal: bool = False) -> None:
        super().__init__(text)
        self.code, self.text, self.fatal = code, text, fatal


class WyomingServer:
    """:meth:`start` binds and serves on a thread of its own; :meth:`close` stops it."""

    def __init__(self, settings: WyomingSettings, services: Services) -> None:
        self.settings = settings
        self.services = services
        self.uri = settings.listen
        self.connections = 0
        self.requests: dict[str, int] = {}
        self.errors = 0
        self._stt_idle: list[SttEngine] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._zeroconf: Any = None
        self.tasks: set[Any] = set()  # the connections' tasks, awaited on close
        # One worker per core: the engines are CPU-bound and mostly hold the GIL, so more threads buy no
        # speed (docs/integrations.md) and cost memory.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(settings.max_connections, os.cpu_count() or 2), thread_name_prefix="edge-wyoming-work"
        )

    # --- lifecycle (daemon threads) ---------------------------------------------------------------

    def start(self) -> None:
        """Bind (raises OSError when the address is taken) and serve; announce over zeroconf when configured."""
        from wyoming.server import AsyncServer

        with self._lock:  # load one STT engine now: a bad STT setup fails before READY, and the first client waits less
            self._stt_idle.append(self.services.create_stt())
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="edge-wyoming", daemon=True)
        self._thread.start()
        server = AsyncServer.from_uri(self.settings.listen)
        try:
            asyncio.run_coroutine_threadsafe(server.start(self._handler), loop).result(30)
        except BaseException:
            self._stop_loop()
            raise
        self._server = server
        # The library does not expose the bound address; with port 0 (tests) the port is only known here.
        sockets = getattr(getattr(server, "_server", None), "sockets", None) or []
        if self.settings.listen.startswith("tcp://") and sockets:
            host, port = sockets[0].getsockname()[:2]
            self.uri = f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"
            if self.settings.zeroconf:
                asyncio.run_coroutine_threadsafe(self._announce(host, port), loop).result(30)
        log.info(
            "Wyoming on %s (asr: %s, intent: %s, wake: %s)",
            self.uri,
            self.services.stt_name,
            self.services.model_label,
            ", ".join(m.name for m in self.services.wake_models),
        )

    async def _announce(self, host: str, port: int) -> None:
        from wyoming.zeroconf import HomeAssistantZeroconf

        name = self.settings.zeroconf_name or socket.gethostname()
        self._zeroconf = HomeAssistantZeroconf(port=port, name=name, host=None if host in ("0.0.0.0", "::") else host)
        await self._zeroconf.register_server()
        log.info("Wyoming service announced over zeroconf as %s._wyoming._tcp", name)

    def update(self, services: Services) -> None:
        """New engines and model (after a reload): requests already running finish with the old ones."""
        with self._lock:
            self.services = services
            self._stt_idle = []

    def close(self) -> None:
        """Disconnect every client, stop listening, withdraw the announcement."""
        loop = self._loop
        if loop is None:
            return
        if self._server is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
            except (concurrent.futures.TimeoutError, RuntimeError):
                log.warning("Wyoming server did not stop in time")
        self._stop_loop()
        self.executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._stt_idle = []

    async def _shutdown(self) -> None:
        await self._server.stop()  # closes every connection: their read loops end
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)
        if self._zeroconf is not None:
            # The library's announcer keeps its AsyncZeroconf private and has no unregister call.
            await self._zeroconf._aiozc.async_close()

    def _stop_loop(self) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def health(self) -> dict[str, Any]:
        return {
            "listen": self.uri,
            "connections": self.connections,
            "requests": dict(self.requests),
            "errors": self.errors,
        }

    # --- shared engines (worker threads) -----------------------------------------------------------

    def take_stt(self) -> tuple[SttEngine, Services]:
        with self._lock:
            services = self.services
            if self._stt_idle:
                return self._stt_idle.pop(), services
        return services.create_stt(), services

    def give_back_stt(self, engine: SttEngine, services: Services) -> None:
        with self._lock:
            # Engines of a replaced configuration are dropped; a few idle ones spare the next client the model load.
            if services is self.services and len(self._stt_idle) < 2:
                self._stt_idle.append(engine)

    def count(self, kind: str) -> None:
        self.requests[kind] = self.requests.get(kind, 0) + 1

    def _handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Connection:
        return _Connection(_LimitedReader(reader, self.settings.max_audio_bytes), writer, self)


class _LimitedReader:
    """The connection's stream as the library's event reader uses it, refusing before reading a payload
    over the limit (the reader would buffer any length it is told) or an over-long header line.
    ``refused`` says why; the stream is then out of step and the connection must close."""

    def __init__(self, reader: asyncio.StreamReader, limit: int) -> None:
        self._reader = reader
        self.limit = limit
        self.refused: str | None = None

    async def readline(self) -> bytes:
        try:
            return await self._reader.readline()
        except ValueError:
            self.refused = "an event header line is longer than the 64 KiB the reader takes"
            raise

    async def readexactly(self, n: int) -> bytes:
        if n > self.limit:
            self.refused = (
                f"an event announces {n} bytes of data or payload; the limit is {self.limit} bytes "
                "(wyoming.max_audio_bytes)"
            )
            raise ValueError(self.refused)
        return await self._reader.readexactly(n)

    def at_eof(self) -> bool:
        return self._reader.at_eof()

    def feed_eof(self) -> None:
        self._reader.feed_eof()


class _Transcription:
    """One ``transcribe`` request: its audio format, STT engine and the bytes received."""

    def __init__(self, name: str | None, language: str | None) -> None:
        self.name, self.language = name, language
        self.converter: PcmConverter | None = None
        self.engine: SttEngine | None = None
        self.services: Services | None = None
        self.received = 0
        self.samples = 0  # at 16 kHz, after conversion


class _WakeStream:
    """One ``detect`` request: the engine for its names and what was heard since."""

    def __init__(self, names: tuple[str, ...] | None, engine: WakeEngine) -> None:
        self.names = names
        self.engine = engine
        self.converter: PcmConverter | None = None
        self.detections = 0
        self.pending: Any = None  # the samples left over from the last chunk (less than a frame)


class _Connection(AsyncEventHandler):
    """One client: its request state, events in order, answers on the same connection."""

    def __init__(self, reader: _LimitedReader, writer: asyncio.StreamWriter, server: WyomingServer) -> None:
        super().__init__(reader, writer)  # type: ignore[arg-type]
        self.server = server
        self.settings = server.settings
        self.peer = writer.get_extra_info("peername") or writer.get_extra_info("sockname") or "?"
        self.request: _Transcription | _WakeStream | None = None
        # Audio ignored up to its audio-stop: "aborted" (an error in a stream: a new audio-start begins
        # another) or "refused" (a transcribe or detect that was refused: its own audio-start too).
        self.dropping: str | None = None
        self._wake_cache: _WakeStream | None = None  # engine kept between detects for the same names

    async def run(self) -> None:
        """The library's read loop, plus the connection limit, the request timeout and answers to unreadable input."""
        from wyoming.event import async_read_event

        server = self.server
        if server.connections >= self.settings.max_connections:
            await self._error(
                RequestError(
                    "busy",
                    f"busy: {self.settings.max_connections} clients are connected "
                    "(wyoming.max_connections); retry later",
                )
            )
            self.writer.close()
            return
        server.connections += 1
        task = asyncio.current_task()
        server.tasks.add(task)
        log.debug("Wyoming client %s connected", self.peer)
        try:
            while True:
                timeout = self.settings.timeout_s if isinstance(self.request, _Transcription) else None
                try:
                    event = await asyncio.wait_for(async_read_event(self.reader), timeout)
                except asyncio.TimeoutError:
                    await self._error(
                        RequestError(
                            "timeout",
                            f"no event for {timeout:g} s in the middle of a "
                            "transcription (wyoming.timeout_s); disconnected",
                        )
                    )
                    break
                except (KeyError, AttributeError, TypeError):  # a JSON line that is not an event object
                    await self._error(
                        RequestError(
                            "bad-event",
                            "expected an event: a JSON object with a 'type' (and optional 'data', 'payload_length')",
                        )
                    )
                    continue
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                if event is None:
                    if self.reader.at_eof():
                        break
                    refused = self.reader.refused
                    if refused is not None:
                        await self._error(RequestError("too-large", f"{refused}; disconnected"))
                        break
                    await self._error(
                        RequestError(
                            "bad-event", 'a line is not JSON; expected one event per line: {"type": ..., "data": {...}}'
                        )
                    )
                    continue
                if not await self.handle_event(event):
                    break
        except ConnectionError:
            pass
        finally:
            server.connections -= 1
            server.tasks.discard(task)
            await self._release()
            self.writer.close()
            log.debug("Wyoming client %s disconnected", self.peer)

    async def handle_event(self, event: WyomingEvent) -> bool:
        try:
            await self._dispatch(event)
        except RequestError as exc:
            await self._error(exc)
            return not exc.fatal
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a field missing or of the wrong type
            await self._abort(drop_rest=True)
            await self._error(RequestError("bad-event", f"{event.type}: {_field_problem(exc)}"))
        except Exception as exc:
            log.error(
                "Wyoming %s from %s failed",
                event.type,
                self.peer,
                exc_info=exc.__cause__ if isinstance(exc, _EngineFailure) else exc,
            )
            await self._abort(drop_rest=True)
            await self._error(RequestError("internal", f"{event.type}: internal error; see the service's log"))
        return True

    # --- events -------------------------------------------------------------------------------------

    async def _dispatch(self, event: WyomingEvent) -> None:
        from wyoming.asr import Transcribe, Transcript
        from wyoming.audio import AudioChunk, AudioStart, AudioStop
        from wyoming.info import Describe
        from wyoming.intent import Recognize
        from wyoming.ping import Ping, Pong
        from wyoming.wake import Detect

        kind = event.type
        if AudioChunk.is_type(kind):
            await self._chunk(AudioChunk.from_event(event))
            return
        if kind in ACCEPTED and kind != "ping":
            self.server.count(kind)
        if Describe.is_type(kind):
            await self.write_event(self._info().event())
        elif Ping.is_type(kind):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
        elif Transcribe.is_type(kind):
            request = Transcribe.from_event(event)
            await self._abort()
            self._check_asr(request.name, request.language)
            self.request = _Transcription(request.name, request.language)
        elif AudioStart.is_type(kind):
            start = AudioStart.from_event(event)
            if self.dropping == "refused":
                return
            self.dropping = None
            request = self.request
            if request is None or (isinstance(request, _Transcription) and request.converter is not None):
                await self._abort()
                self.request = _Transcription(None, None)  # audio without transcribe is a transcription, as is usual
            await self._begin_audio(start.rate, start.width, start.channels)
        elif AudioStop.is_type(kind):
            AudioStop.from_event(event)
            await self._stop()
        elif Detect.is_type(kind):
            names = Detect.from_event(event).names
            await self._detect(tuple(names) if names else None)
            self.dropping = None
        elif Recognize.is_type(kind) or Transcript.is_type(kind):
            text = event.data["text"]
            await self._recognize(text)
        else:
            raise RequestError(
                "unsupported-event",
                f"this server does not take {kind!r} events; it takes "
                f"{', '.join(ACCEPTED)} (asr, intent and wake programs)",
            )

    def _info(self) -> Any:
        from wyoming.info import (
            AsrModel,
            AsrProgram,
            Attribution,
            Info,
            IntentModel,
            IntentProgram,
            WakeModel,
            WakeProgram,
        )

        from edge import __version__

        s = self.server.services
        edge = Attribution(name="edge", url="")
        langs = [s.language]
        stt_attribution = {
            "pocketsphinx": Attribution("CMU PocketSphinx", "https://github.com/cmusphinx/pocketsphinx"),
            "vosk": Attribution("Alpha Cephei Vosk", "https://alphacephei.com/vosk/"),
            "whisper": Attribution("OpenAI Whisper (faster-whisper)", "https://github.com/SYSTRAN/faster-whisper"),
        }
        asr = AsrProgram(
            name="edge",
            description="edge offline speech to text",
            attribution=edge,
            installed=True,
            version=__version__,
            supports_transcript_streaming=False,
            models=[
                AsrModel(
                    name=s.stt_name,
                    description=f"{s.stt_name} adapted to the intent model",
                    attribution=stt_attribution.get(s.stt_name.split("+")[0], edge),
                    installed=True,
                    version=None,
                    languages=langs,
                )
            ],
        )
        intent = IntentProgram(
            name="edge",
            description="edge on-device intent and slot model",
            attribution=edge,
            installed=True,
            version=__version__,
            models=[
                IntentModel(
                    name=s.model_label,
                    description="intent classification + slots",
                    attribution=edge,
                    installed=True,
                    version=None,
                    languages=langs,
                )
            ],
        )
        wake = WakeProgram(
            name="edge",
            description="edge wake word detection",
            attribution=edge,
            installed=True,
            version=__version__,
            models=[
                WakeModel(
                    name=m.name,
                    phrase=m.phrase,
                    description=f"{m.phrase} ({m.engine})",
                    attribution=Attribution("microWakeWord", "https://github.com/kahrendt/microWakeWord")
                    if m.engine == "micro"
                    else edge,
                    installed=True,
                    version=None,
                    languages=list(m.languages),
                )
                for m in s.wake_models
            ],
        )
        return Info(asr=[asr], intent=[intent], wake=[wake])

    def _check_asr(self, name: str | None, language: str | None) -> None:
        s = self.server.services
        if name is not None and name not in (s.stt_name, "edge"):
            self.dropping = "refused"
            raise RequestError(
                "unknown-model",
                f"transcribe: no asr model {name!r}; this server has "
                f"{s.stt_name!r} (see describe); its audio is ignored",
            )
        if language and _primary(language) != _primary(s.language):
            self.dropping = "refused"
            raise RequestError(
                "unsupported-language",
                f"transcribe: language {language!r} is not served; allowed: {s.language}; its audio is ignored",
            )

    async def _begin_audio(self, rate: int, width: int, channels: int) -> None:
        try:
            converter = PcmConverter(rate, width, channels)
        except AudioError as exc:
            await self._abort(drop_rest=True)
            raise RequestError("bad-audio", f"audio-start: {exc}") from None
        request = self.request
        assert request is not None
        request.converter = converter
        if isinstance(request, _Transcription) and request.engine is None:
            request.engine, request.services = await self._work(self.server.take_stt)

    async def _chunk(self, chunk: Any) -> None:
        request = self.request
        if self.dropping:
            return
        if request is None:
            raise RequestError(
                "no-request", "audio-chunk outside a request; send transcribe or detect (and audio-start) first"
            )
        if isinstance(request, _Transcription):
            if request.converter is None:
                await self._begin_audio(chunk.rate, chunk.width, chunk.channels)
            request.received += len(chunk.audio)
            if request.received > self.settings.max_audio_bytes:
                await self._abort(drop_rest=True)
                raise RequestError(
                    "too-large",
                    f"the transcription's audio exceeds {self.settings.max_audio_bytes} "
                    "bytes (wyoming.max_audio_bytes); its audio is dropped",
                )
        elif request.converter is None or not request.converter.same_format(chunk.rate, chunk.width, chunk.channels):
            await self._begin_audio(chunk.rate, chunk.width, chunk.channels)
        assert request.converter is not None
        if not request.converter.same_format(chunk.rate, chunk.width, chunk.channels):
            fmt = request.converter
            await self._abort(drop_rest=True)
            raise RequestError(
                "bad-audio",
                f"audio-chunk is {chunk.rate} Hz, {chunk.width} bytes, {chunk.channels} "
                f"channel(s) but audio-start said {fmt.rate} Hz, {fmt.width} bytes, "
                f"{fmt.channels} channel(s)",
            )
        samples = request.converter.convert(chunk.audio)
        if isinstance(request, _Transcription):
            assert request.engine is not None
            request.samples += len(samples)
            if request.samples > self.settings.max_audio_seconds * 16000:
                await self._abort(drop_rest=True)
                raise RequestError(
                    "too-large",
                    f"the transcription's audio is longer than "
                    f"{self.settings.max_audio_seconds:g} s (wyoming.max_audio_seconds); "
                    "its audio is dropped",
                )
            if len(samples):  # the resampler may hold a small chunk back entirely
                await self._work(request.engine.accept, samples)
        else:
            await self._hear(request, samples)

    async def _stop(self) -> None:
        from wyoming.asr import Transcript
        from wyoming.wake import NotDetected

        request, was_dropping = self.request, self.dropping
        self.dropping = None
        if request is None:
            if was_dropping:
                return
            raise RequestError(
                "no-request",
                "audio-stop outside a request; send transcribe or detect, audio-start and audio-chunk first",
            )
        self.request = None
        if isinstance(request, _WakeStream):
            if request.converter is not None:
                await self._hear(request, request.converter.flush())
            if not request.detections:
                await self.write_event(NotDetected().event())
            return
        if request.engine is None:  # transcribe, audio-stop: no audio at all
            await self.write_event(Transcript(text="", language=self.server.services.language).event())
            return
        assert request.converter is not None
        engine = request.engine
        rest = request.converter.flush()
        transcript = await self._work(_finish, engine, rest)
        self.server.give_back_stt(engine, request.services)  # type: ignore[arg-type]
        log.info("Wyoming transcript for %s: %r (%s)", self.peer, transcript.text, transcript.engine)
        await self.write_event(
            Transcript(text=transcript.text, language=request.language or self.server.services.language).event()
        )

    async def _detect(self, names: tuple[str, ...] | None) -> None:
        await self._abort()
        cached = self._wake_cache
        if cached is not None and cached.names == names:
            await self._work(cached.engine.reset)
            stream = _WakeStream(names, cached.engine)
        else:
            from edge.wake import WakeError

            services = self.server.services
            try:
                engine = await self._work(services.create_wake, names, expected=(WakeError,))
            except WakeError as exc:
                listed = ", ".join(m.name for m in services.wake_models)
                self.dropping = "refused"
                raise RequestError(
                    "unknown-model", f"detect: {exc} (models listed: {listed}); its audio is ignored"
                ) from None
            if cached is not None:
                await self._work(cached.engine.close)
            stream = _WakeStream(names, engine)
        self._wake_cache = stream
        self.request = stream

    async def _hear(self, stream: _WakeStream, samples: Any) -> None:
        import numpy as np
        from wyoming.wake import Detection

        from edge.wake import FRAME, normalize

        if stream.pending is not None and len(stream.pending):
            samples = np.concatenate([stream.pending, samples])
        whole = len(samples) - len(samples) % FRAME
        stream.pending = samples[whole:]
        if not whole:
            return
        hits = await self._work(stream.engine.process_all, samples[:whole])
        by_phrase = {normalize(n): n for n in stream.names or ()}
        for hit in hits:
            stream.detections += 1
            name = by_phrase.get(normalize(hit.phrase)) or normalize(hit.phrase).replace(" ", "_")
            log.info("Wyoming wake word %s for %s (%s, score %.3f)", name, self.peer, hit.engine, hit.score)
            self.server.count("detection")
            # end_sample counts from the engine's reset, which is this detect's start
            await self.write_event(Detection(name=name, timestamp=hit.end_sample * 1000 // 16000).event())

    async def _recognize(self, text: Any) -> None:
        from wyoming.intent import Entity, Intent, NotRecognized

        from edge.classifier import InputError

        await self._abort()
        if not isinstance(text, str):
            raise RequestError("bad-event", f"recognize: 'text' must be a string, got {type(text).__name__}")
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > self.settings.max_text_bytes:
            raise RequestError(
                "too-large",
                f"recognize: the text is {size} bytes; the limit is "
                f"{self.settings.max_text_bytes} bytes (wyoming.max_text_bytes)",
            )
        try:
            result = await self._work(self.server.services.classify, text, expected=(InputError,))
        except InputError as exc:
            raise RequestError("bad-text", f"recognize: {exc}") from None
        if result.intent is None:
            speech = NOT_UNDERSTOOD_SPEECH.get(_primary(self.server.services.language))
            await self.write_event(NotRecognized(text=speech).event())
            return
        entities = [Entity(name=slot.name, value=slot.value) for slot in result.slots]
        await self.write_event(Intent(name=result.intent, entities=entities).event())

    # --- helpers ------------------------------------------------------------------------------------

    async def _work(self, fn: Callable[..., Any], *args: Any, expected: tuple[type[Exception], ...] = ()) -> Any:
        """CPU work (STT, wake, classification) on the server's pool: the loop keeps serving other clients.

        A failure other than the ``expected`` ones is the engine's, not the client's: :class:`_EngineFailure`.
        """
        try:
            return await asyncio.get_running_loop().run_in_executor(self.server.executor, fn, *args)
        except expected:
            raise
        except Exception as exc:
            raise _EngineFailure(exc) from exc

    async def _abort(self, drop_rest: bool = False) -> None:
        """End the request in progress (its STT engine goes back, reset). ``drop_rest`` (after an error): the rest
        of its audio, up to its audio-stop, is ignored rather than answered with an error per chunk."""
        request, self.request = self.request, None
        self.dropping = "aborted" if drop_rest and request is not None else None
        if isinstance(request, _Transcription) and request.engine is not None:
            try:
                await self._work(_finish, request.engine, None)
            except Exception:  # an engine that failed mid-utterance is not trusted again
                log.exception("STT engine failed to reset; dropped")
                return
            self.server.give_back_stt(request.engine, request.services)  # type: ignore[arg-type]

    async def _release(self) -> None:
        try:
            await self._abort()
            if self._wake_cache is not None:
                await self._work(self._wake_cache.engine.close)
        except (RuntimeError, _EngineFailure):  # the pool is shut down (the service is stopping), or the engine failed
            pass

    async def _error(self, exc: RequestError) -> None:
        from wyoming.error import Error

        self.server.errors += 1
        log.warning("Wyoming client %s: %s", self.peer, exc.text)
        try:
            await self.write_event(Error(text=exc.text, code=exc.code).event())
        except ConnectionError:
            pass


def _finish(engine: SttEngine, rest: Any) -> Any:
    """Feed the last samples and end the utterance (``rest=None``: just reset the engine)."""
    if rest is not None and len(rest):
        engine.accept(rest)
    return engine.final()


def _primary(language: str) -> str:
    return language.replace("_", "-").split("-")[0].lower()


def _field_problem(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return f"a field is malformed ({exc})"


__all__ = ["RequestError", "Services", "WakeModelInfo", "WyomingServer", "wake_models"]
