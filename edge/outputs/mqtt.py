"""Events to an MQTT broker: edge's JSON and Hermes protocol messages, in order, nothing lost while it is away.

``paho-mqtt`` (Eclipse's client, pure Python) speaks the protocol and reconnects on its own
network thread with exponential backoff (``reconnect_min_s`` doubling to ``reconnect_max_s``).
On top of it this output keeps its own bounded queue and has one event in flight at a time: the
next is sent only when the broker has acknowledged the last (QoS 1/2) or it was written to the
socket (QoS 0). That gives what paho alone does not: QoS 0 events wait for the broker too
(paho drops them while disconnected), order holds across reconnects, and when the queue is
full the oldest event is dropped, counted and logged rather than the newest refused.
One event in flight costs a round trip per event, which a voice service never notices.

Topics: every event's own JSON goes to ``event_topic`` (``edge/event/intent``,
``edge/event/not_understood``, ``edge/event/wake``, ...; per name in ``topics``). With
``hermes`` (the default) an intent also goes to ``topic`` (``hermes/intent/<intent>``) and a
command not understood to ``hermes/nlu/intentNotRecognized``, as the Hermes protocol's messages
(:mod:`edge.outputs.hermes`), so Rhasspy and Node-RED flows built for Hermes read them as they
are. It subscribes to ``listen_topic`` (``edge/listen``: a message there asks the live loop for
one command, as ``POST /v1/listen`` does) and, with ``nlu_query``, to ``hermes/nlu/query``
(other Hermes services ask for a text's intent; the answer is published like any event). Both
are subscribed again on every reconnect (the session is clean).
"""

from __future__ import annotations

import collections
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.events import Event
from edge.outputs import Output, hermes

if TYPE_CHECKING:
    from edge.config import MqttSettings
    from edge.outputs.metrics import Metrics

log = logging.getLogger("edge.outputs.mqtt")


