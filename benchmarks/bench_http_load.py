"""Load test of the HTTP API: hostile traffic beside normal clients, and what the normal clients saw.

    python benchmarks/bench_http_load.py                 # five phases of 20 s
    python benchmarks/bench_http_load.py --seconds 60

``edge-intent serve --no-mic`` runs as a subprocess with its default limits. Normal clients (4
threads, each a keep-alive connection) loop over ``GET /healthz``, ``POST /v1/intent`` and, one
time in ten, ``POST /v1/recognize`` with a 3 s spoken command. Beside them, phase by phase:

* ``baseline``: nothing else;
* ``slow clients``: 20 connections sending one header line every 5 s (slowloris), reopened when cut;
* ``flood``: bursts of 200 connections opened at once, each sending a request;
* ``long uploads``: 4 MiB bodies sent at 512 KiB/s (8 s, inside the 10 s deadline), a ten-minute low-rate WAV (refused by its
  length) and two-minute recordings recognised back to back;
* ``all``: all of the above at once.

Reported per phase and endpoint, for the normal clients only: requests, latency percentiles,
the share answered within 1 s, and every status other than 200 (a 503 for a recognition while
another runs is the documented answer, and counted apart). Results go to
``benchmarks/results/http-load.json``; docs/robustness.md has the table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_http_hostile import long_lowrate_wav  # noqa: E402

from edge.profiler import percentile  # noqa: E402

from speech_helpers import speak, write_wav  # noqa: E402

PHASES = ("baseline", "slow clients", "flood", "long uploads", "all")


class Serve:
    def __init__(self, tmp: Path) -> None:
        config = tmp / "config.yaml"
        config.write_text('http: {listen: "127.0.0.1:0"}\nstdout: {enabled: false}\n')
        env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGE_PROFILE": "generic-x86_64"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli.intent", "serve", "--no-mic", "--config", str(config)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            found = re.search(r"HTTP API on http://([\d.]+):(\d+)", line)
            if found:
                self.address = (found.group(1), int(found.group(2)))
                break
        else:
            raise RuntimeError("".join(self.log))
        threading.Thread(target=lambda: [self.log.append(x) for x in self.proc.stderr], daemon=True).start()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)


# --------------------------------------------------------------------------- the normal clients


class Normal(threading.Thread):
    """One keep-alive client: healthz, intent, now and then a short recognition; every answer recorded."""

    def __init__(self, address: tuple[str, int], wav: bytes, stop: threading.Event, index: int) -> None:
        super().__init__(daemon=True)
        self.address, self.wav, self.stop_flag, self.index = address, wav, stop, index
        self.records: list[tuple[str, str, int, float]] = []  # (phase, endpoint, status, seconds)
        self.phase = "baseline"
        self.conn: http.client.HTTPConnection | None = None

    def one(self, method: str, path: str, body: bytes | None, ctype: str | None) -> None:
        start = time.monotonic()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(*self.address, timeout=30)
            self.conn.request(method, path, body=body, headers={"Content-Type": ctype} if ctype else {})
            response = self.conn.getresponse()
            response.read()
            status = response.status
            if response.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
        except (OSError, http.client.HTTPException):
            status = -1  # no answer: refused, reset or timed out
            if self.conn is not None:
                self.conn.close()
            self.conn = None
        self.records.append((self.phase, path.split("?")[0], status, time.monotonic() - start))

    def run(self) -> None:
        n = self.index
        while not self.stop_flag.is_set():
            n += 1
            self.one("GET", "/healthz", None, None)
            self.one("POST", "/v1/intent?publish=false", b"turn off the lights in the kitchen", "text/plain")
            if n % 10 == 0:
                self.one("POST", "/v1/recognize?publish=false", self.wav, "audio/wav")
            time.sleep(0.05)


# --------------------------------------------------------------------------- the hostile ones


def slow_clients(address, stop: threading.Event, n: int = 20, every: float = 5.0) -> dict:
    counts = {"opened": 0, "cut_with_408": 0}

    def one() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(address, timeout=every) as sock:
                    counts["opened"] += 1
                    sock.sendall(b"POST /v1/intent HTTP/1.1\r\nHost: x\r\n")
                    while not stop.is_set():
                        try:
                            answer = sock.recv(4096)  # waits `every` seconds for the server to say something
                        except TimeoutError:
                            sock.sendall(b"X-Slow: 1\r\n")
                            continue
                        key = "cut_with_408" if answer.startswith(b"HTTP/1.1 408") else "closed_otherwise"
                        counts[key] = counts.get(key, 0) + 1
                        break
            except OSError:
                counts["closed_otherwise"] = counts.get("closed_otherwise", 0) + 1

    threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return counts


def flood(address, stop: threading.Event, burst: int = 200) -> dict:
    counts: dict[str, int] = {}

    def one() -> None:
        try:
            with socket.create_connection(address, timeout=10) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                status = sock.recv(64)[9:12].decode() or "closed"
        except OSError as exc:
            status = type(exc).__name__
        counts[status] = counts.get(status, 0) + 1

    def loop() -> None:
        while not stop.is_set():
            threads = [threading.Thread(target=one, daemon=True) for _ in range(burst)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            stop.wait(1.0)

    threading.Thread(target=loop, daemon=True).start()
    return counts


def long_uploads(address, stop: threading.Event, long_wav: bytes) -> dict:
    counts: dict[str, int] = {}
    big = long_lowrate_wav()

    def send(body: bytes, rate: float | None) -> str:
        try:
            with socket.create_connection(address, timeout=300) as sock:
                sock.sendall(
                    b"POST /v1/recognize?publish=false HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body)
                )
                step = 65536
                for at in range(0, len(body), step):
                    sock.sendall(body[at : at + step])
                    if rate:
                        time.sleep(step / rate)
                return sock.recv(64)[9:12].decode() or "closed"
        except OSError as exc:
            return type(exc).__name__

    def loop(body: bytes, rate: float | None, name: str) -> None:
        while not stop.is_set():
            key = f"{name} {send(body, rate)}"
            counts[key] = counts.get(key, 0) + 1

    for body, rate, name in (
        (os.urandom(4 << 20), 512 * 1024, "4 MiB at 512 KiB/s"),
        (big, None, "599 s WAV"),
        (long_wav, None, "120 s recording"),
    ):
        threading.Thread(target=loop, args=(body, rate, name), daemon=True).start()
    return counts


# --------------------------------------------------------------------------- the run


def summarise(records: list[tuple[str, str, int, float]]) -> dict:
    out: dict = {}
    for phase in PHASES:
        rows = [r for r in records if r[0] == phase]
        out[phase] = {}
        for endpoint in sorted({r[1] for r in rows}):
            mine = [r for r in rows if r[1] == endpoint]
            ms = sorted(r[3] * 1000 for r in mine)
            statuses: dict[str, int] = {}
            for r in mine:
                statuses[str(r[2])] = statuses.get(str(r[2]), 0) + 1
            out[phase][endpoint] = {
                "n": len(mine),
                "p50_ms": round(percentile(ms, 50), 1),
                "p95_ms": round(percentile(ms, 95), 1),
                "p99_ms": round(percentile(ms, 99), 1),
                "max_ms": round(ms[-1], 1),
                "within_1s": round(sum(m <= 1000 for m in ms) / len(ms), 4),
                "statuses": statuses,
            }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "http-load.json")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="edge-load-"))
    command = speak("play some jazz music", "slt", tmp)
    short_wav = write_wav(tmp / "short.wav", command.astype(np.float32) / 32768, 16000).read_bytes()
    long_samples = np.resize(command, 119 * 16000)
    long_wav = write_wav(tmp / "long.wav", long_samples.astype(np.float32) / 32768, 16000).read_bytes()
    serve = Serve(tmp)
    stop_normal = threading.Event()
    normals = [Normal(serve.address, short_wav, stop_normal, i * 3) for i in range(4)]
    for n in normals:
        n.start()
    hostile: dict[str, dict] = {}
    rss = {"start": round(serve.rss_mb(), 1)}
    for phase in PHASES:
        for n in normals:
            n.phase = phase
        stop = threading.Event()
        if phase in ("slow clients", "all"):
            hostile[f"{phase}: slow clients"] = slow_clients(serve.address, stop)
        if phase in ("flood", "all"):
            hostile[f"{phase}: flood"] = flood(serve.address, stop)
        if phase in ("long uploads", "all"):
            hostile[f"{phase}: long uploads"] = long_uploads(serve.address, stop, long_wav)
        print(f"{phase} ...", file=sys.stderr, flush=True)
        time.sleep(args.seconds)
        stop.set()
        rss[phase] = round(serve.rss_mb(), 1)
        time.sleep(2)
    stop_normal.set()
    for n in normals:
        n.join(60)
    time.sleep(12)  # the daemon cuts what is left (timeout_s 10)
    rss["end"] = round(serve.rss_mb(), 1)
    code = serve.stop()
    records = [r for n in normals for r in n.records]
    result = {
        "phases_s": args.seconds,
        "normal_clients": len(normals),
        "normal": summarise(records),
        "hostile": hostile,
        "daemon_rss_mb": rss,
        "daemon_exit_code": code,
        "daemon_tracebacks": sum("Traceback" in line for line in serve.log),
        "machine": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for phase, endpoints in result["normal"].items():
        for endpoint, s in endpoints.items():
            print(
                f"{phase:13} {endpoint:14} n={s['n']:5} p50 {s['p50_ms']:7.1f} p99 {s['p99_ms']:7.1f} max {s['max_ms']:7.1f} ms"
                f"  within 1 s {s['within_1s'] * 100:5.1f}%  {s['statuses']}"
            )
    print(json.dumps({"hostile": hostile, "rss": rss}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
