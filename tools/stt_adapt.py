#!/usr/bin/env python3
"""Build the speech-recognition adaptation artefacts of a model package.

Reads the sentences the model was trained on: ``--sentences FILE`` (one sentence per line, or
JSON lines with a ``text`` field); else those the package carries (``manifest.training.sentences_file``,
packages built from an intents file); else the public data set it was trained on
(``manifest.training.dataset``, found by edge/datasets.py: ``--data DIR``, ``$EDGE_DATA``,
``../shared/data``). Writes ``stt/pocketsphinx.lm.bin``, ``stt/pocketsphinx.dict``,
``stt/vosk-grammar.json`` and ``stt/adaptation.json`` into the package, and records them with their
checksums in the manifest's ``stt`` section. See ``edge/stt/adapt.py`` for what is built and why.

    .venv/bin/python tools/stt_adapt.py models/squeezebert-hwu64     # HWU64 train from ../shared/data
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge import datasets  # noqa: E402
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


def package_sentences(package: ModelPackage, data_dir: str | Path | None = None) -> list[str]:
    """The training sentences the package carries, else those of the data set it records; [] when it records neither."""
    carried = package.training_sentences()
    if carried:
        return carried
    recorded = package.manifest.get("training", {}).get("dataset")
    if not recorded:
        return []
    name, _, file = recorded.partition("/")
    return read_sentences(datasets.path(name, file, data_dir))


def adapt_package(
    package_dir: str | Path,
    sentences: list[str],
    general_words: int = 20000,
    vosk_general_words: int = 1000,
    max_lambda: float = 0.9,
    whisper_prompt: str = "",
) -> dict:
    """Build the artefacts from ``sentences`` (and Whisper's prompt) into the package and record them;
    returns the build's stats."""
    package_dir = Path(package_dir)
    grammar_file = ModelPackage.load(package_dir).grammar_file()
    grammar = None
    if grammar_file is not None:
        from edge.grammar import Grammar

        grammar = Grammar.from_file(grammar_file)
    built = adapt.build(
        sentences,
        package_dir / adapt.SECTION,
        general_words=general_words,
        vosk_general_words=vosk_general_words,
        max_lambda=max_lambda,
        whisper_prompt=whisper_prompt,
        grammar=grammar,
    )
    stats = built.pop("stats")
    add_artifacts(package_dir, adapt.SECTION, built)
    missing = stats["words_without_pronunciation"]
    print(
        f"{package_dir}: {stats['sentences']} sentences, vocabulary {stats['vocabulary']} words "
        f"({stats['domain_words']} from the domain), n-grams {stats['ngrams']}, lambda {stats['lambda']} "
        f"(fitted {stats['lambda_fitted']}), {stats['vosk_phrases']} Vosk phrases"
    )
    if missing:
        print(
            f"{len(missing)} domain words have no pronunciation and cannot be recognised: "
            f"{', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}"
        )
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build STT adaptation artefacts for a model package.")
    parser.add_argument("package", type=Path, help="model package directory")
    parser.add_argument(
        "--sentences",
        type=Path,
        help="sentences to adapt to (default: the package's training sentences, or the data set it was trained on)",
    )
    datasets.add_argument(parser)
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
        sentences = read_sentences(args.sentences) if args.sentences else package_sentences(package, args.data)
        prompt = args.whisper_prompt.read_text(encoding="utf-8") if args.whisper_prompt else ""
    except (PackageError, OSError, json.JSONDecodeError) as exc:  # DataSetMissing is an OSError
        print(f"stt_adapt: {exc}", file=sys.stderr)
        return 2
    if not sentences:
        print(
            f"stt_adapt: {args.package}: the package records neither training sentences nor the data set it was "
            "trained on; pass --sentences FILE",
            file=sys.stderr,
        )
        return 2
    adapt_package(package.dir, sentences, args.general_words, args.vosk_general_words, args.max_lambda, prompt)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
