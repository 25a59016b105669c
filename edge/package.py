"""Model packages: a directory with ``manifest.json``, ``tokenizer.json`` and model files.

The manifest is the contract between the toolchain (tools/) and the runtime: labels, slot tags,
input/output names, maximum sequence length, the out-of-scope rule, one entry per exported
variant (backend, precision, file, runtimes that can load it) and a sha256 for every file.
Loading verifies the checksums of the files it is about to use, so a truncated copy on an SD
card is refused with the file's name instead of producing wrong intents.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from edge import resources

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
MODELS_PATH_ENV = "EDGE_MODELS_PATH"
DEFAULT_MODEL = "squeezebert-hwu64"


class PackageError(ValueError):
    """A model package is missing, malformed, or a file fails verification."""


@dataclasses.dataclass(frozen=True)
class Variant:
    backend: str
    """``onnx`` or ``tflite``."""
    precision: str
    """``int8`` or ``fp32``."""
    file: str
    """Path relative to the package directory."""
    runtimes: tuple[str, ...] = ()
    """Interpreters that can load the file (``onnxruntime``; ``ai-edge-litert``, ``tflite-runtime``)."""
    groups: int = 1
    """SqueezeBERT groups of the encoder in this file."""
    signatures: tuple[int, ...] = ()
    """TFLite only: the fixed sequence lengths the file has a signature for (``seq<N>``)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_REQUIRED = (
    "name",
    "version",
    "format",
    "labels",
    "slot_tags",
    "max_seq_len",
    "inputs",
    "outputs",
    "files",
    "variants",
)


