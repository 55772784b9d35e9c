"""The hook through which a worker reports each handled message; Prometheus plugs in here."""

from __future__ import annotations

from typing import Protocol


class WorkerMetrics(Protocol):
    """Receives one observation per handled message. Labels must stay low-cardinality."""

    def observe(self, *, participant: str, kind: str, outcome: str, seconds: float) -> None: ...


class NoMetrics:
    """The default: observations go nowhere."""

    def observe(self, *, participant: str, kind: str, outcome: str, seconds: float) -> None:
        return None
