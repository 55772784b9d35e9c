"""``baton pci seed|list|show``: the PCI service's merchant standings by hand (the shared
output and exit-status rules are ``baton.cli.payments``'s)."""

from __future__ import annotations

import json
from typing import Any

import click

from baton import payment_data as data
from baton.cli.base import _run, _settings, main
from baton.cli.payments import _bad, _report, _seed_demo, _table, _with_redis
from participants.payments.pci import COMPLIANT


@main.group()
def pci() -> None:
    """The PCI data the pci participant checks: merchants' standings, revoked tokens."""


@pci.command("seed")
@click.option("--merchant", "id_", default=None, help="Merchant id: 1-64 letters, digits, _ or -.")
@click.option(
    "--status",
    default="compliant",
    show_default=True,
    help=f"The merchant's PCI standing: {', '.join(data.PCI_STATUSES)}; "
    "only compliant passes the check.",
)
@click.option("--demo", is_flag=True, help="Seed the world `baton demo` seeds (all of it).")
@click.option(
    "--keep-existing",
    is_flag=True,
    help="A merchant with another standing keeps "
    "it and the seed succeeds (without it: a conflict, exit 1).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON list on the last line.")
@click.pass_context
def pci_seed(
    ctx: click.Context, id_: str | None, status: str, demo: bool, keep_existing: bool, as_json: bool
) -> None:
    """Record a merchant's PCI standing if it has none; another standing is a conflict."""
    command = "pci seed"
    if demo == (id_ is not None):
        _bad(command, "give either --merchant or --demo")
    settings = _settings(ctx)
    if demo:
        _run(_seed_demo(settings, command, keep_existing, as_json))
    assert id_ is not None
    try:
        merchant_id, standing = data.merchant_id(id_), data.pci_status(status)
    except data.BadInput as exc:
        _bad(command, str(exc))

    async def one() -> int:
        result = await _with_redis(
            settings,
            lambda r: data.seed_pci(
                r, settings.namespace, merchant_id, standing, keep_existing=keep_existing
            ),
        )
        return _report(command, [result], as_json)

    _run(one())


@pci.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on the last line.")
@click.pass_context
def pci_list(ctx: click.Context, as_json: bool) -> None:
    """Every merchant's PCI standing, and how many card tokens are revoked (never which)."""
    settings = _settings(ctx)

    async def work() -> int:
        view = await _with_redis(settings, lambda r: data.pci_data(r, settings.namespace))
        if as_json:
            click.echo(json.dumps(view.row()))
            return 0
        _table(
            f"{len(view.merchants)} merchants",
            ["merchant", "pci standing"],
            [[m, s] for m, s in view.merchants.items()],
        )
        click.echo(f"{view.revoked_tokens} revoked card tokens (stored as hashes)")
        return 0

    _run(work())


@pci.command("show")
@click.argument("merchant_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on the last line.")
@click.pass_context
def pci_show(ctx: click.Context, merchant_id: str, as_json: bool) -> None:
    """One merchant's PCI standing and whether the check passes it. Exit 1 without one."""
    try:
        id_ = data.merchant_id(merchant_id)
    except data.BadInput as exc:
        _bad("pci show", str(exc))
    settings = _settings(ctx)

    async def work() -> int:
        view = await _with_redis(settings, lambda r: data.pci_data(r, settings.namespace))
        if id_ not in view.merchants:
            click.echo(f"baton pci show: no PCI standing for merchant {id_}", err=True)
            return 1
        row: dict[str, Any] = {
            "merchant": id_,
            "status": view.merchants[id_],
            "passes": view.merchants[id_] == COMPLIANT,
        }
        click.echo(
            json.dumps(row)
            if as_json
            else f"merchant {id_}: {row['status']} ({'passes' if row['passes'] else 'refused'})"
        )
        return 0

    _run(work())
