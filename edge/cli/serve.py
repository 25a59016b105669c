"""``edge-intent serve`` and ``edge-intent install-service``: their options, mapped onto :mod:`edge.service`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from edge.cli import fail
from edge.config import DEFAULT_CONFIG_PATH

SERVE = "edge-intent serve"
INSTALL = "edge-intent install-service"
log = logging.getLogger("edge.service")


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help=f"YAML configuration (default {DEFAULT_CONFIG_PATH}; built-in defaults when that is missing)",
    )
    p.add_argument("--http", metavar="HOST:PORT", help="serve the HTTP API here (overrides http.listen)")
    p.add_argument(
        "--wyoming",
        metavar="URI",
        help="serve the Wyoming protocol (Home Assistant, wyoming-satellite) here: tcp://HOST:PORT or "
        "unix:///PATH (turns wyoming.enabled on, overrides wyoming.listen)",
    )
    p.add_argument("--no-mic", action="store_true", help="no microphone: the HTTP API only")
    p.add_argument("--check", action="store_true", help="check the configuration, print it as JSON and exit")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")


SERVE_HELP = "run the voice command service (microphone, HTTP, Wyoming, MQTT; reloads on SIGHUP)"
SERVE_DESCRIPTION = (
    "Run the voice command service: microphone and HTTP API in; stdout, HTTP, MQTT and hooks out. "
    "Reloads its configuration on SIGHUP."
)


def add_install_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--root", default="/", help="install below this directory instead of / (for images; then nothing is started)"
    )
    p.add_argument("--no-start", action="store_true", help="install, but do not enable and start the service")
    p.add_argument("--dry-run", action="store_true", help="print what would be written and run; change nothing")


INSTALL_HELP = "install the systemd service (unit, user 'edge', /etc/edge/config.yaml)"
INSTALL_DESCRIPTION = (
    "Install the systemd service: unit file, system user 'edge' (in group audio), /etc/edge/config.yaml "
    "(when missing). Run as root."
)


def serve(args: argparse.Namespace) -> int:
    from edge import config as config_mod
    from edge.backends import BackendUnavailable
    from edge.package import PackageError
    from edge.service.lifecycle import Service
    from edge.service.reload import Overrides
    from edge.service.systemd import setup_logging
    from edge.settings import SettingsError
    from edge.stt import SttError

    setup_logging(args.verbose)
    path = args.config
    if path is None and Path(DEFAULT_CONFIG_PATH).is_file():
        path = DEFAULT_CONFIG_PATH
    overrides = Overrides(http=args.http, wyoming=args.wyoming, no_mic=args.no_mic)
    try:
        config = overrides.apply(config_mod.load(path))
    except SettingsError as exc:
        return fail(SERVE, str(exc))
    if args.check:
        from edge.settings import to_mapping

        shown = to_mapping(config)
        for section, key in (("http", "token"), ("mqtt", "password")):
            if shown[section][key]:
                shown[section][key] = "(set)"
        print(json.dumps(shown, indent=2))
        return 0
    if path is None:
        log.info("no configuration file (%s is missing): using the defaults", DEFAULT_CONFIG_PATH)

    service = Service(config, path, overrides=overrides)
    # Handlers go in before the models load, so a SIGTERM during start-up still ends cleanly.
    signal.signal(signal.SIGTERM, lambda *_: service.request_stop())
    signal.signal(signal.SIGINT, lambda *_: service.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: service.request_reload())
    try:
        service.start()
    except (PackageError, BackendUnavailable, SttError, SettingsError) as exc:
        return fail(SERVE, str(exc), code=1)
    except OSError as exc:  # a port is taken, or the address is not on this machine
        where = getattr(exc, "edge_setting", None) or f"http.listen {config.http.listen}"
        return fail(SERVE, f"{where}: {exc.strerror or exc}", code=1)
    try:
        service.run()
    finally:
        service.close()
    return 0


def install_service(args: argparse.Namespace) -> int:
    from edge.service.install import InstallError, install

    root = Path(args.root)
    if root == Path("/") and not args.dry_run and os.geteuid() != 0:
        return fail(INSTALL, "run it as root (sudo), or give --root DIR to write an image", 1)
    # The console script beside this interpreter (a venv's bin/); not resolved, a venv's python is a symlink.
    executable = Path(sys.executable).parent / "edge-intent"
    try:
        install(root, executable, start=not args.no_start, dry_run=args.dry_run)
    except (InstallError, FileNotFoundError) as exc:
        return fail(INSTALL, str(exc), 1)
    return 0


__all__ = ["add_install_arguments", "add_serve_arguments", "install_service", "serve"]
