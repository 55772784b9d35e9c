"""A refusal listed in ``retriable_reasons`` retried end to end, through the real SDK.

In the first release the SDK stored the refusal under the effect id and the engine retried
with the same id, so every retry got the stored refusal back and ``retriable_reasons`` could
never work (issue 9, finding 2). Now the retry is a new effect of the next generation.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from baton_sdk import Handlers, MessageContext, Worker
from contracts.money import Money
from messaging.errors import StepRejected
from messaging.settings import ParticipantSettings, Settings
from messaging.transport.amqp import Broker
from messaging.trust.signing import KeySet
from orchestrator.core.catalog import Catalog
from orchestrator.core.engine import effect_id
from participants.payments import contracts as p
from tests.integration.harness import ScriptedParticipant, fast_payment, running_baton
from tests.support.sagas import catalog, parse

pytestmark = pytest.mark.integration


def busy_is_retriable() -> Catalog:
    data = fast_payment().model_dump(mode="json", by_alias=True)
    data["steps"][0]["action"]["retry"]["retriable_reasons"] = ["busy"]
    return catalog(parse(data))


@pytest.fixture
async def worker_stop() -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    yield stop
    stop.set()


async def test_a_retriable_refusal_is_retried_as_a_new_effect_and_succeeds(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, worker_stop: asyncio.Event,
    keys: KeySet,
) -> None:  # fmt: skip
    effects: list[str] = []
    handlers = Handlers()

    @handlers.handler(p.AuthorizePayment)
    async def authorize(cmd: p.AuthorizePayment, ctx: MessageContext) -> p.PaymentAuthorized:
        effects.append(ctx.effect_id)
        if len(effects) == 1:
            raise StepRejected("busy")  # final for this effect id, and worth another try
        return p.PaymentAuthorized(hold_id="hold-1")

    worker = Worker("payment", handlers, broker, redis_client, settings.namespace,
                    ParticipantSettings(), keyring=keys.keyring("payment"),
                    rng=random.Random(1))  # fmt: skip
    task = asyncio.create_task(worker.run(worker_stop))
    others = {
        name: await ScriptedParticipant(broker, name, keys).start()
        for name in ("risk", "pci", "transaction")
    }
    replies = {
        "risk": p.RiskAssessed(score=1),
        "pci": p.ComplianceApproved(attestation_id="att-1"),
        "transaction": p.TransactionCaptured(capture_id="cap-1"),
    }
    start = p.StartTransaction(
        idempotency_key="retry-busy", account_id="acct-1", merchant_id="m-1",
        amount=Money(minor=100, currency="EUR"), card_token="tok_abcdef123456",
    )  # fmt: skip
    async with running_baton(
        broker, redis_client, settings, busy_is_retriable(), keys=keys
    ) as baton:
        saga_id = await baton.start(start)
        for name, reply in replies.items():
            command = await others[name].next()
            await others[name].reply(command, reply)
        assert (await baton.final(saga_id))["event"] == "completed"
    worker_stop.set()
    await asyncio.wait_for(task, 10)
    assert effects == [
        effect_id(saga_id, "authorize_payment", "forward", 0),
        effect_id(saga_id, "authorize_payment", "forward", 1),
    ]
