"""The Node.js shipping participant (examples/checkout/node/shipping) against real RabbitMQ and
Redis, driven the way the orchestrator drives a participant: signed commands on its queue,
signed replies expected on the replies queue, dead letters on its dead-letter queue.

It is a separate process (``node index.js``) that knows nothing of Python: these tests hold it
to docs/protocol.md. Skipped when ``node`` is not installed; ``npm ci`` runs first when the
folder has no node_modules.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractIncomingMessage

from contracts import envelope as env
from contracts.envelope import Envelope, Phase
from contracts.topology import Topology
from messaging.errors import ContractError
from messaging.settings import SealingSettings
from messaging.text import as_text
from messaging.transport.amqp import Broker, dead_letter_context, wire_of
from messaging.transport.codec import Wire
from messaging.trust.sealing import ACTIVE_VARIABLE, KEYS_VARIABLE, Sealer
from messaging.trust.signing import Keyring, KeySet, SigningKey, binary32_up
from orchestrator.core.engine.draft import command_message_id, effect_id
from tests.support.node import npm_installed

pytestmark = pytest.mark.integration

FOLDER = Path(__file__).resolve().parents[2] / "examples" / "checkout" / "node" / "shipping"
NODE = shutil.which("node")
if NODE is None:
    pytest.skip(
        "node is not installed: the Node.js shipping participant cannot run (install Node >= 18)",
        allow_module_level=True,
    )

PARTICIPANT = "shipping"
CREATE = "checkout.create_shipment.v1"
CANCEL = "checkout.cancel_shipment.v1"
CREATED = "checkout.shipment_created.v1"
CANCELLED = "checkout.shipment_cancelled.v1"
STEP_FAILED = "baton.step_failed.v1"
KEYS = KeySet.generate(["orchestrator", PARTICIPANT])
ORCHESTRATOR = KEYS.keyring("orchestrator")
T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout_s: float = 15.0, what: str = ""
) -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s: {what}")
        await asyncio.sleep(0.02)  # the polling interval, not a settling pause


def _installed() -> None:
    npm_installed(FOLDER)


@dataclass
class Reply:
    """A reply the participant published, verified as signed by ``shipping``."""

    kind: str
    body: dict[str, Any]
    raw: bytes
    message_id: str
    correlation_id: str
    headers: dict[str, Any]


@dataclass
class Shipping:
    """The running Node process and what it said: JSON log lines, replies."""

    process: asyncio.subprocess.Process
    topology: Topology
    logs: list[dict[str, Any]] = field(default_factory=list)
    replies: asyncio.Queue[Reply] = field(default_factory=asyncio.Queue)

    def handled(self, message_id: str) -> dict[str, Any] | None:
        """The canonical ``command_handled`` line of one command, once logged."""
        return next(
            (
                line for line in self.logs
                if line.get("event") == "command_handled" and line.get("message_id") == message_id
            ),
            None,
        )  # fmt: skip

    async def logged(self, message_id: str) -> dict[str, Any]:
        """The ``command_handled`` line of one command, waiting for it."""

        async def found() -> dict[str, Any] | None:
            return self.handled(message_id)

        return await eventually(found, what=f"command {message_id} handled")

    async def reply(self, timeout_s: float = 15.0) -> Reply:
        return await asyncio.wait_for(self.replies.get(), timeout_s)


@pytest.fixture
async def shipping_broker(rabbit_url: str, topology: Topology) -> AsyncIterator[Broker]:
    """The topology of participant ``shipping`` declared as ``baton declare`` would."""
    connected = await Broker.connect(rabbit_url, topology, prefetch=32)
    await connected.declare([PARTICIPANT])
    yield connected
    await connected.delete(topology.all_queues([PARTICIPANT]), topology.exchanges)
    await connected.close()


@pytest.fixture
async def shipping(
    shipping_broker: Broker, redis_client: aioredis.Redis, namespace: str, rabbit_url: str,
    redis_url: str,
) -> AsyncIterator[Shipping]:  # fmt: skip
    """``node index.js`` as its own process, consuming once started; stopped with SIGTERM,
    which must end it cleanly (exit 0)."""
    _installed()
    environment = {
        **os.environ,
        **KEYS.env(PARTICIPANT),
        "BATON_NAMESPACE": namespace,
        "BATON_RABBIT__URL": rabbit_url,
        "BATON_REDIS__URL": redis_url,
        "BATON_LOG__LEVEL": "info",
    }
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE, str(FOLDER / "index.js"), env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    running = Shipping(process, shipping_broker.topology)

    async def read_logs() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            running.logs.append(json.loads(line))  # every line is one JSON object

    reader = asyncio.create_task(read_logs())
    assert process.stderr is not None
    stderr = asyncio.create_task(process.stderr.read())  # drained: a full pipe would block it

    async def on_reply(message: AbstractIncomingMessage) -> None:
        """Queue each reply; one the orchestrator would refuse shows as ``unverified: ...``."""
        wire = wire_of(message)
        await message.ack()
        try:
            kind = wire.kind or ""
            ORCHESTRATOR.verify_from(wire, (PARTICIPANT,), "replies")
        except ContractError as exc:
            kind = f"unverified: {exc}"
        await running.replies.put(
            Reply(
                kind=kind, body=json.loads(wire.body), raw=wire.body,
                message_id=wire.message_id or "", correlation_id=wire.correlation_id or "",
                headers=dict(wire.headers),
            )
        )  # fmt: skip

    await shipping_broker.consume(shipping_broker.topology.replies_queue, on_reply)
    queue = shipping_broker.topology.command_queue(PARTICIPANT)

    async def consuming() -> bool:
        if process.returncode is not None:
            raise AssertionError(f"node exited with {process.returncode}: {running.logs}")
        return await shipping_broker.consumer_count(queue) == 1

    await eventually(consuming, 30, "the Node participant consumes its queue")
    try:
        yield running
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
        await reader
        await shipping_broker.stop_consuming()
        errors = (await stderr).decode()
        assert code == 0, f"node exited with {code} after SIGTERM: {errors}"
        assert not [line for line in running.logs if line["level"] == "error"], running.logs


def command(
    saga_id: str,
    step: str,
    phase: Phase,
    kind: str,
    body: dict[str, Any],
    *,
    attempt: int = 1,
    deadline_in_s: float = 120.0,
    keyring: Keyring = ORCHESTRATOR,
    compensates: str = "",
) -> Wire:
    """A command as orchestrator/runtime/outbox.py builds one: effect id and message id derived, the
    deadline rounded up to single precision, the body compact JSON, signed."""
    effect = effect_id(saga_id, step, phase)
    envelope = Envelope(
        kind=kind, message_id=command_message_id(effect, attempt), saga_id=saga_id,
        saga="checkout", step=step, phase=phase, effect_id=effect, compensates=compensates,
        attempt=attempt, deadline=binary32_up(time.time() + deadline_in_s),
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )  # fmt: skip
    raw = json.dumps(body, separators=(",", ":")).encode()
    wire = Wire(raw, kind, envelope.message_id, saga_id, headers=envelope.headers())
    return keyring.sign(wire)


def create(saga_id: str, **options: Any) -> Wire:
    body = {"order_id": f"order-{saga_id}", "sku": "sku-1", "quantity": 2, "address": "1 Main St"}
    return command(saga_id, "create_shipment", "forward", CREATE, body, **options)


def cancel(saga_id: str, **options: Any) -> Wire:
    forward = effect_id(saga_id, "create_shipment", "forward")
    return command(
        saga_id, "create_shipment", "compensate", CANCEL, {}, compensates=forward, **options
    )


async def send(broker: Broker, wire: Wire) -> None:
    t = broker.topology
    await broker.publish(
        wire, exchange=t.commands_exchange, routing_key=t.command_routing_key(PARTICIPANT)
    )


async def shipments(redis: aioredis.Redis, namespace: str) -> dict[str, dict[str, str]]:
    """Every shipment hash of the namespace, by key."""
    found: dict[str, dict[str, str]] = {}
    async for key in redis.scan_iter(match=f"{namespace}checkout:shipment:*", count=1000):
        name = key.decode() if isinstance(key, bytes) else str(key)
        raw = await redis.hgetall(name)
        found[name] = {as_text(k): as_text(v) for k, v in raw.items()}
    return found


def shipment_key(namespace: str, forward_effect_id: str) -> str:
    return f"{namespace}checkout:shipment:{{{forward_effect_id}}}"


def assert_answers(reply: Reply, wire: Wire) -> None:
    """The reply envelope of docs/protocol.md "Replies": the command's saga position and attempt."""
    h = reply.headers
    for name in (env.H_SAGA_ID, env.H_SAGA, env.H_STEP, env.H_PHASE, env.H_EFFECT_ID):
        assert h[name] == wire.headers[name], name
    assert h[env.H_ATTEMPT] == wire.headers[env.H_ATTEMPT]
    assert h[env.H_SCHEMA] == 1
    assert env.H_DEADLINE not in h
    assert h[env.H_SIGNER] == PARTICIPANT
    assert reply.correlation_id == wire.headers[env.H_SAGA_ID]
    assert reply.message_id
    assert reply.message_id != wire.message_id, "a reply gets a new message id"
    trace = h.get(env.H_TRACEPARENT, "")
    assert trace.startswith("00-0af7651916cd43dd8448eb211c80319c-"), "a child span of the command's"
    assert trace != wire.headers[env.H_TRACEPARENT]


