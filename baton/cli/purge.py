"""``baton purge --namespace NS``: delete one namespace's queues, exchanges and Redis keys.

What it finds and deletes is in ``baton.purge``; here is the confirmation. Exit status:
0 purged (or shown, with ``--dry-run``), 1 refused (declined; or no terminal to ask on and
no ``--yes``; or a service unreachable), 2 bad input (a malformed or the empty namespace).
"""

from __future__ import annotations

import json
import sys

import click

from baton import purge as purging
from baton.cli.base import _run, _settings, main


@main.command("purge")
@click.option(
    "--namespace",
    required=True,
    help="The namespace to delete, ending in '.' (BATON_NAMESPACE is not used: "
    "name it). The empty namespace is always refused.",
)
@click.option(
    "--participant",
    "extra",
    multiple=True,
    help="Also this participant's queues (repeatable); the payment saga's and the "
    "configured packages' are always included.",
)
@click.option("--dry-run", is_flag=True, help="Only show what would be deleted.")
@click.option("--yes", is_flag=True, help="Do not ask (for scripts).")
@click.option("--json", "as_json", is_flag=True, help="The counts as one JSON object, last line.")
@click.pass_context
def purge_command(
    ctx: click.Context,
    namespace: str,
    extra: tuple[str, ...],
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Delete every queue, exchange and Redis key of one namespace, after confirmation."""
    try:
        purging.checked(namespace)
    except purging.Refused as exc:
        click.echo(f"baton purge: {exc}", err=True)
        sys.exit(2)
    if not (yes or dry_run or sys.stdin.isatty()):
        click.echo("baton purge: no terminal to confirm on: pass --yes (or --dry-run)", err=True)
        sys.exit(1)
    settings = _settings(ctx).model_copy(update={"namespace": namespace})

    async def work() -> int:
        found = await purging.plan(settings, purging.participants_of(settings, extra))
        report = found.summary()
        for line in found.lines():
            click.echo(line, err=as_json)
        if dry_run:
            report["dry_run"] = True
        elif yes or click.confirm("delete all of this?", default=False, err=True):
            report["deleted_redis_keys"] = await purging.purge(settings, found)
            click.echo(f"purged {namespace}", err=as_json)
        else:
            click.echo("baton purge: not confirmed; nothing deleted", err=True)
            return 1
        if as_json:
            click.echo(json.dumps(report))
        return 0

    _run(work())
