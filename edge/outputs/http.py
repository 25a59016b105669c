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
every request but ``/healthz`` must then carry ``Authorization: Bearer <token>``. Bodies are
limited (``max_text_bytes``, ``max_wav_bytes``) before they are read; every refusal is a 4xx with
``{"error": "<what was wrong and what is expected>"}``.

The standard library's threaded HTTP server is used rather than a web framework: five endpoints
need no routing library, and it costs no dependency and no memory on a Pi Zero. Keep-alive
(HTTP/1.1) is on; at most ``max_connections`` connections are served at once, further ones get
503 at once, and a client silent for ``timeout_s`` is dropped.
"""

from __future__ import annotations

import hmac
import http.server
import json
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

from edge.outputs.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

if TYPE_CHECKING:
    from edge.config import HttpSettings
    from edge.events import Event
    from edge.outputs.metrics import Metrics

log = logging.getLogger("edge.outputs.http")

ENDPOINTS = {"/v1/intent": "POST", "/v1/recognize": "POST", "/v1/listen": "POST", "/healthz": "GET", "/metrics": "GET"}
TEXT_TYPES = ("application/json", "text/plain")
WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "application/octet-stream")


class Api(Protocol):
    """What the HTTP API asks of the daemon."""

    def classify_text(self, text: str, publish: bool) -> "Event": ...

    def recognize_wav(self, body: bytes, publish: bool) -> "list[Event]": ...

    def listen(self) -> "Event": ...

    def health(self) -> tuple[bool, dict[str, Any]]: ...

    def metrics_text(self) -> bytes: ...


class RequestError(Exception):
    """A request the API refuses: HTTP status and the reason for the client."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


