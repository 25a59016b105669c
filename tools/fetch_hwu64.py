#!/usr/bin/env python3
"""Download HWU64 from where it is published and convert it to the train/dev/test JSONL edge uses.

Needs the internet (GitHub), so it is for a machine that has it; copy the result to the data root
of machines that do not (``$EDGE_DATA`` or ``../shared/data`` beside the checkout, see docs/data.md).

    python tools/fetch_hwu64.py ../shared/data/hwu64           # download and convert
    python tools/fetch_hwu64.py OUT --archive master.zip       # convert an archive downloaded before

Source: the cross-validation folds of the NLU-Evaluation-Data repository (X. Liu, A. Eshghi,
P. Swietojanski, V. Rieser, IWSDS 2019; CC BY 4.0). ``test.jsonl`` is the test set of fold 1,
``dev.jsonl`` of fold 2, ``train.jsonl`` of folds 3-10; a text already seen (ignoring case) in an
earlier fold is left out. Each row is ``{"text", "intent", "entities"}``: the intent is
``<scenario>_<intent>`` and each ``[type : words]`` annotation becomes an entity with character
offsets into the text. At the end the files' sha256 are compared with the copy the shipped model
was trained on, so a changed upstream shows.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge import datasets  # noqa: E402

ARCHIVE_URL = "https://github.com/xliuhw/NLU-Evaluation-Data/archive/refs/heads/master.zip"
FOLDS = "CrossValidation/autoGeneFromRealAnno/autoGene_2018_03_22-13_01_25_169/CrossValidation/KFold_{k}/testset/csv/"
SPLITS = {"test": (1,), "dev": (2,), "train": tuple(range(3, 11))}
# The files the shipped model (models/squeezebert-hwu64) was trained and evaluated on.
TRAINED_ON_SHA256 = {
    "train.jsonl": "d746971f3da74be5fecfb00dc8350956fdd6cf5e36d3a07561d649e7810dd1ae",
    "dev.jsonl": "68ee94f5e40c4099b3ac01670ff3ecf6328b449be012ffd23998639516601055",
    "test.jsonl": "f23e1126d399ddf1a041860c59460771efd9397270e51a83e1310095d8d5dee3",
}
ANNOTATION = re.compile(r"\[\s*([^\[\]:]+?)\s*:+\s*([^\[\]]*?)\s*\]")


class FetchError(RuntimeError):
    pass


def parse_annotation(annotated: str) -> tuple[str, list[dict]]:
    """``"wake me at [time : six am]"`` -> the text and its entities (character offsets into it)."""
    chars: list[tuple[str, int | None]] = []  # each character of the text, with the entity it belongs to
    kinds: list[str] = []
    pos = 0
    for match in ANNOTATION.finditer(annotated):
        chars += [(c, None) for c in annotated[pos : match.start()]]
        kinds.append(match.group(1).strip())
        chars += [(c, len(kinds) - 1) for c in match.group(2)]
        pos = match.end()
    chars += [(c, None) for c in annotated[pos:]]
    text, owner = "", []
    for c, who in chars:  # one space between words, none at the ends
        if c.isspace():
            if text and not text.endswith(" "):
                text += " "
                owner.append(who)
            continue
        text += c
        owner.append(who)
    while text.endswith(" "):
        text, owner = text[:-1], owner[:-1]
    entities = []
    for i, kind in enumerate(kinds):
        at = [j for j, who in enumerate(owner) if who == i and text[j] != " "]
        if at:
            entities.append({"start": at[0], "end": at[-1] + 1, "entity": kind, "value": text[at[0] : at[-1] + 1]})
    return text, entities


def fold_rows(archive: zipfile.ZipFile, k: int) -> list[dict]:
    """Fold ``k``'s test set: every intent's CSV in name order, rows in file order."""
    suffix = FOLDS.format(k=k)
    names = sorted(
        (n for n in archive.namelist() if suffix in n and n.endswith(".csv")), key=lambda n: n.rsplit("/", 1)[1]
    )
    if not names:
        raise FetchError(
            f"{archive.filename}: no CSV files under .../{suffix} (is this the NLU-Evaluation-Data archive?)"
        )
    rows = []
    for name in names:
        reader = csv.DictReader(io.TextIOWrapper(archive.open(name), encoding="utf-8"), delimiter=";")
        for n, row in enumerate(reader, 2):
            try:
                intent = f"{row['scenario'].strip()}_{row['intent'].strip()}"
                text, entities = parse_annotation(row["answer_annotation"])
            except (KeyError, AttributeError):
                raise FetchError(f"{name}:{n}: expected the columns scenario, intent and answer_annotation") from None
            if text:
                rows.append({"text": text, "intent": intent, "entities": entities})
    return rows


def convert(archive_path: Path, out: Path) -> dict[str, int]:
    """Write train/dev/test.jsonl into ``out``; returns the row count per split."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise FetchError(f"{archive_path}: not a readable zip archive ({exc})") from None
    seen: set[str] = set()
    counts = {}
    out.mkdir(parents=True, exist_ok=True)
    with archive:
        for split in ("test", "dev", "train"):  # fold order: a text repeated in a later fold is left out there
            kept = []
            for k in SPLITS[split]:
                for row in fold_rows(archive, k):
                    key = row["text"].lower()
                    if key not in seen:
                        seen.add(key)
                        kept.append(row)
            (out / f"{split}.jsonl").write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8"
            )
            counts[split] = len(kept)
    return counts


def download(dest: Path) -> Path:
    print(f"downloading {ARCHIVE_URL} ...", file=sys.stderr, flush=True)
    try:
        with urllib.request.urlopen(ARCHIVE_URL, timeout=60) as response, dest.open("wb") as fh:
            while block := response.read(1 << 20):
                fh.write(block)
    except OSError as exc:
        raise FetchError(
            f"{ARCHIVE_URL}: cannot download ({exc}); this needs the internet. On a machine that has it, "
            "download the archive and pass it with --archive"
        ) from None
    return dest


def compare(out: Path) -> list[str]:
    """Lines saying whether each file is the one the shipped model was trained on."""
    lines = []
    for name, want in TRAINED_ON_SHA256.items():
        got = hashlib.sha256((out / name).read_bytes()).hexdigest()
        same = "the same as" if got == want else "differs from"
        lines.append(f"{out / name}: sha256 {got[:16]}…, {same} the file the shipped model was trained on")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "out", type=Path, help=f"directory to write train/dev/test.jsonl to (e.g. DATA_ROOT/{datasets.HWU64.name})"
    )
    p.add_argument(
        "--archive", type=Path, help="the NLU-Evaluation-Data zip archive, already downloaded (default: download it)"
    )
    args = p.parse_args(argv)
    try:
        if args.archive:
            counts = convert(args.archive, args.out)
        else:
            with tempfile.TemporaryDirectory(prefix="hwu64-") as tmp:
                counts = convert(download(Path(tmp) / "NLU-Evaluation-Data.zip"), args.out)
    except FetchError as exc:
        print(f"fetch_hwu64: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: " + ", ".join(f"{split} {n}" for split, n in counts.items()))
    print("\n".join(compare(args.out)))
    (args.out / "README.md").write_text(
        f"# HWU64\n\nConverted by tools/fetch_hwu64.py from {ARCHIVE_URL} (test: fold 1, dev: fold 2, train: folds 3-10; "
        f"texts repeated in a later fold left out).\n\nLicence: {datasets.HWU64.licence}. Cite: {datasets.HWU64.citation}.\n",
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
