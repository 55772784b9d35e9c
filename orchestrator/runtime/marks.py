"""Published outbox entries marked done in batches, off the message's critical path.

Marking an entry done only spares the sweeper a re-publish; it guards no delivery. So the
runner hands the ids here after the publish is confirmed and acks the inbound message
without waiting: a crash before the batch is written leaves entries the sweeper publishes
again, a duplicate that the participants' inbox already absorbs. Marks gathered while the
previous batch is being written go together; the store lets a batch ride along with the
next transitions' round trip rather than cost one of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from orchestrator.runtime.store import SagaStore

log = structlog.get_logger("baton.orchestrator")


class DoneMarks:
    """A queue of (saga id, entry ids) written by ``run``; inline when ``run`` is not going."""

    def __init__(self, store: SagaStore, *, batched: bool = True) -> None:
        self._store = store
        self._batched = batched  # off: every mark is written inline, before the ack
        self._pending: list[tuple[str, Sequence[str]]] = []
        self._wake = asyncio.Event()
        self._running = False

    async def mark(self, saga_id: str, entry_ids: Sequence[str]) -> None:
        if not (self._running and self._batched):  # no batching loop (tests, one-off
            # commands) or batching switched off: write it now
            await self._store.outbox_done(saga_id, entry_ids)
            return
        self._pending.append((saga_id, entry_ids))
        self._wake.set()

    async def run(self) -> None:
        """Write whatever accumulated since the last batch, until cancelled."""
        self._running = True
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self.flush()
        finally:
            self._running = False

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            await self._store.outbox_done_many(batch)
        except asyncio.CancelledError:  # stopping: the final flush writes them
            self._pending[:0] = batch
            raise
        except Exception as exc:  # the entries stay in the outbox; the sweeper re-sends them
            log.warning("outbox_marks_failed", entries=len(batch), error=str(exc))
