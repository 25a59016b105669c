"""A tiny but real model package for tests: naive Bayes over word pieces, written as an ONNX graph.

It has the package layout, manifest and checksums of a trained one, an fp32 file and a dynamically
quantised int8 file that real onnxruntime runs in well under a millisecond, and intent accuracy
well above chance on HWU64, so tests of the profiler and ``edge-profile`` need no training run.
It is trained on HWU64's train split (from ../shared/data): tests using it skip where that is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.package import write_manifest

from conftest import data_file


def train_tokenizer(texts: list[str], path: Path) -> Path:
    """A BERT-style word-piece tokenizer trained on ``texts`` ([CLS] ... [SEP], lower case, offsets)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=3000, special_tokens=specials, show_progress=False)
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    tok.save(str(path))
    return path


def build_tiny_package(dest: Path) -> Path:
    """A real two-variant ONNX package whose model is naive Bayes over word pieces."""
    onnx = pytest.importorskip("onnx", reason="building the tiny test package needs the onnx package (dev extra)")
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from tokenizers import Tokenizer

    rows = [json.loads(line) for line in data_file("hwu64", "train.jsonl").read_text().splitlines() if line.strip()]
    dest.mkdir(parents=True)
    tok = Tokenizer.from_file(str(train_tokenizer([r["text"] for r in rows], dest / "tokenizer.json")))
    vocab = tok.get_vocab_size()
    labels = sorted({r["intent"] for r in rows})
    index = {name: i for i, name in enumerate(labels)}
    counts = np.ones((vocab, len(labels)), dtype=np.float64)
    for r in rows:
        for t in tok.encode(r["text"]).ids:
            counts[t, index[r["intent"]]] += 1
    table = np.log(counts / counts.sum(0, keepdims=True)).astype(np.float32)
    tags = ["O", "B-date", "I-date"]
    slot_w = np.zeros((len(labels), len(tags)), dtype=np.float32)
    slot_w[:, 0] = 1.0
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["emb"], axis=0),
            helper.make_node("ReduceMean", ["emb"], ["pooled"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["pooled", "scale"], ["intent_logits"]),
            helper.make_node("MatMul", ["emb", "slot_w"], ["slot_logits"]),
        ],
        "tiny",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "L"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, "L"]),
        ],
        [
            helper.make_tensor_value_info("intent_logits", TensorProto.FLOAT, [1, len(labels)]),
            helper.make_tensor_value_info("slot_logits", TensorProto.FLOAT, [1, "L", len(tags)]),
        ],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.eye(len(labels), dtype=np.float32) * 50, "scale"),
            numpy_helper.from_array(slot_w, "slot_w"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), dest / "model.fp32.onnx")
    quantize_dynamic(str(dest / "model.fp32.onnx"), str(dest / "model.int8.onnx"), weight_type=QuantType.QInt8)
    manifest = {
        "name": "tiny-nb",
        "version": "0.0.1",
        "format": 1,
        "labels": labels,
        "slot_tags": tags,
        "max_seq_len": 64,
        "tokenizer": "tokenizer.json",
        "inputs": {},
        "outputs": {},
        "oos": {"method": "max_softmax", "threshold": 0.0},
        "files": {"tokenizer.json": {}, "model.fp32.onnx": {}, "model.int8.onnx": {}},
        "variants": [
            {"backend": "onnx", "precision": p, "file": f"model.{p}.onnx", "runtimes": ["onnxruntime"]}
            for p in ("int8", "fp32")
        ],
    }
    write_manifest(dest, manifest)
    return dest


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory) -> Path:
    return build_tiny_package(tmp_path_factory.mktemp("pkg") / "tiny-nb")
