"""The profiler every inference goes through: one record per inference, rolling summaries.

Use::

    profiler = Profiler.create(ProfilerSettings(path="/var/lib/edge/profile.jsonl"), profile=detection.profile)
    profiler.bind(classifier)                 # model, backend, precision, threads for every record
    with profiler.track() as rec:             # starts wall, CPU and energy counters
        result = classifier.classify(text)
        rec.finish(result)                    # stage timings, sequence length, result id
    profiler.summary()                        # p50/p90/p99, mean mJ: what /metrics shows
    profiler.metrics_text()                   # the same in Prometheus text format

A record (one JSON line) holds: ``ts``, ``id``, ``model``, ``backend``, ``precision``, ``threads``,
``seq_len``, ``stages_ms`` (the result's capture/vad/stt/tokenize/infer/decode/total), ``wall_ms``
(the tracked span), ``cpu_ms`` (process CPU time over the span, all threads), ``rss_mb``,
``temp_c`` and ``freq_mhz`` (``null`` where unreadable; re-read at most every
``system_interval_s``), ``energy_mj`` and ``energy_method``; ``energy_note`` when a sensor failed
and the model stood in, ``error`` when the tracked code raised. No input text is recorded.

Records go to a JSON-lines file rotated by size under a cap on total bytes (SD cards wear out), and
to an in-memory window for summaries. Everything here is standard library and costs tens of
microseconds per record (benchmarks/bench_profiler.py measures it against classification time).
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from edge.config import ProfilerSettings
from edge.energy import EnergySource, ModelSource, Selection, model_source, select_source
from edge.thermal import ThermalReader

log = logging.getLogger("edge.profiler")

RECORD_VERSION = 1


def percentiles(values: Sequence[float], qs: Sequence[float]) -> list[float]:
    """The ``qs``-th percentiles (0-100) of ``values``, numpy's linear interpolation; NaN for no values."""
    if not len(values):
        return [math.nan] * len(qs)
    import numpy as np

    return [float(v) for v in np.percentile(values, qs)]


class RotatingJsonLines:
    """Append-only JSON lines, rotated at ``max_file_bytes``; all files together stay under ``max_total_bytes``."""

    def __init__(self, path: str | Path, max_file_bytes: int, max_total_bytes: int):
        self.path = Path(path)
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "ab")
        self._size = self._f.tell()
        self.dropped = 0
        if self._size > max_file_bytes:  # left over from a run with a smaller limit
            self._rotate()

    def write(self, line: bytes) -> None:
        """Append one line (ending in a newline) and flush it to the OS."""
        self._append(line)
        self._f.flush()

    def write_lines(self, data: bytes) -> None:
        """Append several newline-terminated lines, rotating between lines as needed; one flush."""
        for line in data.splitlines(keepends=True):
            self._append(line)
        self._f.flush()

    def _append(self, line: bytes) -> None:
        if len(line) > self.max_file_bytes:
            self.dropped += 1
            return
        if self._size + len(line) > self.max_file_bytes:
            self._f.flush()
            self._rotate()
        self._f.write(line)
        self._size += len(line)

    def rotated(self) -> list[Path]:
        """Rotated files, newest first."""
        out = []
        i = 1
        while (p := self.path.with_name(f"{self.path.name}.{i}")).exists():
            out.append(p)
            i += 1
        return out

    def _rotate(self) -> None:
        self._f.close()
        old = self.rotated()
        # Keep the newest rotated files that fit beside a full live file; delete the rest.
        budget = self.max_total_bytes - self.max_file_bytes - self.path.stat().st_size
        keep = 0
        if budget >= 0:
            for p in old:
                size = p.stat().st_size
                if size > budget:
                    break
                budget -= size
                keep += 1
        for p in old[keep:]:
            p.unlink()
        for i in range(keep, 0, -1):
            os.replace(old[i - 1], self.path.with_name(f"{self.path.name}.{i + 1}"))
        if budget >= 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self._f = open(self.path, "ab")
        self._size = 0

    def close(self) -> None:
        self._f.close()


