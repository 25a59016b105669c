"""``edge-profile``: planning, reporting, and real ``--quick`` runs.

Two packages are profiled: the tiny ONNX package of tests/tiny_package.py (real onnxruntime, fp32
and int8), which keeps the test quick and independent of training; and the shipped
``models/squeezebert-hwu64`` when it is present. The tiny package is trained on HWU64 and scored on
its test split (../shared/data); the shipped one on the evaluation sample it carries.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml

from edge.package import ModelPackage, Variant, write_manifest
from edge.profiling import engine

from conftest import data_file, int8_onnx_copy
from tiny_package import tiny_package  # noqa: F401  (a fixture)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models" / "squeezebert-hwu64"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    # Every chunk's CRC is right and the image data inflates to height rows of 1 + 3*width bytes.
    pos, idat = 8, b""
    while pos < len(data):
        n, k = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])[0] == zlib.crc32(k + body) & 0xFFFFFFFF
        if k == b"IDAT":
            idat += body
        pos += 12 + n
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width)
    return width, height


def run_cli(args: list[str], tmp_path: Path, **env) -> subprocess.CompletedProcess:
    environ = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "EDGE_PROFILE_OVERRIDE": str(tmp_path / "override.yaml"),
        "EDGE_PROFILE": "generic-x86_64",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "edge.cli.profile", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,
        timeout=600,
    )


def test_quick_run_writes_json_markdown_png_and_saves_profile(tiny_package, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(
        [
            "--model",
            str(tiny_package),
            "--out",
            str(out),
            "--quick",
            "--threads",
            "1,2",
            "--no-baseline",
            "--save-profile",
            "--data",
            str(data_file("hwu64", "test.jsonl")),
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "results.json").read_text())
    labels = [r["config"] for r in report["configs"]]
    assert sorted(labels) == ["onnx/fp32 t1", "onnx/fp32 t2", "onnx/int8 t1", "onnx/int8 t2"]
    for row in report["configs"]:
        assert row["ok"], row
        lat = row["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert row["runs"] >= engine.QUICK.runs and row["duration_s"] >= engine.QUICK.min_duration_s
        assert row["throughput_per_s"] == pytest.approx(row["runs"] / row["duration_s"], rel=0.01)
        assert row["energy_method"] == "model" and row["energy_mj_per_inference"] > 0
        assert (
            row["accuracy_n"] == engine.QUICK.accuracy_n and 0.3 < row["accuracy"] <= 1.0
        )  # naive Bayes beats chance (1/64)
        assert row["peak_rss_mb"] > 10 and row["load_ms"] > 0
        assert set(row["stages_ms_mean"]) >= {"tokenize", "infer", "decode", "total"}
    assert report["skipped"] == [{"config": "torch/fp32 (baseline)", "reason": "--no-baseline"}]
    # Markdown has the table with every configuration, and links the plot.
    md = (out / "report.md").read_text()
    for label in labels:
        assert f"| {label} |" in md
    assert "![latency vs energy per configuration](latency_energy.png)" in md
    assert "estimate from the device profile" in md  # model energy is never passed off as a measurement
    width, height = png_size(out / "latency_energy.png")
    assert (width, height) == (960, 600)
    # The printed table has a line per configuration.
    for label in labels:
        assert any(line.startswith(label) for line in proc.stdout.splitlines())
    # The best configuration became the local profile override, in the schema edge.profiles reads.
    override = yaml.safe_load((tmp_path / "override.yaml").read_text())
    best = report["best"]
    assert report["saved_profile"] == str(tmp_path / "override.yaml")
    assert (override["backend"], override["precision"], override["threads"]) == (
        best["backend"],
        best["precision"],
        best["threads"],
    )
    assert override["base_profile"] == "generic-x86_64"
    from edge.profiles import apply_local_override, load_profile

    os.environ["EDGE_PROFILE_OVERRIDE"] = str(tmp_path / "override.yaml")
    try:
        applied = apply_local_override(load_profile("generic-x86_64"))
    finally:
        del os.environ["EDGE_PROFILE_OVERRIDE"]
    assert (applied.backends[0], applied.precision, applied.threads) == (
        best["backend"],
        best["precision"],
        best["threads"],
    )


def test_failing_configuration_is_a_row_not_a_crash(tiny_package, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_package, broken)
    (broken / "model.fp32.onnx").write_bytes(b"not an onnx file")
    manifest = json.loads((broken / "manifest.json").read_text())
    write_manifest(broken, manifest)  # checksums now match the broken file: the runtime must refuse it
    out = tmp_path / "out"
    proc = run_cli(
        [
            "--model",
            str(broken),
            "--out",
            str(out),
            "--quick",
            "--threads",
            "1",
            "--no-baseline",
            "--accuracy-sample",
            "10",
            "--data",
            str(data_file("hwu64", "test.jsonl")),
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["config"]: r for r in json.loads((out / "results.json").read_text())["configs"]}
    assert rows["onnx/int8 t1"]["ok"]
    assert not rows["onnx/fp32 t1"]["ok"] and "cannot load" in rows["onnx/fp32 t1"]["error"]
    assert "onnx/fp32 t1  failed:" in proc.stdout
    assert "| onnx/fp32 t1 | failed:" in (out / "report.md").read_text()


def test_bad_model_is_a_clear_error(tmp_path):
    proc = run_cli(["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "out"), "--quick"], tmp_path)
    assert proc.returncode == 2
    assert "edge-profile:" in proc.stderr and "not a model package" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.native_speed
@pytest.mark.skipif(not (SHIPPED / "manifest.json").is_file(), reason="models/squeezebert-hwu64 is not built yet")
def test_quick_run_on_the_shipped_model_covers_every_runnable_configuration(tmp_path):
    from edge.backends import available_backends
    from edge.package import ModelPackage

    out = tmp_path / "out"
    proc = run_cli(["--out", str(out), "--quick", "--threads", "1"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "results.json").read_text())
    package = ModelPackage.load(SHIPPED)
    available = available_backends()
    expected = {f"{v.backend}/{v.precision} t1" for v in package.variants if available[v.backend] is None}
    ran = {r["config"] for r in report["configs"] if not r["baseline"]}
    not_run = {s["config"] for s in report["skipped"]}
    assert expected <= ran | not_run
    assert all(r["ok"] for r in report["configs"]), [r for r in report["configs"] if not r["ok"]]
    assert all(r["accuracy"] > 0.8 for r in report["configs"])
    # Scored on the evaluation sample the package carries (no --data): commands written for its intents.
    assert report["accuracy_sample"]["n"] == engine.QUICK.accuracy_n
    assert report["accuracy_sample"]["source"].startswith("squeezebert-hwu64's evaluation sample: ")
    png_size(out / "latency_energy.png")
    baseline = [r for r in report["configs"] if r["baseline"]] + [
        s for s in report["skipped"] if "baseline" in s["config"]
    ]
    assert baseline, "the PyTorch baseline is neither in the table nor explained"


# --- units ---------------------------------------------------------------------------------------


def test_default_threads():
    assert engine.default_threads(1) == [1]
    assert engine.default_threads(2) == [1, 2]
    assert engine.default_threads(4) == [1, 2, 4]
    assert engine.default_threads(6) == [1, 2, 4, 6]


def test_plan_configs_skips_unavailable_backends_with_reason():
    variants = [Variant("onnx", "int8", "a"), Variant("onnx", "fp32", "b"), Variant("tflite", "int8", "c")]
    configs, skipped = engine.plan_configs(variants, {"onnx": None, "tflite": "no interpreter"}, [1, 2], None, None)
    assert [c.label for c in configs] == ["onnx/int8 t1", "onnx/int8 t2", "onnx/fp32 t1", "onnx/fp32 t2"]
    assert skipped == [{"config": "tflite/int8", "reason": "no interpreter"}]
    configs, _ = engine.plan_configs(variants, {"onnx": None, "tflite": None}, [2], ["tflite"], ["int8"])
    assert [c.label for c in configs] == ["tflite/int8 t2"]


def test_choose_best_prefers_fast_among_accurate():
    def row(config, p90, acc, baseline=False, ok=True):
        backend, rest = config.split("/")
        return {
            "config": config,
            "backend": backend,
            "precision": rest,
            "threads": 1,
            "baseline": baseline,
            "ok": ok,
            "latency_ms": {"p90": p90},
            "accuracy": acc,
            "energy_mj_per_inference": 1.0,
        }

    rows = [
        row("onnx/fp32", 9.0, 0.92),
        row("onnx/int8", 4.0, 0.915),
        row("tflite/int8", 2.0, 0.70),
        row("torch/fp32", 1.0, 0.95, baseline=True),
        row("x/y", 0.5, 0.99, ok=False),
    ]
    assert engine.choose_best(rows, 0.01)["config"] == "onnx/int8"  # tflite is fast but wrong; torch is not a runtime
    assert engine.choose_best(rows, 0.0)["config"] == "onnx/fp32"
    assert engine.choose_best([], 0.01) is None


def test_held_out_sample_is_seeded_and_filtered(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"text": f"t{i}", "intent": "a" if i % 2 else "zz"}) for i in range(50)))
    a, why = engine.held_out_sample(data, ["a"], 10, seed=1)
    b, _ = engine.held_out_sample(data, ["a"], 10, seed=1)
    assert why is None and a == b and len(a) == 10 and all(intent == "a" for _, intent in a)
    assert engine.held_out_sample(data, ["b"], 10, 1) == ([], f"{data}: no sentence has an intent this model knows")
    assert engine.held_out_sample(tmp_path / "missing.jsonl", ["a"], 10, 1)[1].endswith(
        "not found; accuracy is not measured"
    )
    data.write_text("not json\n")
    with pytest.raises(SystemExit, match=r"d.jsonl:1: expected a JSON object"):
        engine.held_out_sample(data, ["a"], 10, 1)
    shipped = ModelPackage.load(SHIPPED)
    c, why = engine.package_sample(shipped, 10, seed=1)
    assert why is None and c == engine.package_sample(shipped, 10, seed=1)[0] and len(c) == 10
    assert c != engine.package_sample(shipped, 10, seed=2)[0] and {i for _, i in c} <= set(shipped.labels)


def test_package_without_evaluation_sample_runs_and_says_accuracy_is_not_measured(tmp_path):
    bare = int8_onnx_copy(tmp_path / "bare")
    out = tmp_path / "out"
    proc = run_cli(
        [
            "--model",
            str(bare),
            "--out",
            str(out),
            "--quick",
            "--threads",
            "1",
            "--no-baseline",
            "--wake",
            "none",
            "--runs",
            "5",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "carries no evaluation sample; accuracy is not measured (give held-out sentences with --data FILE)"
        in proc.stderr
    )
    report = json.loads((out / "results.json").read_text())
    assert report["accuracy_sample"]["n"] == 0 and "--data FILE" in report["accuracy_sample"]["source"]
    assert [r["accuracy"] for r in report["configs"]] == [None]
