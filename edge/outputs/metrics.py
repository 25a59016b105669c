"""Prometheus metrics for ``GET /metrics``: counts per intent, latency per stage, errors, outputs.

Built on ``prometheus-client``, the reference Python client: it gets the text exposition format,
label escaping and histogram buckets right, and its metrics are thread-safe (the microphone loop,
HTTP requests and output threads all count). It has its own registry here rather than the
process-global one, so a test or a second daemon in one process starts from zero.

The profiler's rolling summary (inference latency quantiles, energy per inference and how it was
measured, CPU time, temperature), the live loop's status and the wake stage's counters are metric
families their owners make at scrape time (``metric_families()``), rendered by the same library,
so energy has one source of truth. Every metric is in base units (seconds, joules, hertz).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge.events import Event
from edge.outputs import Output
from edge.prometheus import CONTENT_TYPE, render

if TYPE_CHECKING:
    from edge.liveloop import LoopStatus
    from edge.profiler import Profiler

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds: from a sub-millisecond tokenizer to a long utterance's STT finalisation on a Pi Zero."""


class Metrics(Output):
    """Counts every event it is given; the other outputs and the HTTP API count their own work here."""

    name = "metrics"

    def __init__(self, profiler: Profiler | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # *_created series double the output and nobody here graphs them
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.profiler = profiler
        self.events = Counter(
            "edge_events", "Events by type, and by intent for intent events.", ["type", "intent"], registry=r
        )
        self.stage_latency = Histogram(
            "edge_stage_latency_seconds",
            "Latency of each stage of an utterance or request "
            "(capture, vad, stt, tokenize, infer, decode, classify, total).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "edge_errors", "Failures by stage (audio, stt, classify, output:<name>, hook, http).", ["stage"], registry=r
        )
        self.mqtt_published = Counter("edge_mqtt_published", "Events the MQTT broker accepted.", registry=r)
        self.mqtt_dropped = Counter("edge_mqtt_dropped", "Events dropped because the MQTT queue was full.", registry=r)
        self.mqtt_queued = Gauge("edge_mqtt_queued", "Events waiting for the MQTT broker.", registry=r)
        self.mqtt_connected = Gauge("edge_mqtt_connected", "1 while connected to the MQTT broker.", registry=r)
        self.hook_runs = Counter(
            "edge_hook_runs",
            "Hook runs by event name and outcome (ok, failed, timeout, dropped, error).",
            ["hook", "outcome"],
            registry=r,
        )
        self.http_requests = Counter(
            "edge_http_requests", "HTTP API requests by path and status code.", ["path", "code"], registry=r
        )
        self.http_in_progress = Gauge(
            "edge_http_requests_in_progress",
            "HTTP API requests being processed (arrived whole, on a worker), by path.",
            ["path"],
            registry=r,
        )
        self.model_info = Gauge(
            "edge_model_info",
            "The model, backend and STT engine in use (value 1).",
            ["model", "backend", "stt"],
            registry=r,
        )

    def publish(self, event: Event) -> None:
        intent = event.result.intent if event.type == "intent" and event.result is not None else ""
        self.events.labels(event.type, intent or "").inc()
        if event.result is not None:
            for stage, ms in event.result.latency_ms.items():
                self.stage_latency.labels(stage).observe(ms / 1000.0)
        if event.type == "error":
            self.errors.labels(str(event.data.get("stage", "unknown"))).inc()

    def error(self, stage: str) -> None:
        self.errors.labels(stage).inc()

    def set_model(self, model: str, backend: str, stt: str) -> None:
        self.model_info.clear()
        self.model_info.labels(model, backend, stt).set(1)

    def text(self, status: LoopStatus | None = None, wake: Any = None) -> bytes:
        """Everything in the Prometheus text format: these counters, the profiler's summary, and the live
        loop's ``status`` and the ``wake`` stage's counters when given (the service's microphone path)."""
        from prometheus_client import generate_latest

        families: list[Any] = []
        if self.profiler is not None:
            families += self.profiler.metric_families()
        if status is not None:
            families += status.metric_families()
        if wake is not None and hasattr(wake, "metric_families"):
            families += wake.metric_families()
        return generate_latest(self.registry) + render(families)


__all__ = ["CONTENT_TYPE", "Metrics", "STAGE_BUCKETS"]
