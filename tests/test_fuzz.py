"""Property-based tests: generated hostile input through each way into edge, with few enough examples for CI.

The same strategies and targets (``tests/fuzz_inputs.py``) run with 100,000 inputs each in
``benchmarks/fuzz.py``; ``EDGE_FUZZ_EXAMPLES`` raises the count here. Every input must end in
the result or the documented error (``InputError``, ``AudioError``, ``SettingsError``,
``PackageError``, an HTTP 4xx or 503), never another exception, a 500 or a hang.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from test_outputs import wait_for

import fuzz_inputs as fz
from conftest import need_train_extra

EXAMPLES = int(os.environ.get("EDGE_FUZZ_EXAMPLES", "0")) or None


def fuzz(default: int):
    """Hypothesis settings for one target: derandomised (CI sees the same inputs each run), no database."""
    return settings(
        max_examples=EXAMPLES or default,
        deadline=None,
        derandomize=EXAMPLES is None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )


@pytest.fixture(scope="module")
def classify(shipped_classifier):
    return fz.classify_target(shipped_classifier)


@fuzz(150)
@given(fz.texts())
def test_text_to_classify(classify, text):
    classify(text)


@fuzz(300)
@given(fz.wav_files())
def test_bytes_to_wav_reader(data):
    fz.wav_target()(data)


@pytest.fixture(scope="module")
def intents_run(tmp_path_factory):
    need_train_extra()
    return fz.intents_target(tmp_path_factory.mktemp("intents"))


@fuzz(60)
@given(fz.intents_files())
def test_yaml_to_intents_file_and_its_expansion(intents_run, text):
    intents_run(text)


@pytest.fixture(scope="module")
def settings_run(tmp_path_factory):
    return fz.settings_target(tmp_path_factory.mktemp("settings"))


@fuzz(150)
@given(fz.settings_files())
def test_yaml_to_settings(settings_run, text):
    settings_run(text)


@pytest.fixture(scope="module")
def package_run(tmp_path_factory):
    return fz.package_target(tmp_path_factory.mktemp("package"))


@fuzz(100)
@given(fz.manifests())
def test_manifest_to_package(package_run, manifest):
    package_run(manifest)


@pytest.fixture(scope="module")
def http_run():
    from test_http_hostile import Service

    service = Service(timeout_s=2)
    yield fz.http_target(service.address), service
    service.close()


@fuzz(200)
@given(fz.http_requests())
def test_raw_bytes_to_http_server(http_run, data):
    run, service = http_run
    run(data)


def test_http_server_still_serves_after_the_fuzzing(http_run):
    _, service = http_run
    status, body = service.request("POST", "/v1/intent", b"turn off the lights", {"Content-Type": "text/plain"})
    assert status == 200 and body["intent"] == "iot_hue_lightoff"
    wait_for(lambda: not service.daemon.http._connections, 10, "every fuzzing connection to be closed")
    assert service.daemon.http._receiving == 0 and service.daemon.http._busy == 0
