"""``baton top``: a live terminal view of a deployment, for operators without Grafana at hand.

It reads what Grafana would show straight from the source: saga counts and stuck sagas from
the store (cluster-wide, whatever the number of replicas), queue depths from RabbitMQ, and
throughput as the change of the finished counts between two readings.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from baton.runtime import load_catalog, open_broker, open_reader
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from orchestrator.core.state import SagaStatus
from orchestrator.runtime.redis_store import RedisSagaStore

FINISHED = (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED)
UNFINISHED = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
STUCK_CAP = 1000


@dataclass(frozen=True)
class Reading:
    """One look at the store and the broker."""

    at: float
    counts: dict[SagaStatus, int]
    stuck: dict[SagaStatus, int]
    queues: dict[str, int]  # work queue -> ready messages
    dead: dict[str, int]  # dead-letter queue -> messages


async def read(
    store: RedisSagaStore, broker: Broker, participants: tuple[str, ...], stuck_after_s: float
) -> Reading:
    now = time.time()
    counts = await store.counts()
    stuck = {s: len(await store.by_status(s, STUCK_CAP, now - stuck_after_s)) for s in UNFINISHED}
    t = broker.topology
    work = t.work_queues(participants)
    queues = {q: await broker.queue_depth(q) for q in work}
    dead = {t.dead_letter_queue(q): await broker.queue_depth(t.dead_letter_queue(q)) for q in work}
    return Reading(now, counts, stuck, queues, dead)


def _rate(before: Reading | None, now: Reading, statuses: tuple[SagaStatus, ...]) -> str:
    if before is None or now.at <= before.at:
        return "-"
    delta = sum(now.counts[s] - before.counts[s] for s in statuses)
    return f"{max(delta, 0) / (now.at - before.at):.1f}"


def render(before: Reading | None, now: Reading, namespace: str) -> Group:
    """One frame: throughput and outcomes, in flight and stuck, queue depths."""
    sagas = Table(title=f"Baton {namespace or '(no namespace)'}", title_justify="left")
    for column in ("finished/s", "started/s", "in flight", "stuck", *(s.value for s in FINISHED)):
        sagas.add_column(column, justify="right")
    in_flight = sum(now.counts[s] for s in UNFINISHED)
    stuck = sum(now.stuck.values())
    sagas.add_row(
        _rate(before, now, FINISHED),
        _rate(before, now, tuple(SagaStatus)),
        str(in_flight),
        f"[red]{stuck}[/]" if stuck else "0",
        *(str(now.counts[s]) for s in FINISHED),
    )
    queues = Table("queue", "ready", "dead letters", title="Queues", title_justify="left")
    for (queue, depth), dead in zip(now.queues.items(), now.dead.values(), strict=True):
        queues.add_row(queue, str(depth), f"[red]{dead}[/]" if dead else "0")
    return Group(sagas, queues)


async def top(
    settings: Settings, *, once: bool, interval_s: float, console: Console | None = None
) -> int:
    """Refresh every ``interval_s`` until interrupted; ``once``: two readings, one frame."""
    console = console or Console()
    participants = load_catalog(settings).participants
    stuck_after = settings.orchestrator.stuck_after_s
    async with open_reader(settings) as store, open_broker(settings) as broker:
        first = await read(store, broker, participants, stuck_after)
        if once:  # throughput is a difference: take a second reading before printing
            await asyncio.sleep(interval_s)
            console.print(
                render(
                    first, await read(store, broker, participants, stuck_after), settings.namespace
                )
            )
            return 0
        before = None
        now = first
        with Live(render(before, now, settings.namespace), console=console) as live:
            while True:
                await asyncio.sleep(interval_s)
                before, now = now, await read(store, broker, participants, stuck_after)
                live.update(render(before, now, settings.namespace))
