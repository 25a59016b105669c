#!/usr/bin/env python3
"""Build the speech-recognition adaptation artefacts of a model package.

Reads the package's training sentences (``manifest.training.sentences_file``; or ``--sentences
FILE``, one sentence per line or HWU64-style JSON lines with a ``text`` field), writes
``stt/pocketsphinx.lm.bin``, ``stt/pocketsphinx.dict``, ``stt/vosk-grammar.json`` and
``stt/adaptation.json`` into the package, and records them with their checksums in the manifest's
``stt`` section. See ``edge/stt/adapt.py`` for what is built and why.

    .venv/bin/python tools/stt_adapt.py models/squeezebert-hwu64
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.package import ModelPackage, PackageError, add_artifacts  # noqa: E402
from edge.stt import adapt  # noqa: E402


def read_sentences(path: Path) -> list[str]:
    sentences = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("{"):
            line = json.loads(line).get("text", "")
        if line:
            sentences.append(line)
    return sentences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build STT adaptation artefacts for a model package.")
    parser.add_argument("package", type=Path, help="model package directory")
    parser.add_argument(
        "--sentences", type=Path, help="sentences to adapt to (default: the package's training sentences)"
    )
    parser.add_argument(
        "--general-words",
        type=int,
        default=20000,
        help="most frequent general English words kept in the PocketSphinx vocabulary (default 20000)",
    )
    parser.add_argument(
        "--vosk-general-words",
        type=int,
        default=1000,
        help="general English words added to the Vosk phrase list (default 1000)",
    )
    parser.add_argument("--max-lambda", type=float, default=0.9, help="cap on the domain LM weight (default 0.9)")
    parser.add_argument("--whisper-prompt", type=Path, help="text file: words to bias Whisper towards (slot values)")
    args = parser.parse_args(argv)
    try:
        package = ModelPackage.load(args.package)
        sentences = read_sentences(args.sentences) if args.sentences else package.training_sentences()
    except (PackageError, OSError, json.JSONDecodeError) as exc:
        print(f"stt_adapt: {exc}", file=sys.stderr)
        return 2
    if not sentences:
        print(
            f"stt_adapt: {args.package}: the package records no training sentences; pass --sentences FILE",
            file=sys.stderr,
        )
        return 2
    prompt = args.whisper_prompt.read_text(encoding="utf-8") if args.whisper_prompt else ""
    grammar = None
    if package.grammar_file() is not None:
        from edge.grammar import Grammar

        grammar = Grammar.from_file(package.grammar_file())
    built = adapt.build(
        sentences,
        package.dir / adapt.SECTION,
        general_words=args.general_words,
        vosk_general_words=args.vosk_general_words,
        max_lambda=args.max_lambda,
        whisper_prompt=prompt,
        grammar=grammar,
    )
    stats = built.pop("stats")
    add_artifacts(package.dir, adapt.SECTION, built)
    missing = stats["words_without_pronunciation"]
    print(
        f"{package.dir}: {stats['sentences']} sentences, vocabulary {stats['vocabulary']} words "
        f"({stats['domain_words']} from the domain), n-grams {stats['ngrams']}, lambda {stats['lambda']} "
        f"(fitted {stats['lambda_fitted']}), {stats['vosk_phrases']} Vosk phrases"
    )
    if missing:
        print(
            f"{len(missing)} domain words have no pronunciation and cannot be recognised: "
            f"{', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
