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


def run_cli(*args, input=None, env=None, timeout=120):
    import subprocess

    full_env = {**os.environ, "EDGE_PROFILE": "generic-x86_64", "EDGE_PROFILE_OVERRIDE": "/nonexistent", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", *args], input=input, capture_output=True, env=full_env, timeout=timeout, cwd=REPO
    )
