"""``baton purge``: one namespace's queues, exchanges and keys go; a look-alike's stay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from baton.payment_data import seed_account
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.trust.signing import KeySet
from participants.payments.pci import PciService
from tests.support.cli import Result, cli_env

pytestmark = pytest.mark.integration
BATON = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "baton"
PARTICIPANTS = ("payment", "risk", "pci", "transaction")


async def purge(settings: Settings, keys: KeySet, namespace: str, *args: str) -> Result:
    """``baton purge`` with no terminal on stdin, as in a script."""
    proc = await asyncio.create_subprocess_exec(
        str(BATON), "purge", "--namespace", namespace, *args,
        env=cli_env(settings, keys, "orchestrator"), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@pytest.fixture
async def neighbour(broker: Broker, namespace: str, rabbit_url: str) -> AsyncIterator[str]:
    """A namespace that shares the test's as a prefix but for the separator: ``x.`` and
    ``xd.``, declared like the test's own."""
    other = namespace[:-1] + "d."
    connected = await Broker.connect(rabbit_url, broker.topology.model_copy(
        update={"namespace": other}))  # fmt: skip
    await connected.declare(PARTICIPANTS)
    yield other
    await connected.delete(
        connected.topology.all_queues(PARTICIPANTS), connected.topology.exchanges
    )
    await connected.close()


async def _keys(client: aioredis.Redis, namespace: str) -> int:
    return len([k async for k in client.scan_iter(match=f"{namespace}*")])


async def test_purge_takes_one_namespace_only(
    broker: Broker, neighbour: str, settings: Settings, keys: KeySet,
    redis_client: aioredis.Redis,
) -> None:  # fmt: skip
    mine = settings.namespace
    try:
        nested = f"{mine}team."  # a namespace inside the test's: another deployment
        for ns in (mine, neighbour, nested):
            await seed_account(redis_client, ns, "acct-1", 100, "EUR")
            await PciService(redis_client, ns).set_merchant_status("m-1", "compliant")
        t = broker.topology
        queues = t.all_queues(PARTICIPANTS)
        assert await broker.missing(queues, t.exchanges) == []

        refused = await purge(settings, keys, mine)  # no --yes, no terminal
        assert refused.code == 1
        assert "--yes" in refused.err
        shown = await purge(settings, keys, mine, "--dry-run", "--json")
        assert shown.code == 0, shown.err
        assert shown.json()["queues"] == len(queues)
        assert shown.json()["redis_keys"] == 4
        assert await broker.missing(queues, t.exchanges) == []  # dry run: nothing deleted
        assert await _keys(redis_client, mine) == 8  # its own 4 and the nested one's 4

        done = await purge(settings, keys, mine, "--yes", "--json")
        assert done.code == 0, done.err
        assert done.json()["deleted_redis_keys"] == 4
        assert len(await broker.missing(queues, t.exchanges)) == len(queues) + len(t.exchanges)
        assert await _keys(redis_client, mine) == 4  # the nested namespace's, untouched
        assert await _keys(redis_client, nested) == 4

        theirs = t.model_copy(update={"namespace": neighbour})
        assert await broker.missing(theirs.all_queues(PARTICIPANTS), theirs.exchanges) == []
        assert await _keys(redis_client, neighbour) == 4
    finally:
        for ns in (neighbour, f"{mine}team."):
            async for key in redis_client.scan_iter(match=f"{ns}*"):
                await redis_client.delete(key)
