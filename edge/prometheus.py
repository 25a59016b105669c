"""Prometheus text from metric families, as ``prometheus-client`` renders a registry.

The profiler, the live loop's status and the wake stage make their figures as metric families
(``prometheus_client.core``) when ``/metrics`` is scraped; this renders them without a registry of
their own, so a stage depends on the library, not on the service's outputs.
"""

from __future__ import annotations

from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Families:
    """Metric families made at scrape time, as ``generate_latest`` takes a registry."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


def render(families: list[Any]) -> bytes:
    """Metric families in the Prometheus text exposition format."""
    from prometheus_client import generate_latest

    return generate_latest(_Families(families))  # type: ignore[arg-type]


__all__ = ["CONTENT_TYPE", "render"]
