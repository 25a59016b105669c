"""``edge-profile``'s reports: the table on the terminal, ``report.md`` and the latency/energy plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


TABLE_COLUMNS = (
    "config",
    "load ms",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "mean ms",
    "stdev ms",
    "inf/s",
    "peak RSS MB",
    "mJ/inf",
    "accuracy",
)


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        label = r["config"] + (" (baseline)" if r["baseline"] else "")
        if not r.get("ok"):
            out.append([label, "failed: " + r.get("error", "?")[:90]] + [""] * (len(TABLE_COLUMNS) - 2))
            continue
        lat = r["latency_ms"]
        acc = "-" if r.get("accuracy") is None else f"{r['accuracy'] * 100:.1f}%"
        out.append(
            [
                label,
                _fmt(r["load_ms"], 0),
                _fmt(lat["p50"]),
                _fmt(lat["p90"]),
                _fmt(lat["p99"]),
                _fmt(lat["mean"]),
                _fmt(lat["stdev"]),
                _fmt(r["throughput_per_s"], 1),
                _fmt(r["peak_rss_mb"], 0),
                _fmt(r["energy_mj_per_inference"], 1),
                acc,
            ]
        )
    return out


def text_table(rows: list[dict[str, Any]]) -> str:
    body = table_rows(rows)
    ok = [b for b in body if not b[1].startswith("failed:")]
    widths = [
        max([len(c)] + [len(b[i]) for b in ok] + ([len(b[0]) for b in body] if i == 0 else []))
        for i, c in enumerate(TABLE_COLUMNS)
    ]
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
        + (
            "A `model` figure is an estimate from the device profile (idle W x wall time + W per busy core x CPU time), "
            "not a measurement."
            if any(m.startswith("model") for m in methods)
            else ""
        ),
    ]
    if report.get("best"):
        b = report["best"]
        lines += [
            "",
            f"**Best:** `{b['config']}` — lowest p90 among configurations within "
            f"{s['accuracy_tolerance'] * 100:g} percentage points of accuracy of the most accurate.",
        ]
    if report.get("saved_profile"):
        lines.append(f"Saved as this device's profile override: `{report['saved_profile']}`.")
    notes = [f"- `{k['config']}`: not run — {k['reason']}" for k in report["skipped"]]
    notes += [
        f"- `{r['config']}`: {n}"
        for r in rows
        for n in ([r["notes"]] if isinstance(r.get("notes"), str) else r.get("notes") or [])
    ]
    notes += [f"- `{r['config']}`: {r['describe']}" for r in rows if r.get("describe")]
    notes += [f"- `{r['config']}`: throttling {r['throttled']}" for r in rows if r.get("throttled")]
    if notes:
        lines += ["", "## Notes", ""] + notes
    if report.get("wake"):
        lines += ["", wake_line(report["wake"])]
    if report.get("plot"):
        lines += ["", f"![latency vs energy per configuration]({report['plot']})"]
    return "\n".join(lines) + "\n"


def wake_line(wake: dict[str, Any]) -> str:
    if wake.get("error"):
        return f"Wake stage ({', '.join(wake['phrases'])}): not measured — {wake['error']}"
    return (
        f"Wake stage (`{wake['engine']}`, {', '.join(wake['phrases'])}): {wake['cpu_per_audio_s']:.4f} CPU s per "
        f"second of audio ({wake['audio_s']:g} s of speech-shaped noise, this thread)."
    )


def write_plot(rows: list[dict[str, Any]], path: Path, method: str) -> Path | None:
    from edge.pngplot import scatter

    points = []
    for r in rows:
        if not r.get("ok") or r.get("energy_mj_per_inference") is None:
            continue
        acc = "" if r.get("accuracy") is None else f"  acc {r['accuracy'] * 100:.1f}%"
        points.append(
            {
                "x": r["latency_ms"]["p90"],
                "y": r["energy_mj_per_inference"],
                "label": r["config"] + acc,
                "group": "torch (baseline)" if r["baseline"] else r["backend"],
            }
        )
    if not points:
        return None
    return scatter(
        points,
        path,
        title="edge-profile: latency vs energy per configuration",
        xlabel="p90 latency per inference (ms)",
        ylabel=f"energy per inference (mJ, {method})",
    )


def one_line(row: dict[str, Any]) -> str:
    if row.get("skipped"):
        return f"not run: {row['error']}"
    if not row.get("ok"):
        return f"failed: {row['error']}"
    acc = "-" if row.get("accuracy") is None else f"{row['accuracy'] * 100:.1f}%"
    return (
        f"p90 {row['latency_ms']['p90']:.2f} ms, {_fmt(row['energy_mj_per_inference'], 1)} mJ "
        f"({row['energy_method']}), accuracy {acc}"
    )
