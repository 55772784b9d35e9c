"""One seed, start to verdict: build the world, let the storm pass, wait for calm, judge.

The run ends early when a check after a money-moving step fails, so the trace stops where
the world first went wrong. Otherwise, once every fault is over, the world runs quiet (in
virtual time) until every saga has finished, the queues are drained and the outbox is
empty, or ``quiet_s`` passes; then every process is stopped and the books are judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from baton.sim.clock import Stalled, VirtualLoop
from baton.sim.determinism import pinned
from baton.sim.hosts import task_factory
from baton.sim.invariants import judge, read_books
from baton.sim.plan import PARTICIPANTS, PlanConfig, make_plan
from baton.sim.storm import Storm
from baton.sim.world import NAMESPACE, World
from participants.payments.ledger import LedgerKeys

UNFINISHED = ("running", "compensating")


@dataclass(frozen=True, slots=True)
class SimConfig:
    plan: PlanConfig = field(default_factory=PlanConfig)
    quiet_s: float = 900.0  # virtual seconds after the storm for every saga to finish
    poll_s: float = 1.0  # how often the calm world is asked whether it is done
    real_budget_s: float = 120.0  # a seed taking longer than this (real time) is a failure


@dataclass
class SeedResult:
    """What one seed did and found; plain data, so it crosses process boundaries."""

    seed: int
    violations: list[str]
    counts: dict[str, int]  # per invariant: how many sagas broke it
    outcomes: dict[str, int]  # final status -> sagas
    scenarios: dict[str, int]  # fault kind -> times exercised
    sagas: int
    virtual_s: float
    real_s: float
    trace: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def run_seed(seed: int, config: SimConfig | None = None) -> SeedResult:
    """Simulate ``seed`` on a fresh virtual-time loop; nothing here touches the real world."""
    config = config or SimConfig()
    loop = VirtualLoop(real_budget_s=config.real_budget_s)
    loop.set_task_factory(task_factory)
    began = time.perf_counter()
    saved = structlog.get_config()
    structlog.configure(processors=[_drop], cache_logger_on_first_use=False)
    try:
        with pinned(seed, loop.wall):
            world = World(make_plan(seed, config.plan), loop)
            storm = Storm(world)
            try:
                result = loop.run_until_complete(_simulate(world, storm, config))
            except Stalled as exc:  # raised by the loop itself: the world cannot go on
                result = _stalled(world, storm, str(exc))
            finally:
                _close(loop)
    finally:
        structlog.configure(**saved)
    result.real_s = round(time.perf_counter() - began, 3)
    return result


def _drop(_: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    raise structlog.DropEvent  # the processes' logs go nowhere: the trace tells the story


def _close(loop: VirtualLoop) -> None:
    """Cancel what is left (a stalled run leaves tasks) and close the loop."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.rearm(budget_s=10.0)  # a few more turns to let the cancellations land
        with contextlib.suppress(Stalled):
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


def _stalled(world: World, storm: Storm, error: str) -> SeedResult:
    """The result of a run that stopped moving: what was seen, and why it stopped."""
    violations = [*world.violations, f"stalled: {error}"]
    world.trace(f"VERDICT stalled: {error}")
    return SeedResult(
        seed=world.plan.seed,
        violations=violations,
        counts={"stalled": 1},
        outcomes={},
        scenarios={k: v for k, v in sorted(world.tally.items()) if v},
        sagas=len(storm.published),
        virtual_s=round(world.loop.time(), 3),
        real_s=0.0,
        trace=world.trace.lines,
    )


async def _simulate(world: World, storm: Storm, config: SimConfig) -> SeedResult:
    loop = world.loop
    world.trace(f"seed {world.plan.seed}: {describe(world)}")
    await world.seed_books()
    for name in world.plan.hosts():
        world.spawn(name)
    storm.schedule()
    await _until_calm(world, storm, config)
    storm.end_outages()
    await world.stop()
    result = await _verdict(world, storm)
    result.virtual_s = round(loop.time(), 3)
    return result


