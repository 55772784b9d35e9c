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

from contracts.money import Money
from messaging.amqp import Broker
from messaging.settings import Settings
from messaging.signing import KeySet
from orchestrator.catalog import Catalog, saga_id_for
from orchestrator.definition import SagaDefinition, builtin_definitions, parse_definition
from orchestrator.effects import OperatorAction
from orchestrator.state import SagaStatus
from participants.payments import DemoWorld, Ledger, run_participant, seed_demo_world
from tests.integration.harness import eventually, running_baton

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
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> AsyncIterator[DemoWorld]:
    """The payment system running in this process; the CLI talks to it from outside."""
    seeded = await seed_demo_world(
        redis_client, settings.namespace, accounts=4, balance_minor=10**6
    )
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(run_participant(n, settings, stop, keyring=keys.keyring(n)))
        for n in PARTICIPANTS
    ]
    catalog = Catalog(builtin_definitions())
    async with running_baton(broker, redis_client, settings, catalog, keys=keys):
        yield seeded
    stop.set()
    await asyncio.gather(*tasks)


async def baton(settings: Settings, keys: KeySet, *args: str) -> Result:
    """``baton ARGS`` as a separate process: ``start`` signs as the upstream ``cli``, operator
    actions as the orchestrator (participants take commands from nobody else)."""
    env = {
        **os.environ,
        **keys.env("cli" if args[0] == "start" else "orchestrator"),
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


async def test_operator_session(world: DemoWorld, settings: Settings, keys: KeySet) -> None:
    good = world.transaction(1)
    started = await baton(
        settings,
        keys,
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

    status = await baton(settings, keys, "status", saga_id, "--json")
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
        keys,
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

    listed = await baton(settings, keys, "list", "--status", "completed", "--json")
    assert [s["saga_id"] for s in listed.json()["sagas"]] == [saga_id]
    books = await baton(settings, keys, "books", "--json")
    assert books.code == 0, books.out
    assert books.json()["ok"] is True
    assert (await baton(settings, keys, "stuck")).code == 0
    assert (await baton(settings, keys, "health")).code == 0
    aborted = await baton(settings, keys, "abort", saga_id)
    assert aborted.code == 1, "a completed saga cannot be aborted"
    dead = await baton(settings, keys, "dlq", "list", "--json")
    assert set(dead.json().values()) == {0}


async def test_start_rejects_bad_money_before_publishing(settings: Settings, keys: KeySet) -> None:
    result = await baton(
        settings,
        keys,
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


def compensations_give_up_at_once() -> SagaDefinition:
    """The payment saga whose compensations give up after one unanswered attempt."""
    data = builtin_definitions()[0].model_dump(mode="json")
    for step in data["steps"]:
        if step.get("compensation"):
            step["compensation"]["timeout_s"] = 0.5
            step["compensation"]["retry"].update(max_attempts=1, give_up_after_s=0)
    return parse_definition(data)


async def test_books_report_every_hold_of_a_saga_not_in_progress(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> None:
    """A saga aborted whose compensation failed, and a saga the store does not know."""
    world = await seed_demo_world(redis_client, settings.namespace, accounts=4, balance_minor=10**6)
    ledger = Ledger(redis_client, settings.namespace)
    stop = asyncio.Event()
    keyring = keys.keyring("payment")
    payment = asyncio.create_task(run_participant("payment", settings, stop, keyring=keyring))
    catalog = Catalog([compensations_give_up_at_once()])  # risk stays down
    async with running_baton(broker, redis_client, settings, catalog, keys=keys) as b:
        saga_id = await b.start(world.transaction(1))

        async def held() -> bool:
            holds = (await ledger.snapshot()).holds.values()
            return any(h.saga_id == saga_id and h.status == "held" for h in holds)

        await eventually(held, what="the payment's hold")
        stop.set()
        await payment  # nobody will void the hold
        await b.orchestrator.apply(saga_id, OperatorAction("abort", actor="test"))

        async def failed() -> bool:
            return (await b.state(saga_id)).status is SagaStatus.FAILED

        await eventually(failed, what="the compensation to give up")
    await ledger.authorize("ghost:auth", "ghost", world.accounts[2], Money(minor=5, currency="EUR"))

    books = await baton(settings, keys, "books", "--json")
    assert books.code == 1, books.out
    report = books.json()
    assert report["ok"] is False
    assert report["holds_left"] == sorted([saga_id, "ghost"])
    assert report["holds_left_by_status"] == {"failed": [saga_id], "unknown": ["ghost"]}
    assert report["balanced"] is True, "a held amount is still money on the books"


@pytest.mark.parametrize(
    ("args", "signer"),
    [(("orchestrator",), "orchestrator"), (("participant", "pci"), "pci"),
     (("start", "--account", "a", "--merchant", "m", "--amount", "1",
       "--card-token", "tok_abcdefgh1"), "cli")],
)  # fmt: skip
async def test_a_process_without_a_signing_key_refuses_to_start(
    settings: Settings, keys: KeySet, args: tuple[str, ...], signer: str
) -> None:
    """One line naming the variable to set, exit 1, and never a key on the screen."""
    env = {**os.environ, "BATON_NAMESPACE": settings.namespace, "BATON_LOG__LEVEL": "warning"}
    env = {k: v for k, v in env.items() if not k.startswith("BATON_SIGNING__")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "baton", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, err
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert f"{signer} has no signing key: set BATON_SIGNING__PRIVATE_KEY" in lines[0]

    trusting_nobody = {**env, **keys.env(signer), "BATON_SIGNING__PUBLIC_KEYS": json.dumps(
        {signer: keys.public_keys[signer]})}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "baton", *args, env=trusting_nobody,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, err
    assert "trusts no key of" in err.decode()
    assert "BATON_SIGNING__PUBLIC_KEYS" in err.decode()
    assert keys.keys[signer].private_text not in err.decode()
