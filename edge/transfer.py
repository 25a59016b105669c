"""What the base model knows, lent to a package trained on a few templates.

A package trained from an intents file starts from the shipped HWU64 model, whose intent head
has read some 25,000 commands people wrote ("what do i need to buy" is ``lists_query``). Fine-tuned
on a handful of templates, the new model is sure of the templates' words and unsure of a
paraphrase. ``edge-train`` therefore records, for each of the package's intents, the base model's
mean distribution over its own intents on that intent's training sentences (its *profile*, in
``transfer.json``). At run time, when the package's model is unsure, the base model reads the text
too, and each intent's affinity (the cosine between the text's base distribution and the intent's
profile) is mixed with the package model's probabilities (``edge.classifier``).

The base is found by name among the installed packages (it is the model edge ships); a missing
base, or one whose labels differ from those the profiles were taken with, turns the transfer off
with a warning: the package's own model still answers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge.package import ModelPackage, PackageError, find_package

if TYPE_CHECKING:
    from edge.backends import Backend
    from edge.profiles import Profile

log = logging.getLogger("edge.transfer")

FILE = "transfer.json"
FORMAT = 1


class BaseReader:
    """The base package's intent head: text → its probability over the base's own intents."""

    def __init__(self, package: ModelPackage, backend: Backend) -> None:
        self.package = package
        self.backend = backend
        self.tokenizer = package.tokenizer()
        self.max_len = package.max_seq_len
        self.sep_id = self.tokenizer.token_to_id("[SEP]")

    @classmethod
    def load(
        cls,
        package: ModelPackage,
        backend: str | None = None,
        precision: str | None = None,
        threads: int = 1,
        profile: Profile | None = None,
    ) -> BaseReader:
        from edge.backends import create_backend
        from edge.classifier import choose_variant

        choice = choose_variant(package, backend, precision, profile)
        package.verify_file(str(choice.file.relative_to(package.dir)))
        backend_ = create_backend(
            choice.backend, choice.file, threads=threads, profile=profile, runtimes=choice.runtimes
        )
        return cls(package, backend_)

    def probabilities(self, text: str) -> np.ndarray:
        ids = self.tokenizer.encode(text).ids
        if len(ids) > self.max_len:
            ids = ids[: self.max_len - 1] + [self.sep_id]
        input_ids = np.asarray(ids, dtype=np.int64)[None, :]
        logits = self.backend.run({"input_ids": input_ids, "attention_mask": np.ones_like(input_ids)})
        z = logits["intent_logits"][0].astype(np.float64)
        p = np.exp(z - z.max())
        return p / p.sum()


def profiles(reader: BaseReader, sentences: Iterable[tuple[str, str]]) -> dict[str, list[float]]:
    """Each intent's mean base distribution over its (text, intent) sentences."""
    readings: dict[str, list[np.ndarray]] = {}
    for text, intent in sentences:
        readings.setdefault(intent, []).append(reader.probabilities(text))
    return mean_profiles(readings)


def mean_profiles(readings: dict[str, list[np.ndarray]]) -> dict[str, list[float]]:
    return {k: [round(float(x), 6) for x in np.mean(v, axis=0)] for k, v in sorted(readings.items()) if v}


def write(package_dir: Path, base: ModelPackage, intent_profiles: dict[str, list[float]]) -> dict:
    """``transfer.json`` in ``package_dir``; returns the manifest's ``transfer`` entry."""
    (package_dir / FILE).write_text(
        json.dumps(
            {
                "format": FORMAT,
                "base": {"name": base.name, "version": base.version, "labels": base.labels},
                "profiles": intent_profiles,
            }
        )
        + "\n",
        encoding="utf-8",
    )
    return {
        "file": FILE,
        "base": f"{base.name}@{base.version}",
        "rule": "when the model's best intent is below the transfer's confidence, the base model's affinity "
        "to each intent's profile is mixed in (edge.transfer, edge.classifier)",
    }


class Transfer:
    """Affinity of a text to each of a package's intents, by way of the base model."""

    def __init__(self, reader: BaseReader, labels: Sequence[str], intent_profiles: dict[str, list[float]]) -> None:
        self.reader = reader
        self.base_label = f"{reader.package.name}@{reader.package.version}"
        rows = np.zeros((len(labels), len(reader.package.labels)))
        for i, label in enumerate(labels):
            if label in intent_profiles:
                v = np.asarray(intent_profiles[label], dtype=np.float64)
                rows[i] = v / (np.linalg.norm(v) or 1.0)
        self._profiles = rows

    @classmethod
    def load(cls, package: ModelPackage, open_base: Callable[[ModelPackage], BaseReader]) -> Transfer | None:
        """The package's transfer, its base read by ``open_base`` (the backend and threads of the package's
        own model), or None when it has none or its base cannot be used (with a warning)."""
        entry = package.manifest.get("transfer")
        if not entry or not entry.get("file"):  # none, or left out by the trainer (it says why)
            return None
        path = package.verify_file(entry.get("file", FILE))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            base_info = data["base"]
            intent_profiles = data["profiles"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PackageError(f"{path}: not a transfer file ({exc})") from None
        try:
            base = find_package(base_info["name"])
        except PackageError as exc:
            log.warning(
                "%s: its base model is not usable (%s); the package's own model answers alone", package.name, exc
            )
            return None
        if base.labels != base_info["labels"]:
            log.warning(
                "%s: the installed %s %s has other intents than the %s its transfer was made with; "
                "the package's own model answers alone",
                package.name,
                base.name,
                base.version,
                base_info.get("version"),
            )
            return None
        return cls(open_base(base), package.labels, intent_profiles)

    def affinity(self, text: str) -> np.ndarray:
        """Per package label (0 for labels without a profile, such as the none class), in [0, 1]."""
        return self.affinity_of(self.reader.probabilities(text))

    def affinity_of(self, base_probabilities: np.ndarray) -> np.ndarray:
        return self._profiles @ (base_probabilities / np.linalg.norm(base_probabilities))