async def _until_calm(world: World, storm: Storm, config: SimConfig) -> None:
    """Let the plan play out, then wait for every saga to finish (or ``quiet_s``)."""
    loop = world.loop
    calm = world.plan.calm_at
    give_up = calm + config.quiet_s
    await _wait(world.broken, calm - loop.time())
    while not world.broken.is_set() and loop.time() < give_up:
        if await _settled(world, storm):
            world.trace("calm: every saga finished, queues drained, outbox empty")
            return
        await _wait(world.broken, config.poll_s)
    if not world.broken.is_set():
        world.trace(f"gave up waiting at t={loop.time():.1f}")


async def _wait(event: asyncio.Event, seconds: float) -> None:
    if seconds > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)


async def _settled(world: World, storm: Storm) -> bool:
    t = world.topology
    queues = [t.start_queue, t.replies_queue, *map(t.command_queue, PARTICIPANTS)]
    if world.client.tasks or not world.broker.drained(queues):
        return False  # the client still has a start to publish, or messages are in flight
    for index in storm.published:
        saga_id = world.saga_ids[index]
        state = await world.store.load(saga_id)
        if state is None and saga_id not in world.rejected():
            return False  # not started yet (a start in the queue), or lost: the judge decides
        if state is not None and state.status.value in UNFINISHED:
            return False
    return not await world.store.outbox_pending(world.loop.wall() + 3600, 1)


GROUPED_VERSION = 2  # baton/bench/payment_parallel.yaml, which odd seeds load


async def _verdict(world: World, storm: Storm) -> SeedResult:
    outcomes: dict[str, str] = {}
    rejected = world.rejected()
    for index in sorted(storm.published):
        saga_id = world.saga_ids[index]
        state = await world.store.load(saga_id)
        if state is not None:
            outcomes[saga_id] = state.status.value
            if state.definition_version == GROUPED_VERSION:  # evidence the group was run
                world.tally["parallel_group"] += 1
        else:  # refused with an answer to the client (too old, say), or lost
            outcomes[saga_id] = "rejected" if saga_id in rejected else "missing"
    books = read_books(world.sync, LedgerKeys(NAMESPACE))
    verdict = judge(books, outcomes, world.amounts, refused=world.conduct.refusing,
                    aborted=storm.aborted_only, labels=world.trace.labels,
                    interrupted=world.broken.is_set())  # fmt: skip
    violations = list(world.violations)
    violations += [v for v in verdict.violations if v not in violations]
    counts = Counter(verdict.counts)
    counts["parallel_runs"] = world.conduct.parallel
    counts["process_errors"] = sum(v.startswith("process_error") for v in world.violations)
    dead = _dead_letters(world, storm)
    if dead:
        counts["dead_letter_mismatch"] = len(dead)
        violations += dead
    for line in violations:
        world.trace(f"VERDICT {line}")
    return SeedResult(
        seed=world.plan.seed,
        violations=violations,
        counts={k: v for k, v in sorted(counts.items()) if v},
        outcomes=dict(sorted(Counter(outcomes.values()).items())),
        scenarios={k: v for k, v in sorted(world.tally.items()) if v},
        sagas=len(outcomes),
        virtual_s=0.0,
        real_s=0.0,
        trace=world.trace.lines,
    )


def _dead_letters(world: World, storm: Storm) -> list[str]:
    """Each malformed message once in its queue's dead-letter queue; nothing else judged."""
    found: Counter[tuple[str, str]] = Counter()
    for dead_queue in set(storm.malformed.values()):
        for wire in world.broker.messages(dead_queue):
            found[(dead_queue, wire.message_id or "")] += 1
    wrong = []
    for message_id, dead_queue in sorted(storm.malformed.items()):
        copies = found[(dead_queue, message_id)]
        if copies != 1:
            wrong.append(f"dead_letter_mismatch: {message_id} copied {copies}x to {dead_queue}")
    return wrong


def describe(world: World) -> str:
    plan = world.plan
    k = plan.knobs
    faults = Counter(f.kind for f in plan.faults)
    return (
        f"{len(plan.sagas)} sagas, replicas {plan.replicas}, drop {k.drop} dup {k.duplicate} "
        f"delay {k.delay}/{k.max_delay_s}s slow {k.slow} latency {k.latency_s}s, "
        f"faults {dict(sorted(faults.items()))}, refusals {len(plan.refusals)}"
    )
