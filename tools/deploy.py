"""The inference form of the trained model, for export: 1x1 convolutions as matrix multiplies.

``transformers``' SqueezeBERT computes its position-wise layers as ``Conv1d(kernel_size=1)`` on a
(batch, channels, length) layout. Exported as such, ONNX Runtime's dynamic int8 quantisation
turns them into ``ConvInteger``, which is 2.5x *slower* than fp32 on this class of CPU, while the
same weights as ``MatMul`` become ``MatMulInteger``, 2.3x *faster*; TFLite likewise wants
``FULLY_CONNECTED``. So export re-states the forward pass on a (batch, length, channels) layout
with each grouped conv as ``groups`` independent matrix multiplies over channel slices. The
weights are the trained ones, untouched; :func:`check_against` proves the two forms agree.

Two details make the TFLite file load in ``tflite-runtime`` 2.14 as well as LiteRT: the word
embedding lookup is written as ``index_select`` on a flat index vector (``GATHER``; ``aten.embedding``
lowers to a ``GATHER_ND`` version 2.14 does not know), and position + token-type embeddings are
folded into one constant sliced to the sequence length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .model import JointSqueezeBert

GROUPED_FORM = "split"


class GroupedLinear(nn.Module):
    """``groups`` matmuls over channel slices: the 1x1 grouped conv of SqueezeBERT on (B, L, C)."""

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        self.groups = conv.groups
        w = conv.weight.detach()[:, :, 0]  # (out, in/groups)
        out_per = w.shape[0] // self.groups
        self.weights = nn.ParameterList(
            nn.Parameter(w[g * out_per : (g + 1) * out_per].t().contiguous(), requires_grad=False)
            for g in range(self.groups)
        )
        self.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.in_per = w.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return torch.matmul(x, self.weights[0]) + self.bias
        if GROUPED_FORM == "batched":
            w = torch.stack(list(self.weights))  # (g, in/g, out/g)
            b, n = x.shape[0], x.shape[1]
            xg = x.reshape(b, n, self.groups, self.in_per).transpose(1, 2)  # (b, g, n, in/g)
            y = torch.matmul(xg, w).transpose(1, 2).reshape(b, n, -1)
            return y + self.bias
        parts = [
            torch.matmul(x[..., g * self.in_per : (g + 1) * self.in_per], self.weights[g]) for g in range(self.groups)
        ]
        return torch.cat(parts, dim=-1) + self.bias


class DeployModel(nn.Module):
    def __init__(self, model: JointSqueezeBert, max_len: int, int8_embedding: bool = False):
        super().__init__()
        enc = model.encoder
        cfg = model.config
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.layer_norm_eps
        self.hidden = (cfg.hidden_size,)
        emb = enc.embeddings
        table = emb.word_embeddings.weight.detach().clone()
        self.int8_embedding = int8_embedding
        if int8_embedding:
            # Per-row symmetric int8: the TFLite quantiser leaves GATHER tables in fp32, and the
            # table is most of the file (8k x 384). Dequantising one row per token costs nothing.
            scale = table.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127.0
            self.register_buffer("word_q", torch.round(table / scale).clamp(-127, 127).to(torch.int8))
            self.register_buffer("word_scale", scale)
        else:
            self.word = nn.Parameter(table, requires_grad=False)
        positions = emb.position_embeddings.weight.detach()[:max_len] + emb.token_type_embeddings.weight.detach()[0]
        self.positions = nn.Parameter(positions.clone(), requires_grad=False)
        self.emb_ln = _ln(emb.LayerNorm)
        self.layers = nn.ModuleList()
        for layer in enc.encoder.layers:
            m = nn.Module()
            m.q = GroupedLinear(layer.attention.query)
            m.k = GroupedLinear(layer.attention.key)
            m.v = GroupedLinear(layer.attention.value)
            m.post = GroupedLinear(layer.post_attention.conv1d)
            m.post_ln = _ln(layer.post_attention.layernorm)
            m.inter = GroupedLinear(layer.intermediate.conv1d)
            m.out = GroupedLinear(layer.output.conv1d)
            m.out_ln = _ln(layer.output.layernorm)
            self.layers.append(m)
        self.intent = _linear(model.intent_head)
        self.slot = _linear(model.slot_head)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        b, n = input_ids.shape
        flat = input_ids.reshape(-1)
        if self.int8_embedding:
            rows = torch.index_select(self.word_q, 0, flat).to(torch.float32) * torch.index_select(
                self.word_scale, 0, flat
            )
        else:
            rows = torch.index_select(self.word, 0, flat)
        x = rows.reshape(b, n, -1)
        x = x + self.positions[:n]
        x = F.layer_norm(x, self.hidden, *self.emb_ln, eps=self.eps)
        mask = attention_mask.to(x.dtype)
        bias = ((1.0 - mask) * -10000.0)[:, None, None, :]
        scale = 1.0 / math.sqrt(self.head_dim)
        for m in self.layers:
            q = self._split(m.q(x), b, n)
            k = self._split(m.k(x), b, n)
            v = self._split(m.v(x), b, n)
            probs = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale + bias, dim=-1)
            ctx = torch.matmul(probs, v).transpose(1, 2).reshape(b, n, -1)
            x = F.layer_norm(m.post(ctx) + x, self.hidden, *m.post_ln, eps=self.eps)
            h = F.gelu(m.inter(x))
            x = F.layer_norm(m.out(h) + x, self.hidden, *m.out_ln, eps=self.eps)
        weights = mask.unsqueeze(-1)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        intent_logits = torch.matmul(pooled, self.intent[0]) + self.intent[1]
        slot_logits = torch.matmul(x, self.slot[0]) + self.slot[1]
        return intent_logits, slot_logits

    def _split(self, t: torch.Tensor, b: int, n: int) -> torch.Tensor:
        return t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)


def _ln(ln: nn.LayerNorm):
    return nn.ParameterList(
        [
            nn.Parameter(ln.weight.detach().clone(), requires_grad=False),
            nn.Parameter(ln.bias.detach().clone(), requires_grad=False),
        ]
    )


def _linear(lin: nn.Linear):
    return nn.ParameterList(
        [
            nn.Parameter(lin.weight.detach().t().contiguous(), requires_grad=False),
            nn.Parameter(lin.bias.detach().clone(), requires_grad=False),
        ]
    )


@torch.no_grad()
def check_against(model: JointSqueezeBert, deploy: DeployModel, ids: torch.Tensor, mask: torch.Tensor) -> float:
    """Largest absolute logit difference between the training and the export form."""
    model.eval()
    a_int, a_slot, _ = model(ids, mask)
    b_int, b_slot = deploy(ids, mask)
    valid = mask.bool()
    return max(float((a_int - b_int).abs().max()), float((a_slot - b_slot)[valid].abs().max()))
