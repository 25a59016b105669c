"""Real people's recordings through ``edge-intent --wav``: a package trained on their grammar, every engine.

The 17 rhasspy-speech recordings (../shared/data/real-speech) are commands of a smart-home grammar
(tests/fixtures/grammars/rhasspy_speech_en.yaml). A package is trained on that grammar in a few
steps (the grammar, not the model, carries in-grammar commands), then every recording goes
through the real command line with each engine. The expected command of a recording is the
grammar's exact parse of its transcript. Floors sit below what the engines reach here
(docs/speech.md), so a regression shows and recogniser noise does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, data_file, run_cli

pytest.importorskip("torch", reason="training the package needs the [train] extra: script/setup --train")
pytest.importorskip("faster_whisper", reason="the Whisper engine needs faster-whisper: script/setup")

pytestmark = [pytest.mark.slow, pytest.mark.train]

GRAMMAR = REPO / "tests" / "fixtures" / "grammars" / "rhasspy_speech_en.yaml"


def real() -> Path:
    """The real recordings' directory (edge/datasets.py); the test skips, saying where they are published, without it."""
    return data_file("real-speech", "manifest.jsonl").parent


def recordings() -> list[dict]:
    manifest = real() / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["file"].startswith("rhasspy-speech/")]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    recordings()
    out = tmp_path_factory.mktemp("rhasspy") / "pkg"
    proc = run_cli(
        "tools.train",
        str(GRAMMAR),
        "--out",
        str(out),
        "--work",
        str(out.parent / "work"),
        "--max-sentences",
        "600",
        "--epochs",
        "1",
        "--max-steps",
        "30",
        "--oos-train",
        "40",
        "--threads",
        "2",
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return out


def expected(text: str | None):
    import yaml

    from edge.grammar import Grammar

    g = Grammar.from_dict(yaml.safe_load(GRAMMAR.read_text()))
    m = g.match(text, max_distance=0.0) if text else None
    return None if m is None else (m.intent, {s.name: s.value for s in m.slots})


def run(package: Path, *stt: str) -> dict[str, dict | None]:
    rows = recordings()
    proc = run_cli(
        "edge.cli.intent",
        "--model",
        str(package),
        *stt,
        "--json",
        "--wav",
        *[str(real() / r["file"]) for r in rows],
        timeout=900,
    )
    assert proc.returncode in (0, 1), proc.stderr.decode()[-2000:]
    got: dict[str, dict | None] = {}
    for line in proc.stdout.decode().splitlines():
        out = json.loads(line)
        if out.get("intent"):
            got[out["file"]] = out
        else:
            got.setdefault(out["file"], None)
    return got


def acceptance(package: Path, *stt: str) -> tuple[float, list]:
    rows = recordings()
    got = run(package, *stt)
    misses = []
    for r in rows:
        out = got.get(str(real() / r["file"]))
        have = None if out is None else (out["intent"], out["slots"])
        if have != expected(r["text"]):
            misses.append((r["text"], None if out is None else out.get("text"), have))
    return 1 - len(misses) / len(rows), misses


def test_whisper_commands_from_real_voices(package):
    share, misses = acceptance(package, "--stt", "whisper", "--stt-model", "tiny.en")
    assert share >= 0.7, misses


def test_pocketsphinx_with_the_package_language_model(package):
    adapted, misses = acceptance(package, "--stt", "pocketsphinx")
    general, _ = acceptance(package, "--stt", "pocketsphinx", "--no-adapt")
    assert adapted >= 0.5 and adapted > general, (adapted, general, misses)


def test_json_of_a_grammar_match(package):
    rows = recordings()
    clip = next(r for r in rows if r["file"].endswith("set-office-lights-to-blue.wav"))
    proc = run_cli(
        "edge.cli.intent",
        "--model",
        str(package),
        "--stt",
        "whisper",
        "--stt-model",
        "tiny.en",
        "--json",
        "--wav",
        str(real() / clip["file"]),
    )
    out = json.loads(proc.stdout.decode().splitlines()[0])
    assert (out["intent"], out["slots"], out["source"]) == ("SetColor", {"area": "office", "color": "blue"}, "grammar")
    assert out["transcript"]["engine"].startswith("whisper-tiny.en")
    assert {s["name"] for s in out["slot_spans"]} == {"area", "color"}