class _NullTracker:
    """What ``track()`` returns for a skipped inference: every method is a no-op."""

    __slots__ = ()

    def __enter__(self) -> _NullTracker:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        return False

    def finish(self, result: Any = None, **extra: Any) -> None:
        pass


NULL_TRACKER = _NullTracker()


class Tracker:
    """One inference being measured; use as a context manager and call :meth:`finish`."""

    __slots__ = ("_p", "_context", "_result", "_extra", "_ts", "_t0", "_c0", "_e0", "_energy")

    def __init__(self, profiler: Profiler, context: dict[str, Any]):
        self._p = profiler
        self._context = context
        self._result = None
        self._extra: dict[str, Any] = {}

    def __enter__(self) -> Tracker:
        p = self._p
        self._energy = p.energy
        self._e0 = None if p._energy_is_model else p._read_energy(self._energy)
        self._ts = time.time()
        self._c0 = time.process_time()
        self._t0 = time.perf_counter()
        return self

    def finish(
        self, result: Any = None, *, seq_len: int | None = None, stages_ms: dict[str, float] | None = None, **extra: Any
    ) -> None:
        """Attach the inference's result (a :class:`edge.result.Result`) and anything else to record.

        ``seq_len``: tokens the model ran on (else the result's ``seq_len`` attribute, if any);
        ``stages_ms``: stage timings measured outside the result (capture, vad, stt).
        """
        self._result = result
        if seq_len is not None:
            self._extra["seq_len"] = seq_len
        if stages_ms:
            self._extra["stages_ms"] = stages_ms
        self._extra.update(extra)

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        t1 = time.perf_counter()
        c1 = time.process_time()
        self._p._record(self, t1 - self._t0, c1 - self._c0, exc_type)
        return False


