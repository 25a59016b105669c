"""``edge-intent install-service``: the systemd unit, its system user and a starting configuration, in place.

The unit template, the sysusers file and the example configuration are package data
(:mod:`importlib.resources`), so this works from an installed wheel as from a checkout.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edge import resources

UNIT = "etc/systemd/system/edge-intent.service"
SYSUSERS = "etc/sysusers.d/edge-intent.conf"
CONFIG = "etc/edge/config.yaml"


class InstallError(Exception):
    """A step of the installation failed; the message says which."""


@dataclass(frozen=True)
class Plan:
    """What to write (path below the root -> text, mode) and then run."""

    files: tuple[tuple[str, str, int], ...]
    commands: tuple[tuple[str, ...], ...]


def plan(root: Path, executable: Path, start: bool = True) -> Plan:
    """The files for an installation of ``executable`` (this venv's ``edge-intent``) below ``root``.

    The configuration is only written where there is none; on a live system (``root`` is ``/``)
    the user is created, the configuration given to its group, and the unit enabled and started.
    """
    unit = render_unit(resources.read_text("systemd/edge-intent.service"), executable)
    files = [(UNIT, unit, 0o644), (SYSUSERS, resources.read_text("systemd/edge-intent.sysusers"), 0o644)]
    if not (root / CONFIG).exists():
        files.append((CONFIG, resources.read_text("examples/config.yaml"), 0o640))
    commands: list[tuple[str, ...]] = []
    if root == Path("/"):
        commands = [
            ("systemd-sysusers", str(root / SYSUSERS)),
            ("chgrp", "edge", str(root / CONFIG)),
            ("systemctl", "daemon-reload"),
        ]
        if start:
            commands.append(("systemctl", "enable", "--now", "edge-intent.service"))
    return Plan(tuple(files), tuple(commands))


def install(root: Path, executable: Path, start: bool = True, dry_run: bool = False, out=sys.stdout) -> None:
    """Carry out :func:`plan`; ``dry_run`` prints each file and command instead. Raises :class:`InstallError`."""
    steps = plan(root, executable, start)
    for rel, text, mode in steps.files:
        target = root / rel
        if dry_run:
            print(f"would write {target} ({len(text)} bytes, mode {mode:o})", file=out)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
        print(f"wrote {target}", file=out)
    for command in steps.commands:
        print(("would run $ " if dry_run else "$ ") + " ".join(command), file=out, flush=True)
        if not dry_run and subprocess.run(command).returncode != 0:
            raise InstallError(f"{command[0]} failed (see above)")


def render_unit(template: str, executable: Path) -> str:
    """The unit with this installation's ``edge-intent``; a checkout under /home or /root stays readable."""
    install_dir = executable.parent.parent
    unit = template.replace("/opt/edge/venv/bin/edge-intent", str(executable))
    if str(install_dir).startswith(("/home/", "/root/")):
        # ProtectHome= hides home directories; make just this installation visible, read-only.
        checkout = install_dir.parent if install_dir.name.startswith(".venv") else install_dir
        unit = unit.replace("ProtectHome=yes", f"ProtectHome=tmpfs\nBindReadOnlyPaths={checkout}")
    return unit


__all__ = ["InstallError", "Plan", "install", "plan", "render_unit"]
