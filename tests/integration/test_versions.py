"""Versions side by side (docs/extending.md section 6): an upgrade from payment v1 to v2 with
sagas in flight, the definition registry in Redis, and the operator's tools reading sagas of a
version their configuration does not load."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from messaging.errors import DefinitionError
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.trust.sealing import Sealer, is_sealed
from messaging.trust.signing import ORCHESTRATOR, Keyring, KeySet
from orchestrator.core.catalog import Catalog
from orchestrator.core.state import SagaStatus, StepStatus
from orchestrator.runtime.definition_registry import DefinitionRegistry, registration
from orchestrator.runtime.keys import KeySpace
from orchestrator.runtime.packages import load_packages
from orchestrator.runtime.redis_store import RedisSagaStore
from orchestrator.runtime.runner import Orchestrator
from participants.payments import DemoWorld, run_participant, seed_demo_world
from tests.integration.harness import Baton, eventually, running_baton
from tests.support.cli import Result
from tests.support.sagas import catalog as catalog_of
from tests.support.sagas import parse, payment_data, payment_definition
from tests.support.versions import V1_DEADLINE_S, V2_DEADLINE_S, payment_package

pytestmark = pytest.mark.integration
IN_FLIGHT_NONE = {"running": 0, "compensating": 0, "failed": 0}


async def cli(
    settings: Settings, keys: KeySet, *args: str, packages: Sequence[Path] = ()
) -> Result:
    """``baton ARGS`` as an operator runs it: its own process, the URLs, and the packages of
    its configuration (none: the bundled package, whose payment saga is v1 only)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BATON_ORCHESTRATOR__")},
        **keys.env(ORCHESTRATOR),
        "BATON_NAMESPACE": settings.namespace,
        "BATON_RABBIT__URL": str(settings.rabbit.url),
        "BATON_REDIS__URL": str(settings.redis.url),
        "BATON_LOG__LEVEL": "warning",
    }
    if packages:
        env["BATON_ORCHESTRATOR__PACKAGES"] = json.dumps([str(p) for p in packages])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "baton", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@pytest.fixture
def registry(redis_client: aioredis.Redis, settings: Settings) -> DefinitionRegistry:
    return DefinitionRegistry(
        redis_client, KeySpace(settings.namespace, settings.orchestrator.shards)
    )


class Participants:
    """The payment saga's real participants in this process, each started when a test says."""

    def __init__(self, settings: Settings, keys: KeySet) -> None:
        self._settings, self._keys = settings, keys
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, *names: str) -> None:
        for name in names:
            keyring = self._keys.keyring(name)
            work = run_participant(name, self._settings, self._stop, keyring=keyring)
            self._tasks.append(asyncio.create_task(work))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


@pytest.fixture
async def world(redis_client: aioredis.Redis, settings: Settings) -> DemoWorld:
    return await seed_demo_world(redis_client, settings.namespace, accounts=4, balance_minor=10**6)


@pytest.fixture
async def participants(
    broker: Broker, settings: Settings, keys: KeySet
) -> AsyncIterator[Participants]:
    running = Participants(settings, keys)
    yield running
    await running.stop()


def waiting_on(store: RedisSagaStore, saga_ids: Sequence[str], step: str) -> Callable[..., Any]:
    """A check for ``eventually``: every saga has sent ``step`` and waits for its answer."""

    async def check() -> bool:
        states = [await store.load(saga_id) for saga_id in saga_ids]
        return all(s is not None and s.steps[step].status is StepStatus.RUNNING for s in states)

    return check


def finished(store: RedisSagaStore, saga_ids: Sequence[str]) -> Callable[..., Any]:
    async def check() -> bool:
        states = [await store.load(saga_id) for saga_id in saga_ids]
        return all(s is not None and s.status.is_finished for s in states)

    return check


