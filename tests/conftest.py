"""Fixtures shared by every suite: service URLs from the environment, isolation per test."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from uuid import uuid4

import pytest
import redis.asyncio as aioredis
import structlog

from baton.cli.base import QUIET_LIBRARIES
from contracts.topology import Topology
from messaging.transport.amqp import Broker
from messaging.trust.sealing import ACTIVE_VARIABLE, KEYS_VARIABLE, generate_key
from messaging.trust.signing import KeySet
from tests.support.service_lookup import (
    RABBIT,
    REDIS,
    Service,
    ServiceMissing,
    describe,
    locate,
)

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


# Where the servers come from: BATON_RABBIT__URL / BATON_REDIS__URL when set, else the local
# servers when they answer, else testcontainers' containers when a Docker engine answers, else
# the run fails. The order and why: tests/support/service_lookup.py (scripts/services.sh
# follows it too). The session's summary says which path each service took, in one line.
SERVICE_SOURCES: dict[str, str] = {}


def _located(service: Service) -> Iterator[str]:
    try:
        with locate(service) as (source, url):
            SERVICE_SOURCES[service.name] = describe(service, source, url)
            yield url
    except ServiceMissing as missing:
        pytest.fail(str(missing), pytrace=False)


@pytest.fixture(scope="session")
def rabbit_url() -> Iterator[str]:
    yield from _located(RABBIT)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    yield from _located(REDIS)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line: which server each service came from (only when a test asked for one)."""
    if SERVICE_SOURCES:
        terminalreporter.write_line("services: " + "; ".join(SERVICE_SOURCES.values()))


@pytest.fixture(autouse=True)
def process_logging() -> Iterator[None]:
    """A ``baton`` command run in-process (click's runner) configures logging for the whole
    process, as a one-shot CLI process may: structlog's level (warning for one-shot
    commands), the root handlers, and the broker client's loggers quieted. The next test gets
    the configuration back, so its ``capture_logs`` sees its info lines."""
    structlog_config = structlog.get_config()
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    loggers = [logging.getLogger(name) for name in QUIET_LIBRARIES]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)
    root.handlers[:] = handlers
    root.setLevel(root_level)
    structlog.configure(**structlog_config)


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
