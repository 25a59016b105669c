"""The ``edge-profile`` engine: plan the configurations, measure each one in a worker process of its own.

For each configuration the model package offers and this device can run, a fresh worker process
loads the model (load time), warms up, checks intent accuracy on a held-out sample (so a fast but
wrong configuration shows), then classifies one sentence at a time for N runs and at least a
minimum duration, MLPerf single-stream style: the headline is the 90th-percentile latency, with
p50, p99, mean and standard deviation beside it, throughput, the worker's peak RSS, and the
energy per inference from the best energy source (edge/energy.py; the method is always shown).

One process per configuration keeps the numbers honest: peak RSS is that configuration's alone,
load time is a real cold load, and a runtime that crashes takes down only its own row. The
worker reports its progress to the parent on stderr (``PROGRESS_PREFIX`` lines) and its result
in a JSON file. When torch and transformers are installed, the training package's
``torch_baseline`` adds the PyTorch fp32 eager model with the same weights in the same run (it is
started as a process, so ``edge`` never imports torch).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASELINE_MODULE = "edge_train.torch_baseline"
"""The PyTorch baseline's worker (the repository's tools/torch_baseline.py, installed as ``edge_train``)."""


RESULTS_VERSION = 1


PROGRESS_PREFIX = "@@progress "


@dataclasses.dataclass(frozen=True)
class Config:
    backend: str
    """``onnx``, ``tflite``, or ``torch`` (the PyTorch eager baseline)."""
    precision: str
    threads: int

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.precision} t{self.threads}"

    @property
    def baseline(self) -> bool:
        return self.backend == "torch"


@dataclasses.dataclass(frozen=True)
class RunSettings:
    runs: int
    """Timed inferences at least."""
    min_duration_s: float
    """Keep running until this much time has passed too (MLPerf single-stream: 60 s)."""
    max_duration_s: float
    """Stop a configuration after this long even if ``runs`` is not reached."""
    warmup: int
    """Untimed inferences after loading."""
    accuracy_n: int
    """Held-out sentences classified for accuracy."""


QUICK = RunSettings(runs=40, min_duration_s=0.5, max_duration_s=5.0, warmup=3, accuracy_n=100)


FULL = RunSettings(runs=300, min_duration_s=10.0, max_duration_s=60.0, warmup=10, accuracy_n=400)


def default_threads(cores: int | None = None) -> list[int]:
    cores = cores or os.cpu_count() or 1
    out, t = [], 1
    while t < cores:
        out.append(t)
        t *= 2
    return out + [cores]


def plan_configs(
    variants,
    available: dict[str, str | None],
    threads: list[int],
    backends: list[str] | None,
    precisions: list[str] | None,
) -> tuple[list[Config], list[dict[str, str]]]:
    """Configurations to run, and the ones left out with the reason."""
    configs: list[Config] = []
    skipped: list[dict[str, str]] = []
    seen = set()
    for v in variants:
        if (v.backend, v.precision) in seen:
            continue
        seen.add((v.backend, v.precision))
        label = f"{v.backend}/{v.precision}"
        if backends and v.backend not in backends:
            continue
        if precisions and v.precision not in precisions:
            continue
        reason = available.get(v.backend, f"backend {v.backend!r} is unknown to this runtime")
        if reason:
            skipped.append({"config": label, "reason": reason})
            continue
        configs.extend(Config(v.backend, v.precision, t) for t in threads)
    shipped = {v.backend for v in variants}
    for b in backends or ():
        if b not in shipped and b != "torch":
            skipped.append(
                {"config": b, "reason": f"the model package has no {b} file (it has: {', '.join(sorted(shipped))})"}
            )
    for prec in precisions or ():
        if not any(v.precision == prec for v in variants):
            skipped.append({"config": prec, "reason": f"the model package has no {prec} file"})
    return configs, skipped


def held_out_sample(path: Path, labels: list[str], n: int, seed: int) -> tuple[list[tuple[str, str]], str | None]:
    """Up to ``n`` (text, intent) pairs of a JSONL file the model has labels for, a seeded random subset; or why none."""
    if n <= 0:
        return [], "accuracy sample disabled (--accuracy-sample 0)"
    if not path.is_file():
        return [], f"{path}: not found; accuracy is not measured"
    from edge.package import read_labelled

    try:
        rows = [(row["text"], row.get("intent")) for row in read_labelled(path)]
    except ValueError as exc:
        raise SystemExit(f"edge-profile: {exc}") from None
    return _seeded_subset(rows, labels, n, seed, str(path))


def package_sample(package, n: int, seed: int) -> tuple[list[tuple[str, str]], str | None]:
    """Like :func:`held_out_sample`, from the evaluation sample the model package carries."""
    if n <= 0:
        return [], "accuracy sample disabled (--accuracy-sample 0)"
    rows = [(r["text"], r.get("intent")) for r in package.evaluation_sample()]
    if not rows:
        return [], (
            f"the model package {package.name} carries no evaluation sample; accuracy is not measured "
            "(give held-out sentences with --data FILE)"
        )
    return _seeded_subset(rows, package.labels, n, seed, f"{package.name}'s evaluation sample")


def _seeded_subset(
    rows: list[tuple[str, Any]], labels: list[str], n: int, seed: int, origin: str
) -> tuple[list[tuple[str, str]], str | None]:
    known = set(labels)
    rows = [(text, intent) for text, intent in rows if intent in known]
    if not rows:
        return [], f"{origin}: no sentence has an intent this model knows"
    random.Random(seed).shuffle(rows)
    return rows[:n], None


_last_progress = [0.0, ""]


def _progress(fraction: float, phase: str) -> None:
    """Tell the parent how far this worker is; at most ten times a second, and at each new phase."""
    now = time.monotonic()
    if phase == _last_progress[1] and now - _last_progress[0] < 0.1:
        return
    _last_progress[:] = [now, phase]
    print(f"{PROGRESS_PREFIX}{min(max(fraction, 0.0), 1.0):.3f} {phase}", file=sys.stderr, flush=True)


def measure(
    classify: Callable[[str], Any],
    sentences: list[tuple[str, str]],
    timing_texts: list[str],
    settings: RunSettings,
    energy_source,
    power=None,
    report: Callable[[float, str], None] = _progress,
) -> dict[str, Any]:
    """Warm up, measure accuracy, then time single-stream inferences; numbers for one configuration.

    ``power`` (the profile's power section) feeds the model if the energy sensor fails mid-run.
    """
    from edge.profiler import percentiles
    from edge.thermal import ThermalReader, throttled

    thermal = ThermalReader()
    texts = timing_texts or [s for s, _ in sentences] or ["set an alarm for seven am"]
    t_first = time.perf_counter()
    classify(texts[0])
    first_ms = (time.perf_counter() - t_first) * 1000.0
    for i in range(settings.warmup):
        classify(texts[i % len(texts)])
    report(0.05, "accuracy")
    correct = 0
    for i, (text, gold) in enumerate(sentences):
        correct += classify(text).intent == gold
        if i % 20 == 0:
            report(0.05 + 0.25 * i / len(sentences), "accuracy")
    report(0.3, "timing")
    temp_start = thermal.temperature_c()
    latencies: list[float] = []
    stages: dict[str, float] = {}
    e0 = energy_source.read()
    c0 = time.process_time()
    start = time.perf_counter()
    now = start
    while True:
        text = texts[len(latencies) % len(texts)]
        t0 = time.perf_counter()
        result = classify(text)
        now = time.perf_counter()
        latencies.append((now - t0) * 1000.0)
        for k, v in (getattr(result, "latency_ms", None) or {}).items():
            stages[k] = stages.get(k, 0.0) + v
        elapsed = now - start
        if elapsed >= settings.max_duration_s or (
            len(latencies) >= settings.runs and elapsed >= settings.min_duration_s
        ):
            break
        if len(latencies) % 10 == 0:
            done = min(len(latencies) / settings.runs, 1.0)
            if settings.min_duration_s > 0:
                done = min(done, elapsed / settings.min_duration_s)
            report(0.3 + 0.7 * max(done, elapsed / settings.max_duration_s), "timing")
    duration = now - start
    cpu_s = time.process_time() - c0
    try:
        energy_mj: float | None = energy_source.read() - e0
        method = energy_source.name
    except (OSError, ValueError) as exc:  # the sensor stopped answering: the model stands in, stated
        from edge.energy import model_source

        energy_mj = model_source(power).estimate(duration, cpu_s)
        method = f"model (sensor failed: {exc})"
    n = len(latencies)
    ordered = sorted(latencies)
    p50, p90, p99 = percentiles(ordered, (50, 90, 99))
    throttle = throttled()
    temp_end = thermal.temperature_c()
    thermal.close()
    return {
        "first_inference_ms": round(first_ms, 3),
        "runs": n,
        "duration_s": round(duration, 3),
        "latency_ms": {
            "p50": round(p50, 3),
            "p90": round(p90, 3),
            "p99": round(p99, 3),
            "mean": round(statistics.fmean(ordered), 3),
            "stdev": round(statistics.stdev(ordered), 3) if n > 1 else 0.0,
            "min": round(ordered[0], 3),
            "max": round(ordered[-1], 3),
        },
        "stages_ms_mean": {k: round(v / n, 3) for k, v in stages.items()},
        "throughput_per_s": round(n / duration, 2) if duration > 0 else None,
        "cpu_ms_per_inference": round(cpu_s * 1000.0 / n, 3),
        "energy_mj_per_inference": round(energy_mj / n, 3) if energy_mj is not None else None,
        "energy_method": method,
        "accuracy": round(correct / len(sentences), 4) if sentences else None,
        "accuracy_n": len(sentences),
        "temp_c": {"start": temp_start, "end": temp_end},
        "throttled": throttle.summary() if throttle else None,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports ``ru_maxrss`` in KiB, macOS in bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1_048_576 if sys.platform == "darwin" else 1024), 1)


def run_worker(spec: dict[str, Any], load: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """Load a classifier with ``load(spec)`` and measure it; the spec comes from the parent process.

    ``load`` returns the classifier (anything with ``classify(text) -> Result``), and may set
    ``spec["describe"]`` and ``spec["notes"]``. Shared by the edge worker and tools/torch_baseline.py.
    """
    from edge.energy import select_source
    from edge.profiles import load_profile

    profile = load_profile(spec["profile"]) if spec.get("profile") else None
    _progress(0.0, "loading")
    t0 = time.perf_counter()
    classifier = load(spec)
    load_ms = (time.perf_counter() - t0) * 1000.0
    power = getattr(profile, "power", None)
    selection = select_source(power=power, prefer=spec.get("energy", "auto"))
    sample = [tuple(s) for s in spec["sample"]]
    try:
        numbers = measure(
            classifier.classify,
            sample,
            [s for s, _ in sample],
            RunSettings(**spec["settings"]),
            selection.source,
            power,
        )
    finally:
        selection.source.close()
    out = {"load_ms": round(load_ms, 1), **numbers, "energy_source": selection.describe()}
    for key in ("describe", "notes"):
        if spec.get(key):
            out[key] = spec[key]
    return out


def _load_edge_classifier(spec: dict[str, Any]):
    from edge.classifier import IntentClassifier
    from edge.profiles import load_profile

    profile = load_profile(spec["profile"]) if spec.get("profile") else None
    clf = IntentClassifier.load(
        spec["model"], backend=spec["backend"], precision=spec["precision"], threads=spec["threads"], profile=profile
    )
    describe = getattr(getattr(clf, "backend", None), "describe", None)
    spec["describe"] = describe() if callable(describe) else None
    return clf


def worker_main(
    spec_path: Path,
    load: Callable[[dict[str, Any]], Any] = _load_edge_classifier,
    skip: tuple[type[BaseException], ...] = (),
) -> int:
    """Entry of a worker process: read the spec, measure, write the result file; never raise.

    An exception of a ``skip`` type means "cannot be run faithfully here": the configuration is
    listed as not run, with the message, instead of as a failure.
    """
    spec = json.loads(spec_path.read_text())
    try:
        result = {"ok": True, **run_worker(spec, load)}
    except skip as exc:
        result = {"ok": False, "skipped": True, "error": str(exc)}
    except BaseException as exc:  # report any failure as this configuration's row
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}".strip()}
    Path(spec["result_path"]).write_text(json.dumps(result))
    return 0 if result["ok"] else 1


def _worker_command(config: Config, spec_path: Path) -> list[str]:
    module = BASELINE_MODULE if config.baseline else "edge.profiling"
    return [sys.executable, "-m", module, "--worker", str(spec_path)]


def run_config(
    config: Config, spec: dict[str, Any], workdir: Path, on_progress: Callable[[float, str], None]
) -> dict[str, Any]:
    spec_path = workdir / f"{config.backend}-{config.precision}-t{config.threads}.json"
    spec = {
        **spec,
        "backend": config.backend,
        "precision": config.precision,
        "threads": config.threads,
        "result_path": str(spec_path.with_suffix(".result.json")),
    }
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ)
    # Each runtime gets exactly the threads under test, however it reads its defaults.
    env["OMP_NUM_THREADS"] = str(config.threads)
    timeout = spec["settings"]["max_duration_s"] * 2 + 300
    proc = subprocess.Popen(
        _worker_command(config, spec_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    tail: list[str] = []
    # A worker that hangs (a runtime deadlocked in its thread pool) is killed, and its row says so.
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith(PROGRESS_PREFIX):
                fraction, _, phase = line[len(PROGRESS_PREFIX) :].strip().partition(" ")
                on_progress(float(fraction), phase)
            elif line.strip():
                tail = (tail + [line.rstrip()])[-5:]
        code = proc.wait()
    finally:
        watchdog.cancel()
    result_path = Path(spec["result_path"])
    if result_path.is_file():
        result = json.loads(result_path.read_text())
    elif code == -9:
        result = {"ok": False, "error": f"no result after {timeout:g} s; the worker was stopped"}
    else:
        why = f"worker exited with status {code}" + (f": {tail[-1]}" if tail else "")
        result = {"ok": False, "error": why}
    if not result["ok"] and tail:
        result["stderr"] = tail
    return {
        "config": config.label,
        "backend": config.backend,
        "precision": config.precision,
        "threads": config.threads,
        "baseline": config.baseline,
        **result,
    }


def torch_baseline_reason() -> str | None:
    """Why the PyTorch baseline cannot run here, or ``None``."""
    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'edge-intent[train]' to include the PyTorch baseline)"
    try:
        found = importlib.util.find_spec(BASELINE_MODULE) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        return f"{BASELINE_MODULE} is not installed (the runtime-only install has no toolchain)"
    return None


def choose_best(rows: list[dict[str, Any]], tolerance: float) -> dict[str, Any] | None:
    """Lowest p90 among runtime configurations whose accuracy is within ``tolerance`` of the best."""
    ok = [r for r in rows if r.get("ok") and not r["baseline"]]
    if not ok:
        return None
    accs = [r["accuracy"] for r in ok if r.get("accuracy") is not None]
    if accs:
        floor = max(accs) - tolerance
        ok = [r for r in ok if r.get("accuracy") is None or r["accuracy"] >= floor]
    return min(ok, key=lambda r: (r["latency_ms"]["p90"], r.get("energy_mj_per_inference") or 0.0))


def host_facts(detection_reason: str, profile_name: str | None) -> dict[str, Any]:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("model name", "Model", "Hardware") and ":" in line:
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "profile": profile_name,
        "profile_reason": detection_reason,
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def wake_stage(phrase: str, seconds: float) -> dict[str, Any] | None:
    """The wake-word stage's standing cost (it runs on every frame, all day), or why it was not measured."""
    if phrase.lower() == "none":
        return None
    from edge.wake import WakeError, WakeSettings, measure_cpu

    try:
        return measure_cpu(WakeSettings(phrases=(phrase,)), seconds=seconds)
    except WakeError as exc:
        return {"phrases": [phrase], "error": str(exc)}


def save_profile(best: dict[str, Any], base_profile: str | None) -> Path:
    import yaml

    from edge.profiles import Override, override_path
    from edge.settings import to_mapping

    override = Override(
        backend=best["backend"],
        precision=best["precision"],
        threads=best["threads"],
        measured={
            "p90_ms": best["latency_ms"]["p90"],
            "p50_ms": best["latency_ms"]["p50"],
            **(
                {"mj_per_inference": best["energy_mj_per_inference"]}
                if best.get("energy_mj_per_inference") is not None
                else {}
            ),
            **({"accuracy": best["accuracy"]} if best.get("accuracy") is not None else {}),
        },
        base_profile=base_profile or "",
    )
    path = override_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Written by edge-profile --save-profile on {time.strftime('%Y-%m-%d %H:%M:%S')}: the fastest accurate configuration measured here.\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(header + yaml.safe_dump(to_mapping(override), sort_keys=False))
    os.replace(tmp, path)
    return path
