"""Definition versions for operators: ``baton definitions``, and the registered version a tool
reads a saga with when this configuration does not load it (``baton status``, ``retry``,
``resume``, ``abort``).

The registry (``orchestrator.runtime.definition_registry``) is the deployment's memory of every
version an orchestrator has run; the local configuration is what this process loads. Where
both know a version, the local one is used, as before the registry existed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import click
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from baton.runtime import load_catalog, open_definitions
from messaging.errors import DefinitionError
from messaging.observability.logs import masked
from messaging.settings import Settings
from orchestrator.core.catalog import Catalog
from orchestrator.core.state import SagaState, SagaStatus
from orchestrator.runtime.definition_registry import (
    DefinitionRegistry,
    RegisteredDefinition,
    registration,
)
from orchestrator.runtime.in_flight import IN_FLIGHT, count_versions

console = Console()


@dataclass
class VersionRow:
    """One definition version as ``baton definitions`` shows it."""

    name: str
    version: int
    record: RegisteredDefinition  # the registered one, else the local one's registration
    registered: bool
    loaded: bool
    differs: bool = False  # loaded here with another body than the registered one
    in_flight: dict[SagaStatus, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        stages = self.record.stages
        return {
            "name": self.name, "version": self.version, "trigger": self.record.trigger,
            "registered": self.registered, "loaded": self.loaded, "differs": self.differs,
            "digest": self.record.digest or None,
            "steps": [step for _, steps in stages for step in steps],
            "groups": {name: steps for name, steps in stages if steps != [name]},
            "in_flight": {s.value: self.in_flight.get(s, 0) for s in IN_FLIGHT},
        }  # fmt: skip

    @property
    def where(self) -> str:
        if self.differs:
            return "differs from registered"
        if self.loaded:
            return "loaded" if self.registered else "loaded, not registered"
        return "registered only" if self.registered else "not registered, not loaded"


def _local(settings: Settings) -> Catalog | None:
    """This configuration's catalog, or None (said on stderr) when it does not load."""
    try:
        return load_catalog(settings)
    except DefinitionError as exc:
        click.echo(f"baton definitions: this configuration does not load: {exc}", err=True)
        return None


def _unknown(name: str, version: int) -> RegisteredDefinition:
    """A version sagas use that is neither registered nor loaded: only its name is known."""
    return RegisteredDefinition(name, version, "", "", {}, {})


async def version_rows(registry: DefinitionRegistry, local: Catalog | None) -> list[VersionRow]:
    """Every version registered, loaded here, or used by a saga in flight."""
    loaded = {d.key: registration(d) for d in (local.all() if local else [])}
    rows = {r.key: VersionRow(r.name, r.version, r, True, r.key in loaded)
            for r in await registry.all()}  # fmt: skip
    for key, row in rows.items():
        row.differs = key in loaded and loaded[key].digest != row.record.digest
    for key, record in loaded.items():
        rows.setdefault(key, VersionRow(*key, record, registered=False, loaded=True))
    for key, by_status in (await count_versions(registry.client, registry.keys)).items():
        row = rows.setdefault(key, VersionRow(*key, _unknown(*key), False, False))
        row.in_flight = by_status
    return [rows[key] for key in sorted(rows)]


def _print(rows: list[VersionRow]) -> None:
    table = Table("definition", "version", "trigger", "steps", "here",
                  *(s.value for s in IN_FLIGHT))  # fmt: skip
    for row in rows:
        steps = ", ".join(
            name if steps == [name] else f"{name}[{' | '.join(steps)}]"
            for name, steps in row.record.stages
        )
        counts = (str(row.in_flight.get(s, 0)) for s in IN_FLIGHT)
        cells = (row.name, str(row.version), row.record.trigger, steps, row.where, *counts)
        table.add_row(*map(Text, cells))  # Text: a name is never markup
    console.print(table)


async def show_definitions(settings: Settings, as_json: bool) -> int:
    """``baton definitions``: exit 0; Redis unreachable is one line on stderr, exit 1."""
    local = _local(settings)
    try:
        async with open_definitions(settings) as registry:
            rows = await version_rows(registry, local)
    except (RedisError, OSError, TimeoutError) as exc:
        click.echo(f"baton definitions: redis: {masked(str(exc) or type(exc).__name__)}", err=True)
        return 1
    if as_json:
        click.echo(json.dumps({"definitions": [row.as_json() for row in rows]}))
    else:
        _print(rows)
    return 0


async def registered_hidden(settings: Settings, state: SagaState) -> frozenset[str] | None:
    """The input fields the registered start contract of ``state``'s version marks
    sensitive; None when that version is not registered."""
    async with open_definitions(settings) as registry:
        record = await registry.get(state.saga, state.definition_version)
    return None if record is None else record.sensitive(record.trigger)


async def catalog_for(settings: Settings, saga_id: str) -> Catalog:
    """This configuration's catalog, plus the registered version of saga ``saga_id`` when
    the configuration does not load it (parsed against its registered contracts)."""
    catalog = load_catalog(settings)
    async with open_definitions(settings) as registry:
        raw = await registry.client.hget(registry.keys.saga(saga_id), "state")
        if raw is None:
            return catalog
        state = json.loads(raw)  # two plain fields read: nothing sealed is opened
        key = (str(state["saga"]), int(state["definition_version"]))
        if catalog.get(*key) is not None:
            return catalog
        record = await registry.get(*key)
    if record is None:
        return catalog
    return Catalog([*catalog.all(), record.parse()], catalog.contracts)
