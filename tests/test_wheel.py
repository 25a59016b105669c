"""The wheel works outside the checkout: ``pip install .`` (not editable) into a fresh venv, then the commands a
person runs first, from another directory.

The source is copied first (without venvs and build output), so that a stale ``build/`` of the checkout
cannot hide a file missing from the package data. pip's cache is the user's, so the dependencies come
from it; building the wheel copies the model packages (``models/``), as a release build does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from speech_helpers import need_flite, speak, write_wav

REPO = Path(__file__).resolve().parent.parent
NOT_SOURCE = {
    ".git",
    ".venv",
    ".venv-tflite",
    ".venv-clients",
    "build",
    "dist",
    "runs",
    "work-tmp",
    "__pycache__",
    ".pytest_cache",
}


def _copy_source(target: Path) -> Path:
    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n in NOT_SOURCE or n.endswith(".egg-info")}

    return Path(shutil.copytree(REPO, target, symlinks=True, ignore=ignore))


def _run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "EDGE_MODELS_PATH")}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the venv's bin/, a directory outside the checkout) after a non-editable install."""
    root = tmp_path_factory.mktemp("wheel")
    source = _copy_source(root / "src")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    bin_dir = root / "venv" / "bin"
    wheels = root / "wheels"
    built = _run([str(bin_dir / "pip"), "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)], root, 900)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("edge_intent-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "edge/py.typed" in names and "edge/assets/systemd/edge-intent.service" in names
    assert not any(n.startswith("tools/") for n in names)  # the training code is edge_train, never `tools`
    assert "edge_train/train.py" in names and "edge_train/data_files/everyday.txt" in names
    for package in sorted(p.parent for p in (REPO / "edge").rglob("__init__.py")):
        assert f"{package.relative_to(REPO).as_posix()}/__init__.py" in names  # every sub-package is listed
    done = _run([str(bin_dir / "pip"), "install", "-q", str(wheel)], root, 900)
    assert done.returncode == 0, done.stderr[-3000:]
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return bin_dir, elsewhere


@pytest.mark.slow
@pytest.mark.native_speed  # a fresh venv of every dependency: far too long under emulation
def test_the_installed_wheel_runs_from_another_directory(installed, tmp_path):
    bin_dir, elsewhere = installed
    edge_intent = str(bin_dir / "edge-intent")

    text = _run([edge_intent, "--text", "turn off the lights in the kitchen", "--json"], elsewhere)
    assert text.returncode == 0, text.stderr
    assert (
        '"intent": "iot_hue_lightoff"' in text.stdout
        and "site-packages"
        in _run([str(bin_dir / "python"), "-c", "import edge, sys; print(edge.__file__)"], elsewhere).stdout
    )

    need_flite()
    wav = write_wav(tmp_path / "jazz.wav", speak("play some jazz music", "slt", tmp_path) / 32768, 16000)
    heard = _run([edge_intent, "--wav", str(wav), "--stt", "pocketsphinx", "--json"], elsewhere)
    assert heard.returncode == 0, heard.stderr
    assert '"intent": "play_music"' in heard.stdout

    check = _run([edge_intent, "serve", "--check"], elsewhere)
    assert check.returncode == 0 and '"activation": "wake"' in check.stdout, check.stderr

    image = tmp_path / "image"
    dry = _run([edge_intent, "install-service", "--dry-run", "--root", str(image)], elsewhere)
    assert dry.returncode == 0, dry.stderr
    assert f"would write {image}/etc/systemd/system/edge-intent.service" in dry.stdout and not image.exists()
    written = _run([edge_intent, "install-service", "--root", str(image)], elsewhere)
    assert written.returncode == 0, written.stderr
    unit = (image / "etc/systemd/system/edge-intent.service").read_text()
    assert f"ExecStart={bin_dir / 'edge-intent'} serve" in unit
    assert (image / "etc/edge/config.yaml").read_text() == (REPO / "examples/config.yaml").read_text()

    verify = _run([str(bin_dir / "edge-models"), "verify"], elsewhere)
    assert verify.returncode == 0 and "squeezebert-hwu64: OK" in verify.stdout, verify.stdout + verify.stderr

    usage = _run([edge_intent, "--help"], elsewhere)
    assert all(command in usage.stdout for command in ("serve", "install-service", "calibrate-wake"))
