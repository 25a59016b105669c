"""Files edge ships as package data: model packages, device profiles, the systemd unit, example configurations.

They live in the repository's top-level folders (``models/``, ``device_profiles/``, ``systemd/``,
``examples/``); ``edge/assets/`` links to them, so :mod:`importlib.resources` finds them the same
way in a checkout, an editable install and a wheel (where the build copies them into
``edge/assets/``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def path(relative: str) -> Path:
    """The packaged file or folder ``relative`` (``models``, ``systemd/edge-intent.service``, ...).

    A :class:`Path`, since the model runtimes open files by name: edge is installed as files
    (never zipped), so the packaged resources are on disk.
    """
    return Path(str(resources.files("edge").joinpath("assets", *relative.split("/"))))


def read_text(relative: str) -> str:
    """The text of a packaged file; :class:`FileNotFoundError` names it when the installation lacks it."""
    target = path(relative)
    try:
        return target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{target}: missing from this installation of edge (package data)") from None


__all__ = ["path", "read_text"]
