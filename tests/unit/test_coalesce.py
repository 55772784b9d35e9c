"""The aiormq frame-coalescing patch against the installed aiormq, with a broker in memory.

A real ``aiormq.Connection`` and ``Channel`` run over a fake transport (``FakeBroker``): it
records each ``write`` the connection's writer makes and answers the handshake and close
methods, so one write per loop turn, order, close frames and cancellation are checked on
aiormq's own writer and close path, without RabbitMQ.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pamqp.frame
import pytest
from aiormq import Connection, connection
from aiormq.abc import AbstractChannel, ChannelFrame
from aiormq.connection import TransportFactory
from pamqp import commands as spec
from pamqp.header import ProtocolHeader

from messaging.transport import coalesce
from messaging.transport.coalesce import (
    CoalescingFrameGenerator,
    coalesce_frame_writes,
    coalescing_active,
)

ORIGINAL: Any = CoalescingFrameGenerator.__bases__[0]
ANSWERS: dict[type, Any] = {
    spec.Connection.StartOk: lambda: spec.Connection.Tune(frame_max=131072, heartbeat=0),
    spec.Connection.Open: spec.Connection.OpenOk,
    spec.Channel.Open: spec.Channel.OpenOk,
    spec.Confirm.Select: spec.Confirm.SelectOk,
    spec.Channel.Close: spec.Channel.CloseOk,
    spec.Connection.Close: spec.Connection.CloseOk,
}


class FakeBroker(TransportFactory):
    """Both ends in memory: the StreamWriter aiormq writes to, and a broker answering it."""

    def __init__(self) -> None:
        self.reader = asyncio.StreamReader()
        self.writes: list[list[tuple[int, Any]]] = []  # the (channel, frame)s of each write
        self.hold: asyncio.Event | None = None  # while set, drain() waits for it (backpressure)
        self.closed = False
        self.writes_after_close = 0
        self.transport = self  # aiormq may call writer.transport.abort()

    async def create(self, url: Any, **kwargs: Any) -> tuple[Any, Any]:
        return self.reader, self

    def write(self, data: bytes) -> None:
        if self.closed:
            self.writes_after_close += 1
        frames, data = [], bytes(data)
        while data:
            used, channel, frame = pamqp.frame.unmarshal(data)
            frames.append((channel, frame))
            data = data[used:]
        self.writes.append(frames)
        for channel, frame in frames:
            self._answer(channel, frame)

    def _answer(self, channel: int, frame: Any) -> None:
        if isinstance(frame, ProtocolHeader):
            capabilities: Any = {"publisher_confirms": True, "basic.nack": True}
            reply: Any = spec.Connection.Start(server_properties={"capabilities": capabilities})
        elif type(frame) in ANSWERS:
            reply = ANSWERS[type(frame)]()
        else:
            return
        # the answer arrives in a later loop turn, as from a socket
        asyncio.get_running_loop().call_soon(
            self.reader.feed_data, pamqp.frame.marshal(reply, channel)
        )

    async def drain(self) -> None:
        hold = self.hold
        if hold is not None:
            try:
                await hold.wait()
            finally:
                self.hold = None

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self.reader.feed_eof()

    def abort(self) -> None:
        self.close()

    async def wait_closed(self) -> None:
        return None

    def acks(self) -> list[list[int]]:
        """The delivery tags of the Basic.Ack frames, grouped by the write that carried them."""
        grouped = [
            [f.delivery_tag for _, f in w if isinstance(f, spec.Basic.Ack)] for w in self.writes
        ]
        return [tags for tags in grouped if tags]

    def frames(self) -> list[Any]:
        return [frame for write in self.writes for _, frame in write]


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    """Each test patches (or not) for itself; the rest of the suite gets what it had."""
    before, refused = connection.FrameGenerator, list(coalesce._refused)
    connection.FrameGenerator = ORIGINAL  # type: ignore[misc]
    coalesce._refused.clear()
    yield
    connection.FrameGenerator = before  # type: ignore[misc]
    coalesce._refused[:] = refused


@pytest.fixture
async def broker() -> FakeBroker:
    return FakeBroker()  # its StreamReader belongs to the test's loop


@pytest.fixture
async def opened(broker: FakeBroker) -> AsyncIterator[tuple[Connection, AbstractChannel]]:
    assert coalesce_frame_writes()
    conn = Connection("amqp://guest:guest@fake/?heartbeat=0", transport_factory=broker)
    await conn.connect()
    channel = await conn.channel(publisher_confirms=False)
    yield conn, channel
    await asyncio.wait_for(conn.close(), 2)


async def until(condition: Any) -> None:
    """Let the loop run until the condition holds (a bounded number of turns)."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_frames_queued_in_one_turn_go_out_in_one_write_in_order(
    opened: tuple[Connection, AbstractChannel], broker: FakeBroker
) -> None:
    _, channel = opened
    before = len(broker.writes)
    await asyncio.wait_for(asyncio.gather(*(channel.basic_ack(tag) for tag in range(1, 6))), 2)
    assert broker.acks() == [[1, 2, 3, 4, 5]]  # and every sender was released after the drain
    assert len(broker.writes) == before + 1


