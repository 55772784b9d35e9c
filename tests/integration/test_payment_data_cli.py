"""``baton accounts|merchants|pci``: seeding by hand, idempotent, never making money."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from baton.cli import main
from messaging.settings import Settings
from messaging.trust.signing import KeySet
from participants.payments import Ledger
from tests.support.cli import baton

pytestmark = pytest.mark.integration


async def test_seed_is_idempotent_and_never_makes_money(
    settings: Settings, keys: KeySet, redis_client: aioredis.Redis
) -> None:
    seed = ("accounts", "seed", "--id", "acct-alice", "--balance", "100.00", "--currency", "EUR")
    first = await baton(settings, keys, *seed, "--json")
    assert first.code == 0, first.err
    assert first.json()[0]["outcome"] == "created"
    again = await baton(settings, keys, *seed)
    assert (again.code, again.out.strip()) == (0, "account acct-alice: exists")

    other = await baton(settings, keys, "accounts", "seed", "--id", "acct-alice", "--balance", "5")
    assert other.code == 1
    assert "balance is 100.00, asked 5.00" in other.err
    ledger = Ledger(redis_client, settings.namespace)
    assert await ledger.balance("acct-alice") == 10_000  # untouched
    report = await ledger.check_books({})
    assert report.ok, report  # seeded through the books' totals: balanced

    shown = await baton(settings, keys, "accounts", "show", "acct-alice", "--json")
    assert shown.code == 0, shown.err
    assert shown.json() == {"id": "acct-alice", "currency": "EUR", "balance": "100.00",
                            "held": "0.00", "holds": []}  # fmt: skip
    missing = await baton(settings, keys, "accounts", "show", "acct-nobody")
    assert missing.code == 1
    assert "no account acct-nobody" in missing.err


async def test_merchants_pci_and_the_demo_world(
    settings: Settings, keys: KeySet, redis_client: aioredis.Redis
) -> None:
    merchant = await baton(settings, keys, "merchants", "seed", "--id", "merch-shop", "--closed")
    assert merchant.code == 0, merchant.err
    standing = await baton(settings, keys, "pci", "seed", "--merchant", "merch-shop")
    assert standing.code == 0, standing.err
    changed = await baton(settings, keys, "pci", "seed", "--merchant", "merch-shop",
                          "--status", "expired")  # fmt: skip
    assert changed.code == 1
    assert "status is compliant, asked expired" in changed.err

    demo = await baton(settings, keys, "merchants", "seed", "--demo", "--json")
    assert demo.code == 0, demo.err
    assert {r["id"] for r in demo.json()} >= {"acct-poor", "merch-closed", "acct-00000"}
    listed = await baton(settings, keys, "merchants", "list", "--json")
    rows = {m["id"]: m for m in listed.json()}
    assert rows["merch-shop"]["open"] is False
    assert rows["merch-shop"]["pci"] == "compliant"
    assert rows["merch-noncompliant"]["pci"] == "expired"
    assert (await Ledger(redis_client, settings.namespace).check_books({})).ok


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["accounts", "seed", "--id", "a b", "--balance", "1"], "account id must be"),
        (["accounts", "seed", "--id", "a", "--balance", "0"], "greater than 0"),
        (["accounts", "seed", "--id", "a", "--balance", "1.001"], "2 decimal places"),
        (["accounts", "seed", "--id", "a", "--balance", "1.5", "--currency", "JPY"], "0 decimal"),
        (["accounts", "seed", "--id", "a", "--balance", "1", "--currency", "eur"], "unknown"),
        (["accounts", "seed", "--id", "a", "--balance", "abc"], "not a decimal"),
        (["accounts", "seed", "--id", "a"], "--balance is required"),
        (["accounts", "seed", "--id", "a", "--balance", "1", "--demo"], "either --id or --demo"),
        (["merchants", "seed", "--id", "m/1"], "merchant id must be"),
        (["pci", "seed", "--merchant", "m", "--status", "fine"], "PCI status must be"),
        (["pci", "show", "m4111111111111111"], "contains a card number"),
        (["purge", "--namespace", ""], "empty namespace"),
        (["purge", "--namespace", "ns*"], "only letters"),
        (["purge", "--namespace", "ns"], "ends in '.'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    """Refused before any connection: checked in process (no Redis needed)."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
