"""``edge-train``: data -> train -> distil -> export -> quantize -> evaluate -> package, one command.

    edge-train data/hwu64/train.jsonl --dev data/hwu64/dev.jsonl --eval data/hwu64/test.jsonl \\
        --out models/squeezebert-hwu64

Every stage writes its result into ``--work`` (default ``runs/<package name>``) and is skipped
when its output is already there, so an interrupted run resumes where it stopped. The run is
seeded; with the same inputs and versions it produces the same package.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="edge-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path, help="training data: JSONL ({text, intent, entities}) or a Home Assistant intents YAML")
    p.add_argument("--dev", type=Path, help="model-selection data (JSONL); default: 10%% of the training data held out")
    p.add_argument("--eval", type=Path, action="append", default=[], help="held-out evaluation data (JSONL); repeatable")
    p.add_argument("--out", type=Path, required=True, help="model package directory to write")
    p.add_argument("--name", help="package name (default: the --out directory name)")
    p.add_argument("--work", type=Path, help="directory for intermediate results (default: runs/NAME)")
    p.add_argument("--base", type=Path, help="base model: a directory with config.json + model.safetensors (BERT layout); default all-MiniLM-L6-v2")
    p.add_argument("--groups", type=int, default=4, help="groups of the squeezed student (1 = ship the dense model)")
    p.add_argument("--teacher-epochs", type=int, default=10)
    p.add_argument("--student-epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-4, help="teacher learning rate")
    p.add_argument("--hidden-only-epochs", type=int, default=5,
                   help="student epochs spent matching the teacher's hidden states only, before the task (TinyBERT)")
    p.add_argument("--student-lr", type=float, default=2e-4, help="student learning rate (it starts further from its optimum)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--vocab-size", type=int, default=8000, help="word pieces kept by vocabulary pruning")
    p.add_argument("--max-seq-len", type=int, default=64)
    p.add_argument("--oos-train", type=int, default=1000, help="generated out-of-scope sentences for outlier exposure")
    p.add_argument("--max-steps", type=int, help="stop each training stage after this many steps (smoke tests)")
    p.add_argument("--eval-limit", type=int, help="evaluate on at most this many sentences per file (smoke tests)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--no-stt", action="store_true", help="skip building the STT adaptation artefacts")
    p.add_argument("--version", default="1.0.0", help="package version written to the manifest")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from tools.data import encode, generated_out_of_scope, read_jsonl, slot_tag_set
    from tools.finetune import TrainConfig, train
    from tools.model import Groups, from_minilm, load, minilm_dir, save, to_grouped
    from tools.scoring import dev_metrics
    from tools.vocab import prune
    from tokenizers import Tokenizer

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    name = args.name or args.out.name
    work = args.work or Path("runs") / name
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()

    # 1. data
    train_ex, source_info = _load_training_data(args.data)
    if args.dev:
        dev_ex = read_jsonl(args.dev)
    else:
        rng = random.Random(args.seed)
        rng.shuffle(train_ex)
        cut = max(1, len(train_ex) // 10)
        dev_ex, train_ex = train_ex[:cut], train_ex[cut:]
    intents = sorted({e.intent for e in train_ex if e.intent is not None})
    tags = slot_tag_set(train_ex)
    intent_ids = {n: i for i, n in enumerate(intents)}
    tag_ids = {t: i for i, t in enumerate(tags)}
    dev_ex = [e for e in dev_ex if e.intent is None or e.intent in intent_ids]
    seen_texts = {e.text for e in train_ex + dev_ex}
    oos_train = generated_out_of_scope(args.oos_train, seed=args.seed, exclude=seen_texts)
    _log(f"data: {len(train_ex)} train, {len(dev_ex)} dev, {len(intents)} intents, {len(tags)} slot tags, "
         f"{len(oos_train)} generated out-of-scope")

    base = args.base or minilm_dir()
    tok_path = work / "tokenizer.json"
    keep_path = work / "kept_ids.json"
    if not tok_path.exists():
        pruned, kept = prune(base / "tokenizer.json", [e.text for e in train_ex + dev_ex], args.vocab_size)
        tok_path.write_text(json.dumps(pruned, ensure_ascii=False))
        keep_path.write_text(json.dumps(kept))
    kept = json.loads(keep_path.read_text())
    tokenizer = Tokenizer.from_file(str(tok_path))
    _log(f"vocabulary: {len(kept)} word pieces kept")

    enc = lambda exs: [encode(tokenizer, e, intent_ids, tag_ids, args.max_seq_len) for e in exs]  # noqa: E731
    train_enc = enc(train_ex + oos_train)
    dev_enc = enc(dev_ex)
    evaluate = lambda m: dev_metrics(m, dev_enc, tags)  # noqa: E731
    cfg = TrainConfig(epochs=args.teacher_epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      max_steps=args.max_steps)

    # 2. dense teacher
    teacher_path = work / "teacher.pt"
    if not teacher_path.exists():
        _log(f"teacher: fine-tuning the dense SqueezeBERT (groups=1) for {cfg.epochs} epochs")
        model = from_minilm(kept, len(intents), len(tags), args.max_seq_len, base)
        model, history = train(model, train_enc, cfg, evaluate, log=_log)
        save(model, teacher_path, {"history": history})
    teacher, teacher_extra = load(teacher_path)

    # 3. grouped student, distilled
    student_path = work / f"student-g{args.groups}.pt"
    if args.groups > 1 and not student_path.exists():
        scfg = TrainConfig(**{**cfg.__dict__, "epochs": args.student_epochs, "lr": args.student_lr,
                                          "hidden_only_epochs": args.hidden_only_epochs})
        _log(f"student: groups={args.groups}, distilled from the teacher for {scfg.epochs} epochs")
        student = to_grouped(teacher, Groups.squeezed(args.groups))
        student, history = train(student, train_enc, scfg, evaluate, teacher=teacher, log=_log)
        save(student, student_path, {"history": history})

    # 4-6. export, quantize, evaluate, package
    from tools import export, package_writer

    candidates = {"dense": teacher}
    if args.groups > 1:
        candidates[f"g{args.groups}"] = load(student_path)[0]
    labels = {"intents": intents, "slot_tags": tags}
    exported = export.export_all(candidates, tokenizer, labels, work, args.max_seq_len, dev_enc, seed=args.seed)
    calib_oos = generated_out_of_scope(500, seed=args.seed + 1, exclude=seen_texts)
    result = package_writer.build(
        out=args.out, name=name, version=args.version, work=work, exported=exported, candidates=candidates,
        labels=labels, train_texts=[e.text for e in train_ex],
        tokenizer_path=tok_path, dev=dev_ex, calib_oos=calib_oos, evals=[(p, read_jsonl(p)) for p in args.eval],
        eval_limit=args.eval_limit, source_info=source_info, max_seq_len=args.max_seq_len,
        histories={"teacher": teacher_extra.get("history", [])}, args=vars(args), started=started,
        oos_eval=generated_out_of_scope(1000, seed=args.seed + 2, exclude=seen_texts),
    )
    if not args.no_stt:
        from tools import stt_adapt

        _log("speech: building the STT domain adaptation from the training sentences")
        stt_adapt.main([str(args.out)])
    _log(result)
    return 0


def _load_training_data(path: Path):
    from tools.data import read_jsonl

    if path.suffix in (".yaml", ".yml"):
        from tools.templates import expand_intents_file

        return expand_intents_file(path)
    return read_jsonl(path), {"data": str(path)}


if __name__ == "__main__":
    sys.exit(main())
