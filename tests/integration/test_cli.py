"""The ``baton`` command as an operator runs it, against a live orchestrator and participants."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from messaging.amqp import Broker
from messaging.settings import Settings
from orchestrator.catalog import Catalog, saga_id_for
from orchestrator.definition import builtin_definitions
from participants.payments import DemoWorld, run_participant, seed_demo_world
from tests.integration.harness import running_baton

pytestmark = pytest.mark.integration
PARTICIPANTS = ("payment", "risk", "pci", "transaction")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        """The last stdout line, parsed: the command's machine-readable answer."""
        return json.loads(self.out.strip().splitlines()[-1])


@pytest.fixture
async def world(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings
) -> AsyncIterator[DemoWorld]:
    """The payment system running in this process; the CLI talks to it from outside."""
    seeded = await seed_demo_world(
        redis_client, settings.namespace, accounts=4, balance_minor=10**6
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(run_participant(n, settings, stop)) for n in PARTICIPANTS]
    async with running_baton(broker, redis_client, settings, Catalog(builtin_definitions())):
        yield seeded
    stop.set()
    await asyncio.gather(*tasks)


async def baton(settings: Settings, *args: str) -> Result:
    env = {
        **os.environ,
        "BATON_NAMESPACE": settings.namespace,
        "BATON_RABBIT__URL": str(settings.rabbit.url),
        "BATON_REDIS__URL": str(settings.redis.url),
        "BATON_LOG__LEVEL": "warning",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "baton",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def test_operator_session(world: DemoWorld, settings: Settings) -> None:
    good = world.transaction(1)
    started = await baton(
        settings,
        "start",
        "--account",
        good.account_id,
        "--merchant",
        good.merchant_id,
        "--amount",
        "12.50",
        "--card-token",
        good.card_token,
        "--key",
        "cli-good",
    )
    assert started.code == 0, started.err
    assert started.json()["event"] == "completed"
    saga_id = saga_id_for("payment", "cli-good")

    status = await baton(settings, "status", saga_id, "--json")
    assert status.code == 0
    state = status.json()["state"]
    assert state["input"]["card_token"] == "***", "an operator's screen never shows the token"
    assert state["input"]["account_id"] == "***"
    assert good.card_token not in status.out
    assert state["status"] == "completed"
    assert state["input"]["amount"] == {"minor": 1250, "currency": "EUR"}

    poor = world.transaction(2, fails_at="authorize")
    refused = await baton(
        settings,
        "start",
        "--account",
        poor.account_id,
        "--merchant",
        poor.merchant_id,
        "--amount",
        "10",
        "--card-token",
        poor.card_token,
        "--key",
        "cli-poor",
    )
    assert refused.code == 1
    assert refused.json()["event"] == "compensated"
    assert refused.json()["reason"] == "insufficient_funds"

    listed = await baton(settings, "list", "--status", "completed", "--json")
    assert [s["saga_id"] for s in listed.json()["sagas"]] == [saga_id]
    books = await baton(settings, "books", "--json")
    assert books.code == 0, books.out
    assert books.json()["ok"] is True
    assert (await baton(settings, "stuck")).code == 0
    assert (await baton(settings, "health")).code == 0
    assert (await baton(settings, "abort", saga_id)).code == 1, "a completed saga cannot be aborted"
    dead = await baton(settings, "dlq", "list", "--json")
    assert set(dead.json().values()) == {0}


async def test_start_rejects_bad_money_before_publishing(settings: Settings) -> None:
    result = await baton(
        settings,
        "start",
        "--account",
        "a",
        "--merchant",
        "m",
        "--amount",
        "1.234",
        "--card-token",
        "tok_abcdefgh1",
        "--no-wait",
    )
    assert result.code == 2
    assert "more decimals" in result.err
