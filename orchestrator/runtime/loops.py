"""The orchestrator's background loops: deadlines (ticks), the outbox sweeper, the
shared-state gauges. A mixin of ``orchestrator.runtime.runner.Orchestrator``, which owns the state
these read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Protocol, TypeVar

import structlog

from orchestrator.core.effects import Decision, Event, Tick
from orchestrator.core.state import SagaStatus
from orchestrator.runtime.metrics import OrchestratorMetrics
from orchestrator.runtime.store import SagaStore
from orchestrator.runtime.wakes import WakeTimes

if TYPE_CHECKING:
    from messaging.transport.port import Transport
    from orchestrator.runtime.runner import RunnerConfig

log = structlog.get_logger("baton.orchestrator")

TICK_BACKOFF_S = 0.5  # first delay after a failed tick; doubles up to TICK_BACKOFF_MAX_S
TICK_BACKOFF_MAX_S = 60.0
RECENT_STATES = 10_000  # sagas whose last written state a replica keeps in memory
T = TypeVar("T")


class OperatorCounts(Protocol):
    """Operator actions by (action, result), counted where the CLI writes its audit entries
    (``orchestrator.runtime.audit_store.AuditStore``)."""

    async def counts(self) -> dict[tuple[str, str], int]: ...


class BackgroundLoops:
    """Deadline, sweep and state loops, run by ``Orchestrator.run`` until ``stop``."""

    # set by the composition root; None: baton_operator_actions_total is not exported
    operator_counts: OperatorCounts | None = None

    _store: SagaStore
    _broker: Transport
    _config: RunnerConfig
    _clock: Callable[[], float]
    _wakes: WakeTimes
    _tick_failures: dict[str, int]
    metrics: OrchestratorMetrics

    async def apply(self, saga_id: str, event: Event) -> Decision:
        raise NotImplementedError  # Orchestrator.apply

    async def _deadline_loop(self, stop: asyncio.Event) -> None:
        """Tick every saga whose wake-up time has passed (timeouts, retries, deadlines)."""
        while not stop.is_set():
            polled_at = self._clock()
            due = await self._guarded(self._store.due(polled_at, self._config.due_batch))
            if due:
                await asyncio.gather(*(self._tick(saga_id) for saga_id in due))
            else:
                await self._sleep_until_due(stop, polled_at)

    async def _sleep_until_due(self, stop: asyncio.Event, polled_at: float) -> None:
        """Until the earliest wake-up this replica wrote, or ``deadline_poll_s`` at most."""
        config = self._config
        if not config.wake_times:  # switched off: poll every tick interval
            await _wait(stop, config.tick_interval_s)
            return
        latest = polled_at + config.deadline_poll_s
        while not stop.is_set():
            earliest = self._wakes.next_after(polled_at)
            at = latest if earliest is None else min(earliest, latest)
            self._wakes.plan(at)
            delay = max(at - self._clock(), config.tick_interval_s)
            if not await _wait_any((stop, self._wakes.earlier), delay):
                return  # the planned time came

    async def _tick(self, saga_id: str) -> None:
        """Apply a tick; one that fails moves the saga's wake-up later, doubling each time,
        so a saga that cannot be decided is neither polled in a tight loop nor in the way of
        the healthy sagas due behind it."""
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(saga_id=saga_id)
        try:
            await self.apply(saga_id, Tick())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("tick_failed")
            failures = self._tick_failures.pop(saga_id, 0) + 1
            self._tick_failures[saga_id] = failures
            if len(self._tick_failures) > RECENT_STATES:
                del self._tick_failures[next(iter(self._tick_failures))]
            delay = min(TICK_BACKOFF_MAX_S, TICK_BACKOFF_S * 2 ** min(failures - 1, 16))
            await self._guarded(self._store.postpone(saga_id, self._clock() + delay))
        else:
            self._tick_failures.pop(saga_id, None)

    async def _sweep_loop(self, stop: asyncio.Event) -> None:
        """Publish outbox entries a crashed or disconnected replica left behind."""
        while not stop.is_set():
            await self._guarded(self.sweep_outbox())
            await _wait(stop, max(self._config.outbox_grace_s / 2, 0.1))

    async def sweep_outbox(self) -> int:
        now, grace = self._clock(), self._config.outbox_grace_s
        # claimed for a grace period: replicas sweeping at once publish each entry once
        pending = await self._store.outbox_pending(now - grace, 500, claim=(now, now + grace))
        swept: list[tuple[str, Sequence[str]]] = []
        try:
            for entry in pending:
                await self._broker.publish(
                    entry.wire, exchange=entry.exchange, routing_key=entry.routing_key
                )
                swept.append((entry.saga_id, [entry.id]))
                self.metrics.outbox_swept.inc()
        finally:  # what was published is marked, even when a later publish failed
            if swept:
                await self._store.outbox_done_many(swept)
        if pending:
            log.info("outbox_swept", entries=len(pending))
        return len(pending)

    async def _state_loop(self, stop: asyncio.Event) -> None:
        """Refresh the gauges of shared state (counts, stuck, outbox lag): a few pipelined
        reads every ``state_interval_s``, never per message."""
        while not stop.is_set():
            await self._guarded(self.refresh_state())
            await _wait(stop, self._config.state_interval_s)

    async def refresh_state(self) -> None:
        now = self._clock()
        idle_before = now - self._config.stuck_after_s
        counts = await self._store.counts()
        stuck = {
            status: len(await self._store.by_status(status, self._config.stuck_cap, idle_before))
            for status in (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
        }
        lag = await self._store.outbox_oldest_age(now)
        self.metrics.refresh_state(counts, stuck, lag, self._config.stuck_after_s, now)
        if self.operator_counts is not None:
            self.metrics.operator_actions.set(await self.operator_counts.counts())

    async def _guarded(self, work: Awaitable[T]) -> T | None:
        """Background work survives a store or broker outage; the next round tries again."""
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background_work_failed")
            return None


async def _wait_any(events: Sequence[asyncio.Event], seconds: float) -> bool:
    """Wait until one of ``events`` is set (True) or ``seconds`` pass (False)."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        done, _ = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return bool(done)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
