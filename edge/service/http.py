"""The local HTTP API: text or speech in, the event out; health and metrics.

======================  ===================================================================
``POST /v1/intent``     ``{"text": "..."}`` (``application/json``) or the text itself
                        (``text/plain``) -> the event as JSON
``POST /v1/recognize``  a WAV file as the body -> ``{"events": [...]}``, one per utterance
``POST /v1/listen``     no body: take one command from the microphone now (``liveloop.activation:
                        api``; works in every mode) -> its event (``intent``, ``not_understood``
                        or ``timeout``) when it is over; 409 without a microphone
``GET /healthz``        ``{"status": "ok", "loop": {...}, ...}``: 200 when healthy, 503 when not
                        (no token needed)
``GET /metrics``        Prometheus text format
======================  ===================================================================

``?publish=false`` keeps a request's result from the outputs (stdout, MQTT, hooks).

It binds 127.0.0.1 by default; on any other address the configuration must set a token, and
every request but ``/healthz`` must then carry ``Authorization: Bearer <token>``. Every refusal
is a 4xx (or a 503 when busy) with ``{"error": "<what was wrong and what is expected>"}``.

One limit policy, so that no client can hold the service for the others:

* a request must arrive whole (headers and body) within ``timeout_s`` of the connection opening
  or of the previous answer on it; else 408 and the connection is closed. Requests are read on
  one event loop, so a slow client costs a socket and a buffer, never a worker;
* at most ``max_connections`` connections are open at once and at most ``max_receiving_bytes``
  of bodies are being received; beyond either, 503 at once;
* bodies are limited (``max_text_bytes``, ``max_wav_bytes``) before they are read, and a WAV by
  its length too (``max_wav_seconds``) and by the time its recognition takes
  (``recognize_timeout_s``): 413 naming the limit;
* a request that arrived whole runs on one of ``workers`` threads; with all busy, 503 at once.

The HTTP/1.1 protocol itself (request line, headers, framing, keep-alive, ``Expect:
100-continue``) is h11's, a small pure-Python implementation of it; asyncio's streams carry it.
A web framework would bring routing for five endpoints and a larger footprint on a Pi Zero.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import http
import json
import logging
import re
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

import h11

from edge.prometheus import CONTENT_TYPE as METRICS_CONTENT_TYPE

if TYPE_CHECKING:
    from edge.config import HttpSettings
    from edge.events import Event
    from edge.outputs.metrics import Metrics

log = logging.getLogger("edge.service.http")

ENDPOINTS = {"/v1/intent": "POST", "/v1/recognize": "POST", "/v1/listen": "POST", "/healthz": "GET", "/metrics": "GET"}
TEXT_TYPES = ("application/json", "text/plain")
WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "application/octet-stream")
MAX_HEAD_BYTES = 16384
"""Request line and headers together; larger get 431."""
_CONTENT_LENGTH_LINE = re.compile(rb"^content-length[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


class Api(Protocol):
    """What the HTTP API asks of the daemon."""

    def classify_text(self, text: str, publish: bool) -> Event: ...

    def recognize_wav(self, body: bytes, publish: bool) -> list[Event]: ...

    def listen(self) -> Event: ...

    def health(self) -> tuple[bool, dict[str, Any]]: ...

    def metrics_text(self) -> bytes: ...


class RequestError(Exception):
    """A request the API refuses: HTTP status and the reason for the client."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


@dataclass(frozen=True)
class Route:
    """A request whose head passed every check: what to run, with how many body bytes to read."""

    path: str
    method: str
    query: str
    headers: dict[str, str]
    length: int
    """Body bytes to read (0: none)."""


Reply = tuple[int, str, bytes, dict[str, str]]
"""(status, content type, body, extra headers)."""


