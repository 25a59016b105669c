"""The long fuzz run: >= 100,000 inputs through each way into edge, coverage-guided, counted.

    python benchmarks/fuzz.py                          # every target, 100,000 inputs each
    python benchmarks/fuzz.py --targets wav http --runs 20000

Targets: ``text`` (IntentClassifier.classify), ``wav`` (the WAV reader), ``settings`` (a daemon
configuration file through edge.config.load), ``intents`` (an intents file through
tools.templates.load), ``http`` (raw bytes to a running ``edge-intent serve`` over TCP).

Each in-process target runs in a child process under atheris (libFuzzer's coverage-guided
mutation of bytes), seeded with a corpus drawn from the hypothesis strategies of
``tests/fuzz_inputs.py``, so the mutations start from structured inputs (WAV headers, YAML
with aliases, intents files) rather than noise. The HTTP target runs the daemon as its own
process, sends it the seed requests and mutations of them, and measures the daemon's RSS
before and after, and the latency of a ``/healthz`` probe every half second throughout.

Counted per target: inputs run, outcomes (``ok`` or the documented error), crashes (any other
exception; the first few are saved with their input), hangs (an input running more than 5 s:
interrupted by an alarm so the run goes on) and the slowest input. Results go to
``benchmarks/results/fuzz.json``; docs/robustness.md has the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TARGETS = ("text", "wav", "settings", "http", "intents")
HANG_S = 5.0
MAX_HANGS = 25
SEEDS = {
    "text": int(os.environ.get("EDGE_FUZZ_SEEDS", 1500)),
    "wav": int(os.environ.get("EDGE_FUZZ_SEEDS", 1500)),
    "settings": int(os.environ.get("EDGE_FUZZ_SEEDS", 1000)),
    "intents": int(os.environ.get("EDGE_FUZZ_SEEDS", 600)),
    "http": int(os.environ.get("EDGE_FUZZ_SEEDS", 1500)),
}
MAX_LEN = {"text": 4096, "wav": 16384, "settings": 8192, "intents": 8192, "http": 32768}


def _tmp() -> Path:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None  # the targets write a file per input
    return Path(tempfile.mkdtemp(prefix="edge-fuzz-", dir=base))


# --------------------------------------------------------------------------- seeds


def seed_corpus(target: str, n: int, out: Path) -> int:
    """``n`` inputs drawn from the target's hypothesis strategy, one file each."""
    from hypothesis import HealthCheck, given, settings

    import fuzz_inputs as fz

    strategy = {
        "text": fz.texts(),
        "wav": fz.wav_files(),
        "settings": fz.settings_files(),
        "intents": fz.intents_files(),
        "http": fz.http_requests(),
    }[target]
    out.mkdir(parents=True, exist_ok=True)
    written = [0]

    @settings(max_examples=n, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(value) -> None:
        data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
        (out / f"seed-{written[0]:06d}").write_bytes(data[: MAX_LEN[target]])
        written[0] += 1

    draw()
    return written[0]


# --------------------------------------------------------------------------- one target under atheris


class _Hang(BaseException):
    """Raised by the alarm inside an input that ran past HANG_S (BaseException: the target's own
    ``except Exception`` must not swallow it)."""


class Counter:
    """What happened to every input, written to ``path`` as JSON every few seconds and at the end."""

    def __init__(self, target: str, path: Path) -> None:
        self.target = target
        self.path = path
        self.runs = 0
        self.outcomes: dict[str, int] = {}
        self.crashes: list[dict] = []
        self.crash_count = 0
        self.hangs = 0
        self.slowest_s = 0.0
        self.stopped: str | None = None
        self.started = time.monotonic()
        self._written = 0.0

    def record(self, outcome: str, seconds: float) -> None:
        self.runs += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.slowest_s = max(self.slowest_s, seconds)
        if time.monotonic() - self._written > 5:
            self.write()

    def crash(self, data: bytes, exc: BaseException | None, seconds: float) -> None:
        self.crash_count += 1
        if len(self.crashes) < 5:
            self.crashes.append(
                {
                    "input": data[:2000].decode("latin-1"),
                    "seconds": round(seconds, 3),
                    "error": "".join(traceback.format_exception(exc))[-3000:] if exc else "hang",
                }
            )
        self.record("CRASH" if exc else "HANG", seconds)

    def write(self) -> None:
        self._written = time.monotonic()
        rss = _rss_mb(os.getpid())
        self.path.write_text(
            json.dumps(
                {
                    "target": self.target,
                    "inputs": self.runs,
                    "outcomes": self.outcomes,
                    "crashes": self.crash_count,
                    "hangs_over_5s": self.hangs,
                    "slowest_input_s": round(self.slowest_s, 3),
                    "minutes": round((time.monotonic() - self.started) / 60, 2),
                    "fuzzer_rss_mb": rss,
                    "stopped": self.stopped,
                    "crash_examples": self.crashes,
                },
                indent=1,
            )
        )


def make_target(target: str, tmp: Path):
    """bytes -> outcome, for one in-process target (documented errors are outcomes; anything else raises)."""
    import fuzz_inputs as fz

    if target == "text":
        from edge.classifier import IntentClassifier

        run = fz.classify_target(IntentClassifier.load())
        # Invalid UTF-8 becomes lone surrogates (U+DC80..) in a quarter of the inputs, as a JSON "\udc80"
        # makes them; U+FFFD in the rest, so that most mutations reach the tokenizer and the model.
        return lambda data: run(data.decode("utf-8", "surrogateescape" if len(data) % 4 == 0 else "replace"))
    if target == "wav":
        return fz.wav_target()
    if target == "settings":
        run = fz.settings_target(tmp)
        return lambda data: run(data.decode("utf-8", "surrogateescape"))
    if target == "intents":
        run = fz.intents_target(tmp)
        return lambda data: run(data.decode("utf-8", "surrogateescape"))
    raise ValueError(target)


def worker(target: str, runs: int, corpus: Path, stats: Path) -> int:
    """Child process: atheris over one target until ``runs`` inputs."""
    import atheris

    if not corpus.is_dir() or not any(corpus.iterdir()):
        print(f"seeds: {seed_corpus(target, SEEDS[target], corpus)}", file=sys.stderr, flush=True)
    tmp = _tmp()
    with atheris.instrument_imports(include=["edge", "tools", "yaml", "hassil", "h11"]):
        import edge.audio  # noqa: F401, E401

        if target == "intents":
            import tools.templates  # noqa: F401
    run = make_target(target, tmp)
    counter = Counter(target, stats)

    def on_alarm(*_: object) -> None:
        raise _Hang()

    signal.signal(signal.SIGALRM, on_alarm)

    def one(data: bytes) -> None:
        start = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, HANG_S)
        try:
            outcome = run(data)
        except _Hang:
            counter.hangs += 1
            counter.crash(data, None, time.monotonic() - start)
            if counter.hangs >= MAX_HANGS:  # each costs HANG_S: say so and stop rather than run for hours
                counter.stopped = f"stopped after {MAX_HANGS} hangs"
                counter.write()
                os._exit(0)
            return
        except Exception as exc:  # a crash: anything but the documented errors, which run() returns
            signal.setitimer(signal.ITIMER_REAL, 0)
            counter.crash(data, exc, time.monotonic() - start)
            return
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        counter.record(outcome, time.monotonic() - start)
        if counter.runs >= runs:
            counter.write()
            os._exit(0)  # libFuzzer counts its own runs (corpus replays included): stop at ours

    import atexit

    atexit.register(counter.write)
    atheris.Setup(
        [
            sys.argv[0],
            f"-max_len={MAX_LEN[target]}",
            "-timeout=60",
            "-rss_limit_mb=4096",
            "-print_final_stats=1",
            str(corpus),
        ],
        one,
    )
    atheris.Fuzz()
    return 0


