"""The shipped model through the runtime: both backends, the CLI, bad input, out of scope."""

import json

import numpy as np
import pytest

from edge.classifier import InputError, check_text

from conftest import run_cli

COMMANDS = [
    ("turn off the lights in the kitchen", "iot_hue_lightoff", {"house_place": "kitchen"}),
    ("wake me up at seven am tomorrow", "alarm_set", {"time": "seven am", "date": "tomorrow"}),
    ("what's the weather like in london", "weather_query", {"place_name": "london"}),
]


@pytest.mark.parametrize("backend", ["onnx", "tflite"])
@pytest.mark.parametrize("text,intent,slots", COMMANDS)
def test_commands_on_both_backends(classifiers, backend, text, intent, slots):
    result = classifiers[backend].classify(text)
    assert result.intent == intent
    assert result.slot_dict() == slots
    for slot in result.slots:
        assert result.text[slot.start : slot.end] == slot.text
    assert result.backend == f"{backend}/int8"
    assert set(result.latency_ms) == {"tokenize", "infer", "decode", "total"}


SALAD = [
    "although institution whisper beneath seventeen",
    "carpet the of although committee gravel",
    "sideways elbow parliament moreover thumb",
    "into basically granite yet the pension",
    "whereas cardboard of nevertheless moss",
]


def test_word_salad_is_out_of_scope_with_best_guess(classifiers):
    clf = classifiers["onnx"]
    results = [clf.classify(t) for t in SALAD]
    rejected = [r for r in results if r.intent is None]
    assert len(rejected) >= 4, [(r.text, r.guess, r.guess_confidence) for r in results]
    for r in rejected:
        assert r.confidence is None and r.guess in clf.labels and 0 < r.guess_confidence < clf.threshold
        data = r.to_dict()
        assert data["intent"] is None and data["guess"] == r.guess and data["slots"] == {}


@pytest.mark.parametrize(
    "bad,message",
    [
        ("", "empty"),
        ("   \t\n ", "empty"),
        ("turn off\x00the lights", "NUL byte"),
        ("\x01\x02\x03\x04\x05\x06\x07\x08", "binary"),
        (b"\xff\xfe lights", "not UTF-8"),
        (42, "expected text"),
    ],
)
def test_bad_input_is_refused_clearly(bad, message):
    with pytest.raises(InputError, match=message):
        check_text(bad)


def test_enormous_input_is_truncated_and_says_so(classifiers):
    result = classifiers["onnx"].classify("turn off the lights in the kitchen " * 5000)
    assert result.truncated and result.intent == "iot_hue_lightoff"
    assert result.to_dict()["truncated"] is True


def test_cli_text_json():
    proc = run_cli("edge.cli.intent", "--text", "turn off the lights in the kitchen", "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    assert out["intent"] == "iot_hue_lightoff" and out["slots"] == {"house_place": "kitchen"}
    assert {"text", "confidence", "latency_ms", "backend", "model"} <= set(out)
    assert out["model"].startswith("squeezebert-hwu64@")


def test_cli_human_output_and_tflite_backend():
    proc = run_cli("edge.cli.intent", "--text", "turn off the lights in the kitchen", "--backend", "tflite")
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    assert "iot_hue_lightoff" in text and "house_place = kitchen" in text and "tflite/int8" in text


def test_cli_text_file_batch_keeps_going_past_bad_lines(tmp_path):
    f = tmp_path / "in.txt"
    f.write_bytes(b"turn off the lights in the kitchen\n\x00\x01binary\n\nset an alarm for six am\n\xff\xfe\n")
    proc = run_cli("edge.cli.intent", "--text-file", str(f))
    assert proc.returncode == 1
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 4, 5]
    assert rows[0]["intent"] == "iot_hue_lightoff" and rows[2]["intent"] == "alarm_set"
    assert "NUL" in rows[1]["error"] and "UTF-8" in rows[3]["error"]
    assert "2 line(s)" in proc.stderr.decode()


def test_cli_text_file_from_stdin():
    proc = run_cli("edge.cli.intent", "--text-file", "-", input=b"play some jazz music\nwhat time is it\n")
    assert proc.returncode == 0, proc.stderr.decode()
    intents = [json.loads(line)["intent"] for line in proc.stdout.decode().splitlines()]
    assert intents[0].startswith("play_") and intents[1] == "datetime_query"


def test_cli_errors_are_one_line_not_tracebacks(tmp_path):
    for args in (
        ["--text", "   "],
        ["--text", "x", "--model", str(tmp_path)],
        ["--text", "x", "--profile", "nope"],
        ["--text-file", str(tmp_path / "missing.txt")],
        ["--text", "x", "--threads", "0"],
    ):
        proc = run_cli("edge.cli.intent", *args)
        err = proc.stderr.decode()
        assert proc.returncode == 2, (args, err)
        assert "Traceback" not in err and "edge-intent: error:" in err, (args, err)


def test_show_profile_says_why():
    proc = run_cli("edge.cli.intent", "--show-profile")
    out = proc.stdout.decode()
    assert proc.returncode == 0 and "generic-x86_64" in out and "EDGE_PROFILE=generic-x86_64" in out
    assert "onnx: available" in out


def test_slot_decoding_takes_the_best_valid_bio_path():
    from edge.classifier import _best_bio_path, _bio_constraints

    tags = ["O", "B-date", "I-date", "B-time", "I-time"]
    transitions, start = _bio_constraints([t.partition("-") for t in tags])
    special = [1, 0, 0, 0, 1]  # [CLS] next friday please [SEP]
    logits = np.log(
        np.array(
            [
                [0.9, 0.025, 0.025, 0.025, 0.025],
                [0.40, 0.35, 0.05, 0.15, 0.05],  # "next": O narrowly over B-date
                [0.05, 0.05, 0.80, 0.05, 0.05],  # "friday": confidently inside a date
                [0.90, 0.025, 0.025, 0.025, 0.025],
                [0.9, 0.025, 0.025, 0.025, 0.025],
            ]
        )
    )
    # Per-piece argmax says "O I-date", which is not BIO; the best valid path is "B-date I-date".
    assert [tags[i] for i in logits.argmax(-1)[1:4]] == ["O", "I-date", "O"]
    assert [tags[i] for i in _best_bio_path(logits, special, transitions, start)[1:4]] == ["B-date", "I-date", "O"]
    # A path that is already valid is left exactly as argmax gave it.
    valid = logits.copy()
    valid[1] = np.log([0.1, 0.6, 0.1, 0.1, 0.1])
    assert list(_best_bio_path(valid, special, transitions, start)) == list(valid.argmax(-1))
