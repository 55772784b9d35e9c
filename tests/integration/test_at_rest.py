"""No card data at rest: after real sagas and real dead letters, nothing sensitive is in clear.

Payments run through an in-process orchestrator and the four real payment participants with
distinctive tokens and account ids; a malformed start and a malformed command, each carrying
a token, an account and a card number, go to dead-letter queues. Then every Redis key under
the test's namespace is read whole (key names, strings, hashes, lists, sets, zsets, streams)
and every dead letter is peeked. Card tokens and card numbers must appear nowhere. Account
ids may appear only in the participants' own books (the ledger's accounts and the risk
service's exposure windows are the bank's records, not card data); never in the
orchestrator's keys, the participants' inboxes, the PCI service's keys or a dead letter.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractIncomingMessage

from baton import deadletters, operate
from contracts import envelope as env
from contracts.money import Money
from messaging.errors import SealedValueError
from messaging.settings import Settings
from messaging.text import as_text
from messaging.transport.amqp import Broker
from messaging.transport.codec import Wire
from messaging.transport.dead_marks import RedisDeadLetterMarks
from messaging.trust.sealing import Sealer
from messaging.trust.signing import KeySet
from participants.payments import AccountSeed, Ledger, MerchantSeed, run_participant
from participants.payments.contracts import CheckCompliance, StartTransaction
from participants.payments.pci import COMPLIANT, PciService
from tests.conftest import PARTICIPANTS
from tests.integration.harness import eventually, running_baton

pytestmark = pytest.mark.integration

PAN = "4111111111111111"
PAN_GROUPED = "5555 5555 5555 4444"
RUN = uuid4().hex[:10]
TOKENS = [f"tok_secret{RUN}{n}" for n in range(4)]
ACCOUNTS = [f"acct-secret-{RUN}-{n}" for n in range(4)]
MERCHANT = f"merch-{RUN}"
BOOKS = ("ledger:", "risk:")  # the participants' own records, where an account id is a key


@pytest.fixture
async def sealed_broker(
    broker: Broker, rabbit_url: str, redis_client: aioredis.Redis, settings: Settings
) -> AsyncIterator[Broker]:
    """The orchestrator's broker as ``open_runtime`` builds it: dead letters sealed.

    (``broker`` is only here to declare the topology and remove it afterwards.)
    """
    connected = await Broker.connect(
        rabbit_url, broker.topology, prefetch=32, sealer=Sealer.from_settings(settings.sealing),
        dead_marks=RedisDeadLetterMarks(redis_client, settings.namespace),
    )  # fmt: skip
    yield connected
    await connected.close()


async def _seed(redis_client: aioredis.Redis, namespace: str) -> None:
    rich = [AccountSeed(account_id=a, balance_minor=10**6, currency="EUR") for a in ACCOUNTS[:2]]
    poor = AccountSeed(account_id=ACCOUNTS[2], balance_minor=1, currency="EUR")
    await Ledger(redis_client, namespace).seed(
        [*rich, poor], [MerchantSeed(merchant_id=MERCHANT, currency="EUR")]
    )
    pci = PciService(redis_client, namespace)
    await pci.set_merchant_status(MERCHANT, COMPLIANT)
    await pci.revoke_token(TOKENS[1])  # the second payment is refused at the PCI step


def _payment(n: int) -> StartTransaction:
    return StartTransaction(
        idempotency_key=f"at-rest-{RUN}-{n}", account_id=ACCOUNTS[n], merchant_id=MERCHANT,
        amount=Money(minor=1_000, currency="EUR"), card_token=TOKENS[n],
        description=f"order {RUN} number {n}",
    )  # fmt: skip


def _malformed(token: str, account: str) -> bytes:
    """A body that fails validation and carries every kind of secret."""
    return json.dumps(
        {"idempotency_key": f"bad-{RUN}", "card_token": token, "account_id": account,
         "merchant_id": MERCHANT, "description": f"card {PAN_GROUPED}", "card": PAN}
    ).encode()  # fmt: skip


async def _send_malformed(broker: Broker, keys: KeySet) -> None:
    """A start without an amount, and a compliance check whose token is a card number;
    both signed by who may send them, so they are refused for their bodies alone."""
    t = broker.topology
    start = Wire(_malformed(TOKENS[3], ACCOUNTS[3]), StartTransaction.KIND, f"bad-start-{RUN}")
    await broker.publish(keys.keyring("cli").sign(start), exchange="", routing_key=t.start_queue)
    headers = {
        env.H_SAGA_ID: f"saga-{RUN}", env.H_SAGA: "payment", env.H_STEP: "check_compliance",
        env.H_PHASE: "forward", env.H_EFFECT_ID: f"effect-{RUN}", env.H_ATTEMPT: 1,
    }  # fmt: skip
    body = json.dumps({"card_token": f"tok_{PAN}", "merchant_id": MERCHANT,
                       "account_id": ACCOUNTS[3], "note": TOKENS[3]}).encode()  # fmt: skip
    command = Wire(body, CheckCompliance.KIND, f"bad-cmd-{RUN}", f"saga-{RUN}", headers=headers)
    await broker.publish(
        keys.keyring("orchestrator").sign(command),
        exchange=t.commands_exchange,
        routing_key=t.command_routing_key("pci"),
    )


async def _everything_in_redis(client: aioredis.Redis, namespace: str) -> dict[str, bytes]:
    """Each key under ``namespace`` with all it holds, as one blob per key."""
    found: dict[str, bytes] = {}
    async for raw_key in client.scan_iter(match=f"{namespace}*", count=1000):
        key = as_text(raw_key)
        kind = as_text(await client.type(raw_key))
        parts: list[object] = [raw_key]
        if kind == "string":
            parts.append(await client.get(raw_key))
        elif kind == "hash":
            parts.extend((await client.hgetall(raw_key)).items())
        elif kind == "list":
            parts.extend(await client.lrange(raw_key, 0, -1))
        elif kind == "set":
            parts.extend(await client.smembers(raw_key))
        elif kind == "zset":
            parts.extend(await client.zrange(raw_key, 0, -1, withscores=True))
        elif kind == "stream":
            parts.extend(await client.xrange(raw_key, "-", "+") or [])
        else:
            raise AssertionError(f"{key}: a Redis type the scan does not read: {kind}")
        found[key] = repr(parts).encode()
    return found


async def _dead_letters(broker: Broker) -> dict[str, list[bytes]]:
    """Every dead letter (body and headers) per dead-letter queue, left where it is."""
    found: dict[str, list[bytes]] = {}
    channel = await broker.connection.channel()
    try:
        for name in broker.topology.all_queues(PARTICIPANTS):
            if ".dead." not in name:
                continue
            queue = await channel.declare_queue(name, passive=True)
            letters: list[bytes] = []
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                assert (message.headers or {}).get(env.H_SEALED), f"{name}: a body in clear"
                letters.append(message.body + repr(message.headers).encode())
            found[name] = letters
    finally:
        await channel.close()  # unacked: every letter goes back to its queue
    return found


def _holding(blobs: dict[str, bytes], secret: str) -> list[str]:
    return sorted(key for key, blob in blobs.items() if secret.encode() in blob)


async def test_no_card_data_at_rest(
    broker: Broker,
    sealed_broker: Broker,
    redis_client: aioredis.Redis,
    settings: Settings,
    keys: KeySet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _seed(redis_client, settings.namespace)
    stop = asyncio.Event()
    workers = [
        asyncio.create_task(run_participant(name, settings, stop, keyring=keys.keyring(name)))
        for name in PARTICIPANTS
    ]
    sealer = Sealer.from_settings(settings.sealing)
    try:
        async with running_baton(
            sealed_broker, redis_client, settings, keys=keys, sealer=sealer
        ) as baton:
            saga_ids = [await baton.start(_payment(n)) for n in range(3)]
            outcomes = [(await baton.final(saga_id))["event"] for saga_id in saga_ids]
            await _send_malformed(broker, keys)
            t = broker.topology

            async def both_dead_lettered() -> bool:
                start = await broker.queue_depth(t.dead_letter_queue(t.start_queue))
                pci = await broker.queue_depth(t.dead_letter_queue(t.command_queue("pci")))
                return start >= 1 and pci >= 1

            await eventually(both_dead_lettered, 15, "the malformed start and command")
            status_json = await _status_json(settings, saga_ids, capsys)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    assert outcomes == ["completed", "compensated", "compensated"]

    stored = await _everything_in_redis(redis_client, settings.namespace)
    assert any(":saga:" in key for key in stored), "the scan found no saga: wrong namespace?"
    dead = await _dead_letters(broker)
    letters = {
        f"{queue}#{i}": blob for queue, blobs in dead.items() for i, blob in enumerate(blobs)
    }
    assert len(letters) >= 2

    for secret in [*TOKENS, f"tok_{PAN}", PAN, PAN_GROUPED, PAN_GROUPED.replace(" ", "")]:
        assert _holding(stored, secret) == [], secret
        assert _holding(letters, secret) == [], secret
        assert secret not in status_json
    for account in ACCOUNTS:
        books = f"{settings.namespace}{BOOKS[0]}", f"{settings.namespace}{BOOKS[1]}"
        assert [k for k in _holding(stored, account) if not k.startswith(books)] == [], account
        assert _holding(letters, account) == [], account
        assert account not in status_json
    # the test scans what it means to: the books do hold the accounts they serve
    assert _holding(stored, ACCOUNTS[0])


async def _status_json(
    settings: Settings, saga_ids: list[str], capsys: pytest.CaptureFixture[str]
) -> str:
    """What ``baton status --json`` prints for each saga, all together."""
    capsys.readouterr()
    for saga_id in saga_ids:
        assert await operate.show_status(settings, saga_id, as_json=True) == 0
    return capsys.readouterr().out


async def test_a_sealed_dead_letter_is_shown_without_its_body_and_replayed_opened(
    broker: Broker, sealed_broker: Broker
) -> None:
    t = broker.topology
    queue, dead = t.command_queue("pci"), t.dead_letter_queue(t.command_queue("pci"))
    body = _malformed(TOKENS[0], ACCOUNTS[0])
    await broker.publish(
        Wire(body, CheckCompliance.KIND, f"m-{RUN}"), exchange="", routing_key=queue
    )
    channel = await broker.connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)

        async def taken() -> AbstractIncomingMessage | None:
            return await declared.get(no_ack=False, fail=False)

        message = await eventually(taken, what="the message on its queue")
        await sealed_broker.dead_letter(message, queue, f"invalid_body: card {PAN}")
    finally:
        await channel.close()
    assert await eventually(lambda: _depth_is(broker, dead, 1), what="one dead letter")

    [letter] = await deadletters.peek(broker, dead, limit=5)
    assert sealed_broker.sealer is not None
    assert letter.sealed == sealed_broker.sealer.active_key_id
    assert PAN not in letter.reason
    assert TOKENS[0] not in json.dumps(letter.row())

    with pytest.raises(SealedValueError, match="BATON_SEALING__KEYS"):
        await deadletters.replay(broker, dead, limit=5)  # no sealer: nothing moved
    assert await broker.queue_depth(dead) == 1
    assert await deadletters.replay(sealed_broker, dead, limit=5) == 1
    assert await eventually(lambda: _depth_is(broker, queue, 1), what="replayed to its queue")
    channel = await broker.connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        replayed = await declared.get(no_ack=True)
    finally:
        await channel.close()
    assert replayed.body == body
    assert env.H_SEALED not in (replayed.headers or {})


async def _depth_is(broker: Broker, queue: str, count: int) -> bool:
    return await broker.queue_depth(queue) == count
