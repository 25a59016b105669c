"""Where the public data sets are: ``--data DIR``, else ``$EDGE_DATA``, then ``../shared/data`` beside the checkout.

Data sets published by other projects (HWU64, recordings of real speech) are used from where they
are provided and never copied into this repository. The tools, benchmarks and tests find them
here; the runtime needs none of them (what it needs at run time, e.g. a model's evaluation
sample, travels in the model package). A missing data set is one :class:`DataSetMissing` whose
message says where it was looked for, where it is published and how to put it in place.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

ENV = "EDGE_DATA"
CHECKOUT = Path(__file__).resolve().parent.parent
BESIDE_CHECKOUT = CHECKOUT.parent / "shared" / "data"


@dataclasses.dataclass(frozen=True)
class DataSet:
    name: str
    """Directory name under the data root."""
    title: str
    licence: str
    citation: str
    published: str
    """Where the data set is published."""
    get: str
    """How to put it under a data root."""


HWU64 = DataSet(
    name="hwu64",
    title="HWU64 (train/dev/test.jsonl)",
    licence="CC BY 4.0",
    citation='X. Liu, A. Eshghi, P. Swietojanski and V. Rieser, "Benchmarking Natural Language Understanding '
    'Services for building Conversational Agents", IWSDS 2019 (arXiv:1903.05566)',
    published="the NLU-Evaluation-Data repository of Liu et al., https://github.com/xliuhw/NLU-Evaluation-Data",
    get="on a machine with internet, `python tools/fetch_hwu64.py DIR/hwu64` downloads it and converts it to "
    "train/dev/test.jsonl",
)
REAL_SPEECH = DataSet(
    name="real-speech",
    title="real speech (59 recordings of spoken commands with transcripts, manifest.jsonl)",
    licence="Apache-2.0 (speech-to-phrase clips) and MIT (rhasspy-speech, rhasspy3 clips)",
    citation="test recordings of OHF-Voice/speech-to-phrase, rhasspy/rhasspy-speech and rhasspy/rhasspy3",
    published="the test folders of github.com/OHF-Voice/speech-to-phrase (tests/wav/en), "
    "github.com/rhasspy/rhasspy-speech (tests/wav) and github.com/rhasspy/rhasspy3 (etc/)",
    get="copy the WAV files into DIR/real-speech/<source>/ with a manifest.jsonl as docs/data.md describes",
)
KNOWN = {d.name: d for d in (HWU64, REAL_SPEECH)}


class DataSetMissing(FileNotFoundError):
    """A public data set (or a file of it) is not where the data root says."""


def roots(data_dir: str | Path | None = None) -> list[tuple[Path, str]]:
    """The data roots to search, best first, each with how it was chosen (for messages)."""
    if data_dir is not None:  # an explicit --data is the only place looked at
        return [(Path(data_dir).expanduser(), "--data")]
    found = []
    if os.environ.get(ENV):
        found.append((Path(os.environ[ENV]).expanduser(), f"${ENV}"))
    found.append((BESIDE_CHECKOUT, "../shared/data beside the checkout"))
    return found


def find(name: str, data_dir: str | Path | None = None) -> Path:
    """The directory of data set ``name`` under the first data root that has it."""
    for root, _ in roots(data_dir):
        if (root / name).is_dir():
            return root / name
    raise DataSetMissing(missing_message(name, data_dir))


def path(name: str, file: str, data_dir: str | Path | None = None) -> Path:
    """A file of data set ``name`` (e.g. ``path("hwu64", "test.jsonl")``), checked to exist."""
    target = find(name, data_dir) / file
    if not target.is_file():
        raise DataSetMissing(
            f"{target}: not found; the {name} data set there is incomplete. "
            + missing_message(name, data_dir, searched=False)
        )
    return target


def missing_reason(name: str, data_dir: str | Path | None = None) -> str | None:
    """Why data set ``name`` cannot be used (for a test's skip), or None when it is there."""
    try:
        find(name, data_dir)
    except DataSetMissing as exc:
        return str(exc)
    return None


def missing_message(name: str, data_dir: str | Path | None = None, searched: bool = True) -> str:
    known = KNOWN.get(name)
    where = "; ".join(f"{root / name} ({how})" for root, how in roots(data_dir))
    text = f"the {name} data set is not here: looked in {where}. " if searched else ""
    if known is None:
        return text + f"{name!r} is not a data set this project knows (known: {', '.join(sorted(KNOWN))})"
    return (
        text + f"{known.title} is published in {known.published} ({known.licence}); {known.get}, then "
        f"set {ENV}=DIR or pass --data DIR (details: docs/data.md)"
    )


def relative_name(file: str | Path) -> str | None:
    """``hwu64/train.jsonl`` for a file under a data root, else None (to record where training data came from)."""
    file = Path(file).expanduser().resolve()
    for root, _ in roots():
        try:
            return file.relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return None


def read_rows(name: str, file: str, data_dir: str | Path | None = None) -> list[dict]:
    """The JSON lines of a data set's file, e.g. HWU64's ``{text, intent, entities}`` rows."""
    import json

    with path(name, file, data_dir).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def add_argument(parser) -> None:
    """The ``--data DIR`` option of the tools and benchmarks that read a public data set."""
    parser.add_argument(
        "--data",
        metavar="DIR",
        help=f"data root holding the public data sets (default: ${ENV}, then ../shared/data beside the checkout)",
    )
