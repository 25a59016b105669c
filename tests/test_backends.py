"""Backends: parity of ONNX Runtime and LiteRT on HWU64 test, tflite-runtime 2.14, missing runtimes."""

import json
import os
import subprocess

import numpy as np
import pytest

from edge.backends import BackendUnavailable
from edge.backends.onnx import choose_providers

from conftest import REPO, SHIPPED, data_file, run_cli


@pytest.fixture(scope="module")
def test_texts():
    return [json.loads(line)["text"] for line in data_file("hwu64", "test.jsonl").read_text().splitlines()]


def _agreement(package, precision, texts):
    """(same best guess, same answer after the out-of-scope rule) between ONNX Runtime and LiteRT."""
    from tools.package_writer import backend_agreement

    agreement = backend_agreement(package.dir, texts, precision)
    return agreement["top_intent"], agreement["answer"]


@pytest.mark.native_speed
def test_onnx_and_litert_agree_on_hwu64_test_fp32(shipped_package, test_texts):
    guess, answer = _agreement(shipped_package, "fp32", test_texts)
    assert guess >= 0.995 and answer >= 0.995


@pytest.mark.native_speed
def test_onnx_and_litert_int8_agree_on_hwu64_test(shipped_package, test_texts):
    # Both int8 files quantise activations per token (tools/onnx_rowquant.py mirrors LiteRT's
    # dynamic-range kernels), so they give the same answer on >= 99.5 % of the test set. The raw
    # best guess also counts sentences both reject as out of scope, where the top intents are
    # near-uniform noise (e.g. "music traking": every intent at 1.6 %): measured 99.4 %.
    guess, answer = _agreement(shipped_package, "int8", test_texts)
    assert answer >= 0.995
    assert guess >= 0.99


def test_missing_provider_falls_back_to_cpu(caplog):
    assert choose_providers(
        ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"), ["CPUExecutionProvider"]
    ) == ["CPUExecutionProvider"]
    assert "TensorrtExecutionProvider is not available" in caplog.text


@pytest.fixture
def no_litert(tmp_path):
    """A PYTHONPATH on which neither TFLite interpreter can be imported, as with a broken install."""
    for name in ("ai_edge_litert", "tflite_runtime"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed')\n")
    return {"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}


def test_profile_skips_a_backend_that_does_not_import(no_litert):
    proc = run_cli(
        "edge.cli.intent",
        "--text",
        "turn off the lights in the kitchen",
        "--json",
        "--profile",
        "rpi4",
        "-v",
        env=no_litert,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["backend"] == "onnx/int8"
    err = proc.stderr.decode()
    assert "tflite could not open the model" in err and "ai_edge_litert is not installed" in err


def test_uninstalled_tflite_is_reported_without_importing_anything(monkeypatch):
    from edge.backends import litert

    monkeypatch.setattr(
        litert,
        "_RUNTIMES",
        (("ai-edge-litert", "edge_test_no_such_litert"), ("tflite-runtime", "edge_test_no_such_tflite")),
    )
    assert litert.unavailable_reason() == "neither ai-edge-litert nor tflite-runtime is installed"
    with pytest.raises(BackendUnavailable, match="pip install ai-edge-litert"):
        litert.open_backend(REPO / "models" / "missing.tflite", threads=1)


def test_explicit_uninstalled_backend_says_how_to_install(no_litert):
    proc = run_cli("edge.cli.intent", "--text", "lights off", "--backend", "tflite", env=no_litert)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "pip install ai-edge-litert" in err and "Traceback" not in err


TFLITE_PY = REPO / ".venv-tflite" / "bin" / "python"


@pytest.mark.skipif(
    not TFLITE_PY.exists(), reason="script/setup --dev creates .venv-tflite (tflite-runtime needs NumPy 1.x)"
)
def test_tflite_runtime_2_14_honours_the_manifest(shipped_package, classifiers, tmp_path):
    """Files the manifest says run in tflite-runtime 2.14 give LiteRT's logits there, through edge's own
    backend code; files it does not list for tflite-runtime are refused up front with the reason."""
    clf = classifiers["tflite"]
    texts = ["turn off the lights in the kitchen", "what is on my calendar for tomorrow", "play the next song please"]
    ids = [clf.tokenizer.encode(t).ids for t in texts]
    (tmp_path / "ids.json").write_text(json.dumps(ids))
    variants = {v.file: list(v.runtimes) for v in shipped_package.variants if v.backend == "tflite"}
    assert any("tflite-runtime" in r for r in variants.values()), "no TFLite file runs in tflite-runtime 2.14"
    script = (
        "import json, sys, numpy as np\n"
        "from edge.backends import BackendUnavailable\n"
        "from edge.backends.litert import open_backend\n"
        "from pathlib import Path\n"
        "out = {}\n"
        "for f, runtimes in json.loads(sys.argv[3]).items():\n"
        "    try:\n"
        "        b = open_backend(Path(sys.argv[1]) / f, threads=1, runtimes=tuple(runtimes), runtime='tflite-runtime')\n"
        "    except BackendUnavailable as exc:\n"
        "        out[f] = str(exc)\n"
        "        continue\n"
        "    out[f] = [b.run({'input_ids': np.array([i]), 'attention_mask': np.ones((1, len(i)), np.int64)})['intent_logits'][0].tolist()\n"
        "              for i in json.load(open(sys.argv[2]))]\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [str(TFLITE_PY), "-c", script, str(SHIPPED), str(tmp_path / "ids.json"), json.dumps(variants)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    from edge.backends.litert import open_backend

    for f, rows in got.items():
        if "tflite-runtime" not in variants[f]:
            assert isinstance(rows, str) and "needs ai-edge-litert" in rows, rows
            continue
        ref = open_backend(SHIPPED / f, threads=1)
        for i, row in zip(ids, rows):
            want = ref.run({"input_ids": np.array([i]), "attention_mask": np.ones((1, len(i)), np.int64)})[
                "intent_logits"
            ][0]
            assert np.abs(np.array(row) - want).max() <= 1e-3, f


def test_python_overhead_split_is_reported(classifiers):
    clf = classifiers["onnx"]
    clf.classify("turn off the lights")
    result = clf.classify("turn off the lights")
    assert 0 < clf.backend.last_invoke_ms <= result.latency_ms["infer"]
    assert clf.backend.describe().startswith("onnxruntime")
