"""What systemd sees of the service: ``sd_notify`` messages, watchdog pings, and log lines for the journal."""

from __future__ import annotations

import logging
import os
import sys
import time


class Notifier:
    """``sd_notify`` messages: READY, RELOADING, STOPPING, STATUS, and watchdog pings at half the interval.

    ``sdnotify`` is the small pure-Python client of systemd's notification socket; outside systemd
    (no ``NOTIFY_SOCKET``) every message is dropped.
    """

    def __init__(self) -> None:
        import sdnotify

        self._sd = sdnotify.SystemdNotifier()
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.watchdog_interval = int(usec) / 2e6 if enabled else None
        self._last_ping = 0.0

    def notify(self, *lines: str) -> None:
        self._sd.notify("\n".join(lines))

    def due(self) -> bool:
        """A watchdog ping is due (at most every half watchdog interval; cheap enough to ask per frame)."""
        return self.watchdog_interval is not None and time.monotonic() - self._last_ping >= self.watchdog_interval

    def ping(self) -> None:
        if self.due():
            self._last_ping = time.monotonic()
            self._sd.notify("WATCHDOG=1")

    def monotonic_usec(self) -> str:
        """The ``MONOTONIC_USEC=`` line systemd wants beside ``RELOADING=1``."""
        return f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


class JournalFormatter(logging.Formatter):
    """``<N>`` syslog priority prefixes, which journald turns into message priorities."""

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self.PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


def setup_logging(verbose: int) -> None:
    """Log to stderr: with priorities and without timestamps under systemd (it sets ``JOURNAL_STREAM`` and adds
    its own), else with timestamps."""
    level = logging.DEBUG if verbose >= 2 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(name)s: %(message)s"
    journal = bool(os.environ.get("JOURNAL_STREAM"))
    handler.setFormatter(JournalFormatter(fmt) if journal else logging.Formatter("%(asctime)s " + fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if verbose < 1:
        for noisy in ("edge.outputs.mqtt.paho",):
            logging.getLogger(noisy).setLevel(logging.WARNING)


__all__ = ["JournalFormatter", "Notifier", "setup_logging"]