async def test_a_command_is_answered_once_and_its_compensation_cancels(
    shipping: Shipping, shipping_broker: Broker, redis_client: aioredis.Redis, namespace: str
) -> None:
    saga_id = f"checkout-{uuid4().hex[:8]}"
    forward = effect_id(saga_id, "create_shipment", "forward")

    first = create(saga_id, attempt=1)
    await send(shipping_broker, first)
    created = await shipping.reply()
    assert created.kind == CREATED
    assert_answers(created, first)
    shipment_id = created.body["shipment_id"]
    assert shipment_id.startswith("shp_")
    stored = (await shipments(redis_client, namespace))[shipment_key(namespace, forward)]
    assert stored["status"] == "created"
    assert stored["shipment_id"] == shipment_id
    assert stored["effect_id"] == forward
    assert stored["saga_id"] == saga_id
    assert stored["order_id"] == f"order-{saga_id}"
    assert "address" not in stored, "the address is sensitive: not stored"

    repeat = create(saga_id, attempt=2)  # a retry after a lost reply: same effect id
    await send(shipping_broker, repeat)
    again = await shipping.reply()
    assert again.kind == CREATED
    assert again.raw == created.raw, "a duplicate gets the identical reply"
    assert again.headers[env.H_ATTEMPT] == 2, "stamped with the repeat's attempt"
    assert_answers(again, repeat)
    assert len(await shipments(redis_client, namespace)) == 1, "one shipment"
    line = await shipping.logged(repeat.message_id or "")  # logged just after the reply
    assert line["outcome"] == "duplicate", "answered from the inbox, the handler not run"

    undo = cancel(saga_id)
    await send(shipping_broker, undo)
    cancelled = await shipping.reply()
    assert cancelled.kind == CANCELLED
    assert cancelled.body == {"cancelled": True}
    assert cancelled.headers[env.H_COMPENSATES] == forward
    assert_answers(cancelled, undo)
    stored = (await shipments(redis_client, namespace))[shipment_key(namespace, forward)]
    assert stored["status"] == "cancelled"
    assert stored["shipment_id"] == shipment_id
    tomb = f"{namespace}participant:{{{PARTICIPANT}}}:tomb:{forward}"
    assert await redis_client.exists(tomb) == 1, "the compensation tombstones its forward effect"

    undo_again = cancel(saga_id, attempt=2)
    await send(shipping_broker, undo_again)
    assert (await shipping.reply()).raw == cancelled.raw, "a repeated compensation: same answer"


