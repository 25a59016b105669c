"""tools/compare_arch.py (the aarch64 vs x86_64 answers of script/test-aarch64) and check_wheels --installed,
on the shipped model with the real runtimes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_cli

pytestmark = pytest.mark.slow

SENTENCES = [
    "turn off the lights in the kitchen",
    "wake me up at seven am",
    "what is the weather like in london",
    "play some jazz music",
    "remind me to call my mother tonight",
]


def labelled(tmp_path):
    path = tmp_path / "data.jsonl"
    intents = ["iot_hue_lightoff", "alarm_set", "weather_query", "play_music", None]
    path.write_text(
        "".join(json.dumps({"text": t, "intent": i, "entities": []}) + "\n" for t, i in zip(SENTENCES, intents))
    )
    return path


def dump(tmp_path, name, *args):
    out = tmp_path / name
    proc = run_cli("tools.compare_arch", "dump", "--data", str(labelled(tmp_path)), "--out", str(out), *args)
    assert proc.returncode == 0, proc.stderr.decode()
    return out


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare-arch")
    # fp32 is slow in emulation (script/test-aarch64 runs this suite on aarch64 too): fewer sentences there
    return dump(tmp, "full.npz", "--sample", "fp32=2"), dump(tmp, "sampled.npz", "--sample", "int8=3,fp32=1")


def altered(path, out, change):
    """A copy of a dump as another machine might have written it, with ``change(meta, arrays)`` applied."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays.pop("meta")))
    meta["machine"] = "aarch64"
    change(meta, arrays)
    np.savez(out, meta=np.array(json.dumps(meta)), **arrays)
    return out


def test_a_dump_agrees_with_itself_and_a_changed_answer_is_found(tmp_path, dumps):
    full, sampled = dumps
    proc = run_cli("tools.compare_arch", "compare", str(full), str(sampled), "--markdown", str(tmp_path / "t.md"))
    assert proc.returncode == 0, proc.stderr.decode()
    table = (tmp_path / "t.md").read_text()
    for variant, n in [("onnx/int8", 3), ("onnx/fp32", 1), ("tflite/int8", 3), ("tflite/fp32", 1)]:
        assert f"| {variant} | {n} | 100.00% | 100.00% | 100.00% | 0 | 0 |" in table, table

    def one_answer_differs(meta, arrays):  # tflite/int8 answered one sentence differently, its logits shifted
        meta["variants"]["tflite/int8"]["answers"][1]["guess"] = "calendar_set"
        arrays["tflite/int8/intent_logits"] = arrays["tflite/int8/intent_logits"] + np.float32(0.25)

    other = altered(sampled, tmp_path / "other.npz", one_answer_differs)
    proc = run_cli("tools.compare_arch", "compare", str(full), str(other))
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 1
    assert "| tflite/int8 | 3 | 66.67% |" in out and "| 0.25 |" in out
    assert "tflite/int8: intents agree on 66.67% of sentences, below 99.00%" in err


def test_different_inputs_and_bad_arguments_are_refused(tmp_path, dumps):
    full, _ = dumps
    other = altered(full, tmp_path / "other.npz", lambda meta, arrays: meta["texts"].__setitem__(0, "hello there"))
    proc = run_cli("tools.compare_arch", "compare", str(full), str(other))
    assert proc.returncode == 1 and "the inputs differ" in proc.stderr.decode()
    unrun = altered(
        full,
        tmp_path / "unrun.npz",
        lambda meta, arrays: meta["variants"].__setitem__("onnx/fp32", {"unavailable": "no runtime"}),
    )
    proc = run_cli("tools.compare_arch", "compare", str(full), str(unrun))
    assert proc.returncode == 1 and "onnx/fp32: not run on aarch64: no runtime" in proc.stderr.decode()

    proc = run_cli(
        "tools.compare_arch",
        "dump",
        "--data",
        str(labelled(tmp_path)),
        "--out",
        str(tmp_path / "x.npz"),
        "--sample",
        "int8=0",
    )
    assert proc.returncode == 2 and "'int8=0' is not N or KEY=N with N >= 1" in proc.stderr.decode()
    (tmp_path / "junk.npz").write_bytes(b"not a dump")
    proc = run_cli("tools.compare_arch", "compare", str(full), str(tmp_path / "junk.npz"))
    assert proc.returncode == 1 and "junk.npz: not a dump written by 'compare_arch dump'" in proc.stderr.decode()


def test_speech_results_are_compared_file_by_file(tmp_path):
    def results(path, intent):
        path.write_text(
            "".join(
                json.dumps({"file": f"/x/{name}.wav", "text": name, "intent": it, "guess": it, "slots": {}}) + "\n"
                for name, it in [("a", "alarm_set"), ("b", intent)]
            )
        )
        return str(path)

    same = run_cli(
        "tools.compare_arch",
        "compare-results",
        results(tmp_path / "1.jsonl", "play_music"),
        results(tmp_path / "2.jsonl", "play_music"),
    )
    assert same.returncode == 0 and same.stdout.decode().count("same on both") == 2
    differ = run_cli(
        "tools.compare_arch",
        "compare-results",
        results(tmp_path / "1.jsonl", "play_music"),
        results(tmp_path / "3.jsonl", "music_query"),
    )
    assert differ.returncode == 1
    assert "b.wav: intent 'play_music' vs 'music_query'" in differ.stderr.decode()


def test_check_wheels_installed_sees_every_runtime_dependency_import():
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "check_wheels"), "--installed", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, {k: v for k, v in report.items() if not v["ok"]}
    for name in ("onnxruntime", "ai-edge-litert", "pocketsphinx", "pymicro-wakeword", "tokenizers", "numpy"):
        assert report[name]["ok"] and report[name]["tags"] and report[name]["imports"], (name, report[name])
    assert "onnxruntime" in report["onnxruntime"]["imports"]
    assert not any(r["built_here"] for r in report.values())