class MqttOutput(Output):
    name = "mqtt"

    def __init__(
        self,
        settings: MqttSettings,
        metrics: Metrics | None = None,
        on_listen: Callable[[], None] | None = None,
        on_query: Callable[[hermes.NluQuery], None] | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.settings = settings
        self.on_listen = on_listen if settings.listen_topic else None
        self.on_query = on_query if settings.nlu_query else None
        self.metrics = metrics
        self.broker = f"{settings.host}:{settings.port}"
        self._queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self._in_flight: tuple[str, bytes] | None = None
        self._cond = threading.Condition()
        self._connected = False
        self._connections = 0  # bumped on every (re)connect: a QoS 0 event in flight then is sent again
        self._done: set[int] = set()  # message ids paho reported as published
        self._stopping = False
        self._failures = 0
        self.published = 0
        self.dropped = 0
        client_id = settings.client_id or f"edge-{socket.gethostname()}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        self.client.enable_logger(logging.getLogger("edge.outputs.mqtt.paho"))
        self.client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
        if settings.username is not None:
            self.client.username_pw_set(settings.username, settings.password)
        if settings.tls_ca_file is not None:
            self.client.tls_set(ca_certs=settings.tls_ca_file)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
        self.client.loop_start()
        self._sender = threading.Thread(target=self._send_loop, name="edge-mqtt-send", daemon=True)
        self._sender.start()

    # --- the live loop's side -------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        s = self.settings
        messages = []
        hermes_topic = s.hermes_topic_for(event.name, event.type)
        if hermes_topic is not None and event.result is not None:
            if event.type == "intent":
                if "hermes" in event.data:  # a query's answer: Rhasspy's NLU says "parsed" first
                    messages.append((hermes.PARSED_TOPIC, hermes.nlu_intent_parsed(event, s.site_id)))
                messages.append((hermes_topic, hermes.nlu_intent(event, s.site_id)))
            else:
                messages.append((hermes_topic, hermes.nlu_not_recognized(event, s.site_id)))
        messages.append((s.topic_for(event.name, event.type), event.to_dict()))
        self._enqueue([(t, json.dumps(m, ensure_ascii=False).encode()) for t, m in messages])

    def _enqueue(self, messages: list[tuple[str, bytes]]) -> None:
        with self._cond:
            for message in messages:
                if len(self._queue) >= self.settings.queue_size:
                    self._queue.popleft()
                    self.dropped += 1
                    if self.metrics is not None:
                        self.metrics.mqtt_dropped.inc()
                    if self.dropped == 1 or self.dropped % 100 == 0:
                        log.warning(
                            "MQTT queue full (%d messages waiting for %s): dropped the oldest; %d dropped so far",
                            self.settings.queue_size,
                            self.broker,
                            self.dropped,
                        )
                self._queue.append(message)
            self._count_queued()
            self._cond.notify_all()

    def _count_queued(self) -> int:
        n = len(self._queue) + (self._in_flight is not None)
        if self.metrics is not None:
            self.metrics.mqtt_queued.set(n)
        return n

    # --- paho's network thread ---------------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("MQTT broker %s refused the connection: %s (check mqtt.username / password)", self.broker, reason)
            return
        with self._cond:
            self._connected = True
            self._connections += 1
            self._cond.notify_all()
        if self.metrics is not None:
            self.metrics.mqtt_connected.set(1)
        if self.on_listen is not None:
            client.subscribe(self.settings.listen_topic, qos=1)
        if self.on_query is not None:
            client.subscribe(hermes.QUERY_TOPIC, qos=1)
        log.info(
            "MQTT connected to %s%s",
            self.broker,
            f" after {self._failures} failed attempt(s)" if self._failures else "",
        )
        self._failures = 0

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._cond:
            was, self._connected = self._connected, False
            self._cond.notify_all()
        if self.metrics is not None:
            self.metrics.mqtt_connected.set(0)
        if was and not self._stopping:
            log.warning(
                "MQTT connection to %s lost (%s); reconnecting every %d..%d s, events wait in the queue",
                self.broker,
                reason,
                self.settings.reconnect_min_s,
                self.settings.reconnect_max_s,
            )

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._failures += 1
        if self._failures == 1:
            log.warning(
                "MQTT broker %s unreachable; retrying every %d..%d s, events wait in the queue",
                self.broker,
                self.settings.reconnect_min_s,
                self.settings.reconnect_max_s,
            )

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        from paho.mqtt.client import topic_matches_sub

        if self.on_listen is not None and topic_matches_sub(self.settings.listen_topic, message.topic):
            log.info("MQTT listen request on %s", message.topic)
            self.on_listen()  # returns at once: the command is taken on another thread
        elif self.on_query is not None and message.topic == hermes.QUERY_TOPIC:
            try:
                query = hermes.parse_query(message.payload, self.settings.site_id)
            except hermes.QueryError as exc:
                log.warning("%s", exc)
                error = hermes.nlu_error(
                    str(exc), exc.site_id, exc.session_id, message.payload[:200].decode("utf-8", "replace")
                )
                self._enqueue([(hermes.ERROR_TOPIC, json.dumps(error, ensure_ascii=False).encode())])
                return
            # Classified on another thread: paho's network thread must keep acknowledging messages.
            threading.Thread(target=self._answer, args=(query,), name="edge-nlu-query", daemon=True).start()

    def _answer(self, query: hermes.NluQuery) -> None:
        assert self.on_query is not None
        try:
            self.on_query(query)
        except ValueError as exc:  # text the classifier cannot take (edge.classifier.InputError)
            log.warning("hermes/nlu/query: %s", exc)
            error = hermes.nlu_error(f"hermes/nlu/query: {exc}", query.site_id, query.session_id, query.input[:200])
            self._enqueue([(hermes.ERROR_TOPIC, json.dumps(error, ensure_ascii=False).encode())])

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._cond:
            self._done.add(mid)
            self._cond.notify_all()

    # --- the sender thread ----------------------------------------------------------------------

    def _send_loop(self) -> None:
        import paho.mqtt.client as mqtt

        s = self.settings
        while True:
            with self._cond:
                while not self._stopping and (not self._connected or (self._in_flight is None and not self._queue)):
                    self._cond.wait()
                if self._stopping:
                    return
                if self._in_flight is None:
                    self._in_flight = self._queue.popleft()
                topic, payload = self._in_flight
                connection = self._connections
            try:
                info = self.client.publish(topic, payload, qos=s.qos, retain=s.retain)
            except (ValueError, OSError) as exc:  # an invalid topic or payload will never go through
                log.error("MQTT cannot publish to %r: %s; event dropped", topic, exc)
                with self._cond:
                    self._in_flight = None
                continue
            resend = s.qos == 0 and info.rc == mqtt.MQTT_ERR_NO_CONN  # QoS 1/2: paho keeps it and resends it
            with self._cond:
                while not resend and info.mid not in self._done and not self._stopping:
                    if s.qos == 0 and self._connections != connection:
                        resend = True  # paho forgets unsent QoS 0 packets when the connection drops
                        break
                    self._cond.wait(0.5)
                if resend or info.mid not in self._done:
                    continue
                self._done.discard(info.mid)
                self._in_flight = None
                self.published += 1
                self._count_queued()
            if self.metrics is not None:
                self.metrics.mqtt_published.inc()

    def close(self) -> None:
        deadline = time.monotonic() + self.settings.flush_timeout_s
        with self._cond:
            while self._count_queued() and time.monotonic() < deadline:
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            left = self._count_queued()
            self._stopping = True
            self._cond.notify_all()
        if left:
            log.warning("MQTT: %d event(s) still waiting for %s at shutdown are lost", left, self.broker)
        self._sender.join(timeout=2.0)
        self.client.disconnect()
        self.client.loop_stop()

    def health(self) -> dict[str, Any]:
        with self._cond:
            return {
                "broker": self.broker,
                "connected": self._connected,
                "queued": self._count_queued(),
                "published": self.published,
                "dropped": self.dropped,
            }


__all__ = ["MqttOutput"]
