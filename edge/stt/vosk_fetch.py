"""Download and install Vosk models: ``edge-models fetch vosk-small-en-us``.

The archive is checked against a pinned sha256 before anything is unpacked, unpacked into a
temporary directory next to the destination (entries that would land outside it, absolute
paths and links are refused), checked to be a Vosk model, and only then renamed into place, so
a half-downloaded or half-unpacked model is never seen by the recogniser. Uses only the standard
library (urllib, zipfile): the device may have nothing else.

Alpha Cephei publishes no checksums. The pinned digest of vosk-model-small-en-us-0.15.zip
(41,205,931 bytes) is the one recorded independently by several projects that download this
archive (the same value in each); it could not be recomputed here, where the archive's host is
unreachable. A mismatch is a refusal, not a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

MODEL_ENV = "EDGE_VOSK_MODEL"


@dataclasses.dataclass(frozen=True)
class RemoteModel:
    url: str
    sha256: str
    bytes: int
    root: str
    """The archive's top-level directory."""
    license: str


MODELS = {
    "vosk-small-en-us": RemoteModel(
        url="https://alphacephei.com/vosk/models/vosk-model-small-en-us-0.15.zip",
        sha256="30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498",
        bytes=41_205_931,
        root="vosk-model-small-en-us-0.15",
        license="Apache-2.0",
    ),
}


class FetchError(Exception):
    """A model could not be downloaded, verified or installed; nothing was installed."""


def stt_dirs() -> list[Path]:
    """Where STT models are installed: the user's data dir, then the system's."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return [Path(data_home) / "edge" / "stt", Path("/var/lib/edge/stt"), Path("/usr/share/edge/stt")]


def is_vosk_model(path: Path) -> bool:
    return (path / "am" / "final.mdl").is_file() and (path / "conf").is_dir()


def find_model(name: str = "vosk-small-en-us") -> Path | None:
    """``$EDGE_VOSK_MODEL``, else the first installed copy of ``name``."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env).expanduser()
    for d in stt_dirs():
        if is_vosk_model(d / name):
            return d / name
    return None


def fetch(
    name: str,
    dest: str | Path | None = None,
    url: str | None = None,
    sha256: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 60.0,
    force: bool = False,
) -> Path:
    """Install model ``name`` into ``dest`` (default ``~/.local/share/edge/stt/<name>``); return its path.

    ``url`` replaces the official address (a mirror); the archive must still match the pinned
    sha256 unless ``sha256`` names another. ``progress(done, total)`` is called while downloading.
    An installed model is left alone (and returned) unless ``force``.
    """
    if name not in MODELS:
        raise FetchError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    spec = MODELS[name]
    dest = Path(dest).expanduser() if dest else stt_dirs()[0] / name
    expected = (sha256 or spec.sha256).lower()
    if is_vosk_model(dest) and not force:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.", dir=dest.parent) as tmp:
        archive = Path(tmp) / "model.zip"
        _download(url or spec.url, archive, expected, spec.bytes * 2, progress, timeout)
        unpacked = Path(tmp) / "unpacked"
        _unpack(archive, unpacked)
        root = unpacked / spec.root if (unpacked / spec.root).is_dir() else unpacked
        if not is_vosk_model(root):
            raise FetchError(f"{url or spec.url}: the archive holds no Vosk model (no am/final.mdl and conf/)")
        old = Path(tmp) / "previous"
        if dest.exists():
            os.rename(dest, old)
        try:
            os.rename(root, dest)  # same filesystem: atomic
        except OSError:
            if old.exists():
                os.rename(old, dest)
            raise
    return dest


def _download(
    url: str, path: Path, sha256: str, limit: int, progress: Callable[[int, int], None] | None, timeout: float
) -> None:
    digest = hashlib.sha256()
    done = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, path.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            while block := response.read(1 << 20):
                done += len(block)
                if done > limit:
                    raise FetchError(f"{url}: more than {limit} bytes, far larger than the model; refusing")
                digest.update(block)
                out.write(block)
                if progress:
                    progress(done, total)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"cannot download {url}: {reason}") from None
    if digest.hexdigest() != sha256:
        raise FetchError(
            f"{url}: sha256 {digest.hexdigest()} does not match the pinned {sha256}; "
            "the download is corrupt or not the expected model, nothing was installed"
        )


def _unpack(archive: Path, target: Path) -> None:
    target.mkdir()
    base = target.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                mode = info.external_attr >> 16
                out = (base / info.filename).resolve()
                if (
                    info.filename.startswith(("/", "\\"))
                    or ".." in Path(info.filename).parts
                    or not out.is_relative_to(base)
                ):
                    raise FetchError(
                        f"{archive.name}: entry {info.filename!r} would be written outside the model "
                        "directory; refusing the archive"
                    )
                if stat.S_ISLNK(mode):
                    raise FetchError(
                        f"{archive.name}: entry {info.filename!r} is a symbolic link; refusing the archive"
                    )
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, out.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{archive.name}: not a valid zip archive ({exc})") from None


__all__ = ["FetchError", "MODELS", "RemoteModel", "fetch", "find_model", "is_vosk_model", "stt_dirs"]
