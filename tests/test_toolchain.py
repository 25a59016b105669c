"""The whole toolchain on a tiny slice: train, distil, export, quantise, package, load in both backends.

CI does not retrain the shipped model; this keeps the toolchain from rotting. Slow (a few minutes:
four TFLite conversions) and needs the [train] extra.
"""

import json

import pytest

from conftest import REPO, data_file

pytest.importorskip("torch", reason="the toolchain needs the [train] extra: script/setup --train")
pytest.importorskip("litert_torch", reason="the toolchain needs the [train] extra: script/setup --train")

pytestmark = [pytest.mark.slow, pytest.mark.train]


def test_tiny_end_to_end(tmp_path):
    from tools.train import main

    lines = data_file("hwu64", "train.jsonl").read_text().splitlines()
    intents = sorted({json.loads(line)["intent"] for line in lines})[:4]
    train = [line for line in lines if json.loads(line)["intent"] in intents][:160]
    dev = [
        line
        for line in data_file("hwu64", "dev.jsonl").read_text().splitlines()
        if json.loads(line)["intent"] in intents
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(train) + "\n")
    (tmp_path / "dev.jsonl").write_text("\n".join(dev[:40]) + "\n")
    out = tmp_path / "pkg"
    rc = main(
        [
            str(tmp_path / "train.jsonl"),
            "--dev",
            str(tmp_path / "dev.jsonl"),
            "--eval",
            str(tmp_path / "dev.jsonl"),
            "--eval-sample",
            str(tmp_path / "dev.jsonl"),
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
            "--teacher-epochs",
            "2",
            "--student-epochs",
            "1",
            "--max-steps",
            "12",
            "--oos-train",
            "20",
            "--eval-limit",
            "20",
            "--vocab-size",
            "2500",
            "--max-seq-len",
            "64",
            "--threads",
            "2",
        ]
    )
    assert rc == 0
    from edge.classifier import IntentClassifier
    from edge.package import ModelPackage

    package = ModelPackage.load(out)
    assert package.verify_all() == []
    assert package.labels == intents
    for backend in ("onnx", "tflite"):
        for precision in ("int8", "fp32"):
            result = IntentClassifier.load(str(out), backend=backend, precision=precision).classify(
                json.loads(train[0])["text"]
            )
            assert result.guess in intents
    m = package.manifest
    assert set(m["selection"]["dev_intent_accuracy_int8"]) == {"dense", "g4"}
    assert m["metrics"]["evaluations"]["dev.jsonl"]["shipped"]["onnx/int8"]["n"] == 20
    assert (out / "README.md").read_text().startswith("# pkg")
    # Trained on a JSONL data set: the package keeps no copy of its sentences, yet has the STT
    # artefacts built from them, and the evaluation sample it was given.
    assert not (out / "training_sentences.txt").exists() and "sentences_file" not in m["training"]
    assert m["stt"]["pocketsphinx"] and package.evaluation_sample() == [
        {"text": json.loads(line)["text"], "intent": json.loads(line)["intent"]} for line in dev[:40]
    ]


def test_teacher_ceiling_runs_and_selects_on_dev(tmp_path):
    """tools.teacher_ceiling on a few steps; MiniLM stands in for MPNet (same AutoModel path, 90 MB less)."""
    from tools.model import minilm_dir
    from tools.teacher_ceiling import main

    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "dev", "test"):
        lines = data_file("hwu64", f"{split}.jsonl").read_text().splitlines()
        (data / f"{split}.jsonl").write_text("\n".join(lines[::100]) + "\n")
    out = tmp_path / "ceiling.json"
    assert (
        main(
            [
                "--data",
                str(data),
                "--model-dir",
                str(minilm_dir()),
                "--epochs",
                "2",
                "--threads",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert [row["epoch"] for row in result["history"]] == [1, 2]
    best = max(result["history"], key=lambda row: row["dev_score"])
    assert result["selected_epoch"] == best["epoch"] and result["test"] == best["test"]
    assert 0.0 <= result["test"]["intent_acc"] <= 1.0 and 0.0 <= result["test"]["slot_f1"] <= 1.0


def test_restore_gives_the_shipped_model_back_in_pytorch():
    """tools.from_package.restore: the shipped fp32 ONNX weights as a PyTorch model with the same answers."""
    import torch

    from edge.classifier import IntentClassifier
    from edge.package import ModelPackage
    from tools.from_package import load_from_package, restore

    package = REPO / "models/squeezebert-hwu64"
    model = restore(package)
    onnx_fp32 = IntentClassifier.load(str(package), backend="onnx", precision="fp32", threads=1)
    texts = [row["text"] for row in ModelPackage.load(package).evaluation_sample()[::3]]
    for text in texts:
        ids = torch.tensor([onnx_fp32.tokenizer.encode(text).ids])
        with torch.no_grad():
            intent_logits, _, _ = model(ids, torch.ones_like(ids))
        assert onnx_fp32.labels[int(intent_logits.argmax())] == onnx_fp32.classify(text).guess, text
    fresh = load_from_package(package, 3, 5)
    assert fresh.intent_head.out_features == 3 and fresh.slot_head.out_features == 5
    assert torch.equal(fresh.encoder.embeddings.word_embeddings.weight, model.encoder.embeddings.word_embeddings.weight)
