"""The base model's reading lent to a package (``edge.transfer``): affinities from real profiles, and a
base that is missing or has changed turns the transfer off with a warning, the package still answering."""

from __future__ import annotations

import json
import logging

import pytest

from edge.classifier import IntentClassifier
from edge.package import write_manifest
from edge.transfer import BaseReader, Transfer, profiles, write

from conftest import int8_onnx_copy


@pytest.fixture(scope="module")
def reader(shipped_package):
    return BaseReader.load(shipped_package, backend="onnx", precision="int8")


def with_transfer(dest, base, intent_profiles, base_name=None, base_labels=None):
    """A real small package whose manifest carries a transfer made from ``base``."""
    pkg = int8_onnx_copy(dest)
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["transfer"] = write(pkg, base, intent_profiles)
    data = json.loads((pkg / "transfer.json").read_text())
    if base_name:
        data["base"]["name"] = base_name
    if base_labels:
        data["base"]["labels"] = base_labels
    (pkg / "transfer.json").write_text(json.dumps(data))
    manifest["files"]["transfer.json"] = {}
    write_manifest(pkg, manifest)
    return pkg


def test_a_paraphrase_is_nearest_to_the_profile_of_what_it_means(reader):
    """Profiles from a few template sentences; a paraphrase sharing none of their key words lands on its own."""
    sentences = [
        ("what is on the shopping list", "ReadList"),
        ("read the shopping list", "ReadList"),
        ("set a timer for ten minutes", "StartTimer"),
        ("start a five minute timer", "StartTimer"),
    ]
    made = profiles(reader, sentences)
    assert set(made) == {"ReadList", "StartTimer"}
    assert all(abs(sum(v) - 1.0) < 1e-3 and len(v) == len(reader.package.labels) for v in made.values())
    transfer = Transfer(reader, ["ReadList", "StartTimer", "__none__"], made)
    buy = transfer.affinity("what do i need to buy")
    assert buy[0] > buy[1] and buy[2] == 0.0
    countdown = transfer.affinity("count down twenty minutes for me")
    assert countdown[1] > countdown[0]


def test_a_package_with_a_transfer_mixes_it_in_when_unsure(tmp_path, shipped_package, reader):
    labels = shipped_package.labels
    made = profiles(reader, [("what is on the shopping list", "lists_query")])
    pkg = with_transfer(tmp_path / "p", shipped_package, made)
    clf = IntentClassifier.load(str(pkg), backend="onnx", precision="int8")
    assert clf.transfer is not None and clf.transfer.base_label.startswith(shipped_package.name + "@")
    assert clf.transfer.affinity("what do i need to buy")[labels.index("lists_query")] > 0.5
    sure = clf.classify("set an alarm for seven am")  # the model alone is sure: the transfer is not asked
    assert sure.intent == "alarm_set"


@pytest.mark.parametrize(
    "change, said",
    [
        ({"base_name": "no-such-model"}, "no-such-model"),
        ({"base_labels": ["a", "b"]}, "other intents"),
    ],
)
def test_an_unusable_base_turns_the_transfer_off_with_a_warning(
    tmp_path, shipped_package, reader, caplog, change, said
):
    made = profiles(reader, [("what is on the shopping list", "lists_query")])
    pkg = with_transfer(tmp_path / "p", shipped_package, made, **change)
    with caplog.at_level(logging.WARNING, logger="edge.transfer"):
        clf = IntentClassifier.load(str(pkg), backend="onnx", precision="int8")
    assert clf.transfer is None
    assert said in caplog.text and "own model answers alone" in caplog.text
    assert clf.classify("set an alarm for seven am").intent == "alarm_set"


def test_a_corrupt_transfer_file_is_refused_by_name(tmp_path, shipped_package, reader):
    from edge.package import PackageError

    pkg = with_transfer(tmp_path / "p", shipped_package, profiles(reader, [("read my list", "lists_query")]))
    (pkg / "transfer.json").write_text("{}")
    with pytest.raises(PackageError, match="transfer.json"):
        IntentClassifier.load(str(pkg), backend="onnx", precision="int8")


def _examples(rows):
    from tools.data import Example

    return [Example(text, intent) for intent, texts in rows.items() for text in texts]


TIMER = ["set a timer for ten minutes", "start a five minute timer", "timer for twenty minutes", "count down an hour"]
LIST = ["what is on the shopping list", "read the shopping list", "what do i need to buy", "tell me my list"]


def test_the_trainer_keeps_the_transfer_where_the_base_tells_the_intents_apart(tmp_path, shipped_package):
    from tools.package_writer import add_transfer

    pkg = int8_onnx_copy(tmp_path / "p")
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["labels"] = ["ReadList", "StartTimer"]
    add_transfer(pkg, manifest, shipped_package.dir, _examples({"ReadList": LIST * 3, "StartTimer": TIMER * 3}))
    assert manifest["transfer"]["file"] == "transfer.json" and manifest["transfer"]["base_alone_accuracy"] >= 0.6
    assert set(json.loads((pkg / "transfer.json").read_text())["profiles"]) == {"ReadList", "StartTimer"}


def test_the_trainer_leaves_the_transfer_out_where_the_base_cannot_tell_them_apart(tmp_path, shipped_package):
    """Two intents the base model reads alike (both timer sentences): its affinity would only add noise."""
    from tools.package_writer import add_transfer

    pkg = int8_onnx_copy(tmp_path / "p")
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["labels"] = ["TimerA", "TimerB"]
    add_transfer(pkg, manifest, shipped_package.dir, _examples({"TimerA": TIMER * 3, "TimerB": TIMER[::-1] * 3}))
    assert "file" not in manifest["transfer"] and not (pkg / "transfer.json").exists()
    assert "held-back training sentences" in manifest["transfer"]["left_out"]
    assert manifest["transfer"]["base_alone_accuracy"] < 0.6
