"""``baton books``: every loaded saga package's invariant check, each over its own sagas.

A package names its check in ``package.yaml`` (``invariants: module:check``, an
``async check(redis, namespace, outcomes)`` returning a report with ``ok``). Each check is
given the outcomes of its own package's sagas only: the payment books must not count a
completed checkout saga as a payment that captured nothing. A saga's name is read from its
state, so the store is asked once per saga.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import click
import redis.asyncio as aioredis
from pydantic import BaseModel

from baton.runtime import load_saga_packages, open_reader
from messaging.redis_client import redis_for
from messaging.settings import Settings
from orchestrator.core.state import SagaStatus
from orchestrator.runtime.packages import SagaPackage
from orchestrator.runtime.redis_store import RedisSagaStore

_BATCH = 500  # sagas loaded at once


@dataclass(frozen=True)
class PackageResult:
    """One package's check: its report (None when it declares no check)."""

    package: str
    report: BaseModel | None

    @property
    def ok(self) -> bool:
        return self.report is None or bool(getattr(self.report, "ok", False))

    def problems(self) -> list[str]:
        """One line per broken rule: the report's own ``problems`` when it has them, else
        every field that is False (a flag) or not empty (a finding)."""
        if self.report is None:
            return []
        own = getattr(self.report, "problems", None)
        if isinstance(own, list):
            return [str(p) for p in own]
        found = self.report.model_dump(exclude={"ok"})
        return [
            f"{name}: {value}"
            for name, value in found.items()
            if (value is False) or (not isinstance(value, bool) and value)
        ]

    def row(self) -> dict[str, Any]:
        report = None if self.report is None else self.report.model_dump(mode="json")
        return {"ok": self.ok, "checked": self.report is not None, "report": report}


async def _names(store: RedisSagaStore, saga_ids: list[str]) -> dict[str, str]:
    """saga id -> saga name, for those the store still holds."""
    names: dict[str, str] = {}
    for start in range(0, len(saga_ids), _BATCH):
        batch = saga_ids[start : start + _BATCH]
        states = await asyncio.gather(*(store.load(saga_id) for saga_id in batch))
        names.update({s.saga_id: s.saga for s in states if s is not None})
    return names


async def saga_outcomes(settings: Settings) -> dict[str, dict[str, str]]:
    """saga name -> (saga id -> status), for every saga the store holds."""
    statuses: dict[str, str] = {}
    async with open_reader(settings) as store:
        for status in SagaStatus:
            for saga_id, _ in await store.by_status(status, 10_000_000):
                statuses[saga_id] = status.value
        names = await _names(store, list(statuses))
    by_saga: dict[str, dict[str, str]] = {}
    for saga_id, name in names.items():
        by_saga.setdefault(name, {})[saga_id] = statuses[saga_id]
    return by_saga


def own_outcomes(package: SagaPackage, by_saga: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The outcomes of the sagas ``package`` defines, and of no other."""
    names = {definition.name for definition in package.definitions}
    return {saga_id: status for name in names for saga_id, status in by_saga.get(name, {}).items()}


async def check_package(
    package: SagaPackage, redis: aioredis.Redis, namespace: str, outcomes: Mapping[str, str]
) -> PackageResult:
    """Run ``package``'s declared check over ``outcomes`` (its own sagas)."""
    check = package.invariants()
    if check is None:
        return PackageResult(package.name, None)
    report = await check(redis, namespace, dict(outcomes))
    if not isinstance(report, BaseModel):
        raise TypeError(f"{package.name}'s invariants check returned {type(report).__name__}")
    return PackageResult(package.name, report)


async def check_all(settings: Settings, packages: Iterable[SagaPackage]) -> list[PackageResult]:
    """Each package's check. A failed one is run again on statuses read afresh: a saga that
    started or finished while the first reading was taken is then judged by its real status."""
    chosen = list(packages)
    by_saga = await saga_outcomes(settings)
    client = redis_for(settings.redis)
    try:
        results = [
            await check_package(p, client, settings.namespace, own_outcomes(p, by_saga))
            for p in chosen
        ]
        if all(r.ok for r in results):
            return results
        by_saga = await saga_outcomes(settings)
        return [
            r if r.ok else await check_package(p, client, settings.namespace,
                                               own_outcomes(p, by_saga))
            for p, r in zip(chosen, results, strict=True)
        ]  # fmt: skip
    finally:
        await client.aclose()


def _print(results: list[PackageResult], as_json: bool) -> None:
    ok = all(r.ok for r in results)
    if as_json:
        packages = {r.package: r.row() for r in results}
        click.echo(json.dumps({"ok": ok, "packages": packages}))
        return
    for result in results:
        verdict = "no invariants declared" if result.report is None else (
            "ok" if result.ok else "BROKEN")  # fmt: skip
        click.echo(f"{result.package}: {verdict}")
        for problem in result.problems():
            click.echo(f"  {problem}")


async def books(settings: Settings, as_json: bool) -> int:
    """Check every loaded package's invariants; 0 when all hold, 1 when any is broken."""
    results = await check_all(settings, load_saga_packages(settings).packages)
    _print(results, as_json)
    return 0 if all(r.ok for r in results) else 1
