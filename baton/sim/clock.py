"""An asyncio event loop on virtual time: when nothing is ready it jumps to the next timer.

Everything the simulation runs (the orchestrator's timeouts, the SDK's leases, the stub
broker's latencies, Redis key expiry through the patched wall clock) waits on this loop, so a
run of minutes of virtual time takes as long as its callbacks take, and the same callbacks in
the same order give the same run. The loop refuses to block: a wait with nothing scheduled is
a deadlock, and many iterations without time moving on is a livelock; both end the run.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Callable

EPOCH = 1_700_000_000.0  # the wall clock reads EPOCH + loop time: fixed, so runs replay
LIVELOCK_ITERATIONS = 200_000  # loop turns at one virtual instant before we call it a livelock


class Stalled(RuntimeError):
    """The world stopped moving: a deadlock, a livelock, or the real-time budget ran out."""


class _InstantSelector(selectors.DefaultSelector):
    """Never waits and never reports a file ready: nothing in a simulation does real I/O
    (the loop's self-pipe only wakes a loop blocked in ``select``, and this one never is).
    Where asyncio would block, the loop advances virtual time instead."""

    def __init__(self, advance: Callable[[float | None], None]) -> None:
        super().__init__()
        self._advance = advance

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self._advance(timeout)
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    """``time()`` is virtual; waiting for the next timer takes no real time."""

    def __init__(self, *, real_budget_s: float | None = None) -> None:
        self._now = 0.0
        self._idle_turns = 0
        self._give_up_at = None if real_budget_s is None else time.monotonic() + real_budget_s
        super().__init__(selector=_InstantSelector(self._advance))

    def rearm(self, *, budget_s: float) -> None:
        """Forget the livelock count and allow ``budget_s`` more real seconds (clean-up)."""
        self._idle_turns = 0
        self._give_up_at = time.monotonic() + budget_s

    def time(self) -> float:
        return self._now

    def wall(self) -> float:
        """The simulated wall clock (``time.time`` while the simulation runs)."""
        return EPOCH + self._now

    def _advance(self, timeout: float | None) -> None:
        if timeout is None:
            raise Stalled("deadlock: nothing is ready and nothing is scheduled")
        if timeout == 0:
            self._idle_turns += 1
            if self._idle_turns > LIVELOCK_ITERATIONS:
                raise Stalled(f"livelock: {LIVELOCK_ITERATIONS} loop turns at t={self._now:.3f}")
            if self._idle_turns % 10_000 == 0:
                self._check_budget()
            return
        target = self._now + timeout
        scheduled = self._scheduled  # type: ignore[attr-defined]  # asyncio's timer heap
        if scheduled and scheduled[0].when() <= target + 1e-6:
            target = max(target, scheduled[0].when())  # land exactly on it: no float dust
        self._now = target
        self._idle_turns = 0
        self._check_budget()

    def _check_budget(self) -> None:
        if self._give_up_at is not None and time.monotonic() > self._give_up_at:
            raise Stalled(f"real-time budget spent at virtual t={self._now:.3f}")