async def test_unpatched_aiormq_writes_each_frame_alone(broker: FakeBroker) -> None:
    """The control: the test above would fail without the patch."""
    conn = Connection("amqp://guest:guest@fake/?heartbeat=0", transport_factory=broker)
    await conn.connect()
    channel = await conn.channel(publisher_confirms=False)
    await asyncio.wait_for(asyncio.gather(*(channel.basic_ack(tag) for tag in range(1, 6))), 2)
    await asyncio.wait_for(conn.close(), 2)
    assert broker.acks() == [[1], [2], [3], [4], [5]]


async def test_frames_across_turns_keep_their_order(
    opened: tuple[Connection, AbstractChannel], broker: FakeBroker
) -> None:
    _, channel = opened
    await channel.basic_ack(1)
    await asyncio.gather(channel.basic_ack(2), channel.basic_ack(3, wait=False))
    await channel.basic_ack(4, wait=False)
    burst = [asyncio.ensure_future(channel.basic_ack(tag)) for tag in (5, 6, 7)]
    await asyncio.sleep(0)
    await asyncio.gather(*burst, channel.basic_ack(8))
    acks = broker.acks()
    assert [tag for write in acks for tag in write] == list(range(1, 9))
    assert len(acks) < 8


async def test_channel_close_follows_the_frames_queued_before_it(
    opened: tuple[Connection, AbstractChannel], broker: FakeBroker
) -> None:
    _, channel = opened
    senders = [asyncio.ensure_future(channel.basic_ack(tag)) for tag in (1, 2)]
    await asyncio.sleep(0)  # the acks are queued; Channel.Close is queued behind them
    await asyncio.wait_for(channel.close(), 2)
    await asyncio.wait_for(asyncio.gather(*senders), 2)
    sent = [f for f in broker.frames() if isinstance(f, (spec.Basic.Ack, spec.Channel.Close))]
    assert [type(f) for f in sent] == [spec.Basic.Ack, spec.Basic.Ack, spec.Channel.Close]
    assert channel.is_closed


async def test_connection_close_is_the_last_write_and_nothing_is_written_after(
    opened: tuple[Connection, AbstractChannel], broker: FakeBroker
) -> None:
    conn, channel = opened
    await asyncio.gather(channel.basic_ack(1), channel.basic_ack(2))
    await asyncio.wait_for(conn.close(), 2)
    assert isinstance(broker.frames()[-1], spec.Connection.Close)
    assert broker.closed
    conn.write_queue.put_nowait(ChannelFrame.marshall(1, [spec.Basic.Ack(delivery_tag=3)]))
    for _ in range(5):
        await asyncio.sleep(0)
    assert broker.writes_after_close == 0
    assert broker.acks() == [[1, 2]]
    assert asyncio.all_tasks() == {asyncio.current_task()}  # no flush or writer left behind


async def test_close_ok_is_the_last_frame_of_its_batch(
    opened: tuple[Connection, AbstractChannel], broker: FakeBroker
) -> None:
    """A frame that closes the connection ends a batch; what is queued after it stays unsent."""
    conn, _ = opened
    ack = [ChannelFrame.marshall(1, [spec.Basic.Ack(delivery_tag=t)]) for t in (1, 2, 3)]
    close_ok = ChannelFrame.marshall(0, [spec.Connection.CloseOk()])
    for frame in (ack[0], ack[1], close_ok, ack[2]):
        conn.write_queue.put_nowait(frame)
    await until(lambda: any(isinstance(f, spec.Connection.CloseOk) for f in broker.frames()))
    assert [type(f) for _, f in broker.writes[-1]] == [
        spec.Basic.Ack,
        spec.Basic.Ack,
        spec.Connection.CloseOk,
    ]
    await until(lambda: broker.closed)
    assert broker.acks() == [[1, 2]]
    assert broker.writes_after_close == 0


