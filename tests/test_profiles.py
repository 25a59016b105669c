"""Device profiles: detection against recorded device trees, overrides, and validation errors."""

from pathlib import Path

import pytest

from edge.profiles import available_profiles, detect, load_profile
from edge.settings import SettingsError

FIXTURES = Path(__file__).parent / "fixtures" / "devices"
BOARDS = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
REQUIRED = {
    "rpi-zero-2w",
    "rpi3",
    "rpi4",
    "rpi5",
    "jetson-nano",
    "jetson-orin-nano",
    "generic-aarch64",
    "generic-x86_64",
}


def test_every_required_profile_ships_and_loads():
    profiles = available_profiles()
    assert REQUIRED <= set(profiles)
    for name in profiles:
        profile = load_profile(name)
        assert profile.threads >= 1 and profile.backends
        assert profile.power.idle_w > 0 and profile.power.source


def test_every_profile_is_detected_by_some_recorded_board():
    expected = {(b / "expected_profile").read_text().strip() for b in BOARDS}
    assert REQUIRED <= expected


@pytest.mark.parametrize("board", BOARDS, ids=lambda p: p.name)
def test_detection_on_recorded_device_tree(board, monkeypatch):
    monkeypatch.delenv("EDGE_PROFILE", raising=False)
    monkeypatch.setenv("EDGE_PROFILE_OVERRIDE", str(board / "no-override.yaml"))
    detection = detect(root=board)
    assert detection.profile.name == (board / "expected_profile").read_text().strip()
    assert detection.reason


def test_jetson_profiles_prefer_gpu_providers_with_cpu_last():
    for name in ("jetson-nano", "jetson-orin-nano"):
        providers = load_profile(name).onnx.providers
        assert providers[0] in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
        assert providers[-1] == "CPUExecutionProvider"


def test_explicit_and_environment_override(monkeypatch):
    monkeypatch.setenv("EDGE_PROFILE_OVERRIDE", "/nonexistent/override.yaml")
    monkeypatch.setenv("EDGE_PROFILE", "rpi5")
    assert detect(root=FIXTURES / "x86-pc").profile.name == "rpi5"
    d = detect(root=FIXTURES / "x86-pc", override="rpi4")
    assert d.profile.name == "rpi4" and "--profile" in d.reason


def test_unknown_profile_names_the_available_ones():
    with pytest.raises(SettingsError, match="available: .*rpi4"):
        load_profile("rpi99")


def _write(tmp_path, text, name="myboard"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


GOOD = """name: myboard
description: test
match: {arch: [x86_64]}
backends: [onnx]
threads: 2
power: {idle_w: 1.0, active_w_per_core: 0.5}
"""


def test_unknown_key_is_named_with_file_and_allowed_keys(tmp_path):
    path = _write(tmp_path, GOOD + "thread_count: 4\n")
    with pytest.raises(SettingsError) as err:
        load_profile(str(path))
    assert str(path) in str(err.value) and "thread_count" in str(err.value) and "threads" in str(err.value)


def test_wrong_type_names_nested_key(tmp_path):
    path = _write(tmp_path, GOOD.replace("idle_w: 1.0", "idle_w: lots"))
    with pytest.raises(SettingsError, match=r"power\.idle_w: expected a number, got string 'lots'"):
        load_profile(str(path))


def test_bad_enum_lists_allowed_values(tmp_path):
    path = _write(tmp_path, GOOD.replace("backends: [onnx]", "backends: [tensorflow]"))
    with pytest.raises(SettingsError, match=r"backends\[0\]: got 'tensorflow'; allowed: 'onnx', 'tflite'"):
        load_profile(str(path))


def test_invalid_yaml_reports_line(tmp_path):
    path = _write(tmp_path, GOOD + "notes: [unclosed\n")
    with pytest.raises(SettingsError, match=r"invalid YAML: line \d+"):
        load_profile(str(path))
    path = _write(tmp_path, GOOD + "match: {arch: [aarch64]}\n")  # a second "match:" would silently win
    with pytest.raises(SettingsError, match=r": match: given twice in one mapping \(lines 3 and \d+\)"):
        load_profile(str(path))


def test_out_of_range_threads(tmp_path):
    path = _write(tmp_path, GOOD.replace("threads: 2", "threads: 0"))
    with pytest.raises(SettingsError, match="threads: 0 is out of range"):
        load_profile(str(path))


def test_saved_override_replaces_tuning(tmp_path, monkeypatch):
    override = tmp_path / "override.yaml"
    override.write_text("backend: tflite\nprecision: fp32\nthreads: 3\nbase_profile: generic-x86_64\n")
    monkeypatch.setenv("EDGE_PROFILE_OVERRIDE", str(override))
    monkeypatch.delenv("EDGE_PROFILE", raising=False)
    p = detect(root=FIXTURES / "x86-pc").profile
    assert (p.backends[0], p.precision, p.threads) == ("tflite", "fp32", 3)
    # an override measured on another profile does not apply
    assert detect(root=FIXTURES / "rpi5").profile.threads == load_profile("rpi5").threads
