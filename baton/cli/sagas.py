"""``baton`` commands that start, inspect and operate sagas: start, status, list, stuck,
definitions, retry/resume/abort, books, top, dlq."""

from __future__ import annotations

import sys
from typing import Any, Literal

import click

from baton import operate
from baton.cli.base import _run, _settings, main
from messaging.errors import DefinitionError
from messaging.observability.logs import masked


@main.command("start")
@click.option("--saga", default=None, help="Start this saga (the newest loaded version of it).")
@click.option(
    "--input", "input_", default=None, metavar="FILE|JSON",
    help="The start's fields: a JSON object, or a file holding one.",
)  # fmt: skip
@click.option("--account", default=None, help="Payment shortcut: customer account id.")
@click.option("--merchant", default=None, help="Payment shortcut: merchant id.")
@click.option("--amount", default=None, help="Payment shortcut: amount in major units, e.g. 12.50.")
@click.option("--currency", default="EUR", show_default=True, help="Payment shortcut: currency.")
@click.option(
    "--card-token", default=None, help="Payment shortcut: vault token, tok_... (never a card)."
)
@click.option("--key", "idempotency_key", default=None, help="Idempotency key (default: random).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the outcome.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait.")
@click.pass_context
def start(
    ctx: click.Context, saga: str | None, input_: str | None, account: str | None,
    merchant: str | None, amount: str | None, currency: str, card_token: str | None,
    idempotency_key: str | None, wait: bool, timeout: float,
) -> None:  # fmt: skip
    """Publish a saga's start: --saga NAME --input FILE|JSON, or a payment with --account
    --merchant --amount --card-token (short for --saga payment); with --wait, print the
    saga's final event.

    Exit status: 0 completed (or, for a repeated key, still running), 1 otherwise
    (compensated, failed, rejected, or no answer within --timeout), 2 for input that is
    refused before anything is sent (one line naming the field, never its value).
    """
    from baton.starting import (  # noqa: PLC0415 - keeps other commands light
        PaymentOptions,
        StartInputError,
        publish_start,
        start_body,
    )

    settings = _settings(ctx)
    payment = PaymentOptions(account, merchant, amount, currency, card_token)
    try:
        body = start_body(settings, saga, input_, payment, idempotency_key)
    except (StartInputError, DefinitionError) as exc:
        click.echo(f"baton start: {masked(str(exc).splitlines()[0])}", err=True)
        sys.exit(2)
    _run(publish_start(settings, body, wait=wait, timeout_s=timeout))