class HttpApi:
    """The server: :meth:`start` binds and serves on a thread, :meth:`close` stops it."""

    def __init__(self, settings: "HttpSettings", api: Api, metrics: "Metrics | None" = None) -> None:
        self.settings = settings
        self.api = api
        self.metrics = metrics
        self.server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind (raises OSError when the address is taken or not local) and serve on a thread."""
        host, port = self.settings.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("_Server", (_Server,), {"address_family": family})
        self.server = server_class((host, port), _Handler, self)
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.25},
                                        name="edge-http", daemon=True)
        self._thread.start()
        log.info("HTTP API on %s", self.url)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def close(self) -> None:
        """Stop accepting, let requests in progress finish, release the port."""
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()  # joins the request threads (block_on_close)
        self.server = None

    # --- request handling (on the request's thread) -----------------------------------------------------

    def handle(self, method: str, target: str, headers: Any, read_body: Any) -> tuple[int, str, bytes, dict[str, str]]:
        """One request -> (status, content type, body, extra headers)."""
        parts = urlsplit(target)
        path = parts.path
        expected = ENDPOINTS.get(path)
        if expected is None:
            listing = ", ".join(f"{m} {p}" for p, m in ENDPOINTS.items())
            raise RequestError(404, f"no such endpoint: {path}; endpoints: {listing}")
        if method != expected:
            raise RequestError(405, f"{path} takes {expected}, not {method}", {"Allow": expected})
        if path == "/healthz":
            healthy, body = self.api.health()
            return (200 if healthy else 503), "application/json", _json(body), {}
        self._authorise(headers)
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
        flag = self._publish_flag(parts.query)
        publish = self.settings.publish if flag is None else flag
        if path == "/v1/intent":
            text = self._text_body(headers, read_body)
            return 200, "application/json", _json(self.api.classify_text(text, publish).to_dict()), {}
        body = self._body(headers, read_body, self.settings.max_wav_bytes, WAV_TYPES, "a WAV file")
        events = self.api.recognize_wav(body, publish)
        return 200, "application/json", _json({"events": [e.to_dict() for e in events]}), {}

    def _authorise(self, headers: Any) -> None:
        token = self.settings.token
        if token is None:
            return
        given = headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            reason = "missing Authorization header" if not given else "wrong token"
            raise RequestError(401, f"{reason}; expected 'Authorization: Bearer <token>' (http.token)",
                               {"WWW-Authenticate": 'Bearer realm="edge"'})

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
        raise RequestError(400, f"publish={values[-1]!r}; allowed: true or false")

    def _body(self, headers: Any, read_body: Any, limit: int, types: tuple[str, ...], what: str) -> bytes:
        if headers.get("Transfer-Encoding"):
            raise RequestError(411, "send the body with a Content-Length; chunked transfer is not accepted")
        length_header = headers.get("Content-Length")
        if length_header is None:
            raise RequestError(411, f"Content-Length is required (the body is {what})")
        if not length_header.strip().isdigit():
            raise RequestError(400, f"Content-Length {length_header!r} is not a number of bytes")
        length = int(length_header)
        if length > limit:
            raise RequestError(413, f"the body is {length} bytes; the limit is {limit} bytes")
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type and content_type not in types:
            raise RequestError(415, f"Content-Type {content_type!r} is not accepted here; allowed: {', '.join(types)}")
        if length == 0:
            raise RequestError(400, f"the body is empty; expected {what}")
        body = read_body(length)
        if len(body) < length:
            raise RequestError(400, f"the body ended after {len(body)} of {length} bytes")
        return body

    def _text_body(self, headers: Any, read_body: Any) -> str:
        body = self._body(headers, read_body, self.settings.max_text_bytes, TEXT_TYPES,
                          'JSON such as {"text": "turn off the lights"}, or plain text')
        content_type = (headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        try:
            decoded = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(400, f"the body is not UTF-8 (invalid byte at position {exc.start})") from None
        if content_type == "text/plain":
            return decoded
        try:
            data = json.loads(decoded)
        except json.JSONDecodeError as exc:
            raise RequestError(400, f"the body is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                                    'expected {"text": "..."}') from None
        if not isinstance(data, dict):
            raise RequestError(400, f'expected a JSON object {{"text": "..."}}, got {type(data).__name__}')
        unknown = sorted(set(data) - {"text"})
        if unknown:
            raise RequestError(400, f"unknown field {unknown[0]!r}; allowed: text")
        text = data.get("text")
        if not isinstance(text, str):
            got = "nothing" if text is None else type(text).__name__
            raise RequestError(400, f'"text" must be a string, got {got}')
        return text


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, api: HttpApi) -> None:
        self.api = api
        self.slots = threading.BoundedSemaphore(api.settings.max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            body = _json({"error": f"busy: {self.api.settings.max_connections} connections already open; retry later"})
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Connection: close\r\nRetry-After: 1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm the body would wait for the
    # client's delayed ACK (40 ms on Linux) on every keep-alive request.
    disable_nagle_algorithm = True
    server_version = "edge"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.api.settings.timeout_s
        super().setup()

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        from edge.audio import AudioError
        from edge.classifier import InputError

        api = self.server.api
        path = urlsplit(self.path).path
        extra: dict[str, str] = {}
        body_read = [False]

        def read_body(n: int) -> bytes:
            body_read[0] = True
            return self.rfile.read(n)

        try:
            status, content_type, body, extra = api.handle(method, self.path, self.headers, read_body)
        except RequestError as exc:
            status, content_type, body, extra = exc.status, "application/json", _json({"error": exc.reason}), exc.headers
        except (InputError, AudioError) as exc:  # text or audio the model cannot take: the client's to fix
            status, content_type, body = 400, "application/json", _json({"error": str(exc)})
        except Exception:
            log.exception("HTTP %s %s failed", method, path)
            status, content_type, body = 500, "application/json", _json({"error": "internal error; see the daemon's log"})
            if api.metrics is not None:
                api.metrics.error("http")
        if status >= 400 and not body_read[0] and self.headers.get("Content-Length", "0") != "0":
            self.close_connection = True  # the unread body would be taken for the next request
            extra = {**extra, "Connection": "close"}
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        if api.metrics is not None:
            api.metrics.http_requests.labels(path if path in ENDPOINTS else "other", str(status)).inc()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests the base class refuses (bad request line, huge headers), as JSON too."""
        body = _json({"error": message or explain or self.responses.get(code, ("error",))[0]})
        self.close_connection = True
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


__all__ = ["Api", "HttpApi", "RequestError"]