def by_version(listed: Result) -> dict[tuple[str, int], dict[str, Any]]:
    assert listed.code == 0, listed.err
    return {(d["name"], d["version"]): d for d in listed.json()["definitions"]}


async def test_an_upgrade_finishes_old_sagas_on_v1_and_starts_new_ones_on_v2(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet,
    registry: DefinitionRegistry, world: DemoWorld, participants: Participants, tmp_path: Path,
) -> None:  # fmt: skip
    v1, both, v2 = (payment_package(tmp_path, *vs) for vs in ((1,), (1, 2), (2,)))
    sealer = Sealer.from_settings(settings.sealing)
    run: Callable[[Catalog], AbstractAsyncContextManager[Baton]] = partial(
        running_baton, broker, redis_client, settings, keys=keys, sealer=sealer,
        definitions=registry,
    )  # fmt: skip
    participants.start("payment", "risk", "pci")  # the pivot's participant is held back

    async with run(load_packages([v1]).catalog) as baton:
        old = [await baton.start(world.transaction(n)) for n in (1, 2)]
        await eventually(waiting_on(baton.store, old, "capture_transaction"), 30, "v1 held")
    assert [r.key for r in await registry.all()] == [("payment", 1)]

    # (b) without v1 an orchestrator refuses to start, naming the version and its sagas
    refused = await cli(settings, keys, "orchestrator", packages=[v2])
    assert refused.code == 1
    assert "payment v1 (2 running)" in refused.err, refused.err
    assert await registry.get("payment", 2) is None, "a refused orchestrator registers nothing"

    async with run(load_packages([both]).catalog) as baton:
        new = [await baton.start(world.transaction(n)) for n in (3, 4)]
        await eventually(waiting_on(baton.store, new, "capture_transaction"), 30, "v2 held")

        # (c) both versions listed, with their sagas in flight
        rows = by_version(await cli(settings, keys, "definitions", "--json", packages=[both]))
        assert set(rows) == {("payment", 1), ("payment", 2)}
        for version in (1, 2):
            row = rows["payment", version]
            assert row["in_flight"] == {**IN_FLIGHT_NONE, "running": 2}
            assert (row["registered"], row["loaded"], row["differs"]) == (True, True, False)
            assert row["steps"][-1] == "capture_transaction"
        here = by_version(await cli(settings, keys, "definitions", "--json"))  # bundled: v1
        assert (here["payment", 1]["loaded"], here["payment", 2]["loaded"]) == (True, False)
        assert here["payment", 2]["registered"] is True

        # (d) status of a v2 saga where only v1 is loaded: masked by the registered contract
        status = await cli(settings, keys, "status", new[0], "--json")
        assert status.code == 0, status.err
        shown, sent = status.json()["state"], world.transaction(3)
        assert shown["definition_version"] == 2
        assert (shown["input"]["card_token"], shown["input"]["account_id"]) == ("***", "***")
        assert shown["input"]["merchant_id"] == sent.merchant_id, "not every field hidden"
        assert sent.card_token not in status.out
        assert sent.account_id not in status.out

        participants.start("transaction")  # release the pivot
        await eventually(finished(baton.store, old + new), 60, "every saga finished")
        for saga_ids, version, deadline_s in ((old, 1, V1_DEADLINE_S), (new, 2, V2_DEADLINE_S)):
            for saga_id in saga_ids:
                state = await baton.state(saga_id)
                assert (state.status, state.definition_version) == (SagaStatus.COMPLETED, version)
                assert state.deadline == pytest.approx(state.started_at + deadline_s)

    # once none is in flight, v1 may go: the listing says so, and an orchestrator without it starts
    rows = by_version(await cli(settings, keys, "definitions", "--json", packages=[v2]))
    assert rows["payment", 1]["in_flight"] == IN_FLIGHT_NONE
    assert (rows["payment", 1]["loaded"], rows["payment", 1]["registered"]) == (False, True)
    async with run(load_packages([v2]).catalog):
        pass


