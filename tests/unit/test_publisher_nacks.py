"""A publisher channel that keeps being nacked is renewed (seen on a RabbitMQ 3.10 cluster)."""

from __future__ import annotations

from typing import Any

import aiormq
import pytest

from contracts.topology import Topology
from messaging.transport.amqp import NACKS_BEFORE_NEW_CHANNEL, Broker
from messaging.transport.codec import Wire


class _Channel:
    """An aiormq channel whose broker nacks (or confirms) every publish."""

    def __init__(self) -> None:
        self.nack = True
        self.closed = 0

    async def basic_publish(self, body: bytes, **_: Any) -> None:
        if self.nack:
            raise aiormq.exceptions.DeliveryError(None, None)  # type: ignore[arg-type]

    async def close(self) -> None:
        self.closed += 1


class _Publisher:
    is_closed = False

    def __init__(self, channel: _Channel) -> None:
        self.channel = channel

    async def get_underlay_channel(self) -> _Channel:
        return self.channel


async def _publish(broker: Broker) -> None:
    await broker.publish(Wire(body=b"{}", message_id="m"), exchange="", routing_key="q")


async def test_a_channel_nacked_again_and_again_is_renewed_and_confirms_reset_the_count() -> None:
    channel = _Channel()
    publisher: Any = _Publisher(channel)
    broker = Broker(None, publisher, Topology(), prefetch=1, queue_type="quorum")  # type: ignore[arg-type]
    for _ in range(NACKS_BEFORE_NEW_CHANNEL - 1):
        with pytest.raises(aiormq.exceptions.DeliveryError):
            await _publish(broker)
    assert channel.closed == 0
    channel.nack = False
    await _publish(broker)  # a confirm: the nacks so far were not in a row
    channel.nack = True
    for _ in range(NACKS_BEFORE_NEW_CHANNEL):
        with pytest.raises(aiormq.exceptions.DeliveryError):  # the caller still hears of it
            await _publish(broker)
    assert channel.closed == 1
