"""The options of ``baton retry|resume|abort`` checked, then one action or a bulk run.

Bad input (no reason, a bad actor, both or neither of SAGA_ID and --where, a bad filter)
exits 2 with one line before anything connects.
"""

from __future__ import annotations

import sys
from typing import Any, Literal, NoReturn
from uuid import uuid4

import click

from baton.acting import check_actor, check_reason
from baton.cli.base import _run
from messaging.settings import Settings
from orchestrator.core.effects import OperatorAction

MAX_SAGA_ID = 200


def _refuse(action: str, line: str) -> NoReturn:
    click.echo(f"baton {action}: {line}", err=True)
    sys.exit(2)


def _reason(action: str, options: dict[str, Any]) -> str:
    reason, note = options.get("reason"), options.get("note")
    if note is not None:
        if reason is not None:
            _refuse(action, "give --reason only (--note is its deprecated name)")
        click.echo(f"baton {action}: --note is deprecated: use --reason", err=True)
        reason = note
    if reason is None and options.get("dry_run"):
        return ""  # a dry run acts on nothing
    try:
        return check_reason(reason or "")
    except ValueError as exc:
        _refuse(action, str(exc))


def _actor(action: str, given: str | None) -> str:
    from baton.operate import actor  # noqa: PLC0415 - the OS user, read only here

    try:
        return check_actor(given if given is not None else actor())
    except ValueError as exc:
        _refuse(action, str(exc))


def operate(
    settings: Settings,
    action: Literal["retry", "resume", "abort"],
    saga_id: str | None,
    options: dict[str, Any],
    *,
    default_compensate: bool,
) -> None:
    """Check every option, then run one audited action or a bulk run; exits."""
    from baton import bulk, operate  # noqa: PLC0415 - keeps other commands light

    where = options.get("where")
    if (saga_id is None) == (where is None):
        _refuse(action, "give exactly one of SAGA_ID or --where (see --help)")
    if saga_id is not None and (options.get("dry_run") or options.get("yes")):
        _refuse(action, "--dry-run and --yes go with --where, not a SAGA_ID")
    if saga_id is not None and (len(saga_id) > MAX_SAGA_ID or not saga_id.isprintable()):
        _refuse(action, f"SAGA_ID must be 1-{MAX_SAGA_ID} printable characters")
    reason = _reason(action, options)
    made = OperatorAction(
        action, compensate=options.get("compensate", default_compensate),
        actor=_actor(action, options.get("actor")), reason=reason,
        batch_id="" if saga_id is not None else uuid4().hex[:16],
    )  # fmt: skip
    if saga_id is not None:
        _run(operate.act(settings, saga_id, made))
    try:
        filters = bulk.parse_where(where or "")
    except ValueError as exc:
        _refuse(action, str(exc))
    ramp = bulk.Ramp(options["canary"], options["rate"], options["max_error_ratio"])
    request = bulk.BulkRequest(made, filters, ramp, options["dry_run"], options["yes"])
    _run(bulk.bulk_act(settings, request))
