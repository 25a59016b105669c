"""The per-inference profiler: records, sensors and their failure, rotation, sampling, summaries."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from edge import energy
from edge.profiler import NULL_TRACKER, Profiler, ProfilerSettings, RotatingJsonLines
from edge.profiles import Power
from edge.result import Result
from edge.settings import SettingsError, from_mapping
from edge.thermal import ThermalReader

from tiny_package import tiny_package  # noqa: F401  (a fixture)

FIXTURES = Path(__file__).parent / "fixtures" / "sysfs"
ORIN = "jetson-orin-nano-jp6"
ORIN_HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"


def busy(n: int = 20_000) -> int:
    return sum(i * i for i in range(n))


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def result(text: str = "wake me up at seven") -> Result:
    return Result(
        text=text,
        intent="alarm_set",
        confidence=0.9,
        guess="alarm_set",
        guess_confidence=0.9,
        latency_ms={"tokenize": 0.1, "infer": 2.0, "decode": 0.2, "total": 2.3},
        backend="onnx/int8",
        model="squeezebert-hwu64",
    )


def model_profiler(tmp_path=None, **settings) -> Profiler:
    power = Power(idle_w=3.0, active_w_per_core=2.0)
    return Profiler(
        ProfilerSettings(energy="model", **settings), power=power, thermal=ThermalReader(tmp_path or "/nonexistent")
    )


def test_record_has_every_field_and_model_energy_matches_its_inputs(tmp_path):
    path = tmp_path / "profile.jsonl"
    prof = model_profiler(tmp_path, path=str(path))
    prof.bind(model="squeezebert-hwu64@1.0.0", backend="onnx", precision="int8", threads=2)
    r = result()
    with prof.track() as rec:
        busy()
        rec.finish(r, seq_len=7, stages_ms={"stt": 120.0})
    prof.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record == prof.last
    assert record["id"] == r.id
    assert (record["model"], record["backend"], record["precision"], record["threads"]) == (
        "squeezebert-hwu64@1.0.0",
        "onnx",
        "int8",
        2,
    )
    assert record["seq_len"] == 7
    assert record["stages_ms"] == {"tokenize": 0.1, "infer": 2.0, "decode": 0.2, "total": 2.3, "stt": 120.0}
    assert record["wall_ms"] > 0 and record["cpu_ms"] > 0
    assert record["energy_method"] == "model"
    # idle 3 W x wall + 2 W x CPU time, in mJ (W x ms = mJ)
    assert record["energy_mj"] == pytest.approx(3.0 * record["wall_ms"] + 2.0 * record["cpu_ms"], abs=0.01)
    page_mb = os.sysconf("SC_PAGE_SIZE") / 1_048_576
    rss_now = int(Path("/proc/self/statm").read_text().split()[1]) * page_mb
    assert record["rss_mb"] == pytest.approx(rss_now, rel=0.2)
    assert record["temp_c"] is None and record["freq_mhz"] is None
    assert "text" not in record and "energy_note" not in record
    assert abs(record["ts"] - r.timestamp) < 5


def test_measured_energy_temperature_and_frequency_from_recorded_jetson(tmp_path):
    root = shutil.copytree(FIXTURES / ORIN, tmp_path / "root")
    prof = Profiler(ProfilerSettings(), power=Power(idle_w=4.5, active_w_per_core=0.7, sensor="ina3221"), root=root)
    assert prof.energy.name == "ina3221"
    outer_start = time.perf_counter()
    with prof.track(model="m") as rec:
        spin(0.05)
        rec.finish(result())
    outer_ms = (time.perf_counter() - outer_start) * 1000
    first = prof.last
    assert first["energy_method"] == "ina3221"
    assert (first["temp_c"], first["freq_mhz"]) == (45.5, 1510.4)
    vdd_in_mw = 5040 * 957 / 1000  # the fixture's VDD_IN, constant here: energy = P x t
    # The two sensor reads bracket the timed block and sit inside the `with`: the energy's interval lies between.
    powered_ms = first["energy_mj"] / vdd_in_mw * 1000
    assert first["wall_ms"] * 0.999 <= powered_ms <= outer_ms * 1.001
    # The sensor stops answering mid-run: the record says so and the model takes over.
    (root / ORIN_HWMON / "curr1_input").write_text("")
    with prof.track(model="m") as rec:
        busy()
    failed = prof.last
    assert failed["energy_method"] == "model"
    assert "ina3221 stopped answering" in failed["energy_note"] and "using the model" in failed["energy_note"]
    assert failed["energy_mj"] == pytest.approx(4.5 * failed["wall_ms"] + 0.7 * failed["cpu_ms"], abs=0.01)
    with prof.track(model="m"):
        busy()
    assert prof.last["energy_method"] == "model" and "energy_note" in prof.last
    assert prof.summary()["energy_method"] == ["ina3221", "model"]
    prof.close()


def test_exception_inside_track_is_recorded_and_propagates(tmp_path):
    prof = model_profiler(tmp_path)
    with pytest.raises(ZeroDivisionError):
        with prof.track():
            _ = 1 / 0
    assert prof.last["error"] == "ZeroDivisionError"
    assert prof.summary()["errors"] == 1


def test_disabled_and_sampled(tmp_path):
    off = Profiler(ProfilerSettings(enabled=False, path=str(tmp_path / "off.jsonl")))
    assert off.track() is NULL_TRACKER
    with off.track() as rec:
        rec.finish(result())
    assert off.recorded == 0 and not (tmp_path / "off.jsonl").exists()
    assert off.summary()["count"] == 0

    sampled = model_profiler(tmp_path, sample_every=3)
    kept = []
    for i in range(10):
        with sampled.track() as rec:
            rec.finish(None, n=i)
        if rec is not NULL_TRACKER:
            kept.append(sampled.last["n"])
    assert kept == [0, 3, 6, 9]
    assert sampled.recorded == 4


def test_rotation_keeps_total_bytes_under_the_cap_and_newest_records(tmp_path):
    path = tmp_path / "logs" / "profile.jsonl"
    prof = model_profiler(tmp_path, path=str(path), max_file_bytes=4096, max_total_bytes=3 * 4096 + 1000)
    for i in range(400):
        with prof.track() as rec:
            rec.finish(None, n=i)
        files = [path] + prof.writer.rotated()
        assert sum(f.stat().st_size for f in files) <= 3 * 4096 + 1000
        assert all(f.stat().st_size <= 4096 for f in files)
    prof.close()
    files = [path] + prof.writer.rotated()
    assert 2 <= len(files) <= 4
    # Oldest file first: the kept records are the newest ones, contiguous and in order.
    numbers = [json.loads(line)["n"] for f in reversed(files) for line in f.read_text().splitlines()]
    assert numbers == list(range(numbers[0], 400))
    assert numbers[0] > 0  # older records were deleted to respect the cap


def test_records_are_written_in_batches_and_when_idle(tmp_path):
    path = tmp_path / "p.jsonl"
    prof = model_profiler(tmp_path, path=str(path), flush_every=5, flush_interval_s=0.3)
    for i in range(7):
        with prof.track() as rec:
            rec.finish(None, n=i)
    # A batch of 5 went out at once; the other 2 wait (the file is written between inferences, not during).
    assert [json.loads(line)["n"] for line in path.read_text().splitlines()] == [0, 1, 2, 3, 4]
    assert prof.last["n"] == 6  # the latest record is readable before it is written
    # No more inferences come: the idle flusher writes the rest within the interval.
    deadline = time.monotonic() + 5
    while len(path.read_text().splitlines()) < 7 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [json.loads(line)["n"] for line in path.read_text().splitlines()] == list(range(7))
    prof.close()


def test_rotation_when_cap_holds_only_one_file(tmp_path):
    path = tmp_path / "p.jsonl"
    writer = RotatingJsonLines(path, 4096, 4096)
    line = b'{"x": "' + b"a" * 90 + b'"}\n'
    for _ in range(200):
        writer.write(line)
        assert path.stat().st_size <= 4096
    assert writer.rotated() == []  # no room for a rotated copy beside a full live file
    writer.write(b"x" * 5000 + b"\n")  # a line larger than a file is dropped, not written
    assert writer.dropped == 1
    writer.close()


def test_leftover_oversized_file_is_rotated_at_start(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"old": 1}\n' * 1000)  # 11 000 bytes from a run with a larger limit
    writer = RotatingJsonLines(path, 4096, 20_000)
    assert path.stat().st_size == 0 and writer.rotated()[0].stat().st_size == 11_000
    writer.close()


def test_unwritable_log_does_not_break_inference(tmp_path, caplog):
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is not available")
    prof = model_profiler(tmp_path, path="/dev/full")  # every write fails with ENOSPC
    with caplog.at_level(logging.WARNING, logger="edge.profiler"):
        for _ in range(3):
            with prof.track() as rec:
                rec.finish(result())
    assert prof.recorded == 3 and prof.summary()["records_dropped"] == 3
    warnings = [r for r in caplog.records if "cannot write /dev/full" in r.getMessage()]
    assert len(warnings) == 1  # said once, not per record


def test_summary_percentiles_and_window(tmp_path):
    prof = model_profiler(tmp_path, window=50)
    for i in range(80):
        with prof.track():
            busy(random.Random(i).randint(1000, 30_000))
    summary = prof.summary()
    walls = [row[0] for row in prof.window]
    assert summary["count"] == 50 and summary["recorded_total"] == 80
    for q in (50, 90, 99):
        assert summary["latency_ms"][f"p{q}"] == pytest.approx(np.percentile(walls, q), abs=1e-3)
    assert summary["energy_mj_mean"] == pytest.approx(np.mean([row[1] for row in prof.window]), abs=1e-3)
    text = prof.metrics_text()
    values = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    # Base units: seconds and joules beside the summary's milliseconds and millijoules.
    assert values['edge_inference_latency_seconds{quantile="0.9"}'] == pytest.approx(
        summary["latency_ms"]["p90"] / 1000
    )
    assert values['edge_inference_energy_joules{method="model"}'] == pytest.approx(summary["energy_mj_mean"] / 1000)
    assert values["edge_inference_latency_seconds_count"] == 50
    assert values["edge_inferences_profiled_total"] == 80


def test_settings_are_validated_with_file_and_key():
    ok = from_mapping(ProfilerSettings, {"sample_every": 10, "path": "/tmp/p.jsonl"}, source="edge.yaml")
    assert ok.sample_every == 10 and ok.enabled
    with pytest.raises(SettingsError, match=r"edge.yaml: profiler.sample_evry: unknown key"):
        from_mapping(ProfilerSettings, {"sample_evry": 10}, source="edge.yaml", key="profiler")
    with pytest.raises(SettingsError, match="sample_every: 0 is out of range"):
        from_mapping(ProfilerSettings, {"sample_every": 0}, source="edge.yaml")
    with pytest.raises(SettingsError, match="energy: got 'wattmeter'; allowed: 'auto'"):
        from_mapping(ProfilerSettings, {"energy": "wattmeter"}, source="edge.yaml")
    with pytest.raises(SettingsError, match="max_total_bytes"):
        from_mapping(ProfilerSettings, {"max_file_bytes": 8192, "max_total_bytes": 4096}, source="edge.yaml")


def test_bind_reads_a_classifier_like_object():
    class Package:
        manifest = {"name": "squeezebert-hwu64", "version": "1.0.0"}

    class Backend:
        name = "onnx"

    class Classifier:
        package = Package()
        backend = Backend()
        precision = "int8"
        threads = 2

    prof = Profiler(ProfilerSettings(energy="model"), energy=energy.ModelSource(1, 1))
    prof.bind(Classifier())
    assert prof.context == {"model": "squeezebert-hwu64@1.0.0", "backend": "onnx", "precision": "int8", "threads": 2}


def test_profiling_a_real_classifier(tiny_package, tmp_path):
    from edge.classifier import IntentClassifier

    clf = IntentClassifier.load(str(tiny_package), backend="onnx", precision="int8", threads=1)
    path = tmp_path / "p.jsonl"
    prof = model_profiler(tmp_path, path=str(path))
    prof.bind(clf)
    assert prof.context == {"model": "tiny-nb@0.0.1", "backend": "onnx", "precision": "int8", "threads": 1}
    texts = ["wake me up at seven", "turn the lights off", "what's the weather"]
    for text in texts:
        with prof.track() as rec:
            result = clf.classify(text)
            rec.finish(result, seq_len=len(clf.tokenizer.encode(text).ids))
    prof.flush()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 3
    for text, record in zip(texts, records):
        assert set(record["stages_ms"]) == {"tokenize", "infer", "decode", "total"}
        # The tracked span holds the classification: it is at least as long as the classifier's own total.
        assert record["wall_ms"] >= record["stages_ms"]["total"] > 0
        assert record["seq_len"] == len(clf.tokenizer.encode(text).ids)
        assert text not in json.dumps(record)  # no user text in profile records
    prof.close()
