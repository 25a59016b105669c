"""Profiler overhead per inference against the classification it measures (target: <= 3 %).

    nice -n 10 .venv/bin/python benchmarks/bench_profiler.py [--model NAME|PATH] [--pairs 3000]

Measured side by side in one run, with the same classifier and sentences:

1. paired: each sentence is classified twice in a row, once plainly and once inside
   ``profiler.track()`` + ``rec.finish(result)`` (the order alternates), and the difference of the
   two wall times is the profiler's cost *in place*: cold caches after the runtime included, and the
   batched JSON-lines writing spread over the inferences it belongs to. The headline is the 10 %
   trimmed mean of those differences (the trimming drops scheduler hiccups on either side) divided
   by the median plain classification;
2. isolated: ``track`` + ``finish`` around an empty body, many times in a loop: the profiler's own
   instructions with warm caches, for the setups a device may have (model energy with a file,
   INA3221 on a recorded Jetson tree with temperature and frequency on every record, memory only,
   sampled out, disabled). The gap between (1) and (2) is what running any Python between two
   inferences costs on this CPU.

Results go to benchmarks/results/profiler.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge.classifier import IntentClassifier  # noqa: E402
from edge.energy import ModelSource, probe_ina3221  # noqa: E402
from edge.profiler import Profiler, ProfilerSettings  # noqa: E402
from edge.thermal import ThermalReader  # noqa: E402

TARGET_PERCENT = 3.0
SENTENCES = [
    "wake me up at seven tomorrow morning",
    "turn off the kitchen lights",
    "what's the weather like in paris",
    "play some jazz",
    "remind me to call mom on friday",
    "how many calories in an apple",
    "set the volume to ten",
    "what is on my calendar today",
]


def per_call_us(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def isolated_cost_us(profiler: Profiler, result, n: int) -> float:
    def one():
        with profiler.track() as rec:
            rec.finish(result)

    per_call_us(one, 200)  # warm caches and the file
    return statistics.median(per_call_us(one, n) for _ in range(5))


def trimmed_mean(values: list[float], cut: float = 0.1) -> float:
    ordered = sorted(values)
    k = int(len(ordered) * cut)
    kept = ordered[k : len(ordered) - k] or ordered
    return statistics.fmean(kept)


def paired(clf, profiler: Profiler, pairs: int) -> tuple[list[float], list[float]]:
    """(plain wall times, tracked minus plain per pair), both in µs."""
    plain, diffs = [], []
    for i in range(pairs):
        text = SENTENCES[i % len(SENTENCES)]
        t = [0.0, 0.0]
        for mode in (0, 1) if i % 2 else (1, 0):
            t0 = time.perf_counter()
            if mode:
                with profiler.track() as rec:
                    rec.finish(clf.classify(text))
            else:
                clf.classify(text)
            t[mode] = (time.perf_counter() - t0) * 1e6
        plain.append(t[0])
        diffs.append(t[1] - t[0])
    return plain, diffs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model package (default: the installed default)")
    p.add_argument("--backend", help="backend (default: the device profile's choice)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pairs", type=int, default=5000, help="sentences classified both ways, per setup")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds the pairs are split into")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)

    clf = IntentClassifier.load(args.model, backend=args.backend, threads=args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-profiler-"))
    try:
        for s in SENTENCES * 60:  # warm up the model, the tokenizer and the CPU's clocks
            clf.classify(s)
        setups = {
            "model energy, JSON-lines file": Profiler(
                ProfilerSettings(path=str(tmp / "profile.jsonl"), energy="model"), energy=ModelSource(8.0, 4.0)
            ),
            "model energy, memory only": Profiler(ProfilerSettings(energy="model"), energy=ModelSource(8.0, 4.0)),
        }
        for prof in setups.values():
            prof.bind(clf)
        # Rounds interleave the setups so that slow phases of a shared machine hit each alike; a
        # setup's figure is the median over rounds of the round's trimmed mean (and median).
        rounds = {name: {"median_us": [], "trimmed_mean_us": []} for name in setups}
        plain_all: list[float] = []
        for _ in range(args.rounds):
            for name, prof in setups.items():
                plain, diffs = paired(clf, prof, max(1, args.pairs // args.rounds))
                plain_all += plain
                rounds[name]["median_us"].append(statistics.median(diffs))
                rounds[name]["trimmed_mean_us"].append(trimmed_mean(diffs))
        in_place = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in rounds.items()}
        spread = {
            name: [round(min(r["trimmed_mean_us"]), 1), round(max(r["trimmed_mean_us"]), 1)]
            for name, r in rounds.items()
        }
        classify_us = statistics.median(plain_all)
        record_bytes = len(json.dumps(setups["model energy, JSON-lines file"].last, separators=(",", ":"))) + 1
        result = clf.classify(SENTENCES[0])

        isolated = {}
        isolated["model energy, JSON-lines file"] = isolated_cost_us(
            setups["model energy, JSON-lines file"], result, 2000
        )
        jetson = tmp / "jetson"
        shutil.copytree(REPO / "tests" / "fixtures" / "sysfs" / "jetson-orin-nano-jp6", jetson)
        ina = Profiler(
            ProfilerSettings(path=str(tmp / "jetson.jsonl"), system_interval_s=0.0),
            energy=probe_ina3221(jetson),
            thermal=ThermalReader(jetson),
        )
        ina.bind(clf)
        isolated["INA3221 + temperature + frequency every record (recorded Jetson tree), file"] = isolated_cost_us(
            ina, result, 2000
        )
        isolated["model energy, memory only"] = isolated_cost_us(setups["model energy, memory only"], result, 2000)
        sampled = Profiler(ProfilerSettings(energy="model", sample_every=10**9), energy=ModelSource(8.0, 4.0))
        sampled.track()  # the first inference is always recorded; measure the skipped ones
        isolated["sampled out (sample_every)"] = isolated_cost_us(sampled, result, 20000)
        off = Profiler(ProfilerSettings(enabled=False))
        isolated["disabled"] = isolated_cost_us(off, result, 20000)
        for prof in (*setups.values(), ina, sampled, off):
            prof.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    headline_us = in_place["model energy, JSON-lines file"]["trimmed_mean_us"]
    percent = headline_us / classify_us * 100.0
    pct = lambda us: round(us / classify_us * 100.0, 3)  # noqa: E731
    report = {
        "host": {
            "machine": platform.machine(),
            "python": platform.python_version(),
            "model": clf.model_label,
            "backend": clf.backend_label,
            "threads": args.threads,
            "backend_detail": clf.backend.describe(),
        },
        "classify_median_us": round(classify_us, 1),
        "pairs_per_setup": args.pairs,
        "in_place_us": {k: {m: round(v, 2) for m, v in d.items()} for k, d in in_place.items()},
        "in_place_percent": {k: {m: pct(v) for m, v in d.items()} for k, d in in_place.items()},
        "in_place_trimmed_mean_range_over_rounds_us": spread,
        "isolated_us": {k: round(v, 2) for k, v in isolated.items()},
        "isolated_percent": {k: pct(v) for k, v in isolated.items()},
        "record_bytes": record_bytes,
        "target_percent": TARGET_PERCENT,
        "headline_percent": round(percent, 3),
        "meets_target": percent <= TARGET_PERCENT,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profiler.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Profiler overhead per inference",
        "",
        f"`{clf.model_label}` on `{clf.backend_label}`, {args.threads} thread(s), {platform.machine()}, Python "
        f"{platform.python_version()}; {args.pairs} paired inferences per setup in {args.rounds} interleaved rounds "
        "(in place: median over rounds; the range over rounds is in profiler.json).",
        "",
        "| measured | per inference | % of classify |",
        "|---|---:|---:|",
        f"| classify (median) | {classify_us:.1f} µs | 100 |",
    ]
    for name, d in in_place.items():
        lines.append(
            f"| in place, {name}: trimmed mean (median) | {d['trimmed_mean_us']:.1f} ({d['median_us']:.1f}) µs "
            f"| {pct(d['trimmed_mean_us']):.2f} ({pct(d['median_us']):.2f}) |"
        )
    for name, us in isolated.items():
        lines.append(f"| isolated, {name} | {us:.1f} µs | {pct(us):.2f} |")
    lines += [
        "",
        f"Headline: on this host (model energy, records of {record_bytes} bytes written to a JSON-lines file in "
        f"batches) the profiler adds {headline_us:.1f} µs to an inference = **{percent:.2f} %** of the median "
        f"classification (target <= {TARGET_PERCENT:g} %): {'met' if percent <= TARGET_PERCENT else 'NOT met'}. "
        f"Round to round it ranged {spread['model energy, JSON-lines file'][0]}-{spread['model energy, JSON-lines file'][1]} µs.",
    ]
    (args.out / "profiler.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:]))
    return 0 if percent <= TARGET_PERCENT else 1


if __name__ == "__main__":
    sys.exit(main())
