"""Fine-tuning and distillation loops for the joint intent + slot model.

The dense teacher is fine-tuned on hard labels; the grouped student learns from the hard labels,
the teacher's softened intent and slot distributions, and the teacher's hidden states layer by
layer (same width, so no projection is needed). Out-of-scope examples (``intent: None``) are
trained towards a uniform intent distribution (outlier exposure, Hendrycks et al. 2019), which
is what makes a max-probability rejection rule work on word salad from a TV.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import time

import torch
import torch.nn.functional as F

from .data import Encoded
from .model import JointSqueezeBert


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: float = 0.06
    slot_weight: float = 1.0
    oos_weight: float = 0.5
    seed: int = 13
    max_steps: int | None = None  # for smoke tests of the toolchain
    # distillation only
    temperature: float = 2.0
    kd_weight: float = 1.0
    hidden_weight: float = 0.5
    hidden_only_epochs: int = 0
    """Distillation: first epochs match the teacher's hidden states only (TinyBERT's two stages)."""
    time_budget_s: float | None = None
    """Stop training when this much time is spent (the steps that fit are measured on the first ones,
    and the learning-rate schedule is fitted to them); None trains every epoch."""
    freeze_embeddings: bool = False
    """Keep the word-piece embeddings as they are: a small fine-tuning set (template sentences) uses a
    few hundred of the 8,000 pieces, and moving only those would pull them away from the words
    the set never uses but users will say."""


def batches(data: list[Encoded], batch_size: int, rng: random.Random, shuffle: bool = True):
    """Length-bucketed batches: sort within shuffled pools so padding stays small."""
    idx = list(range(len(data)))
    if shuffle:
        rng.shuffle(idx)
    pool = batch_size * 50
    out = []
    for p in range(0, len(idx), pool):
        chunk = sorted(idx[p : p + pool], key=lambda i: len(data[i].input_ids))
        out.extend(chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size))
    if shuffle:
        rng.shuffle(out)
    for b in out:
        yield collate([data[i] for i in b])


def collate(items: list[Encoded]):
    n = max(len(it.input_ids) for it in items)
    ids = torch.zeros((len(items), n), dtype=torch.long)
    mask = torch.zeros((len(items), n), dtype=torch.long)
    tags = torch.full((len(items), n), -100, dtype=torch.long)
    intents = torch.tensor([it.intent for it in items], dtype=torch.long)
    for r, it in enumerate(items):
        k = len(it.input_ids)
        ids[r, :k] = torch.tensor(it.input_ids)
        mask[r, :k] = 1
        tags[r, :k] = torch.tensor(it.slot_tags)
    return ids, mask, tags, intents


def _hard_loss(intent_logits, slot_logits, tags, intents, cfg: TrainConfig):
    in_scope = intents >= 0
    loss = intent_logits.new_zeros(())
    if in_scope.any():
        loss = loss + F.cross_entropy(intent_logits[in_scope], intents[in_scope])
    if (~in_scope).any():
        # Outlier exposure: push out-of-scope inputs towards the uniform distribution.
        logp = F.log_softmax(intent_logits[~in_scope], dim=-1)
        loss = loss + cfg.oos_weight * (-logp.mean(dim=-1)).mean()
    if (tags != -100).any():
        loss = loss + cfg.slot_weight * F.cross_entropy(slot_logits.flatten(0, 1), tags.flatten(), ignore_index=-100)
    return loss


PROBE_STEPS = 20
"""Steps timed before the time budget decides how many steps fit."""


def _optimizer(model, cfg: TrainConfig, total_steps: int | list[int]):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.dim() == 1 or "LayerNorm" in name or "layernorm" in name else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    planned = total_steps if isinstance(total_steps, list) else [total_steps]  # a time budget may shorten it
    warm = max(1, int(cfg.warmup * planned[0]))

    def schedule(step):
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (planned[0] - step) / max(1, planned[0] - warm))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def train(
    model: JointSqueezeBert,
    train_data: list[Encoded],
    cfg: TrainConfig,
    evaluate,
    teacher: JointSqueezeBert | None = None,
    log=print,
) -> tuple[JointSqueezeBert, list[dict]]:
    """Train ``model`` (distilling from ``teacher`` when given); keep the best epoch on dev.

    ``evaluate(model) -> dict`` must return at least ``score`` (higher is better).
    """
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model.encoder.embeddings.word_embeddings.weight.requires_grad_(not cfg.freeze_embeddings)
    steps_per_epoch = math.ceil(len(train_data) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    planned = [total]
    opt, sched = _optimizer(model, cfg, planned)
    started = time.perf_counter()
    if teacher is not None:
        teacher.eval()
    history: list[dict] = []
    best_state, best_score = None, -math.inf
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        running = 0.0
        # A progress bar on a terminal (disable=None checks for a TTY); in a log, a line every tenth.
        epoch_steps = min(steps_per_epoch, total - step)
        bar = tqdm(
            total=epoch_steps,
            desc=f"  epoch {epoch + 1}/{cfg.epochs}",
            unit="step",
            leave=False,
            disable=None,
            file=sys.stderr,
        )
        tenth = epoch_steps // 10 if bar.disable and epoch_steps >= 50 else 0
        for n, (ids, mask, tags, intents) in enumerate(batches(train_data, cfg.batch_size, rng)):
            if step >= total:
                break
            intent_logits, slot_logits, hidden = model(ids, mask, output_hidden_states=teacher is not None)
            if teacher is not None and epoch < cfg.hidden_only_epochs:
                loss = _distill_loss(
                    teacher, ids, mask, tags, intent_logits, slot_logits, hidden, cfg, hidden_only=True
                )
            else:
                loss = _hard_loss(intent_logits, slot_logits, tags, intents, cfg)
                if teacher is not None:
                    loss = loss + _distill_loss(teacher, ids, mask, tags, intent_logits, slot_logits, hidden, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            running += loss.item()
            if cfg.time_budget_s is not None and step == PROBE_STEPS:
                fit = int(cfg.time_budget_s / ((time.perf_counter() - started) / PROBE_STEPS))
                if fit < total:
                    total = planned[0] = max(fit, PROBE_STEPS + 1)
                    log(
                        f"  time budget {cfg.time_budget_s / 60:.1f} min: {total} steps fit of "
                        f"{steps_per_epoch * cfg.epochs} ({total / steps_per_epoch:.2f} epochs)"
                    )
            bar.update(1)
            if n % 10 == 0:
                bar.set_postfix(loss=f"{running / (n + 1):.3f}")
            if tenth and (n + 1) % tenth == 0 and n + 1 < epoch_steps:
                spent = time.perf_counter() - t0
                log(
                    f"  epoch {epoch + 1}/{cfg.epochs}: {(n + 1) * 100 // epoch_steps}% ({n + 1}/{epoch_steps} steps, "
                    f"loss {running / (n + 1):.3f}, {spent * (epoch_steps - n - 1) / (n + 1) / 60:.1f} min left)"
                )
        bar.close()
        metrics = evaluate(model)
        metrics.update(epoch=epoch + 1, loss=running / max(1, n + 1), seconds=round(time.perf_counter() - t0, 1))
        history.append(metrics)
        log(
            f"  epoch {epoch + 1}: "
            + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        )
        # ties go to the later epoch: a small dev set (a small grammar's) often scores several alike
        if metrics["score"] >= best_score and epoch >= cfg.hidden_only_epochs:
            best_score = metrics["score"]
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if step >= total:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, history


def _distill_loss(teacher, ids, mask, tags, intent_logits, slot_logits, hidden, cfg: TrainConfig, hidden_only=False):
    with torch.no_grad():
        t_intent, t_slot, t_hidden = teacher(ids, mask, output_hidden_states=True)
    if hidden_only:
        return _hidden_loss(hidden, t_hidden, mask, intent_logits.dtype)
    T = cfg.temperature
    kd = F.kl_div(F.log_softmax(intent_logits / T, -1), F.softmax(t_intent / T, -1), reduction="batchmean") * T * T
    valid = tags != -100
    if valid.any():
        kd = kd + F.kl_div(F.log_softmax(slot_logits[valid], -1), F.softmax(t_slot[valid], -1), reduction="batchmean")
    return cfg.kd_weight * kd + cfg.hidden_weight * _hidden_loss(hidden, t_hidden, mask, intent_logits.dtype)


def _hidden_loss(hidden, t_hidden, mask, dtype):
    """Mean per-layer MSE to the teacher's hidden states, each scaled by the teacher layer's spread.

    MiniLM has a few large-magnitude channels that would otherwise dominate the loss.
    """
    m = mask.unsqueeze(-1).to(dtype)
    hid = m.new_zeros(())
    for s, t in zip(hidden[1:], t_hidden[1:]):
        scale = ((t * m) ** 2).sum() / (m.sum() * t.shape[-1])
        hid = hid + ((s - t) ** 2 * m).sum() / (m.sum() * s.shape[-1]) / scale.clamp(min=1e-6)
    return hid / max(1, len(hidden) - 1)


@torch.no_grad()
def predict(model: JointSqueezeBert, data: list[Encoded], batch_size: int = 64):
    """(intent probabilities, slot tag ids per example without specials) for every example."""
    model.eval()
    probs, slots = [], []
    for b in range(0, len(data), batch_size):
        items = data[b : b + batch_size]
        ids, mask, tags, _ = collate(items)
        il, sl, _ = model(ids, mask)
        probs.append(F.softmax(il, -1))
        pred = sl.argmax(-1)
        for r, it in enumerate(items):
            slots.append([int(t) for t, g in zip(pred[r, : len(it.input_ids)], it.slot_tags) if g != -100])
    return torch.cat(probs), slots
