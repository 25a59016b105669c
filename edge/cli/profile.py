"""``edge-profile``: benchmark every backend x precision x thread count of a model on this device.

    edge-profile [--model NAME|PATH] [--out DIR] [--quick] [--save-profile]

For each configuration the model package offers and this device can run, a fresh worker process
loads the model (load time), warms up, checks intent accuracy on a held-out sample (so a fast but
wrong configuration shows: the model package's own evaluation sample, or ``--data FILE``), then classifies one sentence at a time for N runs and at least a
minimum duration, MLPerf single-stream style: the headline is the 90th-percentile latency, with
p50, p99, mean and standard deviation beside it, throughput, the worker's peak RSS, and the
energy per inference from the best energy source (edge/energy.py; the method is always shown).

One process per configuration keeps the numbers honest: peak RSS is that configuration's alone,
load time is a real cold load, and a runtime that crashes takes down only its own row. When torch
and transformers are installed, ``tools/torch_baseline.py`` adds the PyTorch fp32 eager model with
the same weights in the same run (it is started as a process, so ``edge`` never imports torch).

Writes ``results.json``, ``report.md`` and ``latency_energy.png`` to ``--out``, prints the table,
and with ``--save-profile`` records the best configuration as this device's local profile override
(``edge.profiles.override_path()``), which ``edge-intent`` and the daemon then use.
"""

from __future__ import annotations

import argparse
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
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-profile", description=__doc__.split("\n\n")[0].replace("``", ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model package name or directory (default: the installed default model)")
    p.add_argument("--out", type=Path, default=Path("edge-profile"), help="directory for results.json, report.md, latency_energy.png (default: ./edge-profile)")
    p.add_argument("--quick", action="store_true", help=f"short runs ({QUICK.runs} runs or {QUICK.min_duration_s:g} s, {QUICK.accuracy_n} accuracy sentences; the baseline at the highest thread count only)")
    p.add_argument("--backends", help="comma-separated backends to try (default: every available one)")
    p.add_argument("--precisions", help="comma-separated precisions to try, e.g. int8,fp32 (default: all the package has)")
    p.add_argument("--threads", help="comma-separated thread counts (default: 1, 2, 4, ... up to the core count)")
    p.add_argument("--runs", type=int, help=f"timed inferences per configuration, at least (default {FULL.runs})")
    p.add_argument("--min-duration", type=float, help=f"seconds each configuration runs, at least (default {FULL.min_duration_s:g}; MLPerf uses 60)")
    p.add_argument("--max-duration", type=float, help=f"seconds after which a configuration stops (default {FULL.max_duration_s:g})")
    p.add_argument("--warmup", type=int, help=f"untimed inferences after loading (default {FULL.warmup})")
    p.add_argument("--accuracy-sample", type=int, help=f"held-out sentences for accuracy (default {FULL.accuracy_n}; 0 to skip)")
    p.add_argument("--data", type=Path, metavar="FILE", help="held-out JSONL ({text, intent}) for accuracy and timing sentences "
                   "(default: the model package's evaluation sample, eval_sample.jsonl)")
    p.add_argument("--profile", help="device profile name (default: detected)")
    p.add_argument("--energy", default="auto", choices=["auto", "ina3221", "pi5_pmic", "rapl", "model"], help="energy source (default: best available)")
    p.add_argument("--no-baseline", action="store_true", help="skip the PyTorch eager baseline even if torch is installed")
    p.add_argument("--torch-checkpoint", type=Path, help="PyTorch checkpoint with the package's weights, for the baseline (default: looked up, see report)")
    p.add_argument("--save-profile", action="store_true", help="write the best configuration as this device's local profile override")
    p.add_argument("--accuracy-tolerance", type=float, default=0.01, help="best = lowest p90 among configurations within this accuracy of the most accurate (default 0.01 = 1 point)")
    p.add_argument("--seed", type=int, default=13, help="seed for the held-out sample")
    p.add_argument("--wake", default="hey jarvis", metavar="PHRASE",
                   help="also measure the wake-word stage's CPU per second of audio for this phrase ('none' to skip)")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    return p


