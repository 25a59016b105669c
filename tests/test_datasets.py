"""Public data sets stay outside the repository: where edge/datasets.py looks, what it says when a set
is missing, the HWU64 converter (tools/fetch_hwu64.py) on an archive in the upstream layout, and the
evaluation sample a model package carries instead (tools/package_writer.py)."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest

from edge import datasets
from edge.package import ModelPackage, PackageError

from conftest import SHIPPED, int8_onnx_copy, run_cli


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """An $EDGE_DATA and a stand-in for ../shared/data, both empty."""
    env, beside = tmp_path / "env", tmp_path / "shared" / "data"
    env.mkdir()
    beside.mkdir(parents=True)
    monkeypatch.setenv(datasets.ENV, str(env))
    monkeypatch.setattr(datasets, "BESIDE_CHECKOUT", beside)
    return env, beside


def test_search_order_and_the_message_for_a_missing_set(roots, tmp_path):
    env, beside = roots
    with pytest.raises(datasets.DataSetMissing) as missing:
        datasets.find("hwu64")
    message = str(missing.value)
    assert f"{env / 'hwu64'} ($EDGE_DATA); {beside / 'hwu64'} (../shared/data beside the checkout)" in message
    for said in (
        "NLU-Evaluation-Data repository of Liu et al.",
        "CC BY 4.0",
        "tools/fetch_hwu64.py",
        "EDGE_DATA=DIR",
        "--data DIR",
        "docs/data.md",
    ):
        assert said in message
    (beside / "hwu64").mkdir()
    assert datasets.find("hwu64") == beside / "hwu64"  # $EDGE_DATA lacks it: beside the checkout
    (env / "hwu64").mkdir()
    assert datasets.find("hwu64") == env / "hwu64"  # $EDGE_DATA first
    explicit = tmp_path / "mine"
    with pytest.raises(datasets.DataSetMissing, match=r"mine/hwu64 \(--data\)\. "):
        datasets.find("hwu64", explicit)  # --data is the only place looked at
    assert datasets.missing_reason("hwu64") is None and "--data" in datasets.missing_reason("hwu64", explicit)
    with pytest.raises(
        datasets.DataSetMissing, match=r"test\.jsonl: not found; the hwu64 data set there is incomplete"
    ):
        datasets.path("hwu64", "test.jsonl")
    (env / "hwu64" / "test.jsonl").write_text('{"text": "hello", "intent": "general_quirky"}\n\n')
    assert datasets.read_rows("hwu64", "test.jsonl") == [{"text": "hello", "intent": "general_quirky"}]
    assert datasets.relative_name(env / "hwu64" / "test.jsonl") == "hwu64/test.jsonl"
    assert datasets.relative_name(tmp_path / "elsewhere.jsonl") is None
    with pytest.raises(datasets.DataSetMissing, match=r"real-speech.*OHF-Voice/speech-to-phrase.*Apache-2.0"):
        datasets.find("real-speech")
    with pytest.raises(
        datasets.DataSetMissing, match=r"'snips' is not a data set this project knows \(known: hwu64, real-speech\)"
    ):
        datasets.find("snips")


def upstream_archive(path: Path, folds: dict[int, dict[str, list[str]]]) -> Path:
    """A zip in the layout of the NLU-Evaluation-Data repository: per fold, one CSV per intent."""
    from tools.fetch_hwu64 import FOLDS

    with zipfile.ZipFile(path, "w") as archive:
        for k in range(1, 11):
            for intent, annotated in folds.get(k, {"general_quirky": ["filler for fold " + str(k)]}).items():
                buf = io.StringIO()
                writer = csv.writer(buf, delimiter=";", quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
                writer.writerow(
                    ["answerid", "scenario", "intent", "answer_annotation", "answer_from_anno", "answer_from_user"]
                )
                scenario, _, name = intent.partition("_")
                for i, text in enumerate(annotated):
                    writer.writerow([i, scenario, name, text, "", ""])
                archive.writestr(f"NLU-Evaluation-Data-master/{FOLDS.format(k=k)}{intent}.csv", buf.getvalue())
    return path


def test_fetch_hwu64_converts_the_cross_validation_folds(tmp_path):
    archive = upstream_archive(
        tmp_path / "master.zip",
        {
            1: {
                "alarm_set": ["wake me at [time : six am] on [date : monday]", "Turn  it [device :  up ] "],
                "alarm_query": ["which alarms are on"],
            },
            2: {"alarm_set": ["wake me at six am on monday", "set it for [time :: noon]"]},
            3: {"alarm_query": ["WHICH ALARMS ARE ON", "any alarms tomorrow"]},
        },
    )
    out = tmp_path / "hwu64"
    done = run_cli("tools.fetch_hwu64", str(out), "--archive", str(archive))
    assert done.returncode == 0, done.stderr.decode()
    read = lambda split: [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]  # noqa: E731
    assert read("test") == [  # fold 1, intents in file-name order
        {"text": "which alarms are on", "intent": "alarm_query", "entities": []},
        {
            "text": "wake me at six am on monday",
            "intent": "alarm_set",
            "entities": [
                {"start": 11, "end": 17, "entity": "time", "value": "six am"},
                {"start": 21, "end": 27, "entity": "date", "value": "monday"},
            ],
        },
        {
            "text": "Turn it up",
            "intent": "alarm_set",
            "entities": [{"start": 8, "end": 10, "entity": "device", "value": "up"}],
        },
    ]
    # fold 2 repeats a fold-1 text (left out); fold 3 repeats one in other case (left out too)
    assert read("dev") == [
        {
            "text": "set it for noon",
            "intent": "alarm_set",
            "entities": [{"start": 11, "end": 15, "entity": "time", "value": "noon"}],
        }
    ]
    train = read("train")
    assert [r["text"] for r in train] == ["any alarms tomorrow"] + [f"filler for fold {k}" for k in range(4, 11)]
    assert b"test 3, dev 1, train 8" in done.stdout
    assert done.stdout.count(b"differs from the file the shipped model was trained on") == 3
    assert "CC BY 4.0" in (out / "README.md").read_text()
    done = run_cli("tools.fetch_hwu64", str(tmp_path / "x"), "--archive", str(tmp_path / "hwu64" / "test.jsonl"))
    assert (
        done.returncode == 2
        and b"test.jsonl: not a readable zip archive" in done.stderr
        and b"Traceback" not in done.stderr
    )


def test_a_package_gets_its_evaluation_sample_and_loads_it_verified(tmp_path):
    package_dir = int8_onnx_copy(tmp_path / "pkg")
    assert ModelPackage.load(package_dir).evaluation_sample() == []
    sample = tmp_path / "mine.jsonl"
    sample.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {"text": "wake me at seven", "intent": "alarm_set"},
                {"text": "is it raining in leeds", "intent": "weather_query"},
            ]
        )
    )
    done = run_cli("tools.package_writer", str(package_dir), "--eval-sample", str(sample))
    assert done.returncode == 0, done.stderr.decode()
    package = ModelPackage.load(package_dir)
    assert package.verify_all() == []
    assert package.evaluation_sample() == [
        {"text": "wake me at seven", "intent": "alarm_set"},
        {"text": "is it raining in leeds", "intent": "weather_query"},
    ]
    section = package.manifest["evaluation_sample"]
    assert section["n"] == 2 and section["source"] == "2 labelled commands from mine.jsonl (--eval-sample)"
    assert (
        set(section["intent_accuracy_at_build"]) == {"onnx/int8"}
        and section["intent_accuracy_at_build"]["onnx/int8"] == 1.0
    )
    assert "Evaluation sample carried in the package" in (package_dir / "README.md").read_text()
    assert "--eval-sample " + str(sample) in (package_dir / "README.md").read_text()  # in the retrain command
    # A changed sample is refused by its checksum; a sample with intents the model lacks is refused up front.
    (package_dir / "eval_sample.jsonl").write_text('{"text": "x", "intent": "alarm_set"}\n')
    with pytest.raises(PackageError, match=r"eval_sample.jsonl: .*bytes, the manifest says"):
        package.evaluation_sample()
    sample.write_text('{"text": "beam me up", "intent": "teleport"}\n')
    done = run_cli("tools.package_writer", str(package_dir), "--eval-sample", str(sample))
    assert done.returncode == 2 and b"intents the model does not have: teleport" in done.stderr


def test_the_shipped_package_carries_its_own_sample_and_no_training_sentences():
    package = ModelPackage.load(SHIPPED)
    rows = package.evaluation_sample()
    assert len(rows) == package.manifest["evaluation_sample"]["n"] == 192
    assert {r["intent"] for r in rows} == set(package.labels)  # every intent, 3 commands each
    assert not (SHIPPED / "training_sentences.txt").exists() and "sentences_file" not in package.manifest["training"]
    assert package.manifest["training"]["dataset"] == "hwu64/train.jsonl"
    examples = Path(__file__).resolve().parent.parent / "examples" / "hwu64.commands.jsonl"
    assert [json.loads(line) for line in examples.read_text().splitlines()] == rows


def test_the_shipped_evaluation_sample_is_in_no_split_of_hwu64():
    from conftest import data_file

    hwu64 = {
        json.loads(line)["text"].lower()
        for split in ("train", "dev", "test")
        for line in data_file("hwu64", f"{split}.jsonl").read_text().splitlines()
    }
    rows = ModelPackage.load(SHIPPED).evaluation_sample()
    assert len(hwu64) > 10_000 and not [r["text"] for r in rows if r["text"].lower() in hwu64]  # written, not copied
