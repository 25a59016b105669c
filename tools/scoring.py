"""Metrics: intent accuracy, exact-span slot F1, out-of-scope rejection."""

from __future__ import annotations


def bio_spans(tags: list[str]) -> set[tuple[int, int, str]]:
    """(start, end, type) spans from BIO tags; a stray I- starts a span, as conlleval does."""
    spans, start, kind = set(), None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, t = tag.partition("-")
        if start is not None and (prefix != "I" or t != kind):
            spans.add((start, i, kind))
            start, kind = None, None
        if prefix == "B" or (prefix == "I" and start is None):
            start, kind = i, t
    return spans


def span_f1(gold: list[set], pred: list[set]) -> float:
    tp = sum(len(g & p) for g, p in zip(gold, pred))
    n_gold = sum(len(g) for g in gold)
    n_pred = sum(len(p) for p in pred)
    if n_gold == 0 and n_pred == 0:
        return 1.0
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def dev_metrics(model, data, tag_names: list[str]) -> dict:
    from .finetune import predict

    probs, slots = predict(model, data)
    in_scope = [i for i, d in enumerate(data) if d.intent >= 0]
    pred = probs.argmax(-1)
    acc = sum(int(pred[i]) == data[i].intent for i in in_scope) / max(1, len(in_scope))
    gold = [bio_spans([tag_names[t] for t in d.slot_tags if t != -100]) for d in data]
    predicted = [bio_spans([tag_names[t] for t in s]) for s in slots]
    f1 = span_f1(gold, predicted)
    return {"intent_acc": acc, "slot_f1": f1, "score": acc + 0.25 * f1}


def oos_metrics(in_scope_conf: list[float], oos_conf: list[float], threshold: float) -> dict:
    """Share of in-scope sentences wrongly rejected and of out-of-scope ones correctly rejected."""
    fr = sum(c < threshold for c in in_scope_conf) / max(1, len(in_scope_conf))
    rec = sum(c < threshold for c in oos_conf) / max(1, len(oos_conf))
    return {"threshold": threshold, "in_scope_rejected": fr, "oos_rejected": rec}


def calibrate_threshold(
    in_scope_conf: list[float], oos_conf: list[float], max_in_scope_rejected: float = 0.01
) -> float:
    """The highest threshold that rejects at most ``max_in_scope_rejected`` of in-scope dev sentences.

    Capping false rejections (rather than maximising a combined score) keeps the rule from
    trading real commands for garbage rejection: a missed command is worse than a wrong one
    that the user hears and repeats.
    """
    ordered = sorted(in_scope_conf)
    k = int(max_in_scope_rejected * len(ordered))
    return float(ordered[k]) if ordered else 0.5
