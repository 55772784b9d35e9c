"""Fuzz every queue of a running Baton: no message may crash or wedge a consumer.

A real orchestrator and the four payment participants run in this process on a test namespace.
A few hundred seeded random and mutated messages (``messages.py``) go to the start queue, the
replies queue and each command queue while good sagas run. Then: every process is still up,
alive and consuming (a good saga started afterwards completes, no connection was re-opened),
and every fuzz message is accounted for: dead-lettered with a reason, or acked with a logged
outcome, and never requeued more than the poison limit allows. ``baton dlq show`` and
``replay`` handle whatever the dead-letter queues hold.

The seed is printed first; ``BATON_FUZZ_SEED=<seed>`` replays a run, ``BATON_FUZZ_MESSAGES``
changes its size.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq
import pytest
import redis.asyncio as aioredis
import structlog
from aio_pika.message import IncomingMessage
from pamqp import commands as spec
from structlog.testing import capture_logs

from baton import deadletters, operate
from messaging.observability.health import consumer_alive
from messaging.settings import Settings
from messaging.transport.amqp import Broker, wire_of
from messaging.transport.poison import POISON_AFTER
from messaging.trust.signing import UNAUTHENTIC, KeySet
from participants.payments import DemoWorld, run_participant, seed_demo_world
from tests.fuzz.messages import PARTICIPANTS, TAG, Fuzz, Fuzzer
from tests.integration.harness import Baton, eventually, running_baton
from tests.support.rabbit_node import free_port
from tests.support.raw_amqp import RawProperties
from tests.support.sagas import catalog as catalog_of

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("BATON_FUZZ_SEED") or secrets.randbelow(2**32))
MESSAGES = int(os.environ.get("BATON_FUZZ_MESSAGES", "300"))
GOOD_SAGAS = 4
SETTLE_S = 40.0
# Where a message with bytes that are not text may end: refused as undecodable, or, when the
# signature is checked first, as the unsigned message it also is.
# Families that can be valid by chance (a signed command whose garbage fields are ignored).
MAY_BE_VALID = ("mutated", "nested")
UNDECODABLE = ("undecodable_property", "undecodable_header", *UNAUTHENTIC)


@dataclass
class System:
    baton: Baton
    tasks: list[asyncio.Task[None]]
    ports: dict[str, int]
    settles: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    reconnects: list[str] = field(default_factory=list)


class Say:
    """Print past the output capture (``capsys`` reads the CLI's output)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self._started = time.monotonic()

    def __call__(self, text: str) -> None:
        with self._capsys.disabled():
            print(f"[{time.monotonic() - self._started:5.1f}s] {text}")


def tag_of(message: IncomingMessage) -> str:
    value = (message.headers or {}).get(TAG)
    return value if isinstance(value, str) else ""


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> tuple[defaultdict[str, list[str]], list[str]]:
    """Every ack, nack and reject of a fuzz message, and every reconnection, in this process."""
    settles: defaultdict[str, list[str]] = defaultdict(list)
    reconnects: list[str] = []
    for name in ("ack", "nack", "reject"):
        original = getattr(IncomingMessage, name)

        async def spy(self: IncomingMessage, *args: Any, _do: Any = original, _name: str = name,
                      **kwargs: Any) -> Any:  # fmt: skip
            if tag := tag_of(self):
                settles[tag].append(_name)
            return await _do(self, *args, **kwargs)

        monkeypatch.setattr(IncomingMessage, name, spy)
    connect = aio_pika.connect_robust

    async def counted(*args: Any, **kwargs: Any) -> Any:
        connection = await connect(*args, **kwargs)
        connection.reconnect_callbacks.add(lambda *_: reconnects.append("reconnect"))
        return connection

    monkeypatch.setattr(aio_pika, "connect_robust", counted)
    return settles, reconnects


@asynccontextmanager
async def running_system(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> AsyncIterator[System]:
    """The orchestrator and the four participants, each participant with its /livez port."""
    stop = asyncio.Event()
    ports = {name: free_port() for name in PARTICIPANTS}
    tasks = [
        asyncio.create_task(
            run_participant(
                name, with_port(settings, ports[name]), stop, keyring=keys.keyring(name)
            )
        )
        for name in PARTICIPANTS
    ]
    catalog = catalog_of()
    async with running_baton(broker, redis_client, settings, catalog, keys=keys) as baton:
        t = broker.topology
        await eventually(lambda: _consumed(broker, [t.command_queue(p) for p in PARTICIPANTS]),
                         20, "participants consuming")  # fmt: skip
        yield System(baton, tasks, ports)
    stop.set()
    await asyncio.gather(*tasks)


def with_port(settings: Settings, port: int) -> Settings:
    metrics = settings.metrics.model_copy(update={"port": port, "host": "127.0.0.1"})
    return settings.model_copy(update={"metrics": metrics})


async def _consumed(broker: Broker, queues: list[str]) -> bool:
    counts = [await broker.consumer_count(q) for q in queues]
    return all(counts)


async def publish(url: str, fuzz: list[Fuzz]) -> dict[str, Fuzz]:
    """Publish each message with a confirm; the ones the broker took (it refuses a few)."""
    taken: dict[str, Fuzz] = {}
    connection = await aiormq.connect(url)
    channel = await connection.channel(publisher_confirms=True)
    try:
        for item in fuzz:
            try:
                confirm = await channel.basic_publish(
                    item.body, exchange="", routing_key=item.queue,
                    properties=RawProperties(item.properties),
                )  # fmt: skip
            except aiormq.exceptions.AMQPError:  # refused: the channel or connection closed
                if connection.is_closed:
                    connection = await aiormq.connect(url)
                channel = await connection.channel(publisher_confirms=True)
                continue
            if isinstance(confirm, spec.Basic.Ack):
                taken[item.tag] = item
    finally:
        await connection.close()
    return taken


async def http_status(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    writer.close()
    await writer.wait_closed()
    return status


async def dead_letters(broker: Broker) -> dict[str, tuple[str, str]]:
    """Tag -> (source queue, reason) of every fuzz dead letter; all are left in their queues.

    Each letter also goes through ``deadletters.describe`` (what ``baton dlq show`` runs).
    """
    t = broker.topology
    found: dict[str, tuple[str, str]] = {}
    channel = await broker.connection.channel()
    try:
        for source in [t.start_queue, t.replies_queue, *map(t.command_queue, PARTICIPANTS)]:
            queue = await channel.declare_queue(t.dead_letter_queue(source), passive=True)
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                letter = deadletters.describe(message, source)
                if tag := str(wire_of(message).headers.get(TAG, "")):
                    found[tag] = (source, letter.reason)
    finally:
        await channel.close()  # unacked: back to the dead-letter queues
    return found


def outcomes(logs: list[MutableMapping[str, Any]]) -> dict[str, list[str]]:
    """Message id -> the outcomes the canonical log lines gave it."""
    found: dict[str, list[str]] = defaultdict(list)
    for line in logs:
        if line.get("event") in ("message_handled", "command_handled") and "message_id" in line:
            found[str(line["message_id"])].append(str(line.get("outcome")))
    return found


async def good_sagas(baton: Baton, world: DemoWorld, numbers: range) -> list[str]:
    return [await baton.start(world.transaction(n)) for n in numbers]


async def test_no_message_crashes_or_wedges_a_consumer(
    broker: Broker,
    redis_client: aioredis.Redis,
    settings: Settings,
    keys: KeySet,
    spies: tuple[defaultdict[str, list[str]], list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    say = Say(capsys)
    say(f"fuzz seed {SEED} ({MESSAGES} messages): BATON_FUZZ_SEED={SEED} replays it")
    settles, reconnects = spies
    broker.connection.reconnect_callbacks.add(lambda *_: reconnects.append("orchestrator"))
    world = await seed_demo_world(redis_client, settings.namespace, accounts=4,
                                  balance_minor=10**7)  # fmt: skip
    fuzzer = Fuzzer(SEED, broker.topology, keys)
    fuzz = [fuzzer.next() for _ in range(MESSAGES)]
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with running_system(broker, redis_client, settings, keys) as system:
            baton, t = system.baton, broker.topology
            alive = consumer_alive(broker, baton.orchestrator.failures)
            third = len(fuzz) // 3
            sagas = await good_sagas(baton, world, range(1, 1 + GOOD_SAGAS // 2))
            taken = await publish(str(settings.rabbit.url), fuzz[:third])
            sagas += await good_sagas(baton, world, range(1 + GOOD_SAGAS // 2, 1 + GOOD_SAGAS))
            taken |= await publish(str(settings.rabbit.url), fuzz[third:])
            say(f"published {len(taken)} of {len(fuzz)} (the broker refused the rest)")

            async def settled() -> bool:
                return all(settles.get(tag, [""])[-1] == "ack" for tag in taken)

            await check_settled(settled, taken, settles)
            for saga_id in sagas:
                await completes(baton, saga_id, logs)
            after = await good_sagas(baton, world, range(100, 101))
            await completes(baton, after[0], logs)

            await check_alive(broker, system, alive, reconnects)
            dead = await dead_letters(broker)
            say("settled; good sagas completed; every process alive and consuming")
            for line in check_accounts(taken, dead, settles, outcomes(logs)):
                say(line)
            starts = {tag: settles[tag] for tag, (q, _) in dead.items() if q == t.start_queue}
            await check_operator_tools(broker, settings, system, alive, capsys, starts)
            say("dlq show and replay done")


async def completes(baton: Baton, saga_id: str, logs: list[MutableMapping[str, Any]]) -> None:
    try:
        final = await baton.final(saga_id, 30)
    except AssertionError:
        state = await baton.store.load(saga_id)
        lines = [line for line in logs if line.get("saga_id") == saga_id][-30:]
        raise AssertionError(
            f"seed {SEED}: good saga {saga_id} unfinished: {state!r}; its last lines: {lines}"
        ) from None
    assert final["event"] == "completed", f"seed {SEED}: good saga {saga_id}: {final}"


async def check_settled(
    settled: Callable[[], Awaitable[bool]],
    taken: dict[str, Fuzz],
    settles: dict[str, list[str]],
) -> None:
    try:
        await eventually(settled, SETTLE_S, "every fuzz message acked")
    except AssertionError:
        stuck = [(t, f.family, f.queue, settles.get(t)) for t, f in taken.items()
                 if settles.get(t, [""])[-1] != "ack"]  # fmt: skip
        raise AssertionError(f"seed {SEED}: not settled: {stuck[:20]}") from None


async def check_alive(
    broker: Broker, system: System, alive: Callable[[], Awaitable[bool]], reconnects: list[str]
) -> None:
    """Every process up, alive, ready and consuming; no connection was ever re-opened."""
    assert not reconnects, f"seed {SEED}: connections re-opened: {reconnects}"
    assert not any(task.done() for task in system.tasks), f"seed {SEED}: a participant ended"
    assert await alive(), f"seed {SEED}: the orchestrator is not alive"
    for name, port in system.ports.items():
        assert await http_status(port, "/livez") == 200, f"seed {SEED}: {name} not alive"
        assert await http_status(port, "/healthz") == 200, f"seed {SEED}: {name} not ready"
    t = broker.topology
    for queue in [t.start_queue, t.replies_queue, *map(t.command_queue, PARTICIPANTS)]:
        assert await broker.consumer_count(queue) >= 1, f"seed {SEED}: {queue} not consumed"


def check_accounts(
    taken: dict[str, Fuzz],
    dead: dict[str, tuple[str, str]],
    settles: dict[str, list[str]],
    logged: dict[str, list[str]],
) -> list[str]:
    """Each message dead-lettered with a reason, or acked with a logged outcome; the
    undecodable ones dead-lettered as such; none requeued past the poison limit."""
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for tag, item in taken.items():
        nacks = settles[tag].count("nack")
        assert nacks <= POISON_AFTER, f"seed {SEED}: {tag} ({item.family}) requeued {nacks}x"
        if tag in dead:
            source, reason = dead[tag]
            assert source == item.queue, f"seed {SEED}: {tag}: {dead[tag]}"
            assert reason, f"seed {SEED}: {tag} dead-lettered without a reason"
            reasons[item.family][_short(reason)] += 1
            if item.family in ("bad_text", "bad_header"):
                assert reason.startswith(item.expect or UNDECODABLE), (
                    f"seed {SEED}: {tag} {item.family} {item.notes}: {reason}"
                )
            continue
        reasons[item.family]["acked"] += 1
        assert item.family in MAY_BE_VALID, f"seed {SEED}: {tag} ({item.family}) not dead-lettered"
        assert logged.get(item.message_id), f"seed {SEED}: {tag} acked with no outcome logged"
    assert reasons["bad_text"], "the non-UTF-8 property cases must be in every run"
    assert reasons["bad_header"], "the non-UTF-8 header cases must be in every run"
    return [f"  {family:10} {dict(c.most_common())}" for family, c in sorted(reasons.items())]


def _short(reason: str) -> str:
    """The reason's code: "unknown saga <id>" and "poison: KeyError" are one code each."""
    return "unknown_saga" if reason.startswith("unknown saga") else reason.split(":", 1)[0]


async def check_operator_tools(
    broker: Broker,
    settings: Settings,
    system: System,
    alive: Callable[[], Awaitable[bool]],
    capsys: pytest.CaptureFixture[str],
    replayed: dict[str, list[str]],
) -> None:
    """``baton dlq show`` (table and JSON) on every dead-letter queue, and ``replay`` of the
    start queue's: each replayed message is judged again (a copy whose undecodable text was
    signed as its escaped form may now even start a saga), and nothing dies of it."""
    t = broker.topology
    for name in ("start", "replies", *(f"cmd.{p}" for p in PARTICIPANTS)):
        await operate.show_dead_letters(settings, name, 10_000, False)
        await operate.show_dead_letters(settings, name, 10_000, True)
        rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        queue = deadletters.dead_queue_of(t, name)
        assert len(rows) == await broker.queue_depth(queue), name
    before = await broker.queue_depth(t.dead_letter_queue(t.start_queue))
    acks = {tag: settles.count("ack") for tag, settles in replayed.items()}
    await operate.replay_dead_letters(settings, "start", before)  # they come back: a limit
    assert f"replayed {before} message(s)" in capsys.readouterr().out

    async def judged_again() -> bool:
        return await broker.queue_depth(t.start_queue) == 0 and all(
            settles.count("ack") > acks[tag] for tag, settles in replayed.items()
        )

    await eventually(judged_again, 20, "replayed starts judged again")
    assert await alive()
    assert not any(task.done() for task in system.tasks)
