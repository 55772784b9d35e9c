"""Baton's ``redis+sentinel://`` client against real Sentinels: a durable script write waits
for the replica, fails closed without it, and the same client follows a failover.

Runs on its own primary, replica and three Sentinels (tests/support/redis_sentinel.py), not
on the session clusters of tests/cluster/conftest.py, which it never requests.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from uuid import uuid4

import pytest
import redis.exceptions as rx
from redis.asyncio import Redis

from messaging.durable_writes import Durability, NotDurable
from messaging.redis_client import redis_from_url
from tests.support.redis_sentinel import SentinelSet

pytestmark = pytest.mark.timeout(120)

WRITE = "redis.call('SET', KEYS[1], ARGV[1]) return ARGV[1]"
DURABLE = Durability(replicas=1, timeout_ms=1000)
# What a write meets while the primary fails over, or before the new one has a replica.
TRANSIENT = (rx.ConnectionError, rx.TimeoutError, rx.ReadOnlyError, NotDurable)


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelSet]:
    servers = SentinelSet()
    try:
        servers.start()
        yield servers
    finally:
        servers.close()


def _client(servers: SentinelSet) -> Redis:
    return redis_from_url(servers.url, DURABLE, decode_responses=True, socket_timeout=5)


def _stored(servers: SentinelSet, port: int, key: str) -> str | None:
    with servers.client(port) as client:
        value = client.get(key)
    return None if value is None else str(value)


async def test_durable_script_write_is_on_the_replica(sentinels: SentinelSet) -> None:
    client = _client(sentinels)
    try:
        key, value = f"sentinel:{uuid4().hex}", uuid4().hex
        assert await client.register_script(WRITE)(keys=[key], args=[value]) == value
    finally:
        await client.aclose()
    # WAIT 1 answered 1: the replica holds the write already, no need to wait for it.
    assert _stored(sentinels, sentinels.replica, key) == value


async def test_write_without_replica_is_not_durable(sentinels: SentinelSet) -> None:
    client = _client(sentinels)
    try:
        sentinels.kill(sentinels.replica)
        with pytest.raises(NotDurable):
            await client.register_script(WRITE)(keys=[f"sentinel:{uuid4().hex}"], args=["x"])
    finally:
        await client.aclose()
        sentinels.start_replica(sentinels.replica, sentinels.primary)


async def _write_until_durable(client: Redis, key: str, value: str, timeout_s: float) -> None:
    """The write, retried while the failover and the new primary's replica are under way."""
    script = client.register_script(WRITE)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = await script(keys=[key], args=[value])
        except TRANSIENT:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
        else:
            assert answer == value
            return


async def test_same_client_follows_a_failover(sentinels: SentinelSet) -> None:
    client = _client(sentinels)
    try:
        old = sentinels.primary
        before = f"sentinel:{uuid4().hex}"
        await _write_until_durable(client, before, "before", timeout_s=10)
        new = await asyncio.to_thread(sentinels.kill_primary_and_wait_failover)
        assert new != old
        assert sentinels.named_primary() == new
        with pytest.raises(NotDurable):  # the new primary answers, with no replica yet
            await client.register_script(WRITE)(keys=[f"sentinel:{uuid4().hex}"], args=["x"])
        await asyncio.to_thread(sentinels.start_replica, old, new)
        key, value = f"sentinel:{uuid4().hex}", uuid4().hex
        await _write_until_durable(client, key, value, timeout_s=15)
    finally:
        await client.aclose()
    assert _stored(sentinels, new, key) == value
    assert _stored(sentinels, new, before) == "before"  # the acked write survived the kill
    assert _stored(sentinels, old, key) == value  # and the new one is on its replica


async def test_a_hung_sentinel_is_skipped(sentinels: SentinelSet) -> None:
    """A stopped Sentinel (SIGSTOP: it accepts, never answers) costs the client one socket
    timeout, then the next Sentinel names the primary; without a timeout it would hang."""
    hung = sentinels.sentinels[0].proc
    assert hung is not None
    client = redis_from_url(sentinels.url, DURABLE, socket_timeout=2)
    os.killpg(hung.pid, signal.SIGSTOP)
    try:
        key = f"sentinel:{uuid4().hex}"
        started = time.monotonic()
        await asyncio.wait_for(client.register_script(WRITE)(keys=[key], args=["v"]), 10)
        assert time.monotonic() - started < 8
    finally:
        os.killpg(hung.pid, signal.SIGCONT)
        await client.aclose()
