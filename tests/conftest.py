"""Fixtures shared by every suite: service URLs from the environment, isolation per test."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from uuid import uuid4

import pytest
import redis.asyncio as aioredis

from contracts.topology import Topology
from messaging.transport.amqp import Broker
from messaging.trust.sealing import ACTIVE_VARIABLE, KEYS_VARIABLE, generate_key
from messaging.trust.signing import KeySet

PARTICIPANTS = ("payment", "risk", "pci", "transaction")
SIGNERS = ("orchestrator", *PARTICIPANTS, "cli")


@pytest.fixture(scope="session")
def keys() -> KeySet:
    """One signing key per service for the session; ``keys.keyring(name)`` signs as it,
    ``keys.env(name)`` is a process's environment, ``keys.settings(name)`` its settings."""
    return KeySet.generate(SIGNERS)


@pytest.fixture(scope="session", autouse=True)
def sealing_key() -> Iterator[None]:
    """A sealing key for every process the tests start: without one a process refuses."""
    with pytest.MonkeyPatch.context() as patch:
        if not os.environ.get(KEYS_VARIABLE):
            patch.setenv(KEYS_VARIABLE, json.dumps({"test": generate_key()}))
            patch.setenv(ACTIVE_VARIABLE, "test")
        yield


@pytest.fixture(scope="session")
def rabbit_url() -> str:
    return os.environ.get("BATON_RABBIT__URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("BATON_REDIS__URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def namespace() -> str:
    """A unique prefix for queue names and Redis keys: tests never see each other's data."""
    return f"test-{uuid4().hex[:12]}."


@pytest.fixture
def topology(namespace: str) -> Topology:
    return Topology(namespace=namespace)


async def delete_keys(client: aioredis.Redis, prefix: str) -> None:
    """Remove every key under ``prefix`` (never FLUSHALL: CI shares this Redis)."""
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        await client.delete(key)


@pytest.fixture
async def redis_client(redis_url: str, namespace: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    await client.ping()  # a missing service fails the test; it never skips
    yield client
    await delete_keys(client, namespace)
    await client.aclose()


@pytest.fixture
async def broker(rabbit_url: str, topology: Topology) -> AsyncIterator[Broker]:
    """A connected broker with the whole topology declared under this test's namespace."""
    connected = await Broker.connect(rabbit_url, topology, prefetch=32)
    await connected.declare(PARTICIPANTS)
    yield connected
    await connected.delete(topology.all_queues(PARTICIPANTS), topology.exchanges)
    await connected.close()