# --- planning ---------------------------------------------------------------------------------------


def default_threads(cores: int | None = None) -> list[int]:
    cores = cores or os.cpu_count() or 1
    out, t = [], 1
    while t < cores:
        out.append(t)
        t *= 2
    return out + [cores]


def _csv(value: str | None, cast: Callable[[str], Any] = str) -> list | None:
    if not value:
        return None
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"edge-profile: {value!r}: expected a comma-separated list") from None


def plan_configs(variants, available: dict[str, str | None], threads: list[int], backends: list[str] | None,
                 precisions: list[str] | None) -> tuple[list[Config], list[dict[str, str]]]:
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
            skipped.append({"config": b, "reason": f"the model package has no {b} file (it has: {', '.join(sorted(shipped))})"})
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
        return [], (f"the model package {package.name} carries no evaluation sample; accuracy is not measured "
                    "(give held-out sentences with --data FILE)")
    return _seeded_subset(rows, package.labels, n, seed, f"{package.name}'s evaluation sample")


def _seeded_subset(rows: list[tuple[str, Any]], labels: list[str], n: int, seed: int,
                   origin: str) -> tuple[list[tuple[str, str]], str | None]:
    known = set(labels)
    rows = [(text, intent) for text, intent in rows if intent in known]
    if not rows:
        return [], f"{origin}: no sentence has an intent this model knows"
    random.Random(seed).shuffle(rows)
    return rows[:n], None


# --- the worker: one configuration in its own process ----------------------------------------------


_last_progress = [0.0, ""]


def _progress(fraction: float, phase: str) -> None:
    """Tell the parent how far this worker is; at most ten times a second, and at each new phase."""
    now = time.monotonic()
    if phase == _last_progress[1] and now - _last_progress[0] < 0.1:
        return
    _last_progress[:] = [now, phase]
    print(f"{PROGRESS_PREFIX}{min(max(fraction, 0.0), 1.0):.3f} {phase}", file=sys.stderr, flush=True)


