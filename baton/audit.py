"""``baton audit SAGA_ID``: print a saga's audit trail and verify its hash chain."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from messaging.settings import Settings
from orchestrator.runtime.audit_store import AuditStore, Trail


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


async def read_trail(settings: Settings, saga_id: str) -> Trail:
    async with AuditStore.connect(
        str(settings.redis.url), namespace=settings.namespace, shards=settings.orchestrator.shards
    ) as audit:
        return await audit.trail(saga_id)


def verdict_line(trail: Trail) -> str:
    v = trail.verdict
    if v.intact:
        return f"intact: {v.checked} entr{'y' if v.checked == 1 else 'ies'}"
    return f"broken at entry {v.position}: {v.problem}: {v.detail}"


async def show_audit(settings: Settings, saga_id: str, as_json: bool) -> int:
    """0 the chain is intact (an empty trail too), 1 it is broken."""
    trail = await read_trail(settings, saga_id)
    v = trail.verdict
    if as_json:
        problem = None if v.intact else {
            "position": v.position, "kind": v.problem, "detail": v.detail}  # fmt: skip
        entries = [asdict(e) for e in trail.entries]
        click.echo(json.dumps({"saga_id": saga_id, "intact": v.intact, "checked": v.checked,
                               "problem": problem, "entries": entries}))  # fmt: skip
        return 0 if v.intact else 1
    table = Table("seq", "at", "action", "actor", "result", "reason", "detail", "batch")
    for e in trail.entries:  # Text: an operator's reason like "[/]" is not markup
        cells = (str(e.seq), _when(e.at), e.action, e.actor, e.result, e.reason, e.detail,
                 e.batch_id)  # fmt: skip
        table.add_row(*map(Text, cells))
    Console().print(table)
    click.echo(verdict_line(trail), err=not v.intact)
    return 0 if v.intact else 1
