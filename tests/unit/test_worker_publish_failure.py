"""A participant whose reply is not confirmed hands the command back only after a pause that
grows with the broker's delivery count: a broker refusing publishes is not asked again at
once (on the cluster one command came back 827 times in a minute before this)."""

from __future__ import annotations

from typing import Any

import pytest
from fakeredis import FakeAsyncRedis

import baton_sdk.worker as worker_module
from baton_sdk import Handlers, Worker
from baton_sdk.protocol import Outcome, Publish
from contracts.envelope import Envelope
from contracts.topology import Topology
from messaging.settings import ParticipantSettings
from messaging.transport.poison import requeue_pause_s
from messaging.trust.signing import KeySet
from participants.payments.contracts import RiskAssessed

KEYS = KeySet.generate(["risk"])


class _Refusing:
    """A broker that nacks every publish."""

    topology = Topology()

    async def publish(self, *_: Any, **__: Any) -> None:
        raise RuntimeError("nacked")


class _Delivery:
    def __init__(self, deliveries: int) -> None:
        self.headers = {"x-delivery-count": deliveries}
        self.settled: list[str] = []

    async def nack(self, requeue: bool) -> None:
        self.settled.append(f"nack requeue={requeue}")

    async def ack(self) -> None:
        self.settled.append("ack")


@pytest.mark.parametrize("deliveries", [0, 12])
async def test_an_unconfirmed_reply_requeues_its_command_after_a_growing_pause(
    monkeypatch: pytest.MonkeyPatch, deliveries: int
) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("baton_sdk.worker.asyncio.sleep", sleep)
    broker: Any = _Refusing()
    redis: Any = FakeAsyncRedis()
    worker = Worker("risk", Handlers(), broker, redis, "", ParticipantSettings(),
                    keyring=KEYS.keyring("risk"))  # fmt: skip
    message: Any = _Delivery(deliveries)
    envelope = Envelope(kind="payments.assess_risk.v1", saga_id="s", step="assess_risk",
                        effect_id="e", attempt=1)  # fmt: skip
    answer = Publish(RiskAssessed(score=1), Outcome.OK)
    outcome = await worker._reply(message, envelope, answer)
    assert outcome is Outcome.PUBLISH_FAILED
    assert message.settled == ["nack requeue=True"]  # never acked: the command comes back
    headers = {"x-delivery-count": deliveries}
    assert slept == [requeue_pause_s(worker_module.PUBLISH_RETRY_PAUSE_S, headers)]
    assert slept[0] >= worker_module.PUBLISH_RETRY_PAUSE_S
    await redis.aclose()
