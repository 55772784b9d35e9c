"""``baton demo``: a saga end to end, as real processes, with a live summary.

It starts one orchestrator and the saga's participants as OS processes under a namespace
of its own (always a fresh one, under the configured namespace, so that removing it at the
end touches nothing else): the Python ones with ``baton participant NAME`` from the saga
package's manifest, the others (the checkout's Node.js ``shipping``) with their own command.
Then it seeds the world, sends a stream of starts of which a share is crafted to fail at
each step, shows progress, runs the package's invariant check over the run's sagas and
prints a summary. Every process signs with a fresh key of its own, made for the run.

What is particular to one saga (package, world, stream, foreign participants) is a
``DemoSaga`` in ``baton.demo_sagas``; everything here is the same for every saga.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from baton.demo_sagas import (
    PAYMENT_FAIL_POINTS,
    DemoSaga,
    Stream,
    demo_saga,
    transactions,
)
from baton.invariants import check_package
from baton.load import Outcome, Progress, drive, percentile
from baton.node import NodeUnavailable, prepared
from baton.processes import ProcessGroup
from baton.runtime import open_broker, remove_namespace, run_keys, sealing_env
from messaging.redis_client import redis_for
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.trust.signing import ORCHESTRATOR, KeySet
from orchestrator.runtime.packages import Packages, load_packages

__all__ = ["FAIL_POINTS", "DemoOptions", "demo_namespace", "run_demo", "summarize", "transactions"]

console = Console(stderr=True)
FAIL_POINTS = PAYMENT_FAIL_POINTS  # the payment stream's, as before
READY_TIMEOUT_S = 90.0  # for every process to be consuming (a first `npm ci` is done before)


@dataclass(frozen=True)
class DemoOptions:
    sagas: int = 200
    fail_rate: float = 0.2
    concurrency: int = 50
    as_json: bool = False
    keep: bool = False
    timeout_s: float = 600.0
    seed: int = 7
    saga: str = "payment"


class DemoError(RuntimeError):
    """The demo could not run (one line: why); ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Run:
    """One demo run's pieces, put together by ``run_demo``."""

    settings: Settings
    options: DemoOptions
    demo: DemoSaga
    packages: Packages
    commands: dict[str, list[str]]  # foreign participant -> how to start it

    @property
    def participants(self) -> tuple[str, ...]:
        return self.packages.catalog.participants

    def languages(self) -> dict[str, str]:
        """Every participant of the saga and the language it runs in."""
        python = {n for p in self.packages.packages for n in p.participants}
        foreign = {f.name: f.language for f in self.demo.foreign()}
        return {n: "python" if n in python else foreign.get(n, "?") for n in self.participants}


def _table(progress: Progress, saga: str) -> Table:
    title = "Baton demo" if saga == "payment" else f"Baton demo: {saga}"
    table = Table("sent", "completed", "compensated", "failed", "in flight", "sagas/s", title=title)
    o = progress.outcomes
    table.add_row(
        f"{progress.sent}/{progress.total}", str(o.get("completed", 0)),
        str(o.get("compensated", 0)), str(o.get("failed", 0)),
        str(progress.sent - progress.done), f"{progress.rate:.1f}",
    )  # fmt: skip
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


async def _invariants(run: Run, outcomes: list[Outcome]) -> dict[str, Any]:
    """The package's declared check over this run's sagas: package, balanced, problems."""
    package = next(p for p in run.packages.packages
                   if any(d.name == run.demo.saga for d in p.definitions))  # fmt: skip
    client = redis_for(run.settings.redis)
    try:
        result = await check_package(
            package, client, run.settings.namespace, {o.saga_id: o.event for o in outcomes}
        )
    finally:
        await client.aclose()
    return {"package": package.name, "balanced": result.ok, "problems": result.problems(),
            "checked": result.report is not None}  # fmt: skip


def demo_namespace(base: str) -> str:
    """A fresh namespace under ``base``: the demo removes only what it created."""
    return f"{base}demo-{uuid4().hex[:12]}."


def _prepare_foreign(demo: DemoSaga, log_dir: Path) -> dict[str, list[str]]:
    """How to start each foreign participant, installing what it needs (``npm ci``) first."""
    commands: dict[str, list[str]] = {}
    for foreign in demo.foreign():
        if foreign.language != "node":
            raise DemoError(f"no way to run a {foreign.language} participant", code=2)
        try:
            commands[foreign.name] = prepared(foreign.folder, log_dir / f"{foreign.name}.npm.log")
        except NodeUnavailable as exc:
            raise DemoError(f"{foreign.name}: {exc}", code=2) from None
    return commands


