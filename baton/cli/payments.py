"""``baton accounts|merchants|pci seed|list|show``: the payment services' data by hand.

The checks and the Redis work are in ``baton.payment_data``; here are the options, the
output (a table, or JSON on the last line with ``--json``) and the exit status: 0 done,
1 refused (a seed that conflicts with what exists; an id not found), 2 bad input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import click
import redis.asyncio as aioredis
from rich.console import Console
from rich.table import Table

from baton import payment_data as data
from baton.cli.base import _run, _settings, main
from messaging.redis_client import redis_for
from messaging.settings import Settings

T = TypeVar("T")
V = TypeVar("V", bound="data.Row")
KEEP_HELP = (
    "An existing record with other values is left as it is and the seed succeeds "
    "(without it: a conflict, exit 1). Never changes a balance."
)


def _bad(command: str, message: str) -> NoReturn:
    """One line on stderr, exit 2: the input the contracts refuse."""
    click.echo(f"baton {command}: {message}", err=True)
    sys.exit(2)


async def _with_redis(settings: Settings, work: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    client = redis_for(settings.redis)
    try:
        return await work(client)
    finally:
        await client.aclose()


def _report(command: str, results: list[data.Seeded], as_json: bool) -> int:
    """Print what each seed did; exit 1 when any conflicts."""
    for r in results:
        if r.outcome == "conflict":
            click.echo(
                f"baton {command}: {r.kind} {r.id} exists: {r.detail}; not changed "
                "(--keep-existing accepts it as it is)",
                err=True,
            )
        elif not as_json:
            click.echo(f"{r.kind} {r.id}: {r.outcome}" + (f" ({r.detail})" if r.detail else ""))
    if as_json:
        click.echo(json.dumps([r.row() for r in results]))
    return 0 if all(r.ok for r in results) else 1


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def _list(
    settings: Settings,
    read: Callable[[aioredis.Redis, str], Awaitable[list[V]]],
    as_json: bool,
    title: str,
    columns: list[str],
    row: Callable[[V], list[str]],
) -> None:
    """A ``list`` command: every record ``read`` finds, as a table or one JSON list."""

    async def work() -> int:
        views = await _with_redis(settings, lambda r: read(r, settings.namespace))
        if as_json:
            click.echo(json.dumps([v.row() for v in views]))
        else:
            _table(f"{len(views)} {title}", columns, [row(v) for v in views])
        return 0

    _run(work())


def _demo_or_id(command: str, demo: bool, id_: str | None) -> None:
    if demo == (id_ is not None):
        _bad(command, "give either --id or --demo")


# ---------------------------------------------------------------------------- accounts


@main.group()
def accounts() -> None:
    """Customer accounts in the payment ledger (Redis): seed, list, show."""


@accounts.command("seed")
@click.option("--id", "id_", default=None, help="Account id: 1-64 letters, digits, _ or -.")
@click.option("--balance", default=None, help="Opening balance in major units, e.g. 100.00.")
@click.option("--currency", default="EUR", show_default=True, help="ISO-4217 currency code.")
@click.option("--demo", is_flag=True, help="Seed the world `baton demo` seeds (all of it).")
@click.option("--keep-existing", is_flag=True, help=KEEP_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON list on the last line.")
@click.pass_context
def accounts_seed(
    ctx: click.Context,
    id_: str | None,
    balance: str | None,
    currency: str,
    demo: bool,
    keep_existing: bool,
    as_json: bool,
) -> None:
    """Open an account through the ledger's funding path, idempotently.

    Seeding an account that exists with the same balance and currency does nothing (exit 0);
    with other values it is refused (exit 1) and the account is left as it is.
    """
    command = "accounts seed"
    _demo_or_id(command, demo, id_)
    settings = _settings(ctx)
    if demo:
        if balance is not None:
            _bad(command, "--demo seeds the demo's balances: drop --balance")

        _run(_seed_demo(settings, command, keep_existing, as_json))
    assert id_ is not None
    if balance is None:
        _bad(command, "--balance is required with --id")
    try:
        account_id, code = data.account_id(id_), data.currency(currency)
        minor = data.minor_units(str(balance), code)
    except data.BadInput as exc:
        _bad(command, str(exc))

    async def one() -> int:
        result = await _with_redis(
            settings,
            lambda r: data.seed_account(
                r, settings.namespace, account_id, minor, code, keep_existing=keep_existing
            ),
        )
        return _report(command, [result], as_json)

    _run(one())


@accounts.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON list on the last line.")
@click.pass_context
def accounts_list(ctx: click.Context, as_json: bool) -> None:
    """Every account: currency, available balance, money held by sagas in flight."""
    _list(
        _settings(ctx), data.accounts, as_json, "accounts",
        ["account", "currency", "balance", "held"],
        lambda v: [v.id, v.currency, v.balance, v.held],
    )  # fmt: skip


@accounts.command("show")
@click.argument("account_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on the last line.")
@click.pass_context
def accounts_show(ctx: click.Context, account_id: str, as_json: bool) -> None:
    """One account and its holds (money reserved by a saga, not yet captured or voided).
    Exit 1 when it does not exist."""
    try:
        id_ = data.account_id(account_id)
    except data.BadInput as exc:
        _bad("accounts show", str(exc))
    settings = _settings(ctx)

    async def work() -> int:
        view = await _with_redis(settings, lambda r: data.account(r, settings.namespace, id_))
        if view is None:
            click.echo(f"baton accounts show: no account {id_}", err=True)
            return 1
        if as_json:
            click.echo(json.dumps(view.row()))
            return 0
        click.echo(
            f"account {view.id}: {view.balance} {view.currency} available, "
            f"{view.held} {view.currency} held"
        )
        _table(
            "holds",
            ["hold", "saga", "amount"],
            [[h["hold_id"], h["saga_id"], f"{h['amount']} {h['currency']}"] for h in view.holds],
        )
        return 0

    _run(work())


# ---------------------------------------------------------------------------- merchants


@main.group()
def merchants() -> None:
    """Merchants in the payment ledger (Redis): seed, list, show."""


@merchants.command("seed")
@click.option("--id", "id_", default=None, help="Merchant id: 1-64 letters, digits, _ or -.")
@click.option("--currency", default="EUR", show_default=True, help="ISO-4217 currency code.")
@click.option("--closed", is_flag=True, help="Open it closed: its captures are refused.")
@click.option("--demo", is_flag=True, help="Seed the world `baton demo` seeds (all of it).")
@click.option("--keep-existing", is_flag=True, help=KEEP_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON list on the last line.")
@click.pass_context
def merchants_seed(
    ctx: click.Context,
    id_: str | None,
    currency: str,
    closed: bool,
    demo: bool,
    keep_existing: bool,
    as_json: bool,
) -> None:
    """Open a merchant (with nothing captured), idempotently; it needs a PCI standing of
    ``compliant`` (``baton pci seed``) before payments to it pass."""
    command = "merchants seed"
    _demo_or_id(command, demo, id_)
    settings = _settings(ctx)
    if demo:
        _run(_seed_demo(settings, command, keep_existing, as_json))
    assert id_ is not None
    try:
        merchant_id, code = data.merchant_id(id_), data.currency(currency)
    except data.BadInput as exc:
        _bad(command, str(exc))

    async def one() -> int:
        result = await _with_redis(
            settings,
            lambda r: data.seed_merchant(
                r,
                settings.namespace,
                merchant_id,
                code,
                open_=not closed,
                keep_existing=keep_existing,
            ),
        )
        return _report(command, [result], as_json)

    _run(one())


async def _seed_demo(settings: Settings, command: str, keep_existing: bool, as_json: bool) -> int:
    results = await _with_redis(
        settings, lambda r: data.seed_demo(r, settings.namespace, keep_existing=keep_existing)
    )
    return _report(command, results, as_json)


def _merchant_row(v: data.MerchantView) -> list[str]:
    return [v.id, v.currency, v.captured, "open" if v.open else "closed", v.pci or "-"]


@merchants.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON list on the last line.")
@click.pass_context
def merchants_list(ctx: click.Context, as_json: bool) -> None:
    """Every merchant: currency, money captured for it, open or closed, PCI standing."""
    _list(
        _settings(ctx), data.merchants, as_json, "merchants",
        ["merchant", "currency", "captured", "state", "pci"], _merchant_row,
    )  # fmt: skip


@merchants.command("show")
@click.argument("merchant_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on the last line.")
@click.pass_context
def merchants_show(ctx: click.Context, merchant_id: str, as_json: bool) -> None:
    """One merchant and its captures. Exit 1 when it does not exist."""
    try:
        id_ = data.merchant_id(merchant_id)
    except data.BadInput as exc:
        _bad("merchants show", str(exc))
    settings = _settings(ctx)

    async def work() -> int:
        views = await _with_redis(
            settings, lambda r: data.merchants(r, settings.namespace, with_captures=True, only=id_)
        )
        if not views:
            click.echo(f"baton merchants show: no merchant {id_}", err=True)
            return 1
        view = views[0]
        if as_json:
            click.echo(json.dumps(view.row()))
            return 0
        _table(
            f"merchant {id_}",
            ["merchant", "currency", "captured", "state", "pci"],
            [_merchant_row(view)],
        )
        _table(
            "captures",
            ["capture", "saga", "amount"],
            [
                [c["capture_id"], c["saga_id"], f"{c['amount']} {c['currency']}"]
                for c in view.captures
            ],
        )
        return 0

    _run(work())


# ---------------------------------------------------------------------------- pci
