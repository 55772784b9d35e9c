"""``baton demo``: the payment saga end to end, as real processes, with a live summary.

It starts one orchestrator and the four participants as OS processes under a namespace
of its own (always a fresh one, under the configured namespace, so that removing it at the
end touches nothing else), seeds accounts, sends a stream of payments of which a share is
crafted to fail at each of the four steps, shows progress, then checks the books and prints
a summary. Every process signs with a fresh key of its own, made for the run.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import redis.asyncio as aioredis
from rich.console import Console
from rich.live import Live
from rich.table import Table

from baton.load import Outcome, Progress, drive, percentile
from baton.processes import ProcessGroup
from baton.runtime import (
    PARTICIPANTS,
    load_catalog,
    open_broker,
    remove_namespace,
    run_keys,
    sealing_env,
    wait_for_consumers,
)
from contracts.payments import StartTransaction
from messaging.amqp import Broker
from messaging.settings import Settings
from messaging.signing import ORCHESTRATOR
from participants.payments import DemoWorld, FailAt, Ledger, seed_demo_world

console = Console(stderr=True)


@dataclass(frozen=True)
class DemoOptions:
    sagas: int = 200
    fail_rate: float = 0.2
    concurrency: int = 50
    as_json: bool = False
    keep: bool = False
    timeout_s: float = 600.0
    seed: int = 7


FAIL_POINTS: tuple[FailAt, ...] = ("authorize", "risk", "pci", "pci_merchant", "capture")


def transactions(world: DemoWorld, options: DemoOptions) -> tuple[list[StartTransaction], int]:
    """The stream, and how many of its payments are built to fail (spread over the steps)."""
    rng = random.Random(options.seed)
    starts: list[StartTransaction] = []
    failing = 0
    for n in range(options.sagas):
        fails_at = rng.choice(FAIL_POINTS) if rng.random() < options.fail_rate else None
        failing += fails_at is not None
        starts.append(world.transaction(n, fails_at=fails_at))
    return starts, failing


def _table(progress: Progress) -> Table:
    table = Table(
        "sent", "completed", "compensated", "failed", "in flight", "sagas/s", title="Baton demo"
    )
    o = progress.outcomes
    table.add_row(
        f"{progress.sent}/{progress.total}",
        str(o.get("completed", 0)),
        str(o.get("compensated", 0)),
        str(o.get("failed", 0)),
        str(progress.sent - progress.done),
        f"{progress.rate:.1f}",
    )
    return table


def summarize(
    outcomes: list[Outcome], progress: Progress, elapsed: float, books_ok: bool
) -> dict[str, object]:
    latencies = [o.latency_s * 1000 for o in outcomes]
    by_step: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.failed_step:
            by_step[outcome.failed_step] = by_step.get(outcome.failed_step, 0) + 1
    return {
        "sagas": progress.total,
        "completed": progress.outcomes.get("completed", 0),
        "compensated": progress.outcomes.get("compensated", 0),
        "failed": progress.outcomes.get("failed", 0),
        "unfinished": progress.total - progress.done,
        "compensated_by_step": by_step,
        "books_balanced": books_ok,
        "sagas_per_s": round(progress.done / elapsed, 2) if elapsed else 0.0,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "elapsed_s": round(elapsed, 2),
    }


async def _books(settings: Settings, outcomes: list[Outcome]) -> tuple[bool, str]:
    client = aioredis.Redis.from_url(str(settings.redis.url))
    try:
        ledger = Ledger(client, settings.namespace)
        report = await ledger.check_books({o.saga_id: o.event for o in outcomes})
    finally:
        await client.aclose()
    return report.ok, report.model_dump_json()


async def _seed(settings: Settings, options: DemoOptions) -> DemoWorld:
    client = aioredis.Redis.from_url(str(settings.redis.url))
    try:
        return await seed_demo_world(
            client, settings.namespace, accounts=max(20, options.sagas // 5), balance_minor=10**9
        )
    finally:
        await client.aclose()


def demo_namespace(base: str) -> str:
    """A fresh namespace under ``base``: the demo removes only what it created."""
    return f"{base}demo-{uuid4().hex[:12]}."


async def run_demo(base: Settings, options: DemoOptions) -> int:
    settings = base.model_copy(update={"namespace": demo_namespace(base.namespace)})
    namespace = settings.namespace
    env = {
        "BATON_NAMESPACE": namespace,
        "BATON_RABBIT__URL": str(settings.rabbit.url),
        "BATON_REDIS__URL": str(settings.redis.url),
        **sealing_env(settings),
    }
    group = ProcessGroup(env, Path(".baton") / "logs" / namespace.rstrip("."))
    async with open_broker(settings) as broker:
        await broker.declare(load_catalog(settings).participants)
        try:
            return await _run(settings, options, broker, group)
        finally:
            group.stop_all()
            if not options.keep:
                await remove_namespace(settings, broker)


async def _run(
    settings: Settings, options: DemoOptions, broker: Broker, group: ProcessGroup
) -> int:
    console.print(f"[bold]Baton demo[/] namespace {settings.namespace}  logs in .baton/logs/")
    world = await _seed(settings, options)
    keys = run_keys()  # each process signs with its own key; the driver as the upstream "cli"
    group.spawn("orchestrator", "orchestrator", env=keys.env(ORCHESTRATOR))
    for name in PARTICIPANTS:
        group.spawn(name, "participant", name, env=keys.env(name))
    t = broker.topology
    await wait_for_consumers(
        broker,
        dict.fromkeys(t.work_queues(PARTICIPANTS), 1),
    )
    starts, meant = transactions(world, options)
    console.print(
        f"sending {len(starts)} payments, {meant} crafted to fail, {options.concurrency} in flight"
    )
    began = time.perf_counter()
    with Live(
        _table(Progress(total=len(starts))), console=console, refresh_per_second=4, transient=False
    ) as live:
        outcomes, progress = await drive(
            broker,
            starts,
            concurrency=options.concurrency,
            timeout_s=options.timeout_s,
            on_progress=lambda p: live.update(_table(p)),
            keyring=keys.keyring("cli"),
        )
        live.update(_table(progress))
    elapsed = time.perf_counter() - began
    console.print()
    books_ok, books_detail = await _books(settings, outcomes)
    summary = summarize(outcomes, progress, elapsed, books_ok)
    _print_summary(summary, books_detail)
    if options.as_json:
        print(json.dumps(summary))
    healthy = summary["unfinished"] == 0 and summary["failed"] == 0 and books_ok
    return 0 if healthy else 1


def _print_summary(summary: dict[str, object], books_detail: str) -> None:
    table = Table("figure", "value", title="Summary")
    for name, value in summary.items():
        table.add_row(name, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)
    if not summary["books_balanced"]:
        console.print(f"[red]books broken:[/] {books_detail}")
