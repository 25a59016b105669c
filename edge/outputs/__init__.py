"""Where events go: one module per output behind one small interface.

* :mod:`edge.outputs.stdout`: JSON lines on standard output (the journal, under systemd);
* :mod:`edge.outputs.mqtt`: an MQTT broker, edge's event JSON and the Hermes protocol's messages
  (:mod:`edge.outputs.hermes`), queued while the broker is away;
* :mod:`edge.outputs.hooks`: programs run per intent, slots in their environment;
* :mod:`edge.outputs.metrics`: Prometheus counters and histograms for ``GET /metrics``.

The HTTP API answers requests rather than receiving events: it is a server, in :mod:`edge.service.http`.

Every output takes :class:`edge.events.Event` objects and serialises them with
``Event.to_dict()``, so an intent, a wake word or a timeout look the same everywhere (MQTT adds the
Hermes protocol's messages, built from the same result fields, for clients that read only those). ``publish``
must not block the live loop: outputs that wait on the outside world (a broker, a program) queue
the event and do the work on their own thread.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Sequence
from typing import Any

from edge.events import Event

log = logging.getLogger("edge.outputs")


class Output(abc.ABC):
    """Something that takes every event."""

    name: str = ""
    """Short name for logs and /healthz (``stdout``, ``mqtt``, ``hooks``, ``metrics``)."""

    @abc.abstractmethod
    def publish(self, event: Event) -> None:
        """Take one event; returns at once (slow work is queued)."""

    def close(self) -> None:
        """Deliver what is queued, within the output's own time limit, and release resources."""

    def health(self) -> dict[str, Any]:
        """What /healthz shows about this output (connected, queued, dropped, ...)."""
        return {}


class Fanout:
    """Publishes each event to every output; one output failing never stops the others."""

    def __init__(self, outputs: Sequence[Output], on_error: Callable[[str], None] | None = None) -> None:
        self.outputs = list(outputs)
        self.on_error = on_error

    def publish(self, event: Event) -> None:
        for output in self.outputs:
            try:
                output.publish(event)
            except Exception:  # an output bug must not take the voice loop down with it
                log.exception("output %s failed on event %s", output.name, event.id)
                if self.on_error is not None:
                    self.on_error(f"output:{output.name}")

    def health(self) -> dict[str, Any]:
        return {o.name: h for o in self.outputs if (h := o.health())}

    def close(self) -> None:
        for output in self.outputs:
            try:
                output.close()
            except Exception:
                log.exception("output %s failed to close", output.name)


__all__ = ["Fanout", "Output"]
