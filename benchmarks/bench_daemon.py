#!/usr/bin/env python3
"""Daemon benchmark: memory over a long run, cold start to READY, HTTP /v1/intent throughput and p99.

Everything runs against ``edge-intent serve`` as a real subprocess, as systemd would run it:

* **soak**: the daemon listens to a PortAudio capture device (an ALSA ``type file`` PCM reading a
  FIFO, the test suite's :class:`FifoMic`) that plays HWU64 *test* sentences spoken by flite
  voices, faster than real time (``--speed``), with PocketSphinx; its RSS (``/proc/PID/status``)
  is read after the 100th and the last utterance. The daemon's /healthz reports audio overflows,
  so a run that played faster than the pipeline could take says so.
* **cold start**: from ``exec`` to the ``READY=1`` the daemon sends on ``NOTIFY_SOCKET`` (models
  loaded, wake word model included, HTTP bound), with the default configuration and a
  microphone; median and worst of ``--starts`` runs.
* **HTTP**: ``POST /v1/intent`` over keep-alive connections from 1 and 4 client threads, HWU64
  test sentences, results published to stdout as usual; throughput and client-side p50/p99.

Writes ``benchmarks/results/daemon.json`` and ``daemon.md`` and prints the table.

    nice -n 10 .venv/bin/python benchmarks/bench_daemon.py                  # 1,000 utterances (~15 min)
    .venv/bin/python benchmarks/bench_daemon.py --utterances 150 --http-requests 300   # a quick look
"""

from __future__ import annotations

import argparse
import difflib
import json
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_outputs import wait_for  # noqa: E402

from edge import datasets  # noqa: E402
from edge.profiler import percentile  # noqa: E402

from speech_helpers import FifoMic, speak  # noqa: E402
from test_daemon import Daemon  # noqa: E402

VOICES = ("slt", "rms")
EXITS: list = []  # every daemon's exit status after SIGTERM (0 expected)
RSS_TARGET_MB = 150.0
GROWTH_TARGET = 0.05
READY_TARGET_S = 2.0


def sentences(rows: list[dict], n: int, seed: int = 5) -> list[dict]:
    return random.Random(seed).sample(rows, min(n, len(rows)))


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024.0
    return out


def stop(daemon: Daemon, exits: list) -> None:
    """SIGTERM; the exit status (or that it did not exit within 15 s and was killed) goes to ``exits``."""
    import subprocess

    try:
        exits.append(daemon.stop(timeout=15))
    except subprocess.TimeoutExpired:
        exits.append("no exit within 15 s of SIGTERM (killed)")
        daemon.kill()


# --------------------------------------------------------------------------- soak


