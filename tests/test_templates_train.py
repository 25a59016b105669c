"""``edge-train INTENTS.yaml`` end to end on a tiny intents file: expand, fine-tune from the shipped
package, export + quantise both backends, package with its grammar, a "none" class and STT
adaptation; then the runtime answers typed and spoken commands with the new package, from the
grammar where a text is one of its sentences (or near one) and from the model where it is not.

Slow (about two minutes: two TFLite conversions) and needs the [train] extra.
"""

import json

import pytest

from conftest import run_cli
from speech_helpers import need_flite, speak, write_wav

pytest.importorskip("torch", reason="the toolchain needs the [train] extra: script/setup --train")
pytest.importorskip("litert_torch", reason="the toolchain needs the [train] extra: script/setup --train")
pytest.importorskip("hassil", reason="intents files need hassil: script/setup --train")

pytestmark = [pytest.mark.slow, pytest.mark.train]

TINY = """\
language: en
intents:
  LightOn:
    data:
      - sentences:
          - "(turn|switch) on [the] (light|lights) [in [the] {area}]"
          - "[the] {area} (light|lights) on"
  LightOff:
    data:
      - sentences:
          - "(turn|switch) off [the] (light|lights) [in [the] {area}]"
          - "[the] {area} (light|lights) off"
  SetVolume:
    data:
      - sentences:
          - "(set|turn) [the] volume [to] {volume}"
          - "volume {volume}"
lists:
  area:
    values:
      - kitchen
      - in: "(living room|lounge|front room)"
        out: living_room
      - in: "(bedroom|master bedroom)"
        out: bedroom
      - in: "(study|office)"
        out: office
  volume:
    range:
      from: 0
      to: 100
out_of_scope:
  - "(tell|give) me a joke"
  - "what (time|day) is it"
tests:
  - sentences: ["switch on the lights in the lounge"]
    intent: {name: LightOn, slots: {area: living_room}}
  - sentences: ["set the volume to 30"]
    intent: {name: SetVolume, slots: {volume: 30}}
"""


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    (tmp / "tiny.yaml").write_text(TINY)
    held_out = [
        {
            "text": "lights on in the office please",
            "intent": "LightOn",
            "entities": [{"start": 17, "end": 23, "entity": "area", "value": "office"}],
        },
        {"text": "what is the capital of peru", "intent": None, "entities": []},
    ]
    (tmp / "held_out.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held_out))
    out = tmp / "tiny-pkg"
    # In a child process, as a user runs it (and so that edge-train sets up torch's threads itself).
    proc = run_cli(
        "tools.train",
        str(tmp / "tiny.yaml"),
        "--eval",
        str(tmp / "held_out.jsonl"),
        "--out",
        str(out),
        "--work",
        str(tmp / "work"),
        "--max-sentences",
        "400",
        "--epochs",
        "2",
        "--max-steps",
        "120",
        "--oos-train",
        "40",
        "--threads",
        "2",
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert b"model package" in proc.stdout and b"tests" in proc.stdout  # the summary at the end
    return out


def test_package_is_complete(package):
    from edge.package import ModelPackage

    pkg = ModelPackage.load(package)
    assert pkg.verify_all() == []
    assert pkg.labels == ["LightOff", "LightOn", "SetVolume", "__none__"]
    assert pkg.manifest["oos"]["none_label"] == "__none__" and pkg.text_form == "spoken"
    assert {v.backend for v in pkg.variants} == {"onnx", "tflite"}
    grammar = json.loads(pkg.grammar_file().read_text())
    assert set(grammar["intents"]) == {"LightOff", "LightOn", "SetVolume"} and "area" in grammar["lists"]
    evaluations = pkg.manifest["metrics"]["evaluations"]
    assert set(evaluations) == {"held_out.jsonl", "tests", "held-out expansions"}
    assert evaluations["tests"]["shipped"]["onnx/int8"]["n"] == 2
    assert evaluations["held_out.jsonl"]["shipped"]["onnx/int8"]["oos_n"] >= 1  # the "intent": null line
    assert {"pocketsphinx", "vosk", "whisper"} <= set(pkg.manifest["stt"])
    prompt = (package / "stt" / "whisper-prompt.txt").read_text().lower()
    assert (
        sum(area in prompt for area in ("kitchen", "living room", "lounge", "front room", "bedroom", "study", "office"))
        >= 2
    )
    sentences = (package / "training_sentences.txt").read_text()  # generated from the templates, so carried
    assert "front room" in sentences and "{area}" not in sentences
    entry = pkg.manifest["transfer"]  # the base's reading of each intent, or why it was left out
    if "file" in entry:
        transfer = json.loads(pkg.verify_file("transfer.json").read_text())
        assert entry["base"].startswith("squeezebert-hwu64@") and entry["base_alone_accuracy"] >= 0.6
        assert set(transfer["profiles"]) == {"LightOff", "LightOn", "SetVolume"}
        assert all(len(v) == len(transfer["base"]["labels"]) for v in transfer["profiles"].values())
    else:
        assert entry["base_alone_accuracy"] < 0.6 and "held-back" in entry["left_out"]
    sample = pkg.evaluation_sample()  # drawn from the held-out expansions at build time
    assert sample and {r["intent"] for r in sample} <= set(pkg.labels)
    assert pkg.manifest["evaluation_sample"]["source"].endswith(
        "held-out expansions, generated at build time (seed 13)"
    )


@pytest.mark.parametrize("backend", ["onnx", "tflite"])
def test_grammar_and_model_resolve_synonyms_to_canonical_values(package, backend):
    from edge.classifier import IntentClassifier

    clf = IntentClassifier.load(str(package), backend=backend, precision="int8", threads=1)
    r = clf.classify("Turn off the lights in the Master Bedroom")  # a sentence of the grammar
    assert (r.intent, r.slot_dict(), r.source) == ("LightOff", {"area": "bedroom"}, "grammar")
    r = clf.classify("set the volume to 45")
    assert (r.intent, r.slot_dict()) == ("SetVolume", {"volume": 45})
    r = clf.classify("switch the lights on in the front room")  # a near miss: one word out of place
    assert (r.intent, r.slot_dict()) == ("LightOn", {"area": "living_room"})
    # beyond the grammar's reach the model decides, and its span is resolved to the list's value
    clf.match_templates = False
    r = clf.classify("turn on the lights in the front room")
    assert (r.intent, r.slot_dict(), r.source) == ("LightOn", {"area": "living_room"}, "model")
    assert r.slots[0].score == 1.0


def test_edge_intent_text_and_speech_with_the_new_package(package, tmp_path):
    need_flite()
    proc = run_cli("edge.cli.intent", "--model", str(package), "--text", "lounge lights off", "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    assert (out["intent"], out["slots"]) == ("LightOff", {"area": "living_room"})

    wav = write_wav(tmp_path / "cmd.wav", speak("turn on the lights in the study", "slt", tmp_path) / 32768.0, 16000)
    proc = run_cli("edge.cli.intent", "--model", str(package), "--wav", str(wav), "--stt", "pocketsphinx", "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout.decode().splitlines()[0])
    assert (out["intent"], out["slots"]) == ("LightOn", {"area": "office"}), out
    assert "adapted" in out["transcript"]["engine"]
