"""Crash points: the orchestrator exits hard at a named moment, so fault tests hit exact windows.

A SIGKILL from outside lands wherever the process happens to be; these points land where
crash safety is decided: after a transition is committed but before its messages are
published (``after_commit``), after publishing but before the outbox is cleared and the
inbound message acked (``after_publish``), and after a transition into or within
compensation (``compensating``). Off unless ``BATON_CHAOS__CRASH_POINTS`` names a point;
the runner holds ``None`` then, so the cost is one attribute test.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable
from typing import NoReturn

import structlog

log = structlog.get_logger("baton.chaos")

CRASH_POINTS = frozenset({"after_commit", "after_publish", "compensating"})
CRASH_EXIT_CODE = 137  # what a SIGKILL'd process reports, so supervisors treat it alike


class CrashPoints:
    """Exit the process at an enabled point with probability ``rate``."""

    def __init__(
        self,
        points: Iterable[str],
        rate: float,
        *,
        rng: random.Random | None = None,
        exit_process: Callable[[int], NoReturn] = os._exit,
    ) -> None:
        self.points = frozenset(points)
        unknown = self.points - CRASH_POINTS
        if unknown:
            raise ValueError(
                f"unknown crash points {sorted(unknown)}; known: {sorted(CRASH_POINTS)}"
            )
        self._rate = rate
        self._rng = rng or random.Random()
        self._exit = exit_process

    @classmethod
    def of(cls, points: Iterable[str], rate: float) -> CrashPoints | None:
        """None (no hook at all) unless some point is enabled with a positive rate."""
        points = list(points)
        return cls(points, rate) if points and rate > 0 else None

    def __call__(self, point: str) -> None:
        if point in self.points and self._rng.random() < self._rate:
            log.warning("crash_point", point=point)  # flushed: the fault suite counts these
            self._exit(CRASH_EXIT_CODE)
