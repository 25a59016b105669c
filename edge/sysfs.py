"""Small readers for sysfs/procfs attribute files, shared by the energy and thermal readers.

Every path is resolved below a ``root`` so tests run against recorded trees of real boards
(tests/fixtures/sysfs/). The per-inference readers keep the file open and re-read it with
``os.pread`` at offset 0: sysfs and procfs regenerate an attribute on every read from offset 0,
and skipping open/close makes a read several times cheaper (docs/profiling.md), which matters when the
profiler has to stay under a few percent of a millisecond-scale inference.
"""

from __future__ import annotations

import os
from pathlib import Path


def read_text(path: str | Path) -> str | None:
    """The stripped text of an attribute file, or ``None`` when it is missing or unreadable."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").strip("\x00\n ")
    except OSError:
        return None


class Attr:
    """One attribute file kept open for cheap repeated reads.

    ``read_*`` raise ``OSError`` (unreadable: permission, I/O error on a disabled sensor channel)
    or ``ValueError`` (not a number); callers decide whether that is fatal.
    """

    __slots__ = ("path", "_fd")

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._fd = os.open(self.path, os.O_RDONLY)

    def read_bytes(self) -> bytes:
        return os.pread(self._fd, 128, 0)

    def read_int(self) -> int:
        return int(self.read_bytes())

    def read_float(self) -> float:
        return float(self.read_bytes())

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            finally:
                self._fd = -1

    def __del__(self) -> None:  # a source dropped without close() must not leak descriptors
        try:
            self.close()
        except Exception:
            pass


def open_number(path: str | Path) -> Attr:
    """Open ``path`` and read it once, so a sensor that cannot be read fails at probe time."""
    attr = Attr(path)
    try:
        attr.read_float()
    except (OSError, ValueError):
        attr.close()
        raise
    return attr


__all__ = ["Attr", "open_number", "read_text"]