@dataclasses.dataclass
class ModelPackage:
    dir: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> ModelPackage:
        """Read and check the manifest; with ``verify``, check the tokenizer's checksum.

        Model files are verified when a variant is opened (:meth:`variant_path`), so loading a
        package never reads files it will not use.
        """
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise PackageError(f"{path}: not a model package (no {MANIFEST})")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, a number too long
            raise PackageError(f"{manifest_path}: not valid JSON ({str(exc)[:200]})") from None
        if not isinstance(manifest, dict):
            raise PackageError(f"{manifest_path}: expected a JSON object")
        missing = [k for k in _REQUIRED if k not in manifest]
        if missing:
            raise PackageError(f"{manifest_path}: missing keys {', '.join(missing)}")
        if manifest["format"] != FORMAT_VERSION:
            raise PackageError(
                f"{manifest_path}: format {manifest['format']!r}; this runtime reads format {FORMAT_VERSION}"
            )
        check_manifest(manifest, manifest_path)
        package = cls(path, manifest)
        if verify:
            package.verify_file(manifest.get("tokenizer", "tokenizer.json"))
        return package

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def language(self) -> str:
        """Language of the sentences the model was trained on (BCP 47, e.g. ``en``); ``en`` when the manifest does not say."""
        return str(self.manifest.get("language") or "en")

    @property
    def labels(self) -> list[str]:
        return self.manifest["labels"]

    def tokenizer(self):
        """The package's word-piece tokenizer, set to neither pad nor truncate (the model's reader cuts)."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.path(self.manifest.get("tokenizer", "tokenizer.json"))))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return tokenizer

    @property
    def slot_tags(self) -> list[str]:
        return self.manifest["slot_tags"]

    @property
    def max_seq_len(self) -> int:
        return int(self.manifest["max_seq_len"])

    @property
    def oos_threshold(self) -> float:
        return float(self.manifest.get("oos", {}).get("threshold", 0.0))

    @property
    def text_form(self) -> str:
        """``spoken`` (``edge.textnorm.spoken_form``: what packages built by ``edge-train`` from an intents
        file read) or ``written`` (text as typed, the form the HWU64 model was trained on)."""
        form = self.manifest.get("text_form", "written")
        if form not in ("spoken", "written"):
            raise PackageError(f"{self.dir / MANIFEST}: text_form {form!r}; allowed: spoken, written")
        return form

    def grammar_file(self) -> Path | None:
        """The verified intents file the model was trained from (``grammar.file``), if the package has one."""
        rel = self.manifest.get("grammar", {}).get("file")
        return self.verify_file(rel) if rel else None

    @property
    def grammar_max_distance(self) -> float:
        """How far (edit cost per word) a transcript may be from a grammar sentence to be taken as it."""
        return float(self.manifest.get("grammar", {}).get("max_distance", 0.3))

    @property
    def slot_values(self) -> dict[str, dict[str, str]]:
        """Per slot type, spoken synonym (lower case) -> canonical value."""
        return self.manifest.get("slot_values", {})

    @property
    def variants(self) -> list[Variant]:
        out = []
        for v in self.manifest["variants"]:
            out.append(
                Variant(
                    v["backend"],
                    v["precision"],
                    v["file"],
                    tuple(v.get("runtimes", ())),
                    int(v.get("groups", 1)),
                    tuple(v.get("signatures", ())),
                )
            )
        return out

    def find_variant(self, backend: str, precision: str | None) -> Variant | None:
        matches = [v for v in self.variants if v.backend == backend]
        if precision is not None:
            exact = [v for v in matches if v.precision == precision]
            return exact[0] if exact else None
        order = {"int8": 0, "fp32": 1}
        return min(matches, key=lambda v: order.get(v.precision, 9)) if matches else None

    def path(self, rel: str) -> Path:
        """The file ``rel`` of the package; :class:`PackageError` when the name or a symlink leads out of it."""
        path = self.dir / rel
        if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts or "\x00" in rel:
            raise PackageError(
                f"{self.dir / MANIFEST}: file name {rel!r} is not inside the package; "
                "allowed: a relative path without '..'"
            )
        try:
            inside = path.resolve().is_relative_to(self.dir.resolve())
        except (OSError, RuntimeError) as exc:  # a symlink loop
            raise PackageError(f"{path}: cannot be resolved ({exc})") from None
        if not inside:
            raise PackageError(
                f"{path}: a symlink out of the model package (to {path.resolve()}); "
                "allowed: files inside the package directory"
            )
        return path

    def referenced_files(self) -> list[str]:
        """Every file the manifest points the runtime at, checksummed or not (each must be)."""
        m = self.manifest
        names = [*m["files"], m.get("tokenizer", "tokenizer.json"), *(v.file for v in self.variants)]
        for rel in (m.get("training", {}).get("sentences_file"), m.get("grammar", {}).get("file")):
            if rel:
                names.append(rel)

        def collect(value: Any) -> None:  # the STT adaptation section: nested mappings of file names
            if isinstance(value, str) and "/" in value:
                names.append(value)
            elif isinstance(value, dict):
                for v in value.values():
                    collect(v)

        for engine in ("pocketsphinx", "vosk", "whisper"):
            collect(m.get("stt", {}).get(engine))
        return list(dict.fromkeys(names))

    def verify_file(self, rel: str) -> Path:
        """Return the file's path after checking it exists and matches its manifest sha256."""
        entry = self.manifest["files"].get(rel)
        path = self.path(rel)
        if entry is None:
            raise PackageError(f"{self.dir / MANIFEST}: file {rel!r} is used but has no checksum entry")
        if not path.is_file():
            raise PackageError(f"{path}: missing from the model package {self.name!r}")
        size = path.stat().st_size
        if "bytes" in entry and size != entry["bytes"]:
            raise PackageError(
                f"{path}: {size} bytes, the manifest says {entry['bytes']}: the file is truncated or replaced"
            )
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise PackageError(
                f"{path}: sha256 {digest[:12]}… does not match the manifest ({entry['sha256'][:12]}…): the file is corrupt"
            )
        return path

    def verify_all(self) -> list[str]:
        """Check every file; return the problems (empty when the package is intact)."""
        problems = []
        for rel in self.referenced_files():
            try:
                self.verify_file(rel)
            except PackageError as exc:
                problems.append(str(exc))
        return problems

    def training_sentences(self) -> list[str]:
        """The sentences the model was trained on, when the package carries them (for STT adaptation).

        Packages built from an intents file carry their generated sentences; a package trained on a
        public data set does not (the data set stays where it is published; see edge/datasets.py).
        """
        rel = self.manifest.get("training", {}).get("sentences_file")
        if not rel:
            return []
        return [line.strip() for line in self.verify_file(rel).read_text(encoding="utf-8").splitlines() if line.strip()]

    def evaluation_sample(self) -> list[dict[str, Any]]:
        """The package's own labelled sentences (``{"text", "intent"}``) for checking a runtime's accuracy;
        empty when the package has none. What they were made from is in ``manifest["evaluation_sample"]``."""
        rel = self.manifest.get("evaluation_sample", {}).get("file")
        if not rel:
            return []
        try:
            return read_labelled(self.verify_file(rel))
        except ValueError as exc:
            raise PackageError(str(exc)) from None