async def test_a_command_after_its_compensation_is_refused_and_books_nothing(
    shipping: Shipping, shipping_broker: Broker, redis_client: aioredis.Redis, namespace: str
) -> None:
    saga_id = f"checkout-{uuid4().hex[:8]}"
    forward = effect_id(saga_id, "create_shipment", "forward")

    undo = cancel(saga_id)
    await send(shipping_broker, undo)
    cancelled = await shipping.reply()
    assert cancelled.kind == CANCELLED
    assert cancelled.body == {"cancelled": False}, "nothing to undo, and still a success"
    tomb = f"{namespace}participant:{{{PARTICIPANT}}}:tomb:{forward}"
    assert await redis_client.exists(tomb) == 1

    late = create(saga_id)
    await send(shipping_broker, late)
    refused = await shipping.reply()
    assert refused.kind == STEP_FAILED
    assert refused.body == {"reason": "cancelled", "retriable": False, "detail": ""}
    assert_answers(refused, late)
    stored = (await shipments(redis_client, namespace))[shipment_key(namespace, forward)]
    assert stored["status"] == "cancelled"
    assert "shipment_id" not in stored, "the late command booked nothing"
    outcome = await redis_client.get(f"{namespace}participant:{{{PARTICIPANT}}}:inbox:{forward}")
    assert outcome is not None
    assert json.loads(outcome)["body"]["reason"] == "cancelled", "the refusal is final, stored"

    await send(shipping_broker, create(saga_id, attempt=2))
    assert (await shipping.reply()).raw == refused.raw


