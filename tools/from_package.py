"""Warm start from a shipped model package: its fp32 ONNX file back into a trainable JointSqueezeBert.

A package ships no PyTorch checkpoint, but ``model.fp32.onnx`` is the export form of
tools/deploy.py with every trained weight as a named initializer (``word``, ``positions``,
``layers.N.q.weights.G``, ...), so the encoder can be restored exactly: each matmul weight
(in/g, out/g) per group is the transposed block of the grouped 1x1 convolution, and
``positions`` is position + token-type-0 embedding (token types are always 0 here, so the
token-type table becomes zero). The intent and slot heads are new (the label sets differ);
the package's tokenizer is kept as it is, because the embedding rows are in its order.

Fine-tuning from the HWU64 package rather than from the MiniLM sentence encoder starts from a
model that already knows what home-assistant commands look like (64 intents, 54 slot types), so a
few hundred template sentences per intent are enough and held-out paraphrases fare better.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .model import Groups, JointSqueezeBert, squeezebert_config

# deploy.DeployModel attribute -> SqueezeBERT module, per layer (the inverse of DeployModel.__init__).
_LINEARS = {
    "q": "attention.query",
    "k": "attention.key",
    "v": "attention.value",
    "post": "post_attention.conv1d",
    "inter": "intermediate.conv1d",
    "out": "output.conv1d",
}
_NORMS = {"post_ln": "post_attention.layernorm", "out_ln": "output.layernorm"}
_BERT_SHAPE = {
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
}


def is_package(path: Path) -> bool:
    return (Path(path) / "manifest.json").is_file()


def load_from_package(package_dir: Path, n_intents: int, n_slot_tags: int) -> JointSqueezeBert:
    """A JointSqueezeBert whose encoder carries the package's fp32 weights, with fresh heads."""
    model = restore(package_dir)
    hidden = model.config.hidden_size
    model.intent_head = torch.nn.Linear(hidden, n_intents)
    model.slot_head = torch.nn.Linear(hidden, n_slot_tags)
    return model


def restore(package_dir: Path) -> JointSqueezeBert:
    """The package's model itself (encoder and heads) as a JointSqueezeBert, checked against its fp32 ONNX file."""
    import onnx
    from onnx import numpy_helper

    from edge.package import ModelPackage

    package = ModelPackage.load(package_dir)
    variant = package.find_variant("onnx", "fp32")
    if variant is None:
        raise SystemExit(f"{package_dir}: the base package has no fp32 ONNX file to start from")
    path = package.verify_file(variant.file)
    graph = onnx.load(str(path)).graph
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    eps = next(
        (a.f for n in graph.node if n.op_type == "LayerNormalization" for a in n.attribute if a.name == "epsilon"),
        1e-12,
    )

    n_layers = 1 + max(int(m.group(1)) for k in weights if (m := re.match(r"layers\.(\d+)\.", k)))
    hidden = weights["word"].shape[1]
    groups = Groups(
        **{
            field: _group_count(weights, f"layers.0.{attr}")
            for field, attr in (
                ("q", "q"),
                ("k", "k"),
                ("v", "v"),
                ("post_attention", "post"),
                ("intermediate", "inter"),
                ("output", "out"),
            )
        }
    )
    bert = {
        **_BERT_SHAPE,
        "hidden_size": hidden,
        "num_hidden_layers": n_layers,
        "layer_norm_eps": float(eps),
        "num_attention_heads": hidden // 32,
        "intermediate_size": weights["layers.0.inter.bias"].shape[0],
    }
    config = squeezebert_config(bert, weights["word"].shape[0], groups, weights["positions"].shape[0])
    model = JointSqueezeBert(config, weights["intent.1"].shape[0], weights["slot.1"].shape[0])

    state = {
        "embeddings.word_embeddings.weight": weights["word"],
        "embeddings.position_embeddings.weight": weights["positions"],
        "embeddings.token_type_embeddings.weight": torch.zeros((2, hidden)),
        "embeddings.LayerNorm.weight": weights["emb_ln.0"],
        "embeddings.LayerNorm.bias": weights["emb_ln.1"],
    }
    for i in range(n_layers):
        for src, dst in _LINEARS.items():
            g = _group_count(weights, f"layers.{i}.{src}")
            blocks = [weights[f"layers.{i}.{src}.weights.{k}"].t() for k in range(g)]  # (out/g, in/g) each
            state[f"encoder.layers.{i}.{dst}.weight"] = torch.cat(blocks, 0)[:, :, None].contiguous()
            state[f"encoder.layers.{i}.{dst}.bias"] = weights[f"layers.{i}.{src}.bias"]
        for src, dst in _NORMS.items():
            state[f"encoder.layers.{i}.{dst}.weight"] = weights[f"layers.{i}.{src}.0"]
            state[f"encoder.layers.{i}.{dst}.bias"] = weights[f"layers.{i}.{src}.1"]
    missing, unexpected = model.encoder.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids") and not m.startswith("pooler")]
    if missing or unexpected:
        raise RuntimeError(
            f"{path}: package -> SqueezeBERT mapping incomplete: missing {missing}, unexpected {unexpected}"
        )
    with torch.no_grad():
        for head, key in ((model.intent_head, "intent"), (model.slot_head, "slot")):
            head.weight.copy_(weights[f"{key}.0"].t())
            head.bias.copy_(weights[f"{key}.1"])
    _check(model, path)
    return model


def _check(model: JointSqueezeBert, onnx_path: Path) -> None:
    """The restored model with the package's own heads must compute the package's logits."""
    import numpy as np
    import onnxruntime

    ids = (np.arange(12) * 37 % (model.config.vocab_size - 5) + 5)[None, :].astype(np.int64)
    ids[0, 0], ids[0, -1] = 2, 3
    want = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
        None, {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    )
    model.eval()
    with torch.no_grad():
        got = model(torch.from_numpy(ids), torch.ones((1, ids.shape[1]), dtype=torch.long))
    diff = max(float(np.abs(got[0].numpy() - want[0]).max()), float(np.abs(got[1].numpy() - want[1]).max()))
    if diff > 1e-3:
        raise RuntimeError(f"{onnx_path}: the restored encoder differs from the file by {diff:.2e}")


def _group_count(weights: dict, prefix: str) -> int:
    return sum(1 for k in weights if k.startswith(prefix + ".weights."))