class HttpApi:
    """The server: :meth:`start` binds and serves on a thread, :meth:`close` stops it."""

    def __init__(self, settings: HttpSettings, api: Api, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.api = api
        self.metrics = metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None
        self._connections: dict[asyncio.Task, list] = {}  # task -> [state, writer]; loop thread only
        self._busy = 0  # requests on a worker; loop thread only
        self._receiving = 0  # body bytes being received; loop thread only
        self._stopping = False
        self._workers = concurrent.futures.ThreadPoolExecutor(settings.workers, thread_name_prefix="edge-http")
        # /healthz has its own thread: a supervisor's probe must get an answer while the workers are busy.
        self._health = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="edge-http-health")

    def start(self) -> None:
        """Bind (raises OSError when the address is taken or not local) and serve on a thread."""
        host, port = self.settings.address
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            # A deep backlog: connections wait in the kernel only until the loop accepts them (at once),
            # and past max_connections they get their 503 from us rather than a timeout from the kernel.
            sock.listen(min(socket.SOMAXCONN, 1024))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._address = sock.getsockname()[:2]
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(asyncio.start_server(self._connection, sock=sock))
        self._thread = threading.Thread(target=self._loop.run_forever, name="edge-http", daemon=True)
        self._thread.start()
        log.info("HTTP API on %s", self.url)

    @property
    def url(self) -> str:
        assert self._address is not None
        host, port = self._address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting and close idle connections; requests in progress finish (within ``timeout``,
        by default what one request may take: ``timeout_s`` to arrive plus ``recognize_timeout_s``)."""
        if self._loop is None:
            return
        grace = timeout if timeout is not None else self.settings.timeout_s + self.settings.recognize_timeout_s + 5.0
        future = asyncio.run_coroutine_threadsafe(self._shutdown(grace), self._loop)
        try:
            future.result(grace + 5.0)
        except (concurrent.futures.TimeoutError, RuntimeError):
            log.warning("HTTP: requests still in progress after %g s were dropped", grace)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._health.shutdown(wait=False, cancel_futures=True)
        self._loop = None

    async def _shutdown(self, grace: float) -> None:
        self._stopping = True
        assert self._server is not None
        self._server.close()
        for state, writer in self._connections.values():
            if state == "idle":  # between requests: nothing to lose
                writer.close()
        pending = list(self._connections)
        if pending:
            log.info("HTTP: %d request(s) in progress; letting them finish", len(pending))
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()

    # --- connections (on the event loop) ---------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._stopping or len(self._connections) >= self.settings.max_connections:
            why = (
                "the service is stopping"
                if self._stopping
                else f"{len(self._connections)} connections are open (http.max_connections)"
            )
            await self._refuse(reader, writer, 503, f"busy: {why}; retry later", {"Retry-After": "1"})
            return
        task = asyncio.current_task()
        assert task is not None
        entry = self._connections[task] = ["idle", writer]
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        try:
            while not self._stopping or entry[0] != "idle":
                if not await self._exchange(conn, reader, writer, entry):
                    break
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE or self._stopping:
                    break
                conn.start_next_cycle()
                entry[0] = "idle"
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass  # the client went away
        except asyncio.CancelledError:
            pass  # shutdown's grace ran out
        except Exception:
            log.exception("HTTP connection failed")
        finally:
            self._connections.pop(task, None)
            writer.close()

    async def _exchange(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, entry: list
    ) -> bool:
        """One request and its answer; False: close the connection."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.timeout_s
        head = bytearray(conn.trailing_data[0])
        try:
            event = await asyncio.wait_for(self._next_event(conn, reader, head, entry), self.settings.timeout_s)
        except asyncio.TimeoutError:
            if not head:
                return False  # idle keep-alive connection: close quietly
            await self._send_raw(writer, 408, self._late())
            return False
        except h11.RemoteProtocolError as exc:
            status, reason = _protocol_error(exc)
            await self._send_raw(writer, status, reason)
            return False
        if isinstance(event, h11.ConnectionClosed):
            return False
        assert isinstance(event, h11.Request)
        entry[0] = "receiving"
        end_of_head = head.find(b"\r\n\r\n")
        if end_of_head > MAX_HEAD_BYTES or end_of_head < 0 and len(head) > MAX_HEAD_BYTES:
            # h11 bounds a head that arrives in pieces; one that came in a single read is measured here
            await self._send_raw(writer, *_protocol_error(h11.RemoteProtocolError("", error_status_hint=431)))
            return False
        target = event.target.decode("ascii", "replace")
        method = event.method.decode("ascii", "replace")
        path = urlsplit(target).path
        reserved = 0
        headers = _headers(event.headers)
        if "transfer-encoding" not in headers and headers.get("content-length", "0") == "0":
            await self._body(conn, reader)  # no body: h11's end of the message, at once, so keep-alive goes on
        try:
            route = self.check(method, target, headers, _content_lengths(bytes(head)))
            if route.length:
                if self._receiving + route.length > self.settings.max_receiving_bytes:
                    raise RequestError(
                        503,
                        f"busy: {self._receiving} bytes of uploads are being received "
                        "(http.max_receiving_bytes); retry later",
                        {"Retry-After": "1"},
                    )
                reserved = route.length
                self._receiving += reserved
                if conn.they_are_waiting_for_100_continue:
                    writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
                try:
                    body = await asyncio.wait_for(self._body(conn, reader), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    raise RequestError(408, self._late()) from None
            else:
                body = b""
            entry[0] = "processing"
            reply = await self._run(route, body)
        except RequestError as exc:
            reply = exc.status, "application/json", _json({"error": exc.reason}), exc.headers
        except h11.RemoteProtocolError as exc:
            status, reason = _protocol_error(exc)
            await self._send_raw(writer, status, reason)
            return False
        finally:
            self._receiving -= reserved
        status, content_type, body, extra = reply
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Server", "edge"),
            *extra.items(),
        ]
        if conn.their_state is not h11.DONE or self._stopping:
            headers.append(("Connection", "close"))  # an unread body would be taken for the next request
        data = conn.send(h11.Response(status_code=status, headers=headers, reason=_phrase(status)))
        if method != "HEAD":  # an answer to HEAD has the headers of one with a body, and no body
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
        self._count(path, status)
        return await self._write(writer, data)

    async def _next_event(
        self, conn: h11.Connection, reader: asyncio.StreamReader, head: bytearray, entry: list
    ) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await reader.read(65536)
            if data and entry[0] == "idle":
                entry[0] = "receiving"  # a request has begun: shutdown lets it finish
            head += data
            conn.receive_data(data)

    async def _body(self, conn: h11.Connection, reader: asyncio.StreamReader) -> bytes:
        chunks = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionResetError("the client closed the connection inside the body")
                conn.receive_data(data)
            elif isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise ConnectionResetError(f"unexpected {type(event).__name__} inside the body")

    async def _run(self, route: Route, body: bytes) -> Reply:
        loop = asyncio.get_running_loop()
        if route.path == "/healthz":
            return await loop.run_in_executor(self._health, self.respond, route, body)
        if self._busy >= self.settings.workers:
            raise RequestError(
                503,
                f"busy: {self._busy} requests are being processed (http.workers); retry later",
                {"Retry-After": "1"},
            )
        self._busy += 1
        gauge = self.metrics.http_in_progress.labels(route.path) if self.metrics is not None else None
        if gauge is not None:
            gauge.inc()
        try:
            return await loop.run_in_executor(self._workers, self.respond, route, body)
        finally:
            self._busy -= 1
            if gauge is not None:
                gauge.dec()

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> bool:
        writer.write(data)
        try:
            await asyncio.wait_for(writer.drain(), self.settings.timeout_s)
        except asyncio.TimeoutError:  # the client does not read its answer
            return False
        return True

    async def _send_raw(
        self, writer: asyncio.StreamWriter, status: int, reason: str, extra: dict[str, str] | None = None
    ) -> None:
        """An answer outside h11's state machine (the request could not be parsed), then close."""
        body = _json({"error": reason})
        lines = [
            f"HTTP/1.1 {status} {_phrase(status)}",
            "Content-Type: application/json",
            "Connection: close",
            "Server: edge",
            f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in (extra or {}).items()),
        ]
        await self._write(writer, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        if self.metrics is not None:
            self.metrics.http_requests.labels("other", str(status)).inc()

    async def _refuse(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        reason: str,
        extra: dict[str, str],
    ) -> None:
        try:
            # Read what the client already sent: closing with unread data would reset the connection
            # and lose the answer.
            await asyncio.wait_for(reader.read(MAX_HEAD_BYTES), 0.05)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        try:
            await self._send_raw(writer, status, reason, extra)
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass
        writer.close()

    def _late(self) -> str:
        return (
            f"the request did not arrive whole within {self.settings.timeout_s:g} s (http.timeout_s); "
            "send the headers and body without pauses"
        )

    def _count(self, path: str, status: int) -> None:
        if self.metrics is not None:
            self.metrics.http_requests.labels(path if path in ENDPOINTS else "other", str(status)).inc()

    # --- request handling -------------------------------------------------------------------------------

    def check(self, method: str, target: str, headers: dict[str, str], lengths: list[bytes] | None = None) -> Route:
        """Everything that can be refused from the head alone, before a byte of the body is read."""
        parts = urlsplit(target)
        path = parts.path
        expected = ENDPOINTS.get(path)
        if expected is None:
            listing = ", ".join(f"{m} {p}" for p, m in ENDPOINTS.items())
            raise RequestError(404, f"no such endpoint: {path[:200]}; endpoints: {listing}")
        if method != expected:
            raise RequestError(405, f"{path} takes {expected}, not {method[:20]}", {"Allow": expected})
        if path != "/healthz":
            self._authorise(headers)
        if lengths and (len(lengths) > 1 or b"," in lengths[0]):
            raise RequestError(
                400,
                f"Content-Length is given {len(lengths)} times ({', '.join(v.decode('latin-1')[:20] for v in lengths)}); "
                "allowed: exactly one (RFC 9112)",
            )
        if path in ("/v1/intent", "/v1/recognize"):
            self._publish_flag(parts.query)
            if path == "/v1/intent":
                limit, types, what = (
                    self.settings.max_text_bytes,
                    TEXT_TYPES,
                    'JSON such as {"text": "turn off the lights"}, or plain text',
                )
                key = "http.max_text_bytes"
            else:
                limit, types, what, key = self.settings.max_wav_bytes, WAV_TYPES, "a WAV file", "http.max_wav_bytes"
            length = self._length(headers, limit, types, what, key)
        else:
            length = 0
            if headers.get("transfer-encoding") or headers.get("content-length", "0").strip() != "0":
                raise RequestError(400, f"{path} takes no body")
        return Route(path, method, parts.query, headers, length)

    def respond(self, route: Route, body: bytes) -> Reply:
        """Run a checked request (on a worker thread) -> the reply; refusals come back as replies too."""
        from edge.audio import AudioError, AudioTooLong
        from edge.classifier import InputError

        try:
            return self._respond(route, body)
        except RequestError as exc:
            return exc.status, "application/json", _json({"error": exc.reason}), exc.headers
        except AudioTooLong as exc:
            return 413, "application/json", _json({"error": str(exc)}), {}
        except (InputError, AudioError) as exc:  # text or audio the model cannot take: the client's to fix
            return 400, "application/json", _json({"error": str(exc)}), {}
        except Exception:
            log.exception("HTTP %s %s failed", route.method, route.path)
            if self.metrics is not None:
                self.metrics.error("http")
            return 500, "application/json", _json({"error": "internal error; see the daemon's log"}), {}

    def _respond(self, route: Route, body: bytes) -> Reply:
        path = route.path
        if path == "/healthz":
            healthy, answer = self.api.health()
            return (200 if healthy else 503), "application/json", _json(answer), {}
        if path == "/metrics":
            return 200, METRICS_CONTENT_TYPE, self.api.metrics_text(), {}
        if path == "/v1/listen":
            try:
                event = self.api.listen()
            except LookupError as exc:
                raise RequestError(409, str(exc)) from None
            except TimeoutError as exc:
                raise RequestError(504, str(exc)) from None
            return 200, "application/json", _json(event.to_dict()), {}
        flag = self._publish_flag(route.query)
        publish = self.settings.publish if flag is None else flag
        if path == "/v1/intent":
            text = self._text(route.headers, body)
            return 200, "application/json", _json(self.api.classify_text(text, publish).to_dict()), {}
        events = self.api.recognize_wav(body, publish)
        return 200, "application/json", _json({"events": [e.to_dict() for e in events]}), {}

    def _authorise(self, headers: Any) -> None:
        token = self.settings.token
        if token is None:
            return
        given = headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            reason = "missing Authorization header" if not given else "wrong token"
            raise RequestError(
                401,
                f"{reason}; expected 'Authorization: Bearer <token>' (http.token)",
                {"WWW-Authenticate": 'Bearer realm="edge"'},
            )

    @staticmethod
    def _publish_flag(query: str) -> bool | None:
        values = parse_qs(query, keep_blank_values=True).get("publish")
        if not values:
            return None
        value = values[-1].lower()
        if value in ("1", "true", "yes"):
            return True
        if value in ("0", "false", "no"):
            return False
        raise RequestError(400, f"publish={values[-1][:40]!r}; allowed: true or false")

    def _length(self, headers: dict[str, str], limit: int, types: tuple[str, ...], what: str, key: str) -> int:
        if headers.get("transfer-encoding"):
            raise RequestError(411, "send the body with a Content-Length; chunked transfer is not accepted")
        length_header = headers.get("content-length")
        if length_header is None:
            raise RequestError(411, f"Content-Length is required (the body is {what})")
        length = int(length_header)  # h11 has checked: ASCII digits
        if length > limit:
            raise RequestError(413, f"the body is {length} bytes; the limit is {limit} bytes ({key})")
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and content_type not in types:
            raise RequestError(
                415, f"Content-Type {content_type[:60]!r} is not accepted here; allowed: {', '.join(types)}"
            )
        if length == 0:
            raise RequestError(400, f"the body is empty; expected {what}")
        return length

    @staticmethod
    def _text(headers: dict[str, str], body: bytes) -> str:
        content_type = (
            headers.get("content-type", "application/json").split(";")[0].strip().lower() or "application/json"
        )
        try:
            decoded = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(400, f"the body is not UTF-8 (invalid byte at position {exc.start})") from None
        if content_type == "text/plain":
            return decoded
        try:
            data = json.loads(decoded)
        except json.JSONDecodeError as exc:
            raise RequestError(
                400,
                f"the body is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                'expected {"text": "..."}',
            ) from None
        except RecursionError:
            raise RequestError(400, 'the JSON body is nested too deeply; expected {"text": "..."}') from None
        except ValueError as exc:  # a number of more than 4300 digits
            raise RequestError(
                400, f'the JSON body cannot be read ({str(exc).split(":")[0][:80]}); expected {{"text": "..."}}'
            ) from None
        if not isinstance(data, dict):
            raise RequestError(400, f'expected a JSON object {{"text": "..."}}, got {type(data).__name__}')
        unknown = sorted(set(data) - {"text"})
        if unknown:
            raise RequestError(400, f"unknown field {unknown[0][:40]!r}; allowed: text")
        text = data.get("text")
        if not isinstance(text, str):
            got = "nothing" if text is None else type(text).__name__
            raise RequestError(400, f'"text" must be a string, got {got}')
        return text


def _headers(raw: Any) -> dict[str, str]:
    """h11's headers (lower-case names) as a dict; a header given twice keeps its last value."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in raw}


def _content_lengths(head: bytes) -> list[bytes]:
    """Every Content-Length value of the request head as sent: h11 merges equal duplicates, RFC 9112 refuses them."""
    end = head.find(b"\r\n\r\n")
    return _CONTENT_LENGTH_LINE.findall(head[: end if end >= 0 else len(head)])


def _protocol_error(exc: h11.RemoteProtocolError) -> tuple[int, str]:
    message = str(exc)
    status = exc.error_status_hint if 400 <= exc.error_status_hint < 600 else 400
    if status == 431:
        return 431, f"the request line and headers are larger than {MAX_HEAD_BYTES} bytes; allowed: up to that"
    if "Transfer-Encoding" in message:  # h11 says 501 for codings it lacks; none is accepted here anyway
        return 411, "send the body with a Content-Length; Transfer-Encoding is not accepted"
    if "Content-Length" in message:
        return 400, f"malformed request: {message}; allowed: one Content-Length of ASCII digits"
    return status, f"malformed request: {message[:200]}; expected HTTP/1.1"


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


__all__ = ["Api", "HttpApi", "RequestError", "Route"]
