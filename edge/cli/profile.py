"""``edge-profile``: benchmark every backend x precision x thread count of a model on this device.

    edge-profile [--model NAME|PATH] [--out DIR] [--quick] [--save-profile]

The options and the printing; the measuring is :mod:`edge.profiling.engine`'s, the reports
:mod:`edge.profiling.report`'s. Writes ``results.json``, ``report.md`` and ``latency_energy.png``
to ``--out``, prints the table, and with ``--save-profile`` records the best configuration as this
device's local profile override (``edge.profiles.override_path()``), which ``edge-intent`` and the
service then use.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from edge.profiling.engine import (
    FULL,
    QUICK,
    RESULTS_VERSION,
    Config,
    RunSettings,
    choose_best,
    default_threads,
    held_out_sample,
    host_facts,
    package_sample,
    plan_configs,
    run_config,
    save_profile,
    torch_baseline_reason,
    wake_stage,
)
from edge.profiling.report import markdown_report, one_line, text_table, wake_line, write_plot

DESCRIPTION = "edge-profile: benchmark every backend x precision x thread count of a model on this device."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-profile", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", help="model package name or directory (default: the installed default model)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("edge-profile"),
        help="directory for results.json, report.md, latency_energy.png (default: ./edge-profile)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"short runs ({QUICK.runs} runs or {QUICK.min_duration_s:g} s, {QUICK.accuracy_n} accuracy sentences; the baseline at the highest thread count only)",
    )
    p.add_argument("--backends", help="comma-separated backends to try (default: every available one)")
    p.add_argument(
        "--precisions", help="comma-separated precisions to try, e.g. int8,fp32 (default: all the package has)"
    )
    p.add_argument("--threads", help="comma-separated thread counts (default: 1, 2, 4, ... up to the core count)")
    p.add_argument("--runs", type=int, help=f"timed inferences per configuration, at least (default {FULL.runs})")
    p.add_argument(
        "--min-duration",
        type=float,
        help=f"seconds each configuration runs, at least (default {FULL.min_duration_s:g}; MLPerf uses 60)",
    )
    p.add_argument(
        "--max-duration",
        type=float,
        help=f"seconds after which a configuration stops (default {FULL.max_duration_s:g})",
    )
    p.add_argument("--warmup", type=int, help=f"untimed inferences after loading (default {FULL.warmup})")
    p.add_argument(
        "--accuracy-sample", type=int, help=f"held-out sentences for accuracy (default {FULL.accuracy_n}; 0 to skip)"
    )
    p.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="held-out JSONL ({text, intent}) for accuracy and timing sentences "
        "(default: the model package's evaluation sample, eval_sample.jsonl)",
    )
    p.add_argument("--profile", help="device profile name (default: detected)")
    p.add_argument(
        "--energy",
        default="auto",
        choices=["auto", "ina3221", "pi5_pmic", "rapl", "model"],
        help="energy source (default: best available)",
    )
    p.add_argument(
        "--no-baseline", action="store_true", help="skip the PyTorch eager baseline even if torch is installed"
    )
    p.add_argument(
        "--torch-checkpoint",
        type=Path,
        help="PyTorch checkpoint with the package's weights, for the baseline (default: looked up, see report)",
    )
    p.add_argument(
        "--save-profile",
        action="store_true",
        help="write the best configuration as this device's local profile override",
    )
    p.add_argument(
        "--accuracy-tolerance",
        type=float,
        default=0.01,
        help="best = lowest p90 among configurations within this accuracy of the most accurate (default 0.01 = 1 point)",
    )
    p.add_argument("--seed", type=int, default=13, help="seed for the held-out sample")
    p.add_argument(
        "--wake",
        default="hey jarvis",
        metavar="PHRASE",
        help="also measure the wake-word stage's CPU per second of audio for this phrase ('none' to skip)",
    )
    return p


def _csv(value: str | None, cast: Callable[[str], Any] = str) -> list | None:
    if not value:
        return None
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"edge-profile: {value!r}: expected a comma-separated list") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    configs, skipped = plan_configs(
        package.variants, available_backends(), threads, _csv(args.backends), _csv(args.precisions)
    )
    baseline_why = "--no-baseline" if args.no_baseline else torch_baseline_reason()
    if baseline_why is None and (not _csv(args.backends) or "torch" in _csv(args.backends)):
        configs += [Config("torch", "fp32", t) for t in (threads[-1:] if args.quick else threads)]
    elif baseline_why:
        skipped.append({"config": "torch/fp32 (baseline)", "reason": baseline_why})
    if not configs:
        print(
            "edge-profile: nothing to run: " + "; ".join(f"{s['config']}: {s['reason']}" for s in skipped),
            file=sys.stderr,
        )
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
    spec = {
        "model": str(package.dir),
        "profile": detection.profile.name,
        "energy": args.energy,
        "settings": dataclasses.asdict(settings),
        "sample": sample,
        "torch_checkpoint": str(args.torch_checkpoint) if args.torch_checkpoint else None,
    }
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    print(
        f"edge-profile: {package.name} {package.version}, {len(configs)} configurations, profile {detection.profile.name}; "
        f"energy: {selection.source.name}",
        file=sys.stderr,
    )
    rows = []
    # A bar redrawn in place on a terminal; otherwise only the line per finished configuration.
    with (
        tempfile.TemporaryDirectory(prefix="edge-profile-") as workdir,
        tqdm(
            total=len(configs),
            unit="config",
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
            bar_format="{l_bar}{bar:28}| {n:.2f}/{total} {postfix}",
            leave=False,
        ) as bar,
    ):
        for i, config in enumerate(configs):

            def progress(fraction: float, phase: str, i: int = i, label: str = config.label) -> None:
                bar.n = i + fraction
                bar.set_postfix_str(f"{label} {phase}")

            progress(0.0, "starting")
            row = run_config(config, spec, Path(workdir), progress)
            bar.write(f"[{i + 1}/{len(configs)}] {config.label}: {one_line(row)}", file=sys.stderr)
            if row.get("skipped"):
                skipped.append(
                    {"config": config.label + (" (baseline)" if config.baseline else ""), "reason": row["error"]}
                )
            else:
                rows.append(row)
    best = choose_best(rows, args.accuracy_tolerance)
    wake = wake_stage(args.wake, 5.0 if args.quick else 30.0)
    args.out.mkdir(parents=True, exist_ok=True)
    method = ", ".join(sorted({r["energy_method"] for r in rows if r.get("ok")})) or selection.source.name
    plot = write_plot(rows, args.out / "latency_energy.png", method)
    report = {
        "version": RESULTS_VERSION,
        "started": started,
        "model": {"name": package.name, "version": package.version, "dir": str(package.dir)},
        "host": host_facts(detection.reason, detection.profile.name),
        "settings": {
            **dataclasses.asdict(settings),
            "quick": args.quick,
            "threads": threads,
            "accuracy_tolerance": args.accuracy_tolerance,
            "seed": args.seed,
        },
        "accuracy_sample": {"n": len(sample), "source": sample_source if sample else sample_why},
        "energy_source": energy_description,
        "configs": rows,
        "skipped": skipped,
        "best": {
            "config": best["config"],
            "backend": best["backend"],
            "precision": best["precision"],
            "threads": best["threads"],
        }
        if best
        else None,
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