@main.command()
@click.argument("saga_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, saga_id: str, as_json: bool) -> None:
    """Show a saga's state and its timeline."""
    _run(operate.show_status(_settings(ctx), saga_id, as_json))


@main.command("list")
@click.option(
    "--status",
    "status_name",
    default="running",
    show_default=True,
    type=click.Choice(["running", "compensating", "completed", "compensated", "failed"]),
)
@click.option("--older-than", default=0.0, help="Only sagas idle for at least this many seconds.")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_sagas(
    ctx: click.Context, status_name: str, older_than: float, limit: int, as_json: bool
) -> None:
    """List sagas by status, least recently updated first."""
    _run(operate.list_sagas(_settings(ctx), status_name, older_than, limit, as_json))


@main.command()
@click.option(
    "--older-than",
    default=None,
    type=float,
    help="Idle seconds (default: BATON_ORCHESTRATOR__STUCK_AFTER_S).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def stuck(ctx: click.Context, older_than: float | None, as_json: bool) -> None:
    """Unfinished sagas with no transition for too long, and failed ones; exit 1 if any."""
    settings = _settings(ctx)
    _run(operate.stuck(settings, older_than or settings.orchestrator.stuck_after_s, as_json))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def definitions(ctx: click.Context, as_json: bool) -> None:
    """Every definition version registered in Redis or loaded here, with its sagas in flight.

    A version may be removed from the deployment once it has no saga running, compensating
    or failed (docs/extending.md, "Versions side by side").
    """
    from baton.versions import show_definitions  # noqa: PLC0415 - keeps other commands light

    _run(show_definitions(_settings(ctx), as_json))


def _operator(action: Literal["retry", "resume", "abort"], compensate: bool = True) -> Any:
    @click.argument("saga_id", required=False)
    @click.option("--reason", default=None, help="Why (required; recorded in the audit trail).")
    @click.option("--note", default=None, hidden=True, help="Deprecated: use --reason.")
    @click.option("--actor", default=None, help="Who acts (default: the OS user).")
    @click.option(
        "--where", default=None, metavar="FILTERS",
        help="Act on every saga matching status=,step=,saga=,older-than= (instead of SAGA_ID).",
    )  # fmt: skip
    @click.option("--dry-run", is_flag=True, help="With --where: show what matches, act on none.")
    @click.option(
        "--canary",
        default=5,
        show_default=True,
        type=click.IntRange(1, 1000),
        help="With --where: sagas in the first batch; any failure there stops.",
    )
    @click.option(
        "--rate",
        default=10.0,
        show_default=True,
        type=click.FloatRange(0.1, 1000),
        help="With --where: at most this many actions per second.",
    )
    @click.option(
        "--max-error-ratio",
        default=0.1,
        show_default=True,
        type=click.FloatRange(0.0, 1.0),
        help="With --where: stop when a batch's failed share passes this.",
    )
    @click.option("--yes", is_flag=True, help="With --where: act without asking.")
    @click.pass_context
    def command(ctx: click.Context, /, saga_id: str | None, **options: Any) -> None:
        from baton.cli.operator_options import operate  # noqa: PLC0415 - keeps others light

        operate(_settings(ctx), action, saga_id, options, default_compensate=compensate)

    return command


main.command("retry", help="Retry a failed saga's compensation with a fresh budget.")(
    _operator("retry")
)
main.command("resume", help="Send the step a saga waits on again, now.")(_operator("resume"))
main.command("abort", help="Stop a saga before its pivot: compensate (default) or just stop.")(
    click.option("--compensate/--no-compensate", default=True, show_default=True)(
        _operator("abort")
    )
)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def books(ctx: click.Context, as_json: bool) -> None:
    """Run each loaded saga package's invariant check (package.yaml ``invariants:``) over its
    own sagas; exit 1 when any is broken."""
    from baton.invariants import books as check_books  # noqa: PLC0415 - composition root

    _run(check_books(_settings(ctx), as_json))


@main.command()
@click.option("--once", is_flag=True, help="Print one frame and exit (two readings apart).")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between readings.")
@click.pass_context
def top(ctx: click.Context, once: bool, interval: float) -> None:
    """A live view: throughput, outcomes, in flight, stuck sagas and queue depths."""
    from baton.top import top as run_top  # noqa: PLC0415 - keeps other commands light

    _run(run_top(_settings(ctx), once=once, interval_s=interval))


@main.group()
def dlq() -> None:
    """Inspect and replay dead letters."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dlq_list(ctx: click.Context, as_json: bool) -> None:
    """Count the messages in every dead-letter queue."""
    _run(operate.dead_letters(_settings(ctx), as_json))


@dlq.command("show")
@click.argument("queue")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dlq_show(ctx: click.Context, queue: str, limit: int, as_json: bool) -> None:
    """Show why messages of QUEUE (start, replies, cmd.payment, ...) were dead-lettered."""
    _run(operate.show_dead_letters(_settings(ctx), queue, limit, as_json))


@dlq.command("replay")
@click.argument("queue")
@click.option("--limit", default=1000, show_default=True, help="At most this many messages.")
@click.pass_context
def dlq_replay(ctx: click.Context, queue: str, limit: int) -> None:
    """Send QUEUE's dead letters back to QUEUE, once their cause is fixed."""
    _run(operate.replay_dead_letters(_settings(ctx), queue, limit))
