"""When this replica's deadline loop must next look at the store.

Polling the per-shard deadline sets every few milliseconds costs a pipelined Redis read per
poll whether or not anything is due, and most of the time nothing is: a step's timeout is
seconds away and its reply normally comes first. But a replica knows the wake-up time of
every saga it wrote, so it can sleep until the earliest of those and poll only then, plus
a slow fallback poll for deadlines other replicas wrote (a replica that died, an operator).

Only the latest wake-up of each saga counts: an earlier one is superseded when the saga
moves on, and dropped lazily when it reaches the front.
"""

from __future__ import annotations

import asyncio
import heapq

COMPACT_SLACK = 1000  # superseded heap entries tolerated before the heap is rebuilt


class WakeTimes:
    """Latest wake-up time per saga this replica wrote, earliest first."""

    def __init__(self) -> None:
        self._latest: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._planned: float | None = None  # when the loop means to look next
        self.earlier = asyncio.Event()  # set when a saga needs the loop before it planned

    def note(self, saga_id: str, wake_at: float | None) -> None:
        """Record a saga's new wake-up time (None: it waits for nothing but a reply)."""
        if wake_at is None:
            self._latest.pop(saga_id, None)
            return
        self._latest[saga_id] = wake_at
        heapq.heappush(self._heap, (wake_at, saga_id))
        if len(self._heap) > 2 * len(self._latest) + COMPACT_SLACK:
            self._heap = [(at, saga) for saga, at in self._latest.items()]
            heapq.heapify(self._heap)
        if self._planned is not None and wake_at < self._planned:
            self.earlier.set()

    def next_after(self, now: float) -> float | None:
        """The earliest wake-up later than ``now``; those at or before it are forgotten
        (the poll that ran at ``now`` saw them)."""
        while self._heap:
            at, saga_id = self._heap[0]
            if self._latest.get(saga_id) != at:
                heapq.heappop(self._heap)  # superseded
            elif at <= now:
                heapq.heappop(self._heap)
                del self._latest[saga_id]
            else:
                return at
        return None

    def plan(self, at: float | None) -> None:
        """The loop will look again at ``at``; a sooner wake-up noted later interrupts it."""
        self._planned = at
        self.earlier.clear()
