"""The ``baton`` command as an operator runs it, against a live orchestrator and participants."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from contracts.money import Money
from examples.checkout.keys import InventoryKeys
from examples.checkout.seed import seed as seed_checkout
from messaging.settings import Settings, SigningSettings
from messaging.transport.amqp import Broker, wire_of
from messaging.transport.codec import decode
from messaging.trust.signing import KeySet
from orchestrator.core.catalog import saga_id_for
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.effects import OperatorAction
from orchestrator.core.state import SagaStatus
from orchestrator.runtime.packages import load_packages
from participants.payments import DemoWorld, Ledger, run_participant, seed_demo_world
from tests.integration.harness import eventually, running_baton
from tests.support.checkout import CHECKOUT_PARTICIPANTS, checkout_participants
from tests.support.cli import baton, participant_process
from tests.support.sagas import catalog as catalog_of
from tests.support.sagas import parse, payment_data

pytestmark = pytest.mark.integration
PARTICIPANTS = ("payment", "risk", "pci", "transaction")


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
    catalog = catalog_of()
    async with running_baton(broker, redis_client, settings, catalog, keys=keys):
        yield seeded
    stop.set()
    await asyncio.gather(*tasks)


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
    assert books.json()["packages"]["payment"]["ok"] is True
    assert (await baton(settings, keys, "stuck")).code == 0
    assert (await baton(settings, keys, "health")).code == 0
    aborted = await baton(settings, keys, "abort", saga_id, "--reason", "wrong amount")
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
    data = payment_data()
    for step in data["steps"]:
        if step.get("compensation"):
            step["compensation"]["timeout_s"] = 0.5
            step["compensation"]["retry"].update(max_attempts=1, give_up_after_s=0)
    return parse(data)


async def test_books_report_every_hold_of_a_saga_not_in_progress(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> None:
    """A saga aborted whose compensation failed, and a saga the store does not know."""
    world = await seed_demo_world(redis_client, settings.namespace, accounts=4, balance_minor=10**6)
    ledger = Ledger(redis_client, settings.namespace)
    stop = asyncio.Event()
    keyring = keys.keyring("payment")
    payment = asyncio.create_task(run_participant("payment", settings, stop, keyring=keyring))
    catalog = catalog_of(compensations_give_up_at_once())  # risk stays down
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
    assert books.json()["ok"] is False
    report = books.json()["packages"]["payment"]["report"]
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
    """One line naming the variable to set, exit 2 (a missing key is bad configuration, as a
    missing sealing key is), and never a key on the screen."""
    env = {**os.environ, "BATON_NAMESPACE": settings.namespace, "BATON_LOG__LEVEL": "warning"}
    env = {k: v for k, v in env.items() if not k.startswith("BATON_SIGNING__")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "baton", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, err
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
    assert proc.returncode == 2, err
    assert "trusts no key of" in err.decode()
    assert "BATON_SIGNING__PUBLIC_KEYS" in err.decode()
    assert keys.keys[signer].private_text not in err.decode()


# -- every tool works for every saga (issue 10) -------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
PAYMENT_PACKAGE, CHECKOUT_PACKAGE = ROOT / "sagas" / "payment", ROOT / "examples" / "checkout"
BOTH = {"BATON_ORCHESTRATOR__PACKAGES": json.dumps([str(PAYMENT_PACKAGE), str(CHECKOUT_PACKAGE)])}
PAYMENT_INPUT = {
    "account_id": "acct-00001",
    "merchant_id": "merch-001",
    "card_token": "tok_demo00000001",
    "amount": {"minor": 1250, "currency": "EUR"},
}


async def test_participants_by_app_and_by_package_serve_a_saga_started_from_json(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> None:
    """risk from ``--app module:factory``, pci from ``--package``: the payment completes, started
    with ``start --saga payment --input JSON``."""
    world = await seed_demo_world(redis_client, settings.namespace, accounts=4, balance_minor=10**6)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(run_participant(n, settings, stop, keyring=keys.keyring(n)))
             for n in ("payment", "transaction")]  # fmt: skip
    try:
        async with (
            running_baton(broker, redis_client, settings, catalog_of(), keys=keys),
            participant_process(settings, keys, broker, "risk",
                                "--app", "participants.payments.risk:risk_handlers"),
            participant_process(settings, keys, broker, "pci", "--package", str(PAYMENT_PACKAGE)),
        ):  # fmt: skip
            good = world.transaction(3)
            body = {**PAYMENT_INPUT, "account_id": good.account_id,
                    "merchant_id": good.merchant_id, "card_token": good.card_token}  # fmt: skip
            started = await baton(settings, keys, "start", "--saga", "payment",
                                  "--input", json.dumps(body), "--key", "json-1")  # fmt: skip
            assert started.code == 0, started.err
            assert started.json()["event"] == "completed"
            assert started.json()["saga_id"] == saga_id_for("payment", "json-1")
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_start_saga_with_input_from_a_file_publishes_a_signed_start(
    broker: Broker, settings: Settings, keys: KeySet, tmp_path: Path
) -> None:
    """Any loaded saga: the checkout's start, built from a file and validated by its trigger
    contract, lands signed on the start queue (nobody consumes it here)."""
    order = tmp_path / "order.json"
    order.write_text(json.dumps({
        "order_id": "o-1", "customer_id": "cust-0001", "sku": "sku-001", "quantity": 2,
        "total": {"minor": 2500, "currency": "EUR"}, "address": "1 Example Street",
    }))  # fmt: skip
    sent = await baton(settings, keys, "start", "--saga", "checkout", "--input", str(order),
                       "--key", "order-1", "--no-wait", env=BOTH)  # fmt: skip
    assert sent.code == 0, sent.err
    assert sent.out.strip() == "published order-1"
    channel = await broker.connection.channel()
    try:
        queue = await channel.get_queue(broker.topology.start_queue, ensure=False)
        message = await queue.get(fail=True)
        await message.ack()
    finally:
        await channel.close()
    wire = wire_of(message)
    assert keys.keyring("orchestrator").verify(wire) == "cli"
    envelope, start = decode(wire, load_packages([CHECKOUT_PACKAGE]).registry, require_saga=False)
    assert envelope.kind == "checkout.place_order.v1"
    assert start.model_dump()["idempotency_key"] == "order-1"
    assert start.model_dump()["quantity"] == 2


PAN = "4111 1111 1111 1111"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("start", "--saga", "checkout", "--input", json.dumps({
            "order_id": "o-1", "customer_id": "cust-0001", "sku": "sku-001", "quantity": 1,
            "total": {"minor": 100, "currency": "EUR"}, "address": f"card {PAN}"})),
         "holds a card number"),  # refused by the guard on every argument, before parsing
        (("start", "--saga", "payment", "--input", json.dumps(
            {**PAYMENT_INPUT, "card_token": "tok_secret-value!"})), "card_token: "),
        (("start", "--saga", "nothing", "--input", "{}"), "no saga 'nothing' is loaded"),
        (("start", "--saga", "payment", "--input", "{not json"), "--input: not JSON"),
        (("start", "--saga", "payment", "--input", "/no/such/file.json"), "--input: neither"),
        (("start", "--saga", "payment"), "--saga and --input go together"),
        (("start", "--account", "a"), "or a payment's --merchant, --amount, --card-token"),
        (("participant", "nobody"), "unknown participant 'nobody'"),
        (("participant", "inventory"), "unknown participant 'inventory'"),
        (("participant", "risk", "--app", "no_such_module:factory"), "cannot import"),
        (("participant", "risk", "--app", "participants.payments.risk"), "not a module:factory"),
        (("participant", "risk", "--app", "participants.payments.risk:nothing"), "has no nothing"),
        (("participant", "risk", "--package", str(CHECKOUT_PACKAGE)),
         f"package {CHECKOUT_PACKAGE} lists it"),
    ],
)  # fmt: skip
async def test_bad_input_is_one_line_and_exit_2(
    settings: Settings, keys: KeySet, args: tuple[str, ...], says: str
) -> None:
    """Refused before anything is sent or run: one line on stderr, exit 2, no traceback,
    and never the value refused (a card number, a token)."""
    result = await baton(settings, keys, *args, env=BOTH if args[2:3] == ("checkout",) else None)
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert says in lines[0]
    assert "Traceback" not in result.err
    assert PAN not in result.err
    assert "secret-value" not in result.err


async def test_books_checks_each_package_over_its_own_sagas(
    rabbit_url: str, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> None:
    """A completed checkout saga is no payment that captured nothing: each package's check
    sees its own sagas. A broken checkout invariant fails ``books`` and names the package."""
    every = KeySet.generate(["orchestrator", *PARTICIPANTS, *CHECKOUT_PARTICIPANTS, "cli"])
    signing = SigningSettings.model_validate(every.settings("orchestrator"))
    own = settings.model_copy(update={"signing": signing})
    catalog = load_packages([PAYMENT_PACKAGE, CHECKOUT_PACKAGE]).catalog
    payments = await seed_demo_world(redis_client, own.namespace, accounts=4, balance_minor=10**6)
    orders = await seed_checkout(redis_client, own.namespace, run_id="books")
    broker = await Broker.connect(rabbit_url, own.topology)
    await broker.declare(catalog.participants)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(run_participant(n, own, stop, keyring=every.keyring(n)))
             for n in PARTICIPANTS]  # fmt: skip
    try:
        async with checkout_participants(own, every), running_baton(
            broker, redis_client, own, catalog, keys=every
        ) as b:  # fmt: skip
            sagas = [
                await b.start(payments.transaction(1)),
                await b.start(orders.place_order(1), saga="checkout"),
                await b.start(orders.place_order(2, fails_at="inventory"), saga="checkout"),
            ]
            finals = [(await b.final(saga_id))["event"] for saga_id in sagas]  # fmt: skip
        assert finals == ["completed", "completed", "compensated"]
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await broker.delete(own.topology.all_queues(catalog.participants), own.topology.exchanges)
        await broker.close()

    alone = await baton(settings, keys, "books", "--json")  # the bundled payment package only
    assert alone.code == 0, alone.out
    assert list(alone.json()["packages"]) == ["payment"]
    assert alone.json()["packages"]["payment"]["report"]["completed_not_captured"] == []
    both = await baton(settings, keys, "books", "--json", env=BOTH)
    assert both.code == 0, both.out
    assert {name: p["ok"] for name, p in both.json()["packages"].items()} == {
        "payment": True, "checkout": True}  # fmt: skip

    await redis_client.hincrby(InventoryKeys(own.namespace).stock(orders.skus[0]), "available", 1)
    broken = await baton(settings, keys, "books", env=BOTH)
    assert broken.code == 1, broken.out
    assert "payment: ok" in broken.out
    assert "checkout: BROKEN" in broken.out
    assert f"stock_imbalance: {{'{orders.skus[0]}': 1}}" in broken.out