def measure(classify: Callable[[str], Any], sentences: list[tuple[str, str]], timing_texts: list[str],
            settings: RunSettings, energy_source, power=None,
            report: Callable[[float, str], None] = _progress) -> dict[str, Any]:
    """Warm up, measure accuracy, then time single-stream inferences; numbers for one configuration.

    ``power`` (the profile's power section) feeds the model if the energy sensor fails mid-run.
    """
    from edge.profiler import percentile
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
        if elapsed >= settings.max_duration_s or (len(latencies) >= settings.runs and elapsed >= settings.min_duration_s):
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
    throttle = throttled()
    temp_end = thermal.temperature_c()
    thermal.close()
    return {
        "first_inference_ms": round(first_ms, 3),
        "runs": n,
        "duration_s": round(duration, 3),
        "latency_ms": {
            "p50": round(percentile(ordered, 50), 3), "p90": round(percentile(ordered, 90), 3),
            "p99": round(percentile(ordered, 99), 3), "mean": round(statistics.fmean(ordered), 3),
            "stdev": round(statistics.stdev(ordered), 3) if n > 1 else 0.0,
            "min": round(ordered[0], 3), "max": round(ordered[-1], 3),
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
        numbers = measure(classifier.classify, sample, [s for s, _ in sample], RunSettings(**spec["settings"]),
                          selection.source, power)
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
    clf = IntentClassifier.load(spec["model"], backend=spec["backend"], precision=spec["precision"],
                                threads=spec["threads"], profile=profile)
    describe = getattr(getattr(clf, "backend", None), "describe", None)
    spec["describe"] = describe() if callable(describe) else None
    return clf


def worker_main(spec_path: Path, load: Callable[[dict[str, Any]], Any] = _load_edge_classifier,
                skip: tuple[type[BaseException], ...] = ()) -> int:
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


# --- the parent: run every configuration, report ------------------------------------------------------


class ProgressBar:
    """One line redrawn in place on a terminal; one line per finished configuration otherwise."""

    def __init__(self, total: int, stream=sys.stderr, width: int = 28):
        self.total, self.stream, self.width = total, stream, width
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def update(self, index: int, fraction: float, label: str, phase: str) -> None:
        if not self.tty:
            return
        done = (index + fraction) / max(self.total, 1)
        filled = int(done * self.width)
        line = f"\r[{'#' * filled}{'.' * (self.width - filled)}] {index + 1}/{self.total} {label:<18} {phase:<9} {done * 100:3.0f}%"
        self.stream.write(line)
        self.stream.flush()

    def finished(self, index: int, label: str, summary: str) -> None:
        if self.tty:
            self.stream.write("\r" + " " * (self.width + 60) + "\r")
        self.stream.write(f"[{index + 1}/{self.total}] {label}: {summary}\n")
        self.stream.flush()


def one_line(row: dict[str, Any]) -> str:
    if row.get("skipped"):
        return f"not run: {row['error']}"
    if not row.get("ok"):
        return f"failed: {row['error']}"
    acc = "-" if row.get("accuracy") is None else f"{row['accuracy'] * 100:.1f}%"
    return (f"p90 {row['latency_ms']['p90']:.2f} ms, {_fmt(row['energy_mj_per_inference'], 1)} mJ "
            f"({row['energy_method']}), accuracy {acc}")


def _worker_command(config: Config, spec_path: Path) -> list[str]:
    module = "tools.torch_baseline" if config.baseline else "edge.cli.profile"
    return [sys.executable, "-m", module, "--worker", str(spec_path)]


def run_config(config: Config, spec: dict[str, Any], workdir: Path, on_progress: Callable[[float, str], None]) -> dict[str, Any]:
    spec_path = workdir / f"{config.backend}-{config.precision}-t{config.threads}.json"
    spec = {**spec, "backend": config.backend, "precision": config.precision, "threads": config.threads,
            "result_path": str(spec_path.with_suffix(".result.json"))}
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    # Each runtime gets exactly the threads under test, however it reads its defaults.
    env["OMP_NUM_THREADS"] = str(config.threads)
    timeout = spec["settings"]["max_duration_s"] * 2 + 300
    proc = subprocess.Popen(_worker_command(config, spec_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env)
    tail: list[str] = []
    # A worker that hangs (a runtime deadlocked in its thread pool) is killed, and its row says so.
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith(PROGRESS_PREFIX):
                fraction, _, phase = line[len(PROGRESS_PREFIX):].strip().partition(" ")
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
    return {"config": config.label, "backend": config.backend, "precision": config.precision,
            "threads": config.threads, "baseline": config.baseline, **result}


def torch_baseline_reason() -> str | None:
    """Why the PyTorch baseline cannot run here, or ``None``."""
    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install '.[train]' to include the PyTorch baseline)"
    if not (REPO_ROOT / "tools" / "torch_baseline.py").is_file():
        return "tools/torch_baseline.py is not present (the runtime-only install has no toolchain)"
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
        "machine": platform.machine(), "system": f"{platform.system()} {platform.release()}",
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "profile": profile_name, "profile_reason": detection_reason,
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


TABLE_COLUMNS = ("config", "load ms", "p50 ms", "p90 ms", "p99 ms", "mean ms", "stdev ms", "inf/s", "peak RSS MB", "mJ/inf", "accuracy")


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        label = r["config"] + (" (baseline)" if r["baseline"] else "")
        if not r.get("ok"):
            out.append([label, "failed: " + r.get("error", "?")[:90]] + [""] * (len(TABLE_COLUMNS) - 2))
            continue
        lat = r["latency_ms"]
        acc = "-" if r.get("accuracy") is None else f"{r['accuracy'] * 100:.1f}%"
        out.append([label, _fmt(r["load_ms"], 0), _fmt(lat["p50"]), _fmt(lat["p90"]), _fmt(lat["p99"]),
                    _fmt(lat["mean"]), _fmt(lat["stdev"]), _fmt(r["throughput_per_s"], 1), _fmt(r["peak_rss_mb"], 0),
                    _fmt(r["energy_mj_per_inference"], 1), acc])
    return out


def text_table(rows: list[dict[str, Any]]) -> str:
    body = table_rows(rows)
    ok = [b for b in body if not b[1].startswith("failed:")]
    widths = [max([len(c)] + [len(b[i]) for b in ok] + ([len(b[0]) for b in body] if i == 0 else []))
              for i, c in enumerate(TABLE_COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(TABLE_COLUMNS, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for b in body:
        if b[1].startswith("failed:"):
            lines.append(b[0].ljust(widths[0]) + "  " + b[1])
        else:
            lines.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(b, widths))))
    return "\n".join(lines)


def markdown_report(report: dict[str, Any]) -> str:
    rows = report["configs"]
    host = report["host"]
    s = report["settings"]
    methods = sorted({r["energy_method"] for r in rows if r.get("ok")})
    lines = [
        f"# edge-profile: {report['model']['name']} {report['model']['version']}",
        "",
        f"Host: {host['cpu'] or host['machine']}, {host['cores']} cores, {host['system']}, Python {host['python']}; "
        f"device profile `{host['profile']}` ({host['profile_reason']}); load average at start {host['load_average']}.",
        f"Started {report['started']}; {'quick' if s['quick'] else 'full'} run: at least {s['runs']} single-stream inferences "
        f"and {s['min_duration_s']:g} s per configuration (stop at {s['max_duration_s']:g} s), {s['warmup']} warm-up, "
        f"accuracy on {report['accuracy_sample']['n']} held-out sentences ({report['accuracy_sample']['source']}).",
        "",
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(TABLE_COLUMNS))) + "|",
    ]
    for b in table_rows(rows):
        lines.append("| " + " | ".join(b) + " |")
    lines += [
        "",
        "Latency is the wall time of one `classify()` call (tokenize + infer + decode), one sentence at a time; "
        "p90 is the headline (MLPerf single-stream). `inf/s` is single-stream throughput. Peak RSS is the whole "
        "worker process (Python, runtime, model, tokenizer), one process per configuration.",
        f"Energy: {', '.join(methods) or '-'} — {report['energy_source']}. "
        + ("A `model` figure is an estimate from the device profile (idle W x wall time + W per busy core x CPU time), "
           "not a measurement." if any(m.startswith("model") for m in methods) else ""),
    ]
    if report.get("best"):
        b = report["best"]
        lines += ["", f"**Best:** `{b['config']}` — lowest p90 among configurations within "
                      f"{s['accuracy_tolerance'] * 100:g} percentage points of accuracy of the most accurate."]
    if report.get("saved_profile"):
        lines.append(f"Saved as this device's profile override: `{report['saved_profile']}`.")
    notes = [f"- `{k['config']}`: not run — {k['reason']}" for k in report["skipped"]]
    notes += [f"- `{r['config']}`: {n}" for r in rows for n in ([r["notes"]] if isinstance(r.get("notes"), str) else r.get("notes") or [])]
    notes += [f"- `{r['config']}`: {r['describe']}" for r in rows if r.get("describe")]
    notes += [f"- `{r['config']}`: throttling {r['throttled']}" for r in rows if r.get("throttled")]
    if notes:
        lines += ["", "## Notes", ""] + notes
    if report.get("wake"):
        lines += ["", wake_line(report["wake"])]
    if report.get("plot"):
        lines += ["", f"![latency vs energy per configuration]({report['plot']})"]
    return "\n".join(lines) + "\n"


