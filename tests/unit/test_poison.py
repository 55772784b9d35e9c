"""Poison messages are counted per message; a consumer stuck in a crash loop is not alive."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import redis.exceptions
from prometheus_client import CollectorRegistry

from messaging.errors import TransientError
from messaging.observability.health import ObservabilityServer, consumer_alive
from messaging.transport.codec import Wire
from messaging.transport.poison import (
    BROKER_COUNT_WEIGHT,
    STUCK_WINDOW_S,
    FailureCounts,
    counts_as_poison,
    poison_reason,
)
from orchestrator.runtime.errors import ConcurrencyConflict


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wire(message_id: str | None = "m1", body: bytes = b"{}", headers: Any = None) -> Wire:
    return Wire(body, kind="k", message_id=message_id, headers=headers or {})


def test_a_message_is_poison_after_n_failures_and_others_are_not() -> None:
    counts = FailureCounts(3, clock=Clock())
    assert [counts.failed(wire()) for _ in range(3)] == [1, 2, 3]
    assert counts.is_poison(3)
    assert counts.failed(wire("m2")) == 1


def test_without_a_message_id_the_body_and_headers_identify_it() -> None:
    counts = FailureCounts(3, clock=Clock())
    counts.failed(wire(None, b"a"))
    assert counts.failed(wire(None, b"a")) == 2
    assert counts.failed(wire(None, b"b")) == 1
    assert counts.failed(wire(None, b"a", {"h": 1})) == 1


def test_the_brokers_delivery_count_carries_failures_across_restarts() -> None:
    counts = FailureCounts(5, clock=Clock())
    assert counts.failed(wire(headers={"x-delivery-count": 4 * BROKER_COUNT_WEIGHT})) == 5
    # an outage's requeues are deliveries too: they weigh little against a handler's failure
    assert counts.failed(wire("m3", headers={"x-delivery-count": 19})) == 1
    assert counts.failed(wire("m2", headers={"x-delivery-count": "4"})) == 1  # not a count


def test_settling_forgets_and_the_map_is_bounded() -> None:
    clock = Clock()
    counts = FailureCounts(5, capacity=2, clock=clock)
    counts.failed(wire("a"))
    clock.now += 1
    counts.settled(wire("a"))
    assert counts.last_progress == clock.now
    assert not counts.counting
    for name in "bcd":
        counts.failed(wire(name))
    assert counts.failed(wire("b")) == 1  # the oldest was dropped


@pytest.mark.parametrize(
    "exc",
    [ConnectionError(), TimeoutError(), OSError(), redis.exceptions.ConnectionError(),
     redis.exceptions.TimeoutError(), ConcurrencyConflict("s"), TransientError("x")],
)  # fmt: skip
def test_a_dependencys_failure_is_not_the_messages_fault(exc: Exception) -> None:
    assert not counts_as_poison(exc)


def test_a_bug_is_counted_and_named_in_the_reason() -> None:
    for exc in (KeyError("k"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
                redis.exceptions.ResponseError("script"), RecursionError()):  # fmt: skip
        assert counts_as_poison(exc)
    assert poison_reason(KeyError("k")) == "poison: KeyError"


def test_a_message_failing_long_after_it_should_be_dead_lettered_is_stuck() -> None:
    clock = Clock()
    counts = FailureCounts(2, clock=clock)
    for _ in range(3):
        counts.failed(wire())
    assert not counts.stuck()
    counts.failed(wire())
    assert counts.stuck()
    clock.now += STUCK_WINDOW_S + 1
    assert not counts.stuck()  # it stopped coming back


class Reconnects:
    def __init__(self) -> None:
        self.callbacks: list[Callable[..., Any]] = []

    def add(self, callback: Callable[..., Any]) -> None:
        self.callbacks.append(callback)

    def fire(self) -> None:
        for callback in self.callbacks:
            callback(None)


def alive_check(clock: Clock, failures: FailureCounts) -> tuple[Any, Reconnects]:
    reconnects = Reconnects()
    broker = SimpleNamespace(connection=SimpleNamespace(reconnect_callbacks=reconnects))
    check = consumer_alive(broker, failures, reconnects=3, window_s=60, clock=clock)  # type: ignore[arg-type]
    return check, reconnects


async def test_reconnecting_again_and_again_without_progress_is_a_crash_loop() -> None:
    clock = Clock()
    failures = FailureCounts(5, clock=clock)
    check, reconnects = alive_check(clock, failures)
    for _ in range(2):
        clock.now += 5
        reconnects.fire()
    assert await check()
    clock.now += 5
    reconnects.fire()
    assert not await check()
    failures.settled()  # a message got through: the loop is broken
    assert await check()


async def test_reconnects_spread_over_more_than_the_window_are_not_a_loop() -> None:
    clock = Clock()
    check, reconnects = alive_check(clock, FailureCounts(5, clock=clock))
    for _ in range(3):
        clock.now += 30
        reconnects.fire()
    assert await check()


async def test_a_stuck_message_makes_livez_answer_503() -> None:
    clock = Clock()
    failures = FailureCounts(1, clock=clock)
    check, _ = alive_check(clock, failures)
    server = ObservabilityServer(
        CollectorRegistry(), {}, port=0, host="127.0.0.1", liveness={"consumers": check}
    )
    async with server:
        assert await livez(server.port) == 200
        failures.failed(wire())
        failures.failed(wire())
        assert await livez(server.port) == 503


async def livez(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    writer.close()
    await writer.wait_closed()
    return status
