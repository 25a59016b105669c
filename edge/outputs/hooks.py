"""Hooks: run a program for an intent, with the slots in its environment.

A hook is an argv list from the configuration, started with :class:`subprocess.Popen` and never
through a shell, so what was said can only ever be data: a slot value of ``; rm -rf ~`` arrives
in ``EDGE_SLOT_...`` exactly as spoken and is run by nobody. The event is passed as

* environment variables: ``EDGE_EVENT`` (type), ``EDGE_EVENT_ID``, ``EDGE_INTENT``,
  ``EDGE_CONFIDENCE``, ``EDGE_TEXT``, ``EDGE_SLOTS`` (JSON) and ``EDGE_SLOT_<NAME>`` per slot
  (name upper-cased, other characters as ``_``; a slot said twice gives its values one per line);
* the event's JSON on standard input (for ``jq`` and friends).

Hooks run on a small thread pool (``concurrency``), each in its own process group so a
``timeout_s`` kills the program and anything it started. Exit status, run time and the end of its
stderr are logged (only the last few kilobytes of its output are kept, however much it writes); a full queue drops the hook and says so. The daemon's systemd notification
variables are not passed on: a hook cannot tell systemd anything on the daemon's behalf.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import re
import selectors
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

from edge.events import Event
from edge.outputs import Output

if TYPE_CHECKING:
    from edge.config import HooksSettings
    from edge.outputs.metrics import Metrics

log = logging.getLogger("edge.outputs.hooks")

_WITHHELD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
_EVENT_VARS = ("EDGE_INTENT", "EDGE_CONFIDENCE", "EDGE_TEXT")  # never inherited: a non-intent event has none
_TAIL = 400  # characters of a failed hook's stderr that reach the log
_KEPT = 4096  # bytes of each output stream kept while a hook runs (the rest is read and dropped)


class HookRunner(Output):
    name = "hooks"

    def __init__(self, settings: HooksSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.concurrency, thread_name_prefix="edge-hook"
        )
        self._lock = threading.Lock()
        self._pending = 0  # waiting + running
        self.dropped = 0
        self.runs = 0
        self.failures = 0

    def publish(self, event: Event) -> None:
        argv = self.settings.command_for(event.name, event.type)
        if argv is None:
            return
        with self._lock:
            if self._pending >= self.settings.concurrency + self.settings.queue_size:
                self.dropped += 1
                self._count(event.name, "dropped")
                log.warning(
                    "hook for %s dropped: %d hook(s) already running or waiting (concurrency %d, queue %d)",
                    event.name,
                    self._pending,
                    self.settings.concurrency,
                    self.settings.queue_size,
                )
                return
            self._pending += 1
        self._pool.submit(
            self._run, event.name, list(argv), hook_env(event), json.dumps(event.to_dict(), ensure_ascii=False).encode()
        )

    def _run(self, name: str, argv: list[str], env: dict[str, str], stdin: bytes) -> None:
        start = time.monotonic()
        try:
            outcome = self._execute(name, argv, env, stdin, start)
        except Exception:  # a hook must never take the pool thread down
            log.exception("hook %s (%s) failed", name, argv[0])
            outcome = "error"
        finally:
            with self._lock:
                self._pending -= 1
        self._count(name, outcome)

    def _execute(self, name: str, argv: list[str], env: dict[str, str], stdin: bytes, start: float) -> str:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            log.error("hook %s: cannot start %s: %s", name, argv[0], exc.strerror or exc)
            return "error"
        out, err, finished = _exchange(proc, stdin, time.monotonic() + self.settings.timeout_s)
        if not finished:
            _kill_group(proc)
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                log.error("hook %s: %s survived SIGKILL of its process group", name, argv[0])
            log.warning(
                "hook %s: %s killed after the %g s timeout%s", name, argv[0], self.settings.timeout_s, _stderr_tail(err)
            )
            return "timeout"
        ms = (time.monotonic() - start) * 1000.0
        with self._lock:
            self.runs += 1
        if proc.returncode == 0:
            log.info("hook %s: %s exited 0 in %.0f ms", name, argv[0], ms)
            if out.strip():
                log.debug("hook %s stdout: %s", name, out.decode(errors="replace")[-_TAIL:].strip())
            return "ok"
        with self._lock:
            self.failures += 1
        status = f"was killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exited {proc.returncode}"
        log.warning("hook %s: %s %s after %.0f ms%s", name, argv[0], status, ms, _stderr_tail(err))
        return "failed"

    def _count(self, name: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.hook_runs.labels(name, outcome).inc()

    def close(self) -> None:
        """Run what is queued and wait for it: every hook is bounded by its timeout and the queue by its size
        (under systemd, ``TimeoutStopSec=`` bounds the whole shutdown)."""
        with self._lock:
            pending = self._pending
        if pending:
            log.info("hooks: waiting for %d hook(s) before stopping", pending)
        self._pool.shutdown(wait=True)

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {"pending": self._pending, "runs": self.runs, "failures": self.failures, "dropped": self.dropped}


def hook_env(event: Event) -> dict[str, str]:
    """The daemon's environment (less systemd's notification variables) plus the event's fields."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _WITHHELD_ENV and k not in _EVENT_VARS and not k.startswith("EDGE_SLOT")
    }
    for key, value in event.data.items():  # first, so that the standard names below always win
        env["EDGE_" + re.sub(r"[^A-Z0-9_]", "_", str(key).upper())] = str(value)
    env["EDGE_EVENT"] = event.type
    env["EDGE_EVENT_ID"] = event.id
    result = event.result
    if result is not None:
        env["EDGE_INTENT"] = result.intent or ""
        env["EDGE_CONFIDENCE"] = "" if result.confidence is None else f"{result.confidence:.4f}"
        env["EDGE_TEXT"] = result.text
        slots = result.slot_dict()
        env["EDGE_SLOTS"] = json.dumps(slots, ensure_ascii=False)
        for slot, value in slots.items():
            env["EDGE_SLOT_" + re.sub(r"[^A-Z0-9_]", "_", slot.upper())] = (
                "\n".join(value) if isinstance(value, list) else value
            )
    return env