async def test_concurrent_duplicates_book_one_shipment_and_get_one_answer(
    shipping: Shipping, shipping_broker: Broker, redis_client: aioredis.Redis, namespace: str
) -> None:
    saga_id = f"checkout-{uuid4().hex[:8]}"
    copies = [create(saga_id, attempt=attempt) for attempt in range(1, 6)]
    await asyncio.gather(*(send(shipping_broker, wire) for wire in copies))
    answers = [await shipping.reply() for _ in copies]
    assert {answer.raw for answer in answers} == {answers[0].raw}, "one outcome for the effect"
    assert sorted(a.headers[env.H_ATTEMPT] for a in answers) == [1, 2, 3, 4, 5]
    assert len(await shipments(redis_client, namespace)) == 1
    outcomes = [(await shipping.logged(wire.message_id or ""))["outcome"] for wire in copies]
    assert sorted(outcomes) == ["duplicate"] * 4 + ["ok"], "the handler ran once"


async def test_a_compensation_waits_for_the_lease_on_its_forward_effect(
    shipping: Shipping, shipping_broker: Broker, redis_client: aioredis.Redis, namespace: str
) -> None:
    """The lease is on the subject: a compensation's is the forward effect id it undoes, so
    while another delivery holds that, the compensation waits for the lease to end."""
    saga_id = f"checkout-{uuid4().hex[:8]}"
    forward = effect_id(saga_id, "create_shipment", "forward")
    held_s = 1.5
    lease = f"{namespace}participant:{{{PARTICIPANT}}}:lease:{forward}"
    assert await redis_client.set(lease, "another-delivery", px=int(held_s * 1000))
    started = time.monotonic()
    await send(shipping_broker, cancel(saga_id))
    answered = await shipping.reply()
    assert time.monotonic() - started >= held_s - 0.1, "answered while the forward was leased"
    assert answered.kind == CANCELLED
    assert await redis_client.exists(lease) == 0, "its own lease ended with the record"


async def _dead_letters(broker: Broker, count: int) -> list[Wire]:
    """``count`` messages taken off the shipping dead-letter queue (waiting for them)."""
    t = broker.topology
    dead = t.dead_letter_queue(t.command_queue(PARTICIPANT))
    taken: list[Wire] = []
    channel = await broker.connection.channel()
    try:
        queue = await channel.declare_queue(dead, passive=True)

        async def next_one() -> bool:
            message = await queue.get(no_ack=True, fail=False)
            if message is not None:
                taken.append(wire_of(message))
            return len(taken) >= count

        await eventually(next_one, 20, f"{count} dead letters")
    finally:
        await channel.close()
    return taken


