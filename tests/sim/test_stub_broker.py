"""The stub broker behaves as RabbitMQ does for Baton's topology (style.md 6.1)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from contracts import envelope as env
from contracts.topology import Topology
from messaging.transport.codec import Wire
from messaging.transport.dead_marks import MemoryDeadLetterMarks
from messaging.transport.stub_broker import (
    AlreadySettled,
    BrokerUnavailable,
    StubBroker,
    StubMessage,
)
from messaging.transport.stub_broker.server import H_DEATH_REASON

T = Topology(namespace="stub.")
PAYMENT = T.command_queue("payment")


def wire(message_id: str = "m1") -> Wire:
    return Wire(b"{}", kind="payments.authorize_payment.v1", message_id=message_id)


async def declared(**kwargs: object) -> StubBroker:
    broker = StubBroker(T, **kwargs)  # type: ignore[arg-type]  # keyword pass-through
    await broker.declare(["payment"])
    return broker


class Inbox:
    """A consumer that keeps what it is given and settles only when told."""

    def __init__(self) -> None:
        self.got: list[StubMessage] = []
        self.arrived = asyncio.Event()

    async def __call__(self, message: StubMessage) -> None:
        self.got.append(message)
        self.arrived.set()

    async def next(self) -> StubMessage:
        await asyncio.wait_for(self.arrived.wait(), 1)
        self.arrived.clear()
        return self.got[-1]


async def test_routes_by_exchange_and_by_queue_name() -> None:
    broker = await declared()
    await broker.publish(wire("a"), exchange=T.commands_exchange, routing_key="payment")
    await broker.publish(wire("b"), exchange="", routing_key=PAYMENT)
    await broker.publish(wire("c"), exchange=T.commands_exchange, routing_key="nobody")
    assert [w.message_id for w in broker.messages(PAYMENT)] == ["a", "b"]
    broker.bind("stub.events-all", T.events_exchange, "saga.#")
    await broker.publish(wire("e"), exchange=T.events_exchange, routing_key="saga.payment.done")
    assert [w.message_id for w in broker.messages("stub.events-all")] == ["e"]
    with pytest.raises(BrokerUnavailable):
        await broker.publish(wire(), exchange="no.such.exchange", routing_key="x")


async def test_prefetch_bounds_unacked_deliveries() -> None:
    broker, inbox = await declared(), Inbox()
    for n in range(3):
        await broker.publish(wire(f"m{n}"), exchange="", routing_key=PAYMENT)
    await broker.consume(PAYMENT, inbox, prefetch=2)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [m.message_id for m in inbox.got] == ["m0", "m1"]
    await inbox.got[0].ack()
    assert (await inbox.next()).message_id == "m2"
    with pytest.raises(AlreadySettled):
        await inbox.got[0].ack()


async def test_requeue_redelivers_and_reject_dead_letters() -> None:
    broker, inbox = await declared(), Inbox()
    await broker.publish(wire(), exchange="", routing_key=PAYMENT)
    await broker.consume(PAYMENT, inbox)
    first = await inbox.next()
    assert not first.redelivered
    await first.nack(requeue=True)
    again = await inbox.next()
    assert again.redelivered
    await again.reject(requeue=False)
    [dead] = broker.messages(T.dead_letter_queue(PAYMENT))
    assert dead.headers[H_DEATH_REASON] == "rejected"


async def test_a_dead_connection_gives_its_deliveries_back() -> None:
    broker = await declared()
    worker, inbox = broker.connect("worker"), Inbox()
    await broker.publish(wire(), exchange="", routing_key=PAYMENT)
    await worker.consume(PAYMENT, inbox)
    lost = await inbox.next()
    worker.drop(reconnect_after_s=0.01)
    with pytest.raises(BrokerUnavailable):
        await lost.ack()
    back = await inbox.next()  # the robust connection came back with its consumer
    assert back.redelivered
    assert back.message_id == lost.message_id
    await back.ack()
    await broker.join(PAYMENT, timeout_s=1)


async def test_an_outage_refuses_publishes_and_pauses_deliveries() -> None:
    broker, inbox = await declared(), Inbox()
    await broker.consume(PAYMENT, inbox)
    broker.server_down()
    with pytest.raises(BrokerUnavailable):
        await broker.publish(wire(), exchange="", routing_key=PAYMENT)
    assert not broker.is_connected
    broker.server_up()
    await broker.publish(wire(), exchange="", routing_key=PAYMENT)
    assert (await inbox.next()).message_id == "m1"


async def test_dead_letters_once_with_the_reason() -> None:
    marks = MemoryDeadLetterMarks()
    broker, inbox = await declared(dead_marks=marks), Inbox()
    await broker.publish(wire(), exchange="", routing_key=PAYMENT)
    await broker.consume(PAYMENT, inbox)
    first = await inbox.next()
    await broker.dead_letter(first, PAYMENT, "no_handler: payment")
    [copy] = broker.messages(T.dead_letter_queue(PAYMENT))
    assert copy.headers[env.H_REASON] == "no_handler: payment"
    assert copy.headers[env.H_SOURCE_QUEUE] == PAYMENT
    # the same message redelivered (its ack was lost): acked without a second copy
    await broker.publish(wire(), exchange="", routing_key=PAYMENT)
    redelivered = await inbox.next()
    redelivered.redelivered = True
    await broker.dead_letter(redelivered, PAYMENT, "no_handler: payment")
    assert len(broker.messages(T.dead_letter_queue(PAYMENT))) == 1


class Twice:
    """Faults that duplicate every message and lose none."""

    def copies(self, queue: str, wire: Wire) -> Sequence[float]:
        return (0.0, 0.5)

    def latency(self) -> float:
        return 0.0

    def choose(self, count: int) -> int:
        return 0


async def test_faults_duplicate_and_delay_copies() -> None:
    broker = await declared(faults=Twice())
    await broker.publish(wire(), exchange="", routing_key=PAYMENT)
    assert len(broker.messages(PAYMENT)) == 1  # the second copy is still on its way
    assert not broker.drained([PAYMENT])
    await asyncio.sleep(0.6)
    assert len(broker.messages(PAYMENT)) == 2