async def test_a_cancelled_sender_loses_and_reorders_nothing(
    opened: tuple[Connection, AbstractChannel], broker: FakeBroker
) -> None:
    _, channel = opened
    broker.hold = release = asyncio.Event()
    first = asyncio.ensure_future(channel.basic_ack(1))
    await until(lambda: broker.acks() == [[1]])  # written; its drain waits on the broker
    others = {tag: asyncio.ensure_future(channel.basic_ack(tag)) for tag in (2, 3, 4)}
    await asyncio.sleep(0)  # all three queued behind the blocked drain
    others[3].cancel()
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(asyncio.gather(first, others[2], others[4]), 2)
    assert others[3].cancelled()
    assert broker.acks() == [[1], [2, 3, 4]]  # a queued frame is sent, as unpatched aiormq does


async def test_close_during_a_blocked_drain_frees_every_sender_and_writes_nothing_after(
    opened: tuple[Connection, AbstractChannel], broker: FakeBroker
) -> None:
    conn, channel = opened
    broker.hold = asyncio.Event()  # never released: the broker stops reading
    senders = [asyncio.ensure_future(channel.basic_ack(tag)) for tag in (1, 2, 3)]
    await until(lambda: broker.acks() == [[1, 2, 3]])
    await asyncio.wait_for(conn.close(), 2)
    done = await asyncio.wait_for(asyncio.gather(*senders, return_exceptions=True), 2)
    assert all(isinstance(result, BaseException) for result in done)  # none hangs
    assert isinstance(broker.frames()[-1], spec.Connection.Close)
    assert broker.writes_after_close == 0


async def test_no_frame_is_taken_after_the_connection_started_closing() -> None:
    """As aiormq's generator: the frame it was waiting for goes out, the ones behind it do not."""
    queue: asyncio.Queue[ChannelFrame] = asyncio.Queue()
    frames = CoalescingFrameGenerator(queue)
    waiting = asyncio.create_task(frames.__anext__())
    await asyncio.sleep(0)
    for tag in (1, 2, 3):
        queue.put_nowait(ChannelFrame.marshall(1, [spec.Basic.Ack(delivery_tag=tag)]))
    frames.close_event.set()
    sent = await asyncio.wait_for(waiting, 1)
    assert sent.payload == pamqp.frame.marshal(spec.Basic.Ack(delivery_tag=1), 1)
    assert queue.qsize() == 2


def test_the_patch_is_idempotent_and_visible() -> None:
    assert not coalescing_active()
    assert coalesce_frame_writes()
    assert coalesce_frame_writes()
    assert coalescing_active()
    assert connection.FrameGenerator is CoalescingFrameGenerator


def test_an_unknown_aiormq_version_is_refused_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(connection, "__version__", "99.0.0")
    with caplog.at_level(logging.WARNING, logger=coalesce.__name__):
        assert not coalesce_frame_writes()
        assert not coalesce_frame_writes()
    assert connection.FrameGenerator is ORIGINAL
    assert not coalescing_active()
    warnings = [r.getMessage() for r in caplog.records if r.name == coalesce.__name__]
    assert len(warnings) == 1
    assert "aiormq 99.0.0" in warnings[0]


def test_a_changed_frame_generator_signature_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def init(self: Any, queue: Any, limit: int = 0) -> None:
        self.queue = queue

    monkeypatch.setattr(ORIGINAL, "__init__", init)
    assert not coalesce_frame_writes()
    assert "FrameGenerator.__init__" in coalesce._refused[0]
    assert not coalescing_active()


def test_a_changed_writer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def writer(self: Any, stream: Any) -> None:
        async for frame in connection.FrameGenerator(self.write_queue):
            stream.write(frame.payload)

    monkeypatch.setattr(connection.Connection, "_Connection__writer", writer)
    assert not coalesce_frame_writes()
    assert "Connection.__writer" in coalesce._refused[0]


def test_a_generator_replaced_by_someone_else_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = type("Other", (ORIGINAL,), {})
    monkeypatch.setattr(connection, "FrameGenerator", other)
    assert not coalesce_frame_writes()
    assert connection.FrameGenerator is other