# --------------------------------------------------------------------------- HTTP: a real daemon, from outside


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def fuzz_http(runs: int, corpus: Path, stats: Path, seed: int = 1) -> dict:
    """Seed requests, then byte-level mutations of them (flips, cuts, splices, repeats), against ``edge-intent serve``."""
    import random

    from test_http_hostile import read_answer

    import fuzz_inputs as fz

    tmp = _tmp()
    config = tmp / "config.yaml"
    config.write_text('http: {listen: "127.0.0.1:0", timeout_s: 2}\nstdout: {enabled: false}\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGE_PROFILE": "generic-x86_64"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli.intent", "serve", "--no-mic", "--config", str(config), "-v"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = None
    log_tail: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        log_tail.append(line)
        found = re.search(r"HTTP API on http://([\d.]+):(\d+)", line)
        if found:
            url = (found.group(1), int(found.group(2)))
            break
    assert url is not None, "".join(log_tail)
    threading.Thread(target=lambda: [log_tail.append(line) for line in proc.stderr], daemon=True).start()
    run = fz.http_target(url)
    normal = b"POST /v1/intent HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 19\r\n\r\nturn off the lights"
    import numpy as np

    from speech_helpers import write_wav

    speech = write_wav(tmp / "warm.wav", np.sin(np.arange(16000) / 5.0).astype(np.float32) * 0.3, 16000).read_bytes()
    recognize = (
        b"POST /v1/recognize?publish=false HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
        b"Content-Length: %d\r\n\r\n" % len(speech)
    ) + speech
    for i in range(500):  # warm up: allocator, model, the HTTP recogniser (built on first use); then the baseline
        run(normal if i % 50 else recognize)
    run(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    rss_before = _rss_mb(proc.pid)

    probes: list[float] = []
    probe_failures = [0]
    stop = threading.Event()

    def probe() -> None:
        import socket

        while not stop.wait(0.5):
            start = time.monotonic()
            try:
                with socket.create_connection(url, timeout=10) as sock:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    ok = read_answer(sock).startswith(b"HTTP/1.1 200")
            except OSError:
                ok = False
            probes.append(time.monotonic() - start)
            if not ok:
                probe_failures[0] += 1

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    seeds = [p.read_bytes() for p in sorted(corpus.iterdir())]
    rng = random.Random(seed)
    tokens = [
        b"\r\n",
        b"\r\n\r\n",
        b"Content-Length: ",
        b"Transfer-Encoding: chunked\r\n",
        b"Expect: 100-continue\r\n",
        b"0\r\n\r\n",
        b"ffffffff\r\n",
        b"\x00",
        b"\xff",
        b"HTTP/1.1",
        b"{",
        b"[" * 100,
        b'"\\ud800"',
        b"RIFF",
    ]
    counter = Counter("http", stats)

    def mutate(data: bytes) -> bytes:
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            op = rng.randint(0, 5)
            at = rng.randint(0, len(buf)) if buf else 0
            if op == 0 and buf:
                buf[min(at, len(buf) - 1)] ^= 1 << rng.randint(0, 7)
            elif op == 1:
                buf[at:at] = rng.choice(tokens)
            elif op == 2 and buf:
                del buf[at : at + rng.randint(1, 64)]
            elif op == 3:
                other = rng.choice(seeds)
                start = rng.randint(0, len(other))
                buf[at:at] = other[start : start + rng.randint(1, 256)]
            elif op == 4 and buf:
                piece = buf[at : at + rng.randint(1, 32)]
                buf[at:at] = piece * rng.randint(2, 50)
            else:
                buf = buf[:at]
        return bytes(buf[: MAX_LEN["http"]])

    i = 0
    while counter.runs < runs:
        data = seeds[i] if i < len(seeds) else mutate(rng.choice(seeds))
        i += 1
        start = time.monotonic()
        try:
            outcome = run(data)
        except AssertionError as exc:  # a malformed answer or a status outside the documented ones (a 500)
            counter.crash(data, exc, time.monotonic() - start)
            continue
        except OSError as exc:
            outcome = f"client {type(exc).__name__}"
        seconds = time.monotonic() - start
        if seconds > HANG_S:
            counter.hangs += 1
        counter.record(outcome, seconds)
    stop.set()
    prober.join()
    time.sleep(3)  # connections the daemon still holds finish their deadline (timeout_s 2)
    rss_after = _rss_mb(proc.pid)
    alive = proc.poll() is None and run(normal) == "200"
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(60)
    probes.sort()
    counter.write()
    result = json.loads(stats.read_text())
    result.update(
        {
            "daemon_rss_mb": {
                "before": rss_before,
                "after": rss_after,
                "change_percent": round((rss_after - rss_before) / rss_before * 100, 2),
            },
            "daemon_alive_after": alive,
            "daemon_exit_code": code,
            "healthz_probe": {
                "n": len(probes),
                "failures": probe_failures[0],
                "p50_ms": round(probes[len(probes) // 2] * 1000, 1) if probes else None,
                "p99_ms": round(probes[int(len(probes) * 0.99)] * 1000, 1) if probes else None,
                "max_ms": round(probes[-1] * 1000, 1) if probes else None,
            },
            "daemon_tracebacks": sum("Traceback" in line for line in log_tail),
        }
    )
    stats.write_text(json.dumps(result, indent=1))
    return result


# --------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    p.add_argument("--runs", type=int, default=100_000, help="inputs per target")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuzz.json")
    p.add_argument("--worker", choices=[t for t in TARGETS if t != "http"], help=argparse.SUPPRESS)
    p.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.runs, args.corpus, args.stats)
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("benchmarks/fuzz.py needs atheris: pip install 'edge-intent[fuzz]'", file=sys.stderr)
        return 2
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results.setdefault("targets", {})
    work = _tmp()
    # The in-process targets run side by side in child processes (each seeds its own corpus); HTTP
    # runs here meanwhile, against its daemon.
    children = {}
    for target in [t for t in args.targets if t != "http"]:
        children[target] = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                target,
                "--runs",
                str(args.runs),
                "--corpus",
                str(work / f"corpus-{target}"),
                "--stats",
                str(work / f"{target}.json"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(work / f"{target}.log", "w"),
        )
    if "http" in args.targets:
        corpus = work / "corpus-http"
        n = seed_corpus("http", SEEDS["http"], corpus)
        result = fuzz_http(args.runs, corpus, work / "http.json")
        result["seeds"] = n
        _report(results, "http", result, args.out)
    for target, child in children.items():
        code = child.wait()
        stats = work / f"{target}.json"
        result = json.loads(stats.read_text()) if stats.is_file() else {"target": target, "inputs": 0}
        result["worker_exit_code"] = code
        log = (work / f"{target}.log").read_text(errors="replace")
        if code != 0:
            result["worker_stderr_tail"] = log[-3000:]
        coverage = re.findall(r"cov: (\d+) ft: (\d+)", log)
        if coverage:
            result["libfuzzer_coverage"] = {"edges": int(coverage[-1][0]), "features": int(coverage[-1][1])}
        seeds = re.findall(r"^seeds: (\d+)", log, re.MULTILINE)
        result["seeds"] = int(seeds[0]) if seeds else None
        _report(results, target, result, args.out)
    return 0


def _report(results: dict, target: str, result: dict, out: Path) -> None:
    results["targets"][target] = result
    print(
        f"{target}: {result.get('inputs')} inputs, {result.get('crashes')} crashes, "
        f"{result.get('hangs_over_5s')} hangs, slowest {result.get('slowest_input_s')} s",
        file=sys.stderr,
        flush=True,
    )
    results["machine"] = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
