"""Audited operator actions and bulk recovery, on the real broker and Redis.

Sagas are started with no participant listening: each waits on its first step, which is
enough to resume, abort and match them. Actions run in this process (``baton.acting``,
``baton.bulk``); one ``baton audit`` runs as a separate process to check the wiring.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog
from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import generate_latest

from baton import bulk
from baton.acting import Operator, Outcome
from baton.audit import show_audit
from baton.console.audit import audit_entries
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.trust.signing import ORCHESTRATOR, Keyring, KeySet
from orchestrator.core.effects import OperatorAction
from orchestrator.core.state import SagaStatus
from orchestrator.runtime.audit_store import AuditStore
from participants.payments import DemoWorld, seed_demo_world
from tests.integration.harness import Baton, eventually, fast_payment, running_baton
from tests.support.cli import baton as baton_process
from tests.support.sagas import catalog as catalog_of

pytestmark = pytest.mark.integration
REASON = "card network back: INC-42"


@pytest.fixture
async def world(redis_client: aioredis.Redis, settings: Settings) -> DemoWorld:
    return await seed_demo_world(redis_client, settings.namespace, accounts=4, balance_minor=10**6)


@pytest.fixture
async def running(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> AsyncIterator[Baton]:
    catalog = catalog_of(fast_payment(timeout_s=60, deadline_s=300))  # nobody answers
    async with running_baton(broker, redis_client, settings, catalog, keys=keys) as b:
        yield b


@pytest.fixture
def audit(redis_client: aioredis.Redis, running: Baton) -> AuditStore:
    return AuditStore(redis_client, running.store.keys)


@pytest.fixture
def operator(running: Baton, audit: AuditStore, settings: Settings) -> Operator:
    keyring = Keyring.from_settings(settings.signing, role=ORCHESTRATOR)
    return Operator(running.orchestrator, running.store, audit, running.broker, keyring)


async def waiting_sagas(b: Baton, world: DemoWorld, count: int) -> list[str]:
    """``count`` sagas, each running and waiting on its first step."""
    ids = [await b.start(world.transaction(n, amount_minor=100 * n)) for n in range(1, count + 1)]

    async def all_waiting() -> bool:
        states = [await b.store.load(i) for i in ids]
        return all(s is not None and s.waiting for s in states)

    await eventually(all_waiting, what="every saga waiting on its first step")
    return ids


async def events_queue(broker: Broker) -> tuple[list[dict[str, Any]], Any]:
    """Operator lifecycle events as they are published on the events exchange."""
    channel = await broker.connection.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(broker.topology.events_exchange, "saga.*.operator_action")
    seen: list[dict[str, Any]] = []

    async def on_event(message: AbstractIncomingMessage) -> None:
        await message.ack()
        seen.append(json.loads(message.body))

    await queue.consume(on_event)
    return seen, channel


async def test_every_action_is_chained_counted_published_and_logged(
    running: Baton, world: DemoWorld, operator: Operator, audit: AuditStore, broker: Broker
) -> None:
    [saga_id] = await waiting_sagas(running, world, 1)
    events, channel = await events_queue(broker)
    alice = OperatorAction("resume", actor="alice", reason=REASON)
    with structlog.testing.capture_logs() as logs:
        resumed = await operator.perform(saga_id, alice)
        stop_only = OperatorAction("abort", compensate=False, actor="alice", reason=REASON)
        again = await operator.perform(saga_id, stop_only)  # its first step may hold money
        aborted = await operator.perform(
            saga_id, OperatorAction("abort", actor="bob", reason=REASON)
        )
        ghost = await operator.perform("no-such-saga", OperatorAction("retry", reason=REASON))
    assert [o.result for o in (resumed, again, aborted, ghost)] == [
        "applied", "ignored", "applied", "refused",
    ]  # fmt: skip
    assert again.detail == "may_hold_effects"
    assert "unknown saga" in ghost.detail

    trail = await audit.trail(saga_id)
    assert trail.verdict.intact
    assert [(e.seq, e.action, e.actor, e.result) for e in trail.entries] == [
        (1, "resume", "alice", "applied"), (2, "abort", "alice", "ignored"),
        (3, "abort", "bob", "applied"),
    ]  # fmt: skip
    assert all(e.reason == REASON for e in trail.entries)
    assert (await audit.trail("no-such-saga")).entries[0].result == "refused"
    history = await running.store.history(saga_id)
    details = [json.loads(h["detail"]) for h in history if h["what"].startswith("operator_")]
    assert {"actor": "alice", "reason": REASON} in details, "the history has them structured"

    console = await audit_entries(
        audit.client, audit.keys.namespace, saga_id, shards=audit.keys.shards
    )
    assert [(e.action, e.note, e.intact) for e in console[:1]] == [("resume", REASON, True)]

    logged = [line for line in logs if line["event"] == "operator_action"]
    assert [line["result"] for line in logged] == ["applied", "ignored", "applied", "refused"]

    async def published() -> bool:
        return len(events) == 4

    await eventually(published, what="four operator_action events")
    await channel.close()
    assert {(e["action"], e["result"], e["actor"]) for e in events} >= {
        ("resume", "applied", "alice"), ("retry", "refused", "operator"),
    }  # fmt: skip
    assert events[0]["hash"] == trail.entries[0].hash, "subscribers can anchor the chain"

    running.orchestrator.operator_counts = audit
    await running.orchestrator.refresh_state()
    exposed = generate_latest(running.orchestrator.metrics.registry).decode()
    assert 'baton_operator_actions_total{action="resume",result="applied"} 1.0' in exposed
    assert 'baton_operator_actions_total{action="retry",result="refused"} 1.0' in exposed
    assert 'baton_operator_actions_total{action="abort",result="ignored"} 1.0' in exposed
    assert 'baton_operator_actions_total{action="resume",result="refused"} 0.0' in exposed


async def four_entries(audit: AuditStore, saga_id: str) -> list[bytes]:
    for n, action in enumerate(("retry", "resume", "abort", "retry")):
        await audit.append(
            saga_id, at=1000.0 + n, action=action, actor="carol", reason=f"r{n}",
            result="ignored", detail="", batch_id="",
        )  # fmt: skip
    raw: list[bytes] = await audit.client.lrange(audit.keys.audit(saga_id), 0, -1)
    return raw


async def verdict(settings: Settings, saga_id: str, capsys: pytest.CaptureFixture[str]) -> Any:
    code = await show_audit(settings, saga_id, as_json=True)
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == (0 if answer["intact"] else 1)
    return answer


async def test_baton_audit_finds_an_edit_a_deletion_and_a_swap(
    redis_client: aioredis.Redis, settings: Settings, keys: KeySet,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from orchestrator.runtime.keys import KeySpace

    audit = AuditStore(redis_client, KeySpace(settings.namespace, settings.orchestrator.shards))
    raw = await four_entries(audit, "s-edit")
    assert (await verdict(settings, "s-edit", capsys))["intact"] is True
    edited = json.loads(raw[1])
    edited["reason"] = "nothing to see here"
    await redis_client.lset(audit.keys.audit("s-edit"), 1, json.dumps(edited))
    problem = (await verdict(settings, "s-edit", capsys))["problem"]
    assert (problem["position"], problem["kind"]) == (2, "edited")

    raw = await four_entries(audit, "s-del")
    await redis_client.lrem(audit.keys.audit("s-del"), 1, raw[2])
    problem = (await verdict(settings, "s-del", capsys))["problem"]
    assert (problem["position"], problem["kind"]) == (3, "deleted")

    raw = await four_entries(audit, "s-swap")
    await redis_client.lset(audit.keys.audit("s-swap"), 1, raw[2])
    await redis_client.lset(audit.keys.audit("s-swap"), 2, raw[1])
    problem = (await verdict(settings, "s-swap", capsys))["problem"]
    assert (problem["position"], problem["kind"]) == (2, "reordered")

    raw = await four_entries(audit, "s-tail")
    await redis_client.rpop(audit.keys.audit("s-tail"))
    assert (await verdict(settings, "s-tail", capsys))["problem"]["kind"] == "deleted"

    as_run = await baton_process(settings, keys, "audit", "s-swap")  # the command's wiring
    assert as_run.code == 1
    assert "broken at entry 2: reordered" in as_run.err


async def test_concurrent_appends_never_fork_the_chain(audit: AuditStore) -> None:
    await asyncio.gather(*(
        audit.append("s-race", at=1.0, action="retry", actor=f"op{n}", reason="race",
                     result="ignored", detail="", batch_id="")
        for n in range(20)
    ))  # fmt: skip
    trail = await audit.trail("s-race")
    assert trail.verdict.intact
    assert [e.seq for e in trail.entries] == list(range(1, 21))


async def test_bulk_dry_run_canary_stop_and_ramp(
    running: Baton, world: DemoWorld, operator: Operator, audit: AuditStore,
    settings: Settings, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    ids = await waiting_sagas(running, world, 8)
    first_step = (await running.state(ids[0])).waiting[0].step
    where = bulk.parse_where(f"status=running,step={first_step},saga=payment")
    dry = bulk.BulkRequest(OperatorAction("resume", reason=REASON), where, bulk.Ramp(), True)
    assert await bulk.bulk_act(settings, dry) == 0
    shown = capsys.readouterr().out
    assert "8 saga(s) match, holding 36.00 EUR" in shown  # 1.00 + 2.00 + ... + 8.00
    assert set(ids) <= set(shown.split())
    found = await bulk.plan(audit.client, audit.keys, running.store, where, 1e12)
    assert sorted(found.ids) == sorted(ids)
    nothing = bulk.parse_where("status=running,step=no_such_step")
    assert not (await bulk.plan(audit.client, audit.keys, running.store, nothing, 1e12)).ids

    canary_fails = OperatorAction("resume", actor="ops", reason=REASON, batch_id="b-canary")

    async def act(saga_id: str) -> Outcome:
        if saga_id == found.ids[1]:  # refused: names a saga the store does not hold
            return await operator.perform("gone-" + saga_id, canary_fails)
        return await operator.perform(saga_id, canary_fails)

    ramp = bulk.Ramp(canary=2, rate_per_s=1000)
    stopped = await bulk.run(found.ids, act, ramp, lambda _: None)
    assert (stopped.acted, stopped.failed, stopped.skipped) == (1, 1, 6)
    assert "canary" in stopped.stopped
    assert stopped.batch_sizes == [2]

    go = OperatorAction("resume", actor="ops", reason=REASON, batch_id="b-rest")
    rest = found.ids[2:]
    run = await bulk.run(rest, lambda s: operator.perform(s, go), ramp, lambda _: None)
    assert (run.acted, run.failed, run.skipped, run.stopped) == (6, 0, 0, "")
    assert run.batch_sizes == [2, 4]
    for saga_id in rest:
        [entry] = (await audit.trail(saga_id)).entries
        assert (entry.batch_id, entry.result, entry.reason) == ("b-rest", "applied", REASON)
    assert (await running.state(rest[0])).status is SagaStatus.RUNNING
