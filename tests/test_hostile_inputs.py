"""Hostile and broken input outside HTTP: configuration files, WAV headers, text, model packages, hooks.

Each test is a reproduction from the robustness issue: it must end in the documented error
(``SettingsError``, ``AudioError``, ``InputError``, ``PackageError``) naming the input and the
limit, or, for hooks, in a killed hook and a daemon that did not grow.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge import config as config_mod
from edge.audio import AudioError, read_wav, read_wav_bytes
from edge.classifier import InputError, check_text
from edge.config import HooksSettings
from edge.events import Event
from edge.outputs.hooks import HookRunner
from edge.package import ModelPackage, PackageError
from edge.result import Result
from edge.settings import MAX_YAML_DEPTH, MAX_YAML_VALUES, SettingsError

from conftest import REPO, SHIPPED, need_train_extra, run_cli

# --------------------------------------------------------------------------- configuration


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """``a0`` has 9 values, each next level 9 aliases of the last: 9**9 (387 million) strings under model.name."""
    lines = ["x-anchors:", f"  a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nmodel:\n  name: *a{levels - 1}\n"


@pytest.mark.parametrize(
    "text, message",
    [
        (alias_bomb(), f"expands to more than {MAX_YAML_VALUES} values (aliases included); allowed: at most"),
        ("a: &a [1, *a]\n", "alias *a is used inside the node it names"),
        # found by benchmarks/fuzz.py: an anchor name defined again inside its own node (KeyError before)
        ("x-a:\n  a0: &a0 [lol0: &a0 [lol]\n ]\n  a1: &a1 [*a0, *a0, *me: *a2}\n", "invalid YAML"),
        (
            "a: &x [&x [1, 2], *x, *x]\nmodel: {name: *x}\n",
            "found duplicate anchor; first occurrence, second occurrence",
        ),
        (
            "model:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(300)),
            f"nested more than {MAX_YAML_DEPTH} levels deep",
        ),
        ("model: {name: " + "[" * 3000 + "]" * 3000 + "}\n", "invalid YAML: line 1"),
        ("http: {timeout_s: .nan}\n", "http.timeout_s: expected a finite number, got nan"),
        ("http: {timeout_s: .inf}\n", "http.timeout_s: expected a finite number, got inf"),
        ("hooks: {timeout_s: .nan}\n", "hooks.timeout_s: expected a finite number, got nan"),
        ("http: {timeout_s: " + "9" * 400 + "}\n", "an integer of 400 digits; allowed: at most 100"),
        ("model: {threads: " + "1" * 5000 + "}\n", "an integer of 5000 digits; allowed: at most 100"),
        (
            "model:\n  name: a\n  name: b\n",
            "model.name: given twice in one mapping (lines 2 and 3); allowed: each key once",
        ),
        ("http: {listen: '127.0.0.1:1'}\nhttp: {enabled: false}\n", "http: given twice in one mapping (lines 1 and 2)"),
        (
            "model: {name: [" + ", ".join(["'" + "x" * 500 + "'"] * 50) + "]}\n",
            "model.name: expected a string, got list",
        ),
    ],
)
def test_config_files_that_would_hang_or_blow_up_are_refused_by_key_and_line(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError) as info:
        config_mod.load(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    assert len(str(info.value)) < 400  # the message does not grow with the value


def test_yaml_anchors_and_merge_keys_still_work(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "mqtt: &broker {host: 127.0.0.1, port: 1884}\nhttp: {listen: '127.0.0.1:0'}\nprofiler: {path: /tmp/p.jsonl}\n"
    )
    assert config_mod.load(path).mqtt.port == 1884


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # 1 GiB: the bomb needed 4


def test_serve_check_refuses_an_alias_bomb_within_bounded_memory(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(alias_bomb())
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli.intent", "serve", "--config", str(path), "--check"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        preexec_fn=_limit_memory,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    assert f"{path}: x-anchors.a5[0]: line 7: the file expands to more than {MAX_YAML_VALUES} values" in proc.stderr


def test_settings_constructed_in_code_refuse_nan_too():
    for make in (
        lambda: config_mod.HttpSettings(timeout_s=float("nan")),
        lambda: HooksSettings(timeout_s=float("nan")),
        lambda: config_mod.MqttSettings(flush_timeout_s=float("nan")),
    ):
        with pytest.raises(ValueError, match="out of range|negative"):
            make()


# --------------------------------------------------------------------------- WAV headers


def test_truncated_extensible_fmt_chunk_is_an_audio_error_naming_the_file(tmp_path):
    fmt = struct.pack("<HHIIHH", 0xFFFE, 1, 16000, 32000, 2, 16)
    data = b"RIFF" + struct.pack("<I", 32) + b"WAVE" + b"fmt " + struct.pack("<I", 40) + fmt + b"\x16\x00\x10\x00"
    path = tmp_path / "short.wav"
    path.write_bytes(data)
    with pytest.raises(
        AudioError, match=r"short\.wav: corrupt WAV header \(the fmt chunk says 40 bytes, the file ends after 20\)"
    ):
        read_wav(path)
    proc = run_cli("edge.cli.intent", "--wav", str(path))
    assert proc.returncode != 0 and b"Traceback" not in proc.stderr and b"the fmt chunk says 40 bytes" in proc.stderr


def test_streamed_wav_with_unknown_size_is_judged_by_what_it_holds():
    pcm = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    data = (
        b"RIFF\xff\xff\xff\xffWAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + pcm
        + b"data\xff\xff\xff\xff"
        + b"\x01\x00" * 16000
    )
    samples, info = read_wav_bytes(data, "stream", max_seconds=2.0)
    assert len(samples) == 16000 and info.seconds == 1.0
    with pytest.raises(
        AudioError, match=r"stream: 1\.0 s of audio is longer than the limit of 0\.5 s \(http\.max_wav_seconds\)"
    ):
        read_wav_bytes(data, "stream", max_seconds=0.5, limit_name="http.max_wav_seconds")


# --------------------------------------------------------------------------- text


@pytest.mark.parametrize(
    "text, message",
    [
        ("\ud800", r"lone surrogate U\+D800 at character 0"),
        ("turn off \udfff the lights", r"lone surrogate U\+DFFF at character 9"),
        ("\u200b\ufeff", "input is empty"),
        ("\u2060 \u200d\u200c ", "input is empty"),
    ],
)
def test_text_no_tokenizer_can_take_is_an_input_error(shipped_classifier, text, message):
    with pytest.raises(InputError, match=message):
        check_text(text)
    with pytest.raises(InputError, match=message):
        shipped_classifier.classify(text)


def test_invisible_characters_around_a_command_are_dropped(shipped_classifier):
    assert check_text("\ufeffturn off the lights\u200b") == "turn off the lights"
    assert shipped_classifier.classify("\ufeffturn off the lights\u200b").intent == "iot_hue_lightoff"


# --------------------------------------------------------------------------- model packages


@pytest.fixture
def package_copy(tmp_path):
    dst = tmp_path / "pkg"
    shutil.copytree(SHIPPED, dst)
    return dst


def edit_manifest(package: Path, change) -> None:
    path = package / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_verify_fails_for_a_used_file_without_a_checksum(package_copy):
    shutil.copy(package_copy / "model.int8.onnx", package_copy / "swapped.onnx")

    def swap(m):
        m["variants"][0]["file"] = "swapped.onnx"

    edit_manifest(package_copy, swap)
    proc = run_cli("edge.cli.models", "verify", str(package_copy))
    assert proc.returncode == 1 and b"file 'swapped.onnx' is used but has no checksum entry" in proc.stdout


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/passwd", "stt/../../outside.onnx"])
def test_file_names_outside_the_package_are_refused(package_copy, name):
    def point_out(m):
        m["variants"][0]["file"] = name
        m["files"][name] = {"sha256": "0" * 64}

    edit_manifest(package_copy, point_out)
    package = ModelPackage.load(package_copy)
    with pytest.raises(PackageError, match="is not inside the package"):
        package.verify_file(name)
    assert any("is not inside the package" in p for p in package.verify_all())


def test_symlinks_out_of_the_package_are_refused(package_copy, tmp_path):
    outside = tmp_path / "outside.onnx"
    shutil.move(package_copy / "model.int8.onnx", outside)
    (package_copy / "model.int8.onnx").symlink_to(outside)
    package = ModelPackage.load(package_copy)
    with pytest.raises(PackageError, match=r"model\.int8\.onnx: a symlink out of the model package"):
        package.verify_file("model.int8.onnx")
    from edge.classifier import IntentClassifier

    with pytest.raises(PackageError, match="a symlink out of the model package"):
        IntentClassifier.load(str(package_copy), backend="onnx", precision="int8")


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda m: m["files"]["tokenizer.json"].pop("sha256"),
            'files.tokenizer.json: expected a mapping with "sha256"',
        ),
        (
            lambda m: m.update(labels="iot_hue_lightoff"),
            "labels: expected a non-empty list of strings, got 'iot_hue_lightoff'",
        ),
        (lambda m: m.update(files=list(m["files"])), "files: expected a mapping of file name"),
        (lambda m: m.update(max_seq_len="abc"), "max_seq_len: expected a whole number from 2 to 4096, got 'abc'"),
        (lambda m: m.update(variants={"onnx": "model.int8.onnx"}), "variants: expected a non-empty list"),
        (lambda m: m["variants"][0].pop("file"), "variants[0].file: expected a non-empty string, got None"),
        (lambda m: m.update(oos={"threshold": "high"}), "oos.threshold: expected a number from 0 to 1"),
        (lambda m: m.update(slot_values={"house_place": ["kitchen"]}), "slot_values: expected a mapping of slot"),
    ],
)
def test_malformed_manifests_name_the_key(package_copy, change, message):
    edit_manifest(package_copy, change)
    with pytest.raises(PackageError) as info:
        ModelPackage.load(package_copy)
    assert str(info.value).startswith(f"{package_copy / 'manifest.json'}: ") and message in str(info.value)
    proc = run_cli("edge.cli.models", "verify", str(package_copy))
    assert proc.returncode != 0 and b"Traceback" not in proc.stderr


# --------------------------------------------------------------------------- hooks


def _event() -> Event:
    return Event.from_result(
        Result(
            text="turn off the lights",
            intent="iot_hue_lightoff",
            confidence=0.9,
            guess="iot_hue_lightoff",
            guess_confidence=0.9,
        )
    )


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def test_a_hook_flooding_its_output_is_killed_at_its_timeout_and_never_grows_the_daemon(caplog):
    caplog.set_level(logging.INFO, logger="edge.outputs.hooks")
    yes = shutil.which("yes")
    assert yes is not None
    before = _rss_mb()
    runner = HookRunner(HooksSettings(commands={"*": [yes]}, timeout_s=1.5))
    runner.publish(_event())
    runner.close()
    assert f"hook iot_hue_lightoff: {yes} killed after the 1.5 s timeout" in caplog.text
    assert _rss_mb() - before < 50  # `yes` writes gigabytes in 1.5 s; communicate() kept them all
    assert subprocess.run(["pgrep", "-x", "yes", "-P", str(os.getpid())], capture_output=True).returncode == 1


def test_a_hook_writing_400_mb_and_exiting_is_logged_with_the_end_of_its_stderr(caplog):
    caplog.set_level(logging.INFO, logger="edge.outputs.hooks")
    before = _rss_mb()
    runner = HookRunner(
        HooksSettings(
            commands={"*": ["/bin/sh", "-c", "head -c 400000000 /dev/zero; echo the end >&2; exit 4"]}, timeout_s=30
        )
    )
    runner.publish(_event())
    runner.close()
    assert "/bin/sh exited 4" in caplog.text and "stderr: the end" in caplog.text
    assert _rss_mb() - before < 50


def test_a_hook_that_leaves_a_background_child_holding_its_pipes_is_done_when_it_exits(caplog):
    caplog.set_level(logging.INFO, logger="edge.outputs.hooks")
    runner = HookRunner(HooksSettings(commands={"*": ["/bin/sh", "-c", "(sleep 30 &); echo started"]}, timeout_s=20))
    start = time.monotonic()
    runner.publish(_event())
    runner.close()
    assert "/bin/sh exited 0" in caplog.text and time.monotonic() - start < 15


# --------------------------------------------------------------------------- training


def test_a_cached_stage_is_reused_only_for_the_inputs_that_made_it(tmp_path):
    from tools.train import _digest, _fresh, _made

    checkpoint = tmp_path / "teacher.pt"
    first = _digest("data-a.jsonl contents", {"epochs": 3}, 64)
    assert not _fresh(checkpoint, first)  # nothing there yet
    checkpoint.write_bytes(b"weights for 13 intents")
    _made(checkpoint, first)
    assert _fresh(checkpoint, _digest("data-a.jsonl contents", {"epochs": 3}, 64))
    assert checkpoint.read_bytes() == b"weights for 13 intents"
    # another data file (or base, or arguments) into the same work directory: the old checkpoint goes
    assert not _fresh(checkpoint, _digest("data-b.jsonl contents", {"epochs": 3}, 64))
    assert not checkpoint.exists() and not (tmp_path / "teacher.pt.key").exists()
    # an output without a key (from before keys, or interrupted before _made) is not trusted either
    export = tmp_path / "export"
    export.mkdir()
    (export / "dense.fp32.onnx").write_bytes(b"x")
    assert not _fresh(export, first) and not export.exists()


def test_edge_train_names_the_extra_and_how_to_install_it():
    from tools.train import missing_extra

    requirements = [
        'no-such-distribution-for-edge>=1; extra == "train"',
        "numpy>=1.24; extra == 'train'",
        "torch>=2.4",
        'pyyaml; extra == "dev"',
    ]
    assert missing_extra("train", requirements) == ["no-such-distribution-for-edge"]
    need_train_extra("torch")
    assert missing_extra("train") == []  # this environment has the [train] extra


def test_edge_train_without_the_extra_says_how_to_install_it(tmp_path):
    """An installation of edge-intent whose [train] extra is not there: its metadata first on the path."""
    dist = tmp_path / "site" / "edge_intent-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: edge-intent\nVersion: 0.1.0\n"
        'Requires-Dist: no-such-distribution-for-edge>=1; extra == "train"\n'
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO)])}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.train",
            str(REPO / "examples" / "smart_home.yaml"),
            "--out",
            str(tmp_path / "pkg"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        "the [train] extra is not installed (missing: no-such-distribution-for-edge); install it with "
        "pip install 'edge-intent[train]'" in proc.stderr
    )


def test_float_samples_that_are_not_numbers_become_silence_or_full_scale():
    import numpy as np

    values = np.array([np.nan, np.inf, -np.inf, 1e300, 0.5], "<f8").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 16000, 128000, 8, 64)
    data = (
        b"RIFF"
        + struct.pack("<I", 36 + len(values))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", len(values))
        + values
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in cast": the NaN is handled, not cast
        samples, _ = read_wav_bytes(data, "floats")
    assert samples.tolist() == [0, 32767, -32768, 32767, 16384]