def wake_stage(phrase: str, seconds: float) -> dict[str, Any] | None:
    """The wake-word stage's standing cost (it runs on every frame, all day), or why it was not measured."""
    if phrase.lower() == "none":
        return None
    from edge.wake import WakeError, WakeSettings, measure_cpu

    try:
        return measure_cpu(WakeSettings(phrases=(phrase,)), seconds=seconds)
    except WakeError as exc:
        return {"phrases": [phrase], "error": str(exc)}


def wake_line(wake: dict[str, Any]) -> str:
    if wake.get("error"):
        return f"Wake stage ({', '.join(wake['phrases'])}): not measured — {wake['error']}"
    return (f"Wake stage (`{wake['engine']}`, {', '.join(wake['phrases'])}): {wake['cpu_per_audio_s']:.4f} CPU s per "
            f"second of audio ({wake['audio_s']:g} s of speech-shaped noise, this thread).")


def write_plot(rows: list[dict[str, Any]], path: Path, method: str) -> Path | None:
    from edge.pngplot import scatter

    points = []
    for r in rows:
        if not r.get("ok") or r.get("energy_mj_per_inference") is None:
            continue
        acc = "" if r.get("accuracy") is None else f"  acc {r['accuracy'] * 100:.1f}%"
        points.append({"x": r["latency_ms"]["p90"], "y": r["energy_mj_per_inference"], "label": r["config"] + acc,
                       "group": "torch (baseline)" if r["baseline"] else r["backend"]})
    if not points:
        return None
    return scatter(points, path, title="edge-profile: latency vs energy per configuration",
                   xlabel="p90 latency per inference (ms)", ylabel=f"energy per inference (mJ, {method})")


