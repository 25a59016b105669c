"""JSON lines on standard output: one line per event, flushed at once.

Under systemd standard output goes to the journal (``journalctl -u edge-intent -o cat`` gives the
JSON back); in a terminal or a pipe it is easy to read and to ``jq``.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import IO, Any

from edge.events import Event
from edge.outputs import Output

log = logging.getLogger("edge.outputs.stdout")


class StdoutOutput(Output):
    name = "stdout"

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()  # the microphone loop and HTTP requests print from different threads
        self._broken = False

    def publish(self, event: Event) -> None:
        line = json.dumps(event.to_dict(), ensure_ascii=False) + "\n"
        with self._lock:
            if self._broken:
                return
            try:
                self.stream.write(line)
                self.stream.flush()
            except (BrokenPipeError, ValueError, OSError) as exc:
                # A closed pipe (the reader went away) is not a reason to stop listening.
                self._broken = True
                log.warning("standard output is gone (%s); events are no longer printed", exc)

    def health(self) -> dict[str, Any]:
        return {"broken": True} if self._broken else {}


__all__ = ["StdoutOutput"]