def soak(tmp: Path, test_rows: list[dict], utterances: int, distinct: int, speed: float, env: dict[str, str]) -> dict:
    rows = sentences(test_rows, distinct)
    clips = []
    for i, row in enumerate(rows):
        voice = VOICES[i % len(VOICES)]
        clips.append((row["intent"], speak(row["text"], voice, tmp, lead_s=0.3, tail_s=0.9)))
    mic = FifoMic(tmp, speed=speed)
    # Every utterance is a command (no wake word in front): the live loop's vad activation.
    daemon = Daemon(
        tmp,
        'http: {listen: "127.0.0.1:0"}\nliveloop: {activation: vad}\n',
        env={"ALSA_CONFIG_PATH": str(mic.conf), **env},
    )
    try:
        daemon.wait_note("READY=1")
        wait_for(lambda: "listening on" in daemon.log, 60, "the microphone to open")
        start_rss = proc_status(daemon.proc.pid)
        gold = []
        for n in range(utterances):
            intent, samples = clips[n % len(clips)]
            gold.append(intent)
            last_written = mic.say(samples)
        heard = lambda: [e for e in daemon.events if e["type"] in ("intent", "not_understood")]  # noqa: E731
        curve: dict[int, float] = {}  # results so far -> RSS, sampled every 100 results
        t0 = time.monotonic()
        audio_s = sum(len(clips[n % len(clips)][1]) for n in range(utterances)) / 16000
        deadline = t0 + audio_s / speed * 2 + 120
        while not last_written.is_set() and time.monotonic() < deadline and daemon.proc.poll() is None:
            mark = len(heard()) // 100 * 100
            if mark and mark not in curve:
                curve[mark] = proc_status(daemon.proc.pid)["VmRSS"]
            time.sleep(0.2)
        time.sleep(3.0)  # the last utterance's trailing silence, STT finalisation, classification
        elapsed = time.monotonic() - t0
        end_rss = proc_status(daemon.proc.pid)
        _, health = daemon.request("GET", "/healthz")
        events = heard()
        stop(daemon, EXITS)
    finally:
        daemon.kill()
        mic.close()
    first, last = curve.get(100), end_rss["VmRSS"]
    got = [e["intent"] for e in events]
    in_order = sum(b.size for b in difflib.SequenceMatcher(None, gold, got, autojunk=False).get_matching_blocks())
    return {
        "utterances_played": utterances,
        "events": len(events),
        "distinct_clips": len(clips),
        "speed": speed,
        "audio_s": round(audio_s, 1),
        "elapsed_s": round(elapsed, 1),
        "rss_mb_ready": round(start_rss["VmRSS"], 1),
        "rss_mb_at_100": round(first, 1) if first else None,
        "rss_mb_at_end": round(last, 1),
        "peak_rss_mb": round(end_rss["VmHWM"], 1),
        "rss_mb_every_100_results": {k: round(v, 1) for k, v in sorted(curve.items())},
        "growth_100_to_end": round((last - first) / first, 4) if first else None,
        "audio_overflows": health["microphone"]["overflows"],
        "intent_right_in_order": round(in_order / max(1, utterances), 4),
        "stt": events[0]["transcript"]["engine"] if events else None,
        "daemon_env": env,
    }


# --------------------------------------------------------------------------- cold start


def cold_starts(tmp: Path, runs: int) -> dict:
    times = []
    for i in range(runs):
        run_dir = tmp / f"start{i}"
        run_dir.mkdir()
        mic = FifoMic(run_dir)
        t0 = time.monotonic()
        daemon = Daemon(run_dir, 'http: {listen: "127.0.0.1:0"}\n', env={"ALSA_CONFIG_PATH": str(mic.conf)})
        try:
            daemon.wait_note("READY=1")
            times.append(time.monotonic() - t0)
            stop(daemon, EXITS)
        finally:
            daemon.kill()
            mic.close()
    return {
        "runs": runs,
        "ready_s_median": round(statistics.median(times), 3),
        "ready_s_max": round(max(times), 3),
        "ready_s_all": [round(t, 3) for t in times],
    }


# --------------------------------------------------------------------------- HTTP