def save_profile(best: dict[str, Any], base_profile: str | None) -> Path:
    import yaml

    from edge.profiles import Override, override_path
    from edge.settings import to_mapping

    override = Override(
        backend=best["backend"], precision=best["precision"], threads=best["threads"],
        measured={"p90_ms": best["latency_ms"]["p90"], "p50_ms": best["latency_ms"]["p50"],
                  **({"mj_per_inference": best["energy_mj_per_inference"]} if best.get("energy_mj_per_inference") is not None else {}),
                  **({"accuracy": best["accuracy"]} if best.get("accuracy") is not None else {})},
        base_profile=base_profile or "",
    )
    path = override_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Written by edge-profile --save-profile on {time.strftime('%Y-%m-%d %H:%M:%S')}: the fastest accurate configuration measured here.\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(header + yaml.safe_dump(to_mapping(override), sort_keys=False))
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    from edge.backends import available_backends
    from edge.package import PackageError, find_package
    from edge.profiles import detect
    from edge.settings import SettingsError

    base = QUICK if args.quick else FULL
    settings = RunSettings(
        runs=args.runs if args.runs is not None else base.runs,
        min_duration_s=args.min_duration if args.min_duration is not None else base.min_duration_s,
        max_duration_s=args.max_duration if args.max_duration is not None else base.max_duration_s,
        warmup=args.warmup if args.warmup is not None else base.warmup,
        accuracy_n=args.accuracy_sample if args.accuracy_sample is not None else base.accuracy_n,
    )
    if settings.runs < 1 or settings.max_duration_s <= 0 or settings.warmup < 0:
        print("edge-profile: --runs must be >= 1, --max-duration > 0, --warmup >= 0", file=sys.stderr)
        return 2
    try:
        package = find_package(args.model)
        detection = detect(override=args.profile)
    except (PackageError, SettingsError) as exc:
        print(f"edge-profile: {exc}", file=sys.stderr)
        return 2
    threads = _csv(args.threads, int) or default_threads()
    if any(t < 1 for t in threads):
        print("edge-profile: --threads: thread counts must be >= 1", file=sys.stderr)
        return 2
    configs, skipped = plan_configs(package.variants, available_backends(), threads, _csv(args.backends), _csv(args.precisions))
    baseline_why = "--no-baseline" if args.no_baseline else torch_baseline_reason()
    if baseline_why is None and (not _csv(args.backends) or "torch" in _csv(args.backends)):
        configs += [Config("torch", "fp32", t) for t in (threads[-1:] if args.quick else threads)]
    elif baseline_why:
        skipped.append({"config": "torch/fp32 (baseline)", "reason": baseline_why})
    if not configs:
        print("edge-profile: nothing to run: " + "; ".join(f"{s['config']}: {s['reason']}" for s in skipped), file=sys.stderr)
        return 1
    if args.data is not None:
        sample, sample_why = held_out_sample(args.data, package.labels, settings.accuracy_n, args.seed)
        sample_source = str(args.data)
    else:
        try:
            sample, sample_why = package_sample(package, settings.accuracy_n, args.seed)
        except PackageError as exc:
            print(f"edge-profile: {exc}", file=sys.stderr)
            return 2
        described = package.manifest.get("evaluation_sample", {}).get("source")
        sample_source = f"{package.name}'s evaluation sample" + (f": {described}" if described else "")
    if sample_why and settings.accuracy_n > 0:
        print(f"edge-profile: {sample_why}", file=sys.stderr)

    from edge.energy import select_source

    selection = select_source(power=detection.profile.power, prefer=args.energy)
    energy_description = selection.describe()
    selection.source.close()
    spec = {"model": str(package.dir), "profile": detection.profile.name, "energy": args.energy,
            "settings": dataclasses.asdict(settings), "sample": sample,
            "torch_checkpoint": str(args.torch_checkpoint) if args.torch_checkpoint else None}
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    print(f"edge-profile: {package.name} {package.version}, {len(configs)} configurations, profile {detection.profile.name}; "
          f"energy: {selection.source.name}", file=sys.stderr)
    bar = ProgressBar(len(configs))
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-profile-") as workdir:
        for i, config in enumerate(configs):
            bar.update(i, 0.0, config.label, "starting")
            row = run_config(config, spec, Path(workdir), lambda f, phase, i=i, c=config: bar.update(i, f, c.label, phase))
            bar.finished(i, config.label, one_line(row))
            if row.get("skipped"):
                skipped.append({"config": config.label + (" (baseline)" if config.baseline else ""), "reason": row["error"]})
            else:
                rows.append(row)
    best = choose_best(rows, args.accuracy_tolerance)
    wake = wake_stage(args.wake, 5.0 if args.quick else 30.0)
    args.out.mkdir(parents=True, exist_ok=True)
    method = ", ".join(sorted({r["energy_method"] for r in rows if r.get("ok")})) or selection.source.name
    plot = write_plot(rows, args.out / "latency_energy.png", method)
    report = {
        "version": RESULTS_VERSION, "started": started,
        "model": {"name": package.name, "version": package.version, "dir": str(package.dir)},
        "host": host_facts(detection.reason, detection.profile.name),
        "settings": {**dataclasses.asdict(settings), "quick": args.quick, "threads": threads,
                     "accuracy_tolerance": args.accuracy_tolerance, "seed": args.seed},
        "accuracy_sample": {"n": len(sample), "source": sample_source if sample else sample_why},
        "energy_source": energy_description,
        "configs": rows, "skipped": skipped,
        "best": {"config": best["config"], "backend": best["backend"], "precision": best["precision"], "threads": best["threads"]} if best else None,
        "saved_profile": None,
        "plot": plot.name if plot else None,
        "wake": wake,
    }
    if args.save_profile:
        if best is None:
            print("edge-profile: --save-profile: no configuration ran successfully; nothing saved", file=sys.stderr)
        else:
            report["saved_profile"] = str(save_profile(best, detection.profile.name))
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown_report(report))
    print(text_table(rows))
    for s in skipped:
        print(f"not run: {s['config']}: {s['reason']}")
    if wake:
        print(wake_line(wake))
    if best:
        print(f"best: {best['config']} (p90 {best['latency_ms']['p90']:.2f} ms)")
    if report["saved_profile"]:
        print(f"saved profile override: {report['saved_profile']}")
    print(f"wrote {args.out / 'results.json'}, {args.out / 'report.md'}" + (f", {plot}" if plot else ""))
    return 0 if any(r.get("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