async def test_a_registered_version_is_immutable_and_kept_in_one_slot_forever(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet,
    registry: DefinitionRegistry,
) -> None:  # fmt: skip
    v1 = payment_definition()
    await registry.register([v1])
    await registry.register([v1])  # idempotent
    changed = parse({**payment_data(), "deadline_s": 121})
    with pytest.raises(DefinitionError, match=r"payment v1 \(registered .*immutable"):
        await registry.register([changed])
    stored = await registry.get("payment", 1)
    assert stored is not None
    assert stored.digest == registration(v1).digest

    # (e) an orchestrator loading the changed body refuses to start, before consuming anything
    store = RedisSagaStore(redis_client, namespace=settings.namespace, shards=4, retention_s=60)
    keyring = Keyring.from_settings(settings.signing, role=ORCHESTRATOR)
    refusing = Orchestrator(catalog_of(changed), store, broker, keyring=keyring,
                            definitions=registry)  # fmt: skip
    with pytest.raises(DefinitionError, match="immutable"):
        await refusing.run(asyncio.Event())
    assert await broker.consumer_count(broker.topology.start_queue) == 0

    # the contracts compile back; the keys never expire and share the definition's slot
    sensitive = stored.parse().contract(v1.trigger).SENSITIVE
    assert sensitive == {"card_token", "account_id"}
    assert registration(stored.parse()).digest == stored.digest
    names = [registry.keys.definition("payment"), registry.keys.definition_names()]
    assert key_slot(names[0].encode()) == key_slot(b"{def:payment}")
    assert [await redis_client.ttl(name) for name in names] == [-1, -1]


async def test_registering_again_refreshes_the_contracts_of_the_same_body(
    redis_client: aioredis.Redis, registry: DefinitionRegistry
) -> None:
    v1 = payment_definition()
    await registry.register([v1])
    stored = await registry.get("payment", 1)
    assert stored is not None
    stale = json.loads(stored.dumps())
    del stale["contracts"][v1.trigger]
    await redis_client.hset(registry.keys.definition("payment"), "1", json.dumps(stale))
    await registry.register([v1])
    refreshed = await registry.get("payment", 1)
    assert refreshed is not None
    assert refreshed.contracts == stored.contracts
    assert refreshed.registered_at == stored.registered_at, "first registration time kept"


async def test_an_operator_acts_on_a_saga_whose_version_is_only_registered(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet,
    registry: DefinitionRegistry, world: DemoWorld, tmp_path: Path,
) -> None:  # fmt: skip
    """``baton abort`` where only v1 is configured, on a v2 saga: its definition comes from
    the registry, and its sensitive fields stay sealed when the command writes it."""
    sealer = Sealer.from_settings(settings.sealing)
    catalog = load_packages([payment_package(tmp_path, 2)]).catalog
    async with running_baton(broker, redis_client, settings, catalog, keys=keys, sealer=sealer,
                             definitions=registry) as baton:  # fmt: skip
        saga_id = await baton.start(world.transaction(1))  # no participant: held at step one
        await eventually(waiting_on(baton.store, [saga_id], "authorize_payment"), what="held")
        aborted = await cli(settings, keys, "abort", saga_id, "--reason", "held too long")
        assert aborted.code == 0, aborted.err
        assert "is now compensating" in aborted.out
        state = await baton.state(saga_id)
        assert (state.status, state.definition_version) == (SagaStatus.COMPENSATING, 2)
        stored = await redis_client.hget(baton.store.keys.saga(saga_id), "state")
        assert stored is not None
        raw = json.loads(stored)
        assert is_sealed(raw["input"]["card_token"])
        assert is_sealed(raw["input"]["account_id"])
        rows = by_version(await cli(settings, keys, "definitions", "--json"))
        assert rows["payment", 2]["in_flight"] == {**IN_FLIGHT_NONE, "compensating": 1}
