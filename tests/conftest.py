import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHIPPED = Path(os.environ.get("EDGE_TEST_MODEL", REPO / "models" / "squeezebert-hwu64"))
sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(config, items):
    # script/test-aarch64 runs the suite under qemu-user, where float math is ~100x slower.
    if os.environ.get("EDGE_EMULATED"):
        skip = pytest.mark.skip(
            reason="native_speed: needs a native CPU (EDGE_EMULATED: hours of work or "
            "distorted timing under emulation); script/test-aarch64 checks answers on a sample"
        )
        for item in items:
            if "native_speed" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def shipped_package():
    from edge.package import ModelPackage

    return ModelPackage.load(SHIPPED)


@pytest.fixture(scope="session")
def classifiers(shipped_package):
    """The shipped model on each backend at int8, 1 thread."""
    from edge.classifier import IntentClassifier

    return {
        b: IntentClassifier.load(shipped_package, backend=b, precision="int8", threads=1) for b in ("onnx", "tflite")
    }


@pytest.fixture(scope="session")
def shipped_classifier():
    """The shipped model as ``edge-intent`` loads it (the profile's backend); skips when it is not installed."""
    from edge.classifier import IntentClassifier
    from edge.package import PackageError

    try:
        return IntentClassifier.load()
    except PackageError as exc:
        pytest.skip(f"the intent model package is not installed: {exc}")


def need_train_extra(module: str = "wordfreq") -> None:
    """Skip where the [train] extra is missing (``script/test-aarch64``'s userland has the runtime only):
    expanding an intents file fills its wildcard lists from ``wordfreq``; ``edge-train`` needs ``torch``."""
    pytest.importorskip(module, reason=f"needs the [train] extra ({module}): script/setup --train")


def int8_onnx_copy(dest: Path) -> Path:
    """The shipped package cut down to its tokenizer and int8 ONNX file, without evaluation sample or STT
    artefacts (a small package of a real model, to change in a test)."""
    import json
    import shutil

    from edge.package import write_manifest

    dest.mkdir(parents=True)
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    keep = ("tokenizer.json", "model.int8.onnx")
    for rel in keep:
        shutil.copy(SHIPPED / rel, dest / rel)
    manifest["files"] = {rel: {} for rel in keep}
    manifest["variants"] = [v for v in manifest["variants"] if v["file"] in keep]
    for section in ("evaluation_sample", "stt"):
        manifest.pop(section, None)
    write_manifest(dest, manifest)
    return dest


def data_file(name: str, file: str) -> Path:
    """A file of a public data set (edge/datasets.py: $EDGE_DATA, then ../shared/data beside the checkout);
    the test skips, saying where the data set is published, when it is not there."""
    from edge import datasets

    try:
        return datasets.path(name, file)
    except datasets.DataSetMissing as exc:
        pytest.skip(str(exc))


def run_cli(*args, input=None, env=None, timeout=120):
    import subprocess

    full_env = {**os.environ, "EDGE_PROFILE": "generic-x86_64", "EDGE_PROFILE_OVERRIDE": "/nonexistent", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", *args], input=input, capture_output=True, env=full_env, timeout=timeout, cwd=REPO
    )
