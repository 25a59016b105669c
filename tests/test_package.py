"""Model package contract: manifest, checksums, refusal of missing or corrupt files."""

import json
import shutil

import pytest

from edge.classifier import IntentClassifier
from edge.package import ModelPackage, PackageError

from conftest import SHIPPED, run_cli


@pytest.fixture
def copy(tmp_path):
    dst = tmp_path / "pkg"
    shutil.copytree(SHIPPED, dst)
    return dst


def test_shipped_manifest_is_complete(shipped_package):
    m = shipped_package.manifest
    assert len(m["labels"]) == 64 and m["slot_tags"][0] == "O"
    assert {(v.backend, v.precision) for v in shipped_package.variants} >= {("onnx", "int8"), ("tflite", "int8")}
    assert m["oos"]["threshold"] > 0 and "CC BY 4.0" in m["training"]["data_licence"]
    assert shipped_package.verify_all() == []
    for rel, entry in m["files"].items():
        assert entry["bytes"] == (SHIPPED / rel).stat().st_size


def test_corrupt_model_file_is_refused_by_name(copy):
    target = copy / "model.int8.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(PackageError, match=r"model\.int8\.onnx: sha256 .* corrupt"):
        IntentClassifier.load(str(copy), backend="onnx", precision="int8")
    proc = run_cli("edge.cli.models", "verify", str(copy))
    assert proc.returncode == 1 and b"model.int8.onnx" in proc.stdout


def test_truncated_and_missing_files(copy):
    (copy / "model.int8.tflite").write_bytes((copy / "model.int8.tflite").read_bytes()[:1000])
    with pytest.raises(PackageError, match="truncated"):
        IntentClassifier.load(str(copy), backend="tflite", precision="int8")
    (copy / "tokenizer.json").unlink()
    with pytest.raises(PackageError, match=r"tokenizer\.json: missing"):
        ModelPackage.load(copy)


def test_bad_manifest(copy):
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(PackageError, match="not valid JSON"):
        ModelPackage.load(copy)
    (copy / "manifest.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(PackageError, match="missing keys"):
        ModelPackage.load(copy)


def test_edge_models_list_and_verify():
    proc = run_cli("edge.cli.models", "list")
    assert proc.returncode == 0 and b"squeezebert-hwu64" in proc.stdout
    proc = run_cli("edge.cli.models", "verify", "squeezebert-hwu64")
    assert proc.returncode == 0 and b"OK" in proc.stdout