def read_labelled(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file of labelled sentences (``{"text", "intent", ...}``; blank lines skipped).

    A line that is not an object with a string ``text`` is a ValueError naming the file and line.
    """
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise ValueError(f'{path}:{n}: expected a JSON object with "text" and "intent"')
        rows.append(row)
    return rows


_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_manifest(m: dict[str, Any], where: Path) -> None:
    """The types the runtime relies on, each refused by key name (no KeyError or AttributeError later)."""

    def bad(key: str, expected: str, value: Any) -> PackageError:
        shown = repr(value)
        return PackageError(
            f"{where}: {key}: expected {expected}, got {shown[:80] + '…' if len(shown) > 80 else shown}"
        )

    def strings(key: str, value: Any, nonempty: bool = True) -> None:
        if not isinstance(value, list) or (nonempty and not value) or not all(isinstance(x, str) for x in value):
            raise bad(key, "a non-empty list of strings" if nonempty else "a list of strings", value)

    for key in ("name", "version"):
        if not isinstance(m[key], str) or not m[key]:
            raise bad(key, "a non-empty string", m[key])
    strings("labels", m["labels"])
    strings("slot_tags", m["slot_tags"])
    if not isinstance(m["max_seq_len"], int) or isinstance(m["max_seq_len"], bool) or not 2 <= m["max_seq_len"] <= 4096:
        raise bad("max_seq_len", "a whole number from 2 to 4096", m["max_seq_len"])
    for key in ("inputs", "outputs"):
        if not isinstance(m[key], dict):
            raise bad(key, "a mapping", m[key])
    if "tokenizer" in m and not isinstance(m["tokenizer"], str):
        raise bad("tokenizer", "a file name", m["tokenizer"])
    if not isinstance(m["files"], dict):
        raise bad("files", "a mapping of file name -> {sha256, bytes}", m["files"])
    for rel, entry in m["files"].items():
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not _SHA256.fullmatch(entry["sha256"])
        ):
            raise bad(f"files.{rel}", 'a mapping with "sha256": 64 hex digits', entry)
        if "bytes" in entry and (
            not isinstance(entry["bytes"], int) or isinstance(entry["bytes"], bool) or entry["bytes"] < 0
        ):
            raise bad(f"files.{rel}.bytes", "a whole number of bytes", entry["bytes"])
    if not isinstance(m["variants"], list) or not m["variants"]:
        raise bad("variants", "a non-empty list of {backend, precision, file}", m["variants"])
    for i, v in enumerate(m["variants"]):
        key = f"variants[{i}]"
        if not isinstance(v, dict):
            raise bad(key, "a mapping {backend, precision, file}", v)
        for field in ("backend", "precision", "file"):
            if not isinstance(v.get(field), str) or not v[field]:
                raise bad(f"{key}.{field}", "a non-empty string", v.get(field))
        if "runtimes" in v:
            strings(f"{key}.runtimes", v["runtimes"], nonempty=False)
        if not isinstance(v.get("groups", 1), int) or isinstance(v.get("groups", 1), bool) or v.get("groups", 1) < 1:
            raise bad(f"{key}.groups", "a whole number of 1 or more", v.get("groups"))
        signatures = v.get("signatures", [])
        if not isinstance(signatures, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) for n in signatures
        ):
            raise bad(f"{key}.signatures", "a list of whole numbers", signatures)
    oos = m.get("oos", {})
    if (
        not isinstance(oos, dict)
        or not isinstance(oos.get("threshold", 0.0), (int, float))
        or isinstance(oos.get("threshold"), bool)
        or not 0.0 <= oos.get("threshold", 0.0) <= 1.0
    ):
        raise bad("oos.threshold", "a number from 0 to 1", oos.get("threshold") if isinstance(oos, dict) else oos)
    slot_values = m.get("slot_values", {})
    if not isinstance(slot_values, dict) or not all(
        isinstance(table, dict) and all(isinstance(a, str) and isinstance(b, str) for a, b in table.items())
        for table in slot_values.values()
    ):
        raise bad("slot_values", "a mapping of slot -> {said: value} strings", slot_values)
    for section in ("training", "stt", "grammar"):
        if not isinstance(m.get(section, {}), dict):
            raise bad(section, "a mapping", m[section])
    for section, key in (("training", "sentences_file"), ("grammar", "file")):
        rel = m.get(section, {}).get(key)
        if rel is not None and not isinstance(rel, str):
            raise bad(f"{section}.{key}", "a file name", rel)


def search_dirs() -> list[Path]:
    """Where installed packages live: ``$EDGE_MODELS_PATH``, the user's and the system's data dirs, the
    packages shipped with edge (package data)."""
    dirs = [Path(p) for p in os.environ.get(MODELS_PATH_ENV, "").split(os.pathsep) if p]
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    dirs += [
        Path(data_home) / "edge" / "models",
        Path("/var/lib/edge/models"),
        Path("/usr/share/edge/models"),
        resources.path("models").resolve(),
    ]
    return dirs


def installed_packages() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in search_dirs():
        if not d.is_dir():
            continue
        for child in sorted(d.iterdir()):
            if (child / MANIFEST).is_file():
                found.setdefault(child.name, child)
    return found


def find_package(name_or_path: str | None = None, verify: bool = True) -> ModelPackage:
    """A package by directory path or installed name (default: the shipped HWU64 model)."""
    target = name_or_path or os.environ.get("EDGE_MODEL") or DEFAULT_MODEL
    path = Path(target).expanduser()
    if path.is_dir() or os.sep in target or target.startswith("."):
        return ModelPackage.load(path, verify=verify)
    installed = installed_packages()
    if target not in installed:
        where = ", ".join(str(d) for d in search_dirs())
        names = ", ".join(sorted(installed)) or "none"
        raise PackageError(f"model {target!r} is not installed (installed: {names}; searched {where})")
    return ModelPackage.load(installed[target], verify=verify)


def write_manifest(package_dir: Path, manifest: dict[str, Any]) -> None:
    """Record size and sha256 of every file listed in ``manifest['files']`` and write it atomically."""
    for rel in list(manifest["files"]):
        path = package_dir / rel
        manifest["files"][rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    tmp = package_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, package_dir / MANIFEST)


def add_artifacts(package_dir: str | Path, section: str, entries: dict[str, Any]) -> None:
    """Add files made after packaging (e.g. STT adaptation) under ``manifest[section]`` with checksums.

    ``entries`` maps keys to paths relative to the package (strings) or nested mappings of them.
    """
    package_dir = Path(package_dir)
    manifest = json.loads((package_dir / MANIFEST).read_text(encoding="utf-8"))

    def collect(value: Any) -> None:
        if isinstance(value, str) and (package_dir / value).is_file():
            manifest["files"][value] = {}
        elif isinstance(value, dict):
            for v in value.values():
                collect(v)

    collect(entries)
    manifest[section] = entries
    write_manifest(package_dir, manifest)