def _exchange(proc: subprocess.Popen, stdin: bytes, deadline: float) -> tuple[bytes, bytes, bool]:
    """Feed stdin, keep the last ``_KEPT`` bytes of stdout and stderr, until the hook exits or the deadline.

    Returns (stdout tail, stderr tail, exited in time). ``communicate()`` would keep all the
    output: a hook writing without end would grow the daemon without end. The pipes are
    closed here either way, so a grandchild that keeps them open costs nothing after.
    """
    kept = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    pending = memoryview(stdin)
    with selectors.DefaultSelector() as sel:
        for pipe in kept:
            sel.register(pipe, selectors.EVENT_READ)
        if pending:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        exited_at = None
        try:
            while sel.get_map():
                now = time.monotonic()
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                # A background child of the hook may hold the pipes after the hook exited: read on briefly, then stop.
                left = min(deadline, exited_at + 0.5) - now if exited_at is not None else deadline - now
                if left <= 0:
                    break
                for key, _ in sel.select(min(left, 0.1)):
                    if key.fileobj is proc.stdin:
                        try:
                            pending = pending[os.write(proc.stdin.fileno(), pending) :]
                        except (BrokenPipeError, BlockingIOError) as exc:
                            if isinstance(exc, BlockingIOError):
                                continue
                            pending = pending[:0]  # the hook does not read its stdin: its choice
                        if not pending:
                            sel.unregister(proc.stdin)
                            proc.stdin.close()
                        continue
                    chunk = os.read(key.fileobj.fileno(), 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    buf = kept[key.fileobj]
                    buf += chunk
                    del buf[:-_KEPT]
            exited = _wait(proc, deadline - time.monotonic())
        finally:
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    pipe.close()
                except OSError:
                    pass
    return bytes(kept[proc.stdout]), bytes(kept[proc.stderr]), exited


def _wait(proc: subprocess.Popen, seconds: float) -> bool:
    try:
        proc.wait(timeout=max(0.0, seconds))
        return True
    except subprocess.TimeoutExpired:
        return False


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _stderr_tail(err: bytes) -> str:
    text = err.decode(errors="replace").strip()
    return f"; stderr: {text[-_TAIL:]}" if text else ""


__all__ = ["HookRunner", "hook_env"]