async def test_unauthentic_and_malformed_commands_are_dead_lettered_with_a_reason(
    shipping: Shipping, shipping_broker: Broker, redis_client: aioredis.Redis, namespace: str
) -> None:
    t = shipping_broker.topology
    saga_id = f"checkout-{uuid4().hex[:8]}"
    valid = create(saga_id)
    unsigned = Wire(
        valid.body, valid.kind, "unsigned-1", valid.correlation_id,
        headers={k: v for k, v in valid.headers.items() if k != env.H_SIGNATURE},
    )  # fmt: skip
    forger = SigningKey.generate("orchestrator", key_id=KEYS.keys["orchestrator"].key_id)
    forged = Keyring("orchestrator", {}, key_id=forger.key_id, private=forger.private).sign(
        create(f"{saga_id}-forged")
    )
    tampered = Wire(
        valid.body.replace(b'"quantity":2', b'"quantity":9'), valid.kind, "tampered-1",
        valid.correlation_id, headers=dict(valid.headers),
    )  # fmt: skip
    from_participant = create(f"{saga_id}-self", keyring=KEYS.keyring(PARTICIPANT))
    invalid = command(
        f"{saga_id}-invalid", "create_shipment", "forward", CREATE,
        {"order_id": "o-1", "sku": "sku-1", "quantity": 0, "address": "1 Main St"},
    )  # fmt: skip
    card = command(
        f"{saga_id}-card", "create_shipment", "forward", CREATE,
        {"order_id": "o-1", "sku": "sku-1", "quantity": 1, "address": "4111 1111 1111 1111"},
    )  # fmt: skip
    not_json = ORCHESTRATOR.sign(
        Wire(b"{not json", CREATE, "broken-1", saga_id, headers=dict(unsigned.headers))
    )
    no_compensates = command(f"{saga_id}-undo", "create_shipment", "compensate", CANCEL, {})
    expected = {
        unsigned.message_id: "unsigned",
        forged.message_id: "bad_signature",
        tampered.message_id: "bad_signature",
        from_participant.message_id: "wrong_sender",
        invalid.message_id: "invalid_body",
        card.message_id: "invalid_body",
        not_json.message_id: "not_json",
        no_compensates.message_id: "missing_compensates",
    }
    bodies = {}
    for wire in (unsigned, forged, tampered, from_participant, invalid, card, not_json,
                 no_compensates):  # fmt: skip
        bodies[wire.message_id] = wire.body
        await send(shipping_broker, wire)

    letters = await _dead_letters(shipping_broker, len(expected))
    reasons = {w.message_id: str(w.headers[env.H_REASON]) for w in letters}
    assert {m: r.split(":")[0] for m, r in reasons.items()} == expected
    assert "4111" not in reasons[card.message_id], "no card number in a reason"
    assert "address" in reasons[card.message_id]
    sealer = Sealer.from_settings(
        SealingSettings(keys=os.environ[KEYS_VARIABLE], active=os.environ.get(ACTIVE_VARIABLE, ""))
    )
    for letter in letters:
        assert letter.headers[env.H_SOURCE_QUEUE] == t.command_queue(PARTICIPANT)
        assert letter.kind in {CREATE, CANCEL}
        sealed = letter.body.decode()
        assert letter.headers[env.H_SEALED] == sealer.active_key_id
        context = dead_letter_context(t.command_queue(PARTICIPANT))
        assert sealer.open(sealed, context) == bodies[letter.message_id], "sealed whole"
    assert shipping.replies.empty(), "a dead letter is never answered"
    assert await shipments(redis_client, namespace) == {}, "and changes nothing"
    assert await shipping_broker.queue_depth(t.command_queue(PARTICIPANT)) == 0


async def test_an_expired_command_is_dropped_unhandled(
    shipping: Shipping, shipping_broker: Broker, redis_client: aioredis.Redis, namespace: str
) -> None:
    saga_id = f"checkout-{uuid4().hex[:8]}"
    stale = create(saga_id, deadline_in_s=-600)  # past x-baton-deadline already
    await send(shipping_broker, stale)

    line = await shipping.logged(stale.message_id or "")
    assert line["outcome"] == "expired"
    assert await shipments(redis_client, namespace) == {}, "not executed"
    forward = effect_id(saga_id, "create_shipment", "forward")
    outcome = f"{namespace}participant:{{{PARTICIPANT}}}:inbox:{forward}"
    assert await redis_client.exists(outcome) == 0, "no outcome stored"
    queue = shipping_broker.topology.command_queue(PARTICIPANT)
    assert await shipping_broker.queue_depth(queue) == 0, "acked"

    probe = create(f"{saga_id}-probe")  # sent after the drop: the next reply must be its
    await send(shipping_broker, probe)
    answered = await shipping.reply()
    assert answered.headers[env.H_EFFECT_ID] == probe.headers[env.H_EFFECT_ID], "no reply to it"


async def test_the_node_unit_tests_pass() -> None:
    """The participant's own tests: the signature test vector, float rendering, decoding."""
    _installed()
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE, "--test", "test/", cwd=FOLDER,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, out.decode()
