"""``baton bench``: Baton against a raw command/reply baseline, in one run, on this machine.

Four no-op participants (the real worker SDK, handlers that answer at once) run as
processes for the whole bench. Per concurrency, in each of ``rounds`` rounds, it first runs
the baseline driver (no orchestrator is running, so it alone consumes the replies queue),
then starts the orchestrator replicas and drives the same number of payment sagas through
them, then stops them again (the floor's relays likewise, unless ``--no-floor``). Last in
the round, bare participants (``bare.py``, no SDK) take the SDK participants' place and the
baseline runs once more against them: the SDK's own CPU cost (``sdk_cpu_ratio``).
Alternating the sides in short rounds spreads the machine's drifting speed (other
engineers, CI, the host's other guests) over all of them.
Everything runs under a namespace of its own, and every queue and key it made is removed
at the end, also on failure.

Every process has a fresh signing key (``run_keys``): participants take only commands the
orchestrator signed, so the baseline and the floor relay sign theirs with the orchestrator's
key too (the participants' verify cost is in every side); they verify no reply, Baton does.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from rich.console import Console

from baton.bench.bare import PREFIX, bare_participants
from baton.bench.baseline import ACCOUNT, AMOUNT, MERCHANT, TOKEN, BaselineDriver
from baton.bench.figures import Measured, all_ratios, ratios, table
from baton.bench.procstat import Usage, pids_named
from baton.load import drive
from baton.processes import ProcessGroup
from baton.runtime import (
    PARTICIPANTS,
    open_broker,
    remove_namespace,
    run_keys,
    sealing_env,
    wait_for_consumers,
)
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.transport.coalesce import coalescing_active
from messaging.trust.signing import ORCHESTRATOR, KeySet
from participants.payments.contracts import StartTransaction

console = Console(stderr=True)


@dataclass(frozen=True)
class BenchOptions:
    levels: tuple[int, ...] = (1, 50, 200)
    sagas: int = 2000  # per concurrency above 1; concurrency 1 runs a fifth (at least 50)
    replicas: int = 1
    rounds: int = 3  # baseline and Baton alternate this many times per concurrency
    floor: bool = True  # also run the stateless relay with Baton's message flow
    parallel: bool = False  # also run the payment saga with its independent steps in a group
    warmup: int = 50
    as_json: bool = False
    timeout_s: float = 600.0

    def sagas_at(self, level: int) -> int:
        return self.sagas if level > 1 else max(50, self.sagas // 5)


async def run_bench(base: Settings, options: BenchOptions) -> int:
    """Run the bench; exit 0 when every saga of both sides finished."""
    namespace = f"bench-{uuid4().hex[:8]}."
    settings = base.model_copy(update={"namespace": namespace})
    env = {
        "BATON_NAMESPACE": namespace,
        "BATON_RABBIT__URL": str(settings.rabbit.url),
        "BATON_REDIS__URL": str(settings.redis.url),
        "BATON_LOG__LEVEL": "warning" if os.environ.get("BATON_BENCH_QUIET_LOGS") else "info",
        **sealing_env(settings),
    }
    keys = run_keys()  # orchestrators and floor relays sign as the orchestrator; see _bench
    logs = Path(".baton") / "logs" / namespace.rstrip(".")
    group = ProcessGroup(env | keys.env(ORCHESTRATOR), logs)
    async with open_broker(settings) as broker:
        await broker.declare(PARTICIPANTS)
        try:
            result = await _bench(settings, options, broker, group, keys)
        finally:
            group.stop_all()
            await remove_namespace(settings, broker)
    console.print(table(result))
    console.print(
        "ratios (Baton / baseline; floor_*: Baton / floor; sdk_cpu_ratio*: SDK / bare "
        "participants' CPU per saga): " + json.dumps(result["ratios"])
    )
    if "sdk_cpu_ratio" in result["ratios"]:
        sdk = {k: v for k, v in result["ratios"].items() if k.startswith("sdk_cpu_ratio")}
        console.print(f"SDK participants' CPU per saga / bare participants': {json.dumps(sdk)}")
    if options.as_json:
        print(json.dumps(result))
    return 0 if result["all_finished"] else 1


async def _bench(
    settings: Settings, options: BenchOptions, broker: Broker, group: ProcessGroup, keys: KeySet
) -> dict[str, Any]:
    console.print(
        f"[bold]baton bench[/] namespace {settings.namespace}, concurrency "
        f"{', '.join(map(str, options.levels))}, {options.replicas} orchestrator replica(s)"
    )
    for name in PARTICIPANTS:
        group.spawn(name, "participant", name, "--noop", env=keys.env(name))
    t = broker.topology
    await wait_for_consumers(broker, {t.command_queue(p): 1 for p in PARTICIPANTS})
    groups = _groups(group)
    sides: dict[str, dict[str, dict[str, Any]]] = {side: {} for side in _SIDES}
    for level in options.levels:
        n = max(options.sagas_at(level) // options.rounds, 1)
        runs: dict[str, list[Measured]] = {side: [] for side in _SIDES}
        for _ in range(options.rounds):
            await _round(settings, options, broker, group, keys, groups, level, n, runs)
        for side, measured in runs.items():  # the rounds of one side summed
            if measured:
                sides[side][f"c{level}"] = sum(measured[1:], measured[0]).figures()
    return _summary(settings, options, sides)


# bare_baseline: the baseline driver again, against participants without the SDK (bare.py)
_SIDES = ("baton", "baseline", "floor", "parallel", "bare_baseline")


async def _round(
    settings: Settings, options: BenchOptions, broker: Broker, group: ProcessGroup,
    keys: KeySet, groups: dict[str, Callable[[], list[int]]], level: int, n: int,
    runs: dict[str, list[Measured]],
) -> None:  # fmt: skip
    """One round at ``level``: the baseline, Baton, the floor and parallel runs if asked, and
    the baseline against the bare participants."""
    t = broker.topology
    await _baseline(settings, options, keys, groups, level, n, runs, "baseline")
    sides = [("baton", _orchestrators(group, options.replicas))]
    if options.floor:
        sides.append(("floor", _relays(group, options.replicas)))
    if options.parallel:
        grouped = _orchestrators(group, options.replicas, PARALLEL_ENV, "orchestrator-par")
        sides.append(("parallel", grouped))
    for side, processes in sides:  # each side's processes run only while it is measured
        with processes:
            await wait_for_consumers(broker, {t.replies_queue: options.replicas})
            run = _baton_runner(broker, keys)
            await run(options.warmup, level, f"{side} c{level} warm-up")
            runs[side].append(await _measure(groups, run, n, level, side))
    async with bare_participants(group, broker, keys):  # last: the SDK's come back fresh
        await _baseline(settings, options, keys, groups, level, n, runs, "bare_baseline")


async def _baseline(
    settings: Settings, options: BenchOptions, keys: KeySet,
    groups: dict[str, Callable[[], list[int]]], level: int, n: int,
    runs: dict[str, list[Measured]], side: str,
) -> None:  # fmt: skip
    """The baseline driver against whichever participants consume now, measured as ``side``."""
    driver = BaselineDriver(
        str(settings.rabbit.url), settings.topology, keys.keyring(ORCHESTRATOR),
        prefetch=settings.rabbit.prefetch,
    )  # fmt: skip
    async with driver:
        run_baseline = _closed_loop(driver.saga)
        await run_baseline(options.warmup, level, f"{side} c{level} warm-up")
        runs[side].append(await _measure(groups, run_baseline, n, level, side))


def _summary(
    settings: Settings, options: BenchOptions, sides: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, Any]:
    """The bench's result document: every side's figures per level, and their ratios."""
    baton, baseline = sides["baton"], sides["baseline"]
    floor, parallel, bare = sides["floor"], sides["parallel"], sides["bare_baseline"]
    finished = all(f["finished"] == f["sagas"] for s in sides.values() for f in s.values())
    extra: dict[str, Any] = {}
    if floor:  # floor / baseline: what the flow costs (Baton / floor is in ``ratios``)
        extra |= {"floor": floor, "floor_ratios": ratios(floor, baseline)}
    if bare:  # the baseline against participants without the SDK
        extra["bare_baseline"] = bare
    if parallel:  # the same saga, its independent steps in one group: the gain in latency
        extra |= {"parallel": parallel, "parallel_ratios": ratios(parallel, baton)}
    return {
        "namespace": settings.namespace,
        "replicas": options.replicas,
        "rounds": options.rounds,
        "levels": list(options.levels),
        "prefetch": settings.rabbit.prefetch,
        "cores": os.cpu_count(),
        "coalescing": coalescing_active(),  # aiormq's frame writes coalesced (the same code
        # and aiormq in every process of the bench: this one's answer is theirs)
        "baton": baton,
        "baseline": baseline,
        "ratios": all_ratios(baton, baseline, floor, bare),
        **extra,
        "all_finished": finished,
    }


Runner = Callable[[int, int, str], Awaitable[tuple[list[float], float]]]


def _closed_loop(saga: Callable[[], Awaitable[float]]) -> Runner:
    """``level`` workers each running sagas back to back until ``n`` have been started."""

    async def run(n: int, level: int, label: str) -> tuple[list[float], float]:
        latencies: list[float] = []
        remaining = [n]

        async def worker() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                latencies.append(await saga())

        began = time.perf_counter()
        with _progress(label, n, latencies):
            async with asyncio.timeout(600):
                await asyncio.gather(*(worker() for _ in range(min(level, n))))
        return latencies, time.perf_counter() - began

    return run


def _baton_runner(broker: Broker, keys: KeySet) -> Runner:
    """Drive payment sagas through Baton with ``baton.load.drive`` (start -> final event),
    the starts signed as the upstream ``cli``."""

    async def run(n: int, level: int, label: str) -> tuple[list[float], float]:
        starts = [
            StartTransaction(
                idempotency_key=uuid4().hex,
                account_id=ACCOUNT,
                merchant_id=MERCHANT,
                amount=AMOUNT,
                card_token=TOKEN,
            )
            for _ in range(n)
        ]
        began = time.perf_counter()
        last = [0.0]

        def show(progress: Any) -> None:
            now = time.perf_counter()
            if now - last[0] >= 1 or progress.done == n:
                last[0] = now
                console.print(f"  {label}: {progress.done}/{n} done, {progress.rate:.0f} sagas/s")

        outcomes, _ = await drive(
            broker, starts, concurrency=level, timeout_s=600, on_progress=show,
            keyring=keys.keyring("cli"),
        )  # fmt: skip
        elapsed = time.perf_counter() - began
        return [o.latency_s for o in outcomes if o.event == "completed"], elapsed

    return run


async def _measure(
    groups: dict[str, Callable[[], list[int]]], run: Runner, n: int, level: int, side: str
) -> Measured:
    usage = Usage(groups)
    usage.start()
    sampler = asyncio.create_task(_sample(usage))
    try:
        latencies, elapsed = await run(n, level, f"{side} c{level}")
    finally:
        sampler.cancel()
    usage.stop()
    measured = Measured(n, latencies, elapsed, usage.cpu, usage.peak_rss)
    figures = measured.figures()
    console.print(
        f"  {side} c{level}: {figures['sagas_per_s']:.1f} sagas/s, p50 {figures['p50_ms']:.2f} ms,"
        f" cpu {figures['cpu_ms_per_saga']['total']:.2f} ms/saga"
    )
    return measured


async def _sample(usage: Usage) -> None:
    while True:
        await asyncio.sleep(0.25)  # a sampling period, not a wait for anything to settle
        usage.sample()


@contextmanager
def _progress(label: str, n: int, done: list[float]) -> Iterator[None]:
    """Print progress about once a second while a closed loop runs."""

    async def report() -> None:
        while True:
            await asyncio.sleep(1)
            console.print(f"  {label}: {len(done)}/{n} done")

    task = asyncio.get_running_loop().create_task(report())
    try:
        yield
    finally:
        task.cancel()


def _groups(group: ProcessGroup) -> dict[str, Callable[[], list[int]]]:
    def children(*prefix: str) -> Callable[[], list[int]]:
        return lambda: [
            p.pid for name, p in group.procs.items() if name.startswith(prefix) and p.poll() is None
        ]

    return {
        "orchestrator": children("orchestrator", "floor"),  # one side runs at a time
        "participants": lambda: [
            p.pid
            for name, p in group.procs.items()
            if (name in PARTICIPANTS or name.startswith(PREFIX)) and p.poll() is None
        ],  # the SDK's or the bare ones: one set runs at a time
        "rabbitmq": lambda: pids_named("beam.smp"),
        "redis": lambda: pids_named("redis-server"),
        "driver": lambda: [os.getpid()],
    }


# The parallel side's orchestrators also load payment v2 (baton/bench/payment_parallel.yaml):
# new sagas take the newest version, so every saga it drives runs the grouped definition.
PARALLEL_DEFINITION = Path(__file__).with_name("payment_parallel.yaml")
PARALLEL_ENV = {"BATON_ORCHESTRATOR__DEFINITIONS": json.dumps([str(PARALLEL_DEFINITION)])}


@contextmanager
def _orchestrators(
    group: ProcessGroup, replicas: int, env: dict[str, str] | None = None,
    prefix: str = "orchestrator",
) -> Iterator[None]:  # fmt: skip
    with _running(group, prefix, "orchestrator", replicas, env):
        yield


@contextmanager
def _relays(group: ProcessGroup, replicas: int) -> Iterator[None]:
    """The floor's stateless relays, as many as the orchestrator replicas, in their place."""
    with _running(group, "floor", "bench-floor", replicas):
        yield


@contextmanager
def _running(
    group: ProcessGroup, prefix: str, command: str, count: int,
    env: dict[str, str] | None = None,
) -> Iterator[None]:  # fmt: skip
    names = [f"{prefix}-{i + 1}" for i in range(count)]
    for name in names:
        group.spawn(name, command, env=env)
    try:
        yield
    finally:
        for name in names:
            group.stop(name)