def http_throughput(tmp: Path, test_rows: list[dict], requests: int, clients_list: list[int]) -> list[dict]:
    import http.client

    texts = [r["text"] for r in sentences(test_rows, 400, seed=11)]
    daemon = Daemon(tmp, 'http: {listen: "127.0.0.1:0"}\n', "--no-mic")
    out = []
    try:
        daemon.wait_note("READY=1")
        host, port = daemon.url.removeprefix("http://").rsplit(":", 1)

        def client(n: int, offset: int, latencies: list[float]) -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            for i in range(n):
                body = json.dumps({"text": texts[(offset + i) % len(texts)]}).encode()
                t = time.perf_counter()
                conn.request("POST", "/v1/intent", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                latencies.append((time.perf_counter() - t) * 1000.0)
                assert response.status == 200
            conn.close()

        client(50, 0, [])  # warm up
        for clients in clients_list:
            per_client = max(1, requests // clients)
            lists: list[list[float]] = [[] for _ in range(clients)]
            threads = [threading.Thread(target=client, args=(per_client, k * 97, lists[k])) for k in range(clients)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t0
            lat = sorted(x for li in lists for x in li)
            out.append(
                {
                    "clients": clients,
                    "requests": len(lat),
                    "throughput_rps": round(len(lat) / elapsed, 1),
                    "p50_ms": round(percentile(lat, 50), 2),
                    "p99_ms": round(percentile(lat, 99), 2),
                }
            )
        stop(daemon, EXITS)
    finally:
        daemon.kill()
    return out


# --------------------------------------------------------------------------- report


def markdown(r: dict) -> str:
    s, c = r["soak"], r["cold_start"]
    lines = [
        f"Daemon benchmark ({r['host']}, Python {r['python']}; `benchmarks/bench_daemon.py`).",
        "",
        "| measured | result | target |",
        "|---|---|---|",
    ]
    if s:
        growth = s["growth_100_to_end"]
        lines += [
            f"| RSS after {s['events']} utterances ({s['stt']}) | {s['rss_mb_at_end']} MB "
            f"(at READY {s['rss_mb_ready']} MB, peak {s['peak_rss_mb']} MB) | <= {RSS_TARGET_MB:g} MB |",
            f"| RSS growth, 100th -> last utterance | {growth * 100:.2f} % ({s['rss_mb_at_100']} -> {s['rss_mb_at_end']} MB)"
            f" | < {GROWTH_TARGET * 100:g} % |"
            if growth is not None
            else "| RSS growth | n/a | |",
        ]
    lines.append(
        f"| cold start to READY=1 (median of {c['runs']}, worst) | {c['ready_s_median']} s, "
        f"{c['ready_s_max']} s | <= {READY_TARGET_S:g} s |"
    )
    for h in r["http"]:
        lines.append(
            f"| POST /v1/intent, {h['clients']} client(s), keep-alive | {h['throughput_rps']} req/s, "
            f"p50 {h['p50_ms']} ms, p99 {h['p99_ms']} ms | |"
        )
    if s:
        lines += [
            "",
            f"Soak: {s['utterances_played']} utterances ({s['distinct_clips']} distinct clips: HWU64 test "
            f"sentences x flite {', '.join(VOICES)}), {s['audio_s']} s of audio played at {s['speed']}x real time "
            f"through a PortAudio capture device in {s['elapsed_s']} s; {s['events']} results, intent right "
            f"on {s['intent_right_in_order'] * 100:.1f} % (aligned with what was said), "
            f"{s['audio_overflows']} audio overflow(s).",
        ]
    exits = r["exit_statuses"]
    lines += [
        "",
        "Exit after SIGTERM: "
        + ("0 for every run." if all(e == 0 for e in exits) else ", ".join(str(e) for e in exits) + "."),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utterances", type=int, default=1000)
    p.add_argument("--distinct", type=int, default=100, help="distinct spoken clips, played in turn")
    p.add_argument(
        "--speed",
        type=float,
        default=2.0,
        help="how much faster than real time the microphone plays (a busy 2-core host drops audio at 3)",
    )
    p.add_argument(
        "--daemon-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for the soak daemon, e.g. MALLOC_ARENA_MAX=2 as the systemd unit sets",
    )
    p.add_argument("--starts", type=int, default=5)
    p.add_argument("--http-requests", type=int, default=2000)
    p.add_argument("--clients", default="1,4")
    p.add_argument("--skip-soak", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    datasets.add_argument(p)
    args = p.parse_args()
    try:
        test_rows = datasets.read_rows("hwu64", "test.jsonl", args.data)
    except datasets.DataSetMissing as exc:
        sys.exit(f"bench_daemon: {exc}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "soak").mkdir()
        (tmp / "http").mkdir()
        results = {
            "host": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
            "python": platform.python_version(),
            "cold_start": cold_starts(tmp, args.starts),
            "http": http_throughput(
                tmp / "http", test_rows, args.http_requests, [int(c) for c in args.clients.split(",")]
            ),
            "exit_statuses": EXITS,
            "soak": None
            if args.skip_soak
            else soak(
                tmp / "soak",
                test_rows,
                args.utterances,
                args.distinct,
                args.speed,
                dict(kv.split("=", 1) for kv in args.daemon_env),
            ),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "daemon.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (args.out / "daemon.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