class Profiler:
    def __init__(
        self,
        settings: ProfilerSettings = ProfilerSettings(),
        *,
        energy: EnergySource | Selection | None = None,
        power=None,
        thermal: ThermalReader | None = None,
        root: str | Path = "/",
    ):
        """``energy``: a source or a :func:`edge.energy.select_source` result (default: select one
        for ``power``, the device profile's power section); ``thermal``: default reads ``root``."""
        self.settings = settings
        self.context: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._count = 0
        self.recorded = 0
        self._last_raw: tuple | None = None
        self._pending: list[tuple] = []
        self._pending_since = 0.0
        self._flusher: threading.Thread | None = None
        self._stop_flusher = threading.Event()
        self._fallback_model = model_source(power)
        if not settings.enabled:
            self.selection = Selection(self._fallback_model, [])
            self.energy: EnergySource = self._fallback_model
            self.thermal = None
            self.writer = None
            self._energy_is_model = self._selected_model = True
            self.window: collections.deque = collections.deque(maxlen=1)
            self._energy_note = None
            return
        if energy is None:
            energy = select_source(root, power=power, prefer=settings.energy)
        self.selection = energy if isinstance(energy, Selection) else Selection(energy, [])
        self.energy = self.selection.source
        self._energy_is_model = isinstance(self.energy, ModelSource)
        self._selected_model = self._energy_is_model
        if self._energy_is_model:
            self._fallback_model = self.energy
        self._energy_note: str | None = None
        self.thermal = thermal if thermal is not None else ThermalReader(root)
        self._sys_at = -math.inf
        self._temp_c: float | None = None
        self._freq_mhz: float | None = None
        self._statm = _open_statm()
        self._page_mb = os.sysconf("SC_PAGE_SIZE") / 1_048_576 if hasattr(os, "sysconf") else 4096 / 1_048_576
        self.writer = (
            RotatingJsonLines(settings.path, settings.max_file_bytes, settings.max_total_bytes)
            if settings.path
            else None
        )
        self._write_failed = False
        self.window = collections.deque(maxlen=settings.window)
        log.info("profiler: energy from %s", self.selection.describe())

    @classmethod
    def create(cls, settings: ProfilerSettings = ProfilerSettings(), profile=None, root: str | Path = "/") -> Profiler:
        """A profiler for a device profile (``edge.profiles.Profile``): its power sensor and model."""
        return cls(settings, power=getattr(profile, "power", None), root=root)

    def bind(self, classifier: Any = None, **context: Any) -> None:
        """Set the fields every record carries (model, backend, precision, threads), from a classifier and/or keywords."""
        self.context = {**context_of(classifier), **context} if classifier is not None else {**self.context, **context}

    def track(self, **context: Any) -> Tracker | _NullTracker:
        """Measure the ``with`` block as one inference; keywords override the bound context for this record."""
        if not self.settings.enabled:
            return NULL_TRACKER
        self._count += 1
        if self.settings.sample_every > 1 and (self._count - 1) % self.settings.sample_every:
            return NULL_TRACKER
        return Tracker(self, {**self.context, **context} if context else self.context)

    # --- the per-record path ---------------------------------------------------------------------

    def _read_energy(self, source: EnergySource) -> float | None:
        try:
            return source.read()
        except (OSError, ValueError) as exc:
            self._sensor_failed(source, exc)
            return None

    def _sensor_failed(self, source: EnergySource, exc: Exception) -> None:
        with self._lock:
            if self.energy is not source:
                return
            self._energy_note = f"{source.name} stopped answering ({exc}); using the model"
            log.warning("profiler: %s", self._energy_note)
            self.energy = self._fallback_model
            self._energy_is_model = True
            source.close()

    def _record(self, tr: Tracker, wall_s: float, cpu_s: float, exc_type) -> None:
        """Capture the raw numbers of one inference; building and writing the record is batched.

        Any Python run between two inferences finds the caches cold (the runtime has just used
        them) and leaves them cold for the next inference, so record-building costs several times more
        in place than alone (docs/profiling.md). So per inference we only take readings and append one tuple;
        records are built, serialised and written together by :meth:`flush`.
        """
        energy_mj = None
        method = "model"
        if tr._e0 is not None:
            e1 = self._read_energy(tr._energy)
            if e1 is not None:
                energy_mj = e1 - tr._e0
                method = tr._energy.name
        if energy_mj is None:
            energy_mj = self._fallback_model.estimate(wall_s, cpu_s)
        now = time.monotonic()
        if now - self._sys_at >= self.settings.system_interval_s:
            self._sys_at = now
            self._temp_c = self.thermal.temperature_c()
            self._freq_mhz = self.thermal.frequency_mhz()
        note = self._energy_note if method == "model" and not self._selected_model else None
        error = exc_type.__name__ if exc_type is not None else None
        raw = (
            tr._ts,
            tr._context,
            tr._result,
            tr._extra,
            wall_s,
            cpu_s,
            self._rss_mb(),
            self._temp_c,
            self._freq_mhz,
            energy_mj,
            method,
            note,
            error,
        )
        with self._lock:
            self.recorded += 1
            self.window.append((wall_s * 1000.0, energy_mj, cpu_s * 1000.0, method, error is not None))
            self._last_raw = raw
            if self.writer is not None:
                if not self._pending:
                    self._pending_since = now
                self._pending.append(raw)
                if (
                    len(self._pending) >= self.settings.flush_every
                    or now - self._pending_since >= self.settings.flush_interval_s
                ):
                    self._flush_locked()
                elif self._flusher is None:
                    self._start_flusher()

    @property
    def last(self) -> dict[str, Any] | None:
        """The latest record, as it is (or will be) written."""
        raw = self._last_raw
        return None if raw is None else _build_record(raw)

    def flush(self) -> None:
        """Write pending records now (also done every ``flush_every`` records, ``flush_interval_s``, and on close)."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._pending or self.writer is None:
            return
        batch, self._pending = self._pending, []
        data = "".join(json.dumps(_build_record(raw), separators=(",", ":"), default=str) + "\n" for raw in batch)
        try:
            self.writer.write_lines(data.encode())
        except OSError as exc:
            self.writer.dropped += len(batch)
            if not self._write_failed:  # say it once; the inference itself goes on
                self._write_failed = True
                log.warning(
                    "profiler: cannot write %s (%s); records are kept in memory only until it works again",
                    self.writer.path,
                    exc,
                )
        else:
            self._write_failed = False

    def _start_flusher(self) -> None:
        """A thread that writes records left pending when inferences stop coming (an idle daemon)."""
        stop = self._stop_flusher

        def loop() -> None:
            while not stop.wait(self.settings.flush_interval_s):
                with self._lock:
                    if self._pending and time.monotonic() - self._pending_since >= self.settings.flush_interval_s:
                        self._flush_locked()

        self._flusher = threading.Thread(target=loop, name="edge-profiler-flush", daemon=True)
        self._flusher.start()

    def _rss_mb(self) -> float | None:
        if self._statm is None:
            return None
        try:
            return round(int(os.pread(self._statm, 64, 0).split()[1]) * self._page_mb, 2)
        except (OSError, ValueError, IndexError):
            return None

    # --- summaries ---------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Latency percentiles and mean energy over the in-memory window (what ``/metrics`` shows)."""
        with self._lock:
            self._flush_locked()  # a scrape is a good moment to bring the file up to date
            rows = list(self.window)
        lat = [r[0] for r in rows]
        p50, p90, p99 = percentiles(lat, (50, 90, 99))
        methods = sorted({r[3] for r in rows})
        out: dict[str, Any] = {
            "enabled": self.settings.enabled,
            "sample_every": self.settings.sample_every,
            "count": len(rows),
            "recorded_total": self.recorded,
            "errors": sum(1 for r in rows if r[4]),
            "latency_ms": {
                "p50": _r(p50),
                "p90": _r(p90),
                "p99": _r(p99),
                "mean": _r(sum(lat) / len(lat)) if lat else None,
            },
            "energy_mj_mean": _r(sum(r[1] for r in rows) / len(rows)) if rows else None,
            "cpu_ms_mean": _r(sum(r[2] for r in rows) / len(rows)) if rows else None,
            "energy_method": methods[0] if len(methods) == 1 else methods or self.energy.name,
            "energy_source": self.selection.describe(),
            "temp_c": self._temp_c if self.settings.enabled else None,
            "freq_mhz": self._freq_mhz if self.settings.enabled else None,
            "records_dropped": self.writer.dropped if self.writer else 0,
        }
        return out

    def metric_families(self, prefix: str = "edge_") -> list[Any]:
        """:meth:`summary` as Prometheus metric families, in base units (seconds, joules, hertz)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

        s = self.summary()
        lat = s["latency_ms"]
        method = s["energy_method"] if isinstance(s["energy_method"], str) else ",".join(s["energy_method"])
        name = f"{prefix}inference_latency_seconds"
        latency = Metric(
            name, f"Wall time of recent profiled inferences (window of {self.settings.window}).", "summary"
        )
        for q, key in (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99")):
            latency.add_sample(name, {"quantile": q}, _seconds(lat[key]))
        latency.add_sample(f"{name}_count", {}, s["count"])
        latency.add_sample(f"{name}_sum", {}, _seconds(lat["mean"]) * s["count"] if s["count"] else 0.0)
        energy = GaugeMetricFamily(
            f"{prefix}inference_energy_joules",
            "Mean energy per inference over the window; method says measured or model.",
            labels=["method"],
        )
        energy.add_metric([method], _scaled(s["energy_mj_mean"], 1e-3))
        families = [
            latency,
            energy,
            GaugeMetricFamily(
                f"{prefix}inference_cpu_seconds",
                "Mean process CPU time per inference over the window.",
                value=_scaled(s["cpu_ms_mean"], 1e-3),
            ),
            CounterMetricFamily(
                f"{prefix}inferences_profiled",
                "Inferences recorded by the profiler since start.",
                value=s["recorded_total"],
            ),
            CounterMetricFamily(
                f"{prefix}profile_records_dropped",
                "Records not written to the profile file.",
                value=s["records_dropped"],
            ),
        ]
        if s["temp_c"] is not None:
            families.append(
                GaugeMetricFamily(f"{prefix}cpu_temperature_celsius", "CPU temperature.", value=s["temp_c"])
            )
        if s["freq_mhz"] is not None:
            families.append(
                GaugeMetricFamily(
                    f"{prefix}cpu_frequency_hertz", "Highest current CPU frequency.", value=s["freq_mhz"] * 1e6
                )
            )
        return families

    def metrics_text(self, prefix: str = "edge_") -> str:
        """:meth:`metric_families` in the Prometheus text format."""
        from edge.prometheus import render

        return render(self.metric_families(prefix)).decode()

    def close(self) -> None:
        """Write what is pending and release files, sensors and the flush thread."""
        self._stop_flusher.set()
        if self.writer is not None:
            self.flush()
            self.writer.close()
        if self.settings.enabled:
            self.energy.close()
            if self.thermal is not None:
                self.thermal.close()
            if self._statm is not None:
                os.close(self._statm)
                self._statm = None


def _build_record(raw: tuple) -> dict[str, Any]:
    """A record (one JSON line) from the tuple :meth:`Profiler._record` captured."""
    ts, context, result, extra, wall_s, cpu_s, rss_mb, temp_c, freq_mhz, energy_mj, method, note, error = raw
    extra = dict(extra)
    record: dict[str, Any] = {"v": RECORD_VERSION, "ts": round(ts, 3)}
    if result is not None:
        record["id"] = getattr(result, "id", None)
    record.update(context)
    record["seq_len"] = extra.pop("seq_len", None) or getattr(result, "seq_len", None)
    stages = dict(getattr(result, "latency_ms", None) or {})
    stages.update(extra.pop("stages_ms", {}))
    record["stages_ms"] = {k: round(v, 3) for k, v in stages.items()}
    record["wall_ms"] = round(wall_s * 1000.0, 3)
    record["cpu_ms"] = round(cpu_s * 1000.0, 3)
    record["rss_mb"] = rss_mb
    record["temp_c"] = temp_c
    record["freq_mhz"] = freq_mhz
    record["energy_mj"] = round(energy_mj, 4)
    record["energy_method"] = method
    if note:
        record["energy_note"] = note
    if error:
        record["error"] = error
    record.update(extra)
    return record


def context_of(classifier: Any) -> dict[str, Any]:
    """The record fields a classifier can tell: model (name@version), backend, precision, threads.

    Reads :class:`edge.classifier.IntentClassifier` (``model_label``, ``choice``, ``threads``) and
    falls back to plain attributes, so a stand-in for another model kind works too.
    """
    if classifier is None:
        return {}
    model = getattr(classifier, "model_label", None)
    if model is None:
        package = getattr(classifier, "package", None)
        manifest = getattr(package, "manifest", None) or {}
        name, version = manifest.get("name"), manifest.get("version")
        model = f"{name}@{version}" if name and version else name
    choice = getattr(classifier, "choice", None)
    backend = getattr(choice, "backend", None) or getattr(getattr(classifier, "backend", None), "name", None)
    precision = getattr(choice, "precision", None) or getattr(classifier, "precision", None)
    return {"model": model, "backend": backend, "precision": precision, "threads": getattr(classifier, "threads", None)}


def _open_statm() -> int | None:
    try:
        return os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        return None


def _r(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, 3)


def _scaled(x: float | None, factor: float) -> float:
    return math.nan if x is None else x * factor


def _seconds(ms: float | None) -> float:
    return _scaled(ms, 1e-3)


__all__ = ["NULL_TRACKER", "Profiler", "ProfilerSettings", "RotatingJsonLines", "Tracker", "context_of", "percentiles"]
