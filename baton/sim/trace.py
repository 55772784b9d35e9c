"""The event trace of one run: what happened when, in words a person can follow.

A failing seed prints it, so it names sagas ``s0, s1, ...`` (their order in the plan)
rather than by uuid, and effects by a few characters of their id. Lines carry the virtual
time; the same seed writes the same lines, which is what the replay test compares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from contracts import envelope as env
from messaging.transport.codec import Wire


class Trace:
    """Lines of ``t=<virtual seconds> <event>``, and the saga labels they use."""

    def __init__(self, clock: Callable[[], float], *, limit: int = 200_000) -> None:
        self._clock = clock
        self._limit = limit
        self.lines: list[str] = []
        self.labels: dict[str, str] = {}  # saga id -> "s<n>"

    def __call__(self, text: str) -> None:
        if len(self.lines) < self._limit:
            self.lines.append(f"t={self._clock():9.3f} {text}")

    def saga(self, saga_id: str) -> str:
        return self.labels.get(saga_id, saga_id[:8] or "-")

    def message(self, wire: Wire) -> str:
        """A short description of a message: kind, saga, step, phase, attempt, effect."""
        headers: Mapping[str, Any] = wire.headers or {}
        kind = (wire.kind or "?").removeprefix("payments.").removesuffix(".v1")
        saga = self.saga(str(headers.get(env.H_SAGA_ID, wire.correlation_id or "")))
        step = headers.get(env.H_STEP, "")
        if not step:
            return f"{kind} {saga}"
        phase = "fwd" if headers.get(env.H_PHASE) == "forward" else "comp"
        effect = str(headers.get(env.H_EFFECT_ID, ""))[:6]
        return f"{kind} {saga} {step}/{phase} a{headers.get(env.H_ATTEMPT, '?')} e:{effect}"

    def tail(self, count: int) -> list[str]:
        return self.lines[-count:]
