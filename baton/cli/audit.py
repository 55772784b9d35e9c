"""``baton audit``: an operator's record of who retried, resumed or aborted a saga, and why."""

from __future__ import annotations

import sys

import click

from baton.cli.base import _run, _settings, main

MAX_SAGA_ID = 200


@main.command()
@click.argument("saga_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def audit(ctx: click.Context, saga_id: str, as_json: bool) -> None:
    """Print a saga's audit trail and verify its hash chain.

    Exit status: 0 intact (or empty), 1 broken (names the first entry edited, deleted,
    reordered or inserted), 2 a bad SAGA_ID.
    """
    from baton.audit import show_audit  # noqa: PLC0415 - keeps other commands light

    if not 1 <= len(saga_id) <= MAX_SAGA_ID or not saga_id.isprintable():
        click.echo(f"baton audit: SAGA_ID must be 1-{MAX_SAGA_ID} printable characters", err=True)
        sys.exit(2)
    _run(show_audit(_settings(ctx), saga_id, as_json))
