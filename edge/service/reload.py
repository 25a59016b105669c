"""Reloading the service's configuration (SIGHUP): the options that stay on top of the file, and what changed.

A reload reads the file again, puts the same command-line options on top (:class:`Overrides`), and
:func:`changes` says which parts differ from the running ones, so that only those are rebuilt: an
unchanged MQTT session keeps its queue, an unchanged microphone stream stays open.
"""

from __future__ import annotations

import dataclasses

from edge.config import Config, check
from edge.settings import SettingsError


@dataclasses.dataclass(frozen=True)
class Overrides:
    """``--http``, ``--wyoming`` and ``--no-mic``: applied at start and again at every reload."""

    http: str | None = None
    wyoming: str | None = None
    no_mic: bool = False

    def apply(self, config: Config) -> Config:
        """The options on top of the file, checked like the file (a public HTTP address needs a token)."""
        if self.http is not None:
            http = dataclasses.replace(config.http, listen=self.http, enabled=True)
            config = check(dataclasses.replace(config, http=http), "--http")
        if self.wyoming is not None:
            try:
                settings = dataclasses.replace(config.wyoming, listen=self.wyoming, enabled=True)
            except ValueError as exc:
                raise SettingsError("--wyoming", "wyoming", str(exc)) from None
            config = check(dataclasses.replace(config, wyoming=settings), "--wyoming")
        if self.no_mic:
            config = dataclasses.replace(config, audio=dataclasses.replace(config.audio, enabled=False))
        return config


@dataclasses.dataclass(frozen=True)
class Changes:
    """Which running parts a new configuration touches."""

    profile: bool
    """The device profile setting changed (it is detected again)."""
    http: bool
    wyoming: bool
    wake: bool
    microphone_enabled: bool
    """``audio.enabled`` flipped: that takes a restart."""


def changes(old: Config, new: Config) -> Changes:
    """What differs between the running configuration and a new one (the speech chain's own parts are
    compared by :meth:`edge.assistant.Assistant.reconfigure`, the outputs by ``build_outputs``)."""
    return Changes(
        profile=new.profile != old.profile,
        http=new.http != old.http,
        wyoming=new.wyoming != old.wyoming,
        wake=new.wake != old.wake,
        microphone_enabled=new.audio.enabled != old.audio.enabled,
    )


__all__ = ["Changes", "Overrides", "changes"]