async def run_demo(base: Settings, options: DemoOptions) -> int:
    settings = base.model_copy(update={"namespace": demo_namespace(base.namespace)})
    log_dir = Path(".baton") / "logs" / settings.namespace.rstrip(".")
    demo = demo_saga(options.saga)
    try:
        commands = _prepare_foreign(demo, log_dir)
    except DemoError as exc:
        click.echo(f"baton demo: {exc}", err=True)
        return exc.code
    run = Run(settings, options, demo, load_packages(demo.packages()), commands)
    env = {
        "BATON_NAMESPACE": settings.namespace,
        "BATON_RABBIT__URL": str(settings.rabbit.url),
        "BATON_REDIS__URL": str(settings.redis.url),
        "BATON_ORCHESTRATOR__PACKAGES": json.dumps([str(p) for p in demo.packages()]),
        "BATON_ORCHESTRATOR__DEFINITIONS": "[]",
        **sealing_env(settings),
    }
    group = ProcessGroup(env, log_dir)
    async with open_broker(settings) as broker:
        await broker.declare(run.participants)
        try:
            return await _run(run, broker, group)
        except DemoError as exc:
            click.echo(f"baton demo: {exc}", err=True)
            return exc.code
        finally:
            group.stop_all()
            if not options.keep:
                await remove_namespace(settings, broker, run.participants)


def _spawn(run: Run, group: ProcessGroup, keys: KeySet) -> None:
    """The orchestrator, the package's Python participants and the foreign ones."""
    group.spawn("orchestrator", "orchestrator", env=keys.env(ORCHESTRATOR))
    for name, language in run.languages().items():
        if language == "python":
            group.spawn(name, "participant", name, env=keys.env(name))
        elif name in run.commands:
            folder = next(f.folder for f in run.demo.foreign() if f.name == name)
            group.spawn_command(name, run.commands[name], cwd=folder, env=keys.env(name))
        else:
            raise DemoError(f"no way to start participant {name}: neither in the package's "
                            "participants nor run on its own")  # fmt: skip


async def _ready(broker: Broker, group: ProcessGroup, queues: list[str]) -> None:
    """Until every queue has a consumer; DemoError as soon as a process has exited."""
    async with asyncio.timeout(READY_TIMEOUT_S):
        for queue in queues:
            while await broker.consumer_count(queue) < 1:
                if gone := group.exited():
                    name, code = next(iter(gone.items()))
                    raise DemoError(f"{name} exited with status {code}: see {group.log_of(name)}")
                await asyncio.sleep(0.1)


async def _drive(run: Run, broker: Broker, keys: KeySet) -> tuple[list[Outcome], Progress, float]:
    stream = Stream(run.options.sagas, run.options.fail_rate, run.options.seed)
    starts, meant = run.demo.starts(stream)
    console.print(f"sending {len(starts)} {run.demo.noun}, {meant} crafted to fail, "
                  f"{run.options.concurrency} in flight")  # fmt: skip
    began = time.perf_counter()
    saga = run.demo.saga
    with Live(_table(Progress(total=len(starts)), saga), console=console, refresh_per_second=4,
              transient=False) as live:  # fmt: skip
        outcomes, progress = await drive(
            broker, starts, concurrency=run.options.concurrency, timeout_s=run.options.timeout_s,
            on_progress=lambda p: live.update(_table(p, saga)), saga=saga,
            keyring=keys.keyring("cli"),
        )  # fmt: skip
        live.update(_table(progress, saga))
    return outcomes, progress, time.perf_counter() - began


async def _run(run: Run, broker: Broker, group: ProcessGroup) -> int:
    console.print(f"[bold]Baton demo[/] {run.demo.saga}  namespace {run.settings.namespace}"
                  "  logs in .baton/logs/")  # fmt: skip
    client = redis_for(run.settings.redis)
    try:
        stream = Stream(run.options.sagas, run.options.fail_rate, run.options.seed)
        await run.demo.seed(client, run.settings.namespace, stream)
    finally:
        await client.aclose()
    keys = run_keys(run.participants)  # each its own key; the driver as the upstream "cli"
    _spawn(run, group, keys)
    await _ready(broker, group, broker.topology.work_queues(run.participants))
    outcomes, progress, elapsed = await _drive(run, broker, keys)
    console.print()
    invariants = await _invariants(run, outcomes)
    summary = summarize(outcomes, progress, elapsed, invariants["balanced"])
    summary["invariants"] = invariants
    summary["participants"] = run.languages()
    _print_summary(summary)
    if run.options.as_json:
        print(json.dumps(summary))
    healthy = summary["unfinished"] == 0 and summary["failed"] == 0 and invariants["balanced"]
    return 0 if healthy else 1


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table("figure", "value", title="Summary")
    for name, value in summary.items():
        table.add_row(name, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)
    invariants = summary["invariants"]
    if not invariants["balanced"]:
        console.print(f"[red]{invariants['package']} invariants broken:[/] "
                      + "; ".join(invariants["problems"]))  # fmt: skip
