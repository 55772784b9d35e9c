"""Bulk recovery: ``baton retry|resume|abort --where ...``. Find the matching sagas by
paging through the status indexes, say what they hold (``--dry-run``), then act on a canary
batch first and ramp up in doubling batches under a rate limit, stopping when a batch's
error ratio passes a threshold. Every action goes through ``baton.acting.Operator`` and is
audited with the run's ``batch_id``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import click
import redis.asyncio as aioredis

from baton.acting import Outcome
from baton.operate import operator_session
from baton.runtime import load_catalog
from contracts.money import CURRENCY_EXPONENTS
from messaging.settings import Settings
from messaging.text import as_text
from orchestrator.core.effects import OperatorAction
from orchestrator.core.state import SagaState, SagaStatus
from orchestrator.runtime.keys import KeySpace
from orchestrator.runtime.store import SagaStore

WHERE_KEYS = ("status", "step", "saga", "older-than")
DEFAULT_STATUSES = (SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.FAILED)
PAGE = 200  # index entries per ZSCAN and states per pipelined load
SHOWN_IDS = 20


@dataclass(frozen=True, slots=True)
class Where:
    """Which sagas a bulk action is for; every given condition must hold."""

    statuses: tuple[SagaStatus, ...] = DEFAULT_STATUSES
    step: str = ""  # the step it waits on or failed at
    saga: str = ""  # its definition's name
    older_than_s: float = 0.0  # idle at least this long


def parse_where(text: str) -> Where:
    """``status=failed,step=x,saga=payment,older-than=600``; ValueError with one line for
    an unknown key, a repeated one, an empty value or a bad number or status."""
    values: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise ValueError(f"--where: {part.strip()!r} is not KEY=VALUE")
        if key not in WHERE_KEYS:
            raise ValueError(f"--where: unknown key {key!r} (known: {', '.join(WHERE_KEYS)})")
        if key in values:
            raise ValueError(f"--where: {key} given twice")
        values[key] = value
    return Where(
        statuses=(_status(values["status"]),) if "status" in values else DEFAULT_STATUSES,
        step=_name(values.get("step", ""), "step"),
        saga=_name(values.get("saga", ""), "saga"),
        older_than_s=_seconds(values.get("older-than", "0")),
    )


def _status(value: str) -> SagaStatus:
    try:
        return SagaStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in SagaStatus)
        raise ValueError(f"--where: status {value!r} is not one of {known}") from None


def _name(value: str, key: str) -> str:
    if len(value) > 200 or not value.isprintable():
        raise ValueError(f"--where: {key} must be at most 200 printable characters")
    return value


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"--where: older-than {value!r} is not a number of seconds") from None
    if not 0 <= seconds < 10**9:
        raise ValueError("--where: older-than must be 0 or more seconds")
    return seconds


def matches(where: Where, state: SagaState) -> bool:
    """The conditions the status index cannot answer: definition and step."""
    if where.saga and state.saga != where.saga:
        return False
    if where.step:
        return state.failed_step == where.step or any(w.step == where.step for w in state.waiting)
    return True


def money_of(state: SagaState) -> tuple[int, str] | None:
    """(minor units, currency) of the saga's input's Money-shaped field, if it has one."""
    for value in state.input.values():
        if _is_money(value):
            return int(value["minor"]), str(value["currency"])
    return None


def _is_money(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"minor", "currency"}
        and isinstance(value["minor"], int)
        and value["currency"] in CURRENCY_EXPONENTS
    )


def show_money(minor: int, currency: str) -> str:
    exponent = CURRENCY_EXPONENTS[currency]
    return f"{minor / 10**exponent:.{exponent}f} {currency}"


@dataclass
class Plan:
    """The sagas a bulk action would touch (ids only) and what they hold."""

    ids: list[str] = field(default_factory=list)
    held: dict[str, int] = field(default_factory=dict)  # currency -> minor units
    without_amount: int = 0

    def add(self, state: SagaState) -> None:
        self.ids.append(state.saga_id)
        money = money_of(state)
        if money is None:
            self.without_amount += 1
        else:
            self.held[money[1]] = self.held.get(money[1], 0) + money[0]

    def money(self) -> str:
        shown = [show_money(minor, cur) for cur, minor in sorted(self.held.items())]
        if self.without_amount or not shown:
            shown.append(f"n/a for {self.without_amount}")
        return ", ".join(shown)

    def describe(self) -> list[str]:
        lines = [f"{len(self.ids)} saga(s) match, holding {self.money()}"]
        lines += self.ids[:SHOWN_IDS]
        if len(self.ids) > SHOWN_IDS:
            lines.append(f"... and {len(self.ids) - SHOWN_IDS} more")
        return lines


async def index_pages(
    client: aioredis.Redis, keys: KeySpace, where: Where, now: float, page: int = PAGE
) -> AsyncIterator[list[str]]:
    """Ids from the status indexes, ``page`` at a time (ZSCAN: a cursor, so an index that
    changes while it is read is still read whole); idle for less than older-than left out."""
    before = now - where.older_than_s
    seen: set[str] = set()  # ZSCAN may repeat a member
    for status in where.statuses:
        for shard in keys.all_shards():
            cursor: int = 0
            while True:
                cursor, rows = await client.zscan(keys.status(shard, status), cursor, count=page)
                ids = [as_text(m) for m, at in rows if not where.older_than_s or float(at) < before]
                fresh = [i for i in ids if i not in seen]
                seen.update(fresh)
                if fresh:
                    yield fresh
                if cursor == 0:
                    break


async def plan(
    client: aioredis.Redis, keys: KeySpace, store: SagaStore, where: Where, now: float
) -> Plan:
    """Load the candidates' states a page at a time and keep those that match."""
    found = Plan()
    async for ids in index_pages(client, keys, where, now):
        for i in range(0, len(ids), PAGE):
            states = await asyncio.gather(*(store.load(s) for s in ids[i : i + PAGE]))
            for state in states:
                if state is not None and state.status in where.statuses and matches(where, state):
                    found.add(state)
    return found


# -- running -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ramp:
    """How a bulk run goes: the canary batch, the rate limit, when to stop."""

    canary: int = 5
    rate_per_s: float = 10.0
    max_error_ratio: float = 0.1
    max_batch: int = 1000


def batches(total: int, ramp: Ramp) -> list[int]:
    """The batch sizes: the canary, then doubling, capped at ``max_batch``."""
    sizes, size, left = [], ramp.canary, total
    while left > 0:
        sizes.append(min(size, left))
        left -= sizes[-1]
        size = min(size * 2, ramp.max_batch)
    return sizes


@dataclass
class Summary:
    acted: int = 0
    ignored: int = 0
    failed: int = 0
    skipped: int = 0
    stopped: str = ""  # why the run stopped early ("" when it went through)
    batch_sizes: list[int] = field(default_factory=list)

    def line(self) -> str:
        text = (
            f"acted {self.acted}, ignored {self.ignored}, failed {self.failed}, "
            f"skipped {self.skipped}"
        )
        return f"{text}; stopped: {self.stopped}" if self.stopped else text


class Pacer:
    """At most ``rate`` starts per second: start i waits until ``first + i / rate``."""

    def __init__(
        self,
        rate_per_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._interval = 1.0 / rate_per_s
        self._clock, self._sleep = clock, sleep
        self._next: float | None = None

    async def wait(self) -> None:
        now = self._clock()
        at = now if self._next is None else max(self._next, now)
        self._next = at + self._interval
        if at > now:
            await self._sleep(at - now)


Act = Callable[[str], Awaitable[Outcome]]


async def _one(act: Act, saga_id: str, pacer: Pacer) -> str:
    """applied | ignored | refused | failed (raised: Redis or the broker away)."""
    await pacer.wait()
    try:
        return (await act(saga_id)).result
    except asyncio.CancelledError:
        raise
    except Exception:
        return "failed"


async def run(
    ids: Sequence[str],
    act: Act,
    ramp: Ramp,
    progress: Callable[[str], None],
    pacer: Pacer | None = None,
) -> Summary:
    """Canary first (any failure stops the run), then doubling batches until one's error
    ratio passes ``max_error_ratio``. Starts are paced; a batch's actions run together."""
    pacer = pacer or Pacer(ramp.rate_per_s)
    summary, done = Summary(), 0
    for number, size in enumerate(batches(len(ids), ramp)):
        batch = ids[done : done + size]
        results = await asyncio.gather(*(_one(act, saga_id, pacer) for saga_id in batch))
        done += size
        summary.batch_sizes.append(size)
        errors = sum(r in ("refused", "failed") for r in results)
        summary.acted += results.count("applied")
        summary.ignored += results.count("ignored")
        summary.failed += errors
        progress(f"batch {number + 1}: {size} saga(s), {errors} failed ({done}/{len(ids)})")
        if number == 0 and errors:
            summary.stopped = f"{errors} of the {size} canary action(s) failed"
        elif errors / size > ramp.max_error_ratio:
            summary.stopped = (
                f"error ratio {errors / size:.2f} in the last batch > {ramp.max_error_ratio}"
            )
        if summary.stopped:
            break
    summary.skipped = len(ids) - done
    return summary


# -- the command -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BulkRequest:
    """What the operator asked for: the action (reason, actor, batch id set), the filter,
    and how to run it."""

    action: OperatorAction
    where: Where
    ramp: Ramp
    dry_run: bool = False
    yes: bool = False


async def bulk_act(settings: Settings, request: BulkRequest) -> int:
    """0 the run went through (or the dry run was shown); 1 it stopped, something failed,
    or it was not confirmed."""
    catalog = load_catalog(settings)
    async with operator_session(settings, catalog) as operator:
        found = await plan(
            operator.audit.client,
            operator.audit.keys,
            operator.store,
            request.where,
            time.time(),
        )
        name = request.action.action
        for line in found.describe():
            click.echo(line)
        if request.dry_run or not found.ids:
            return 0
        if not _confirmed(name, found, request.yes):
            return 1
        action = request.action

        async def act(saga_id: str) -> Outcome:
            return await operator.perform(saga_id, action)

        summary = await run(found.ids, act, request.ramp, click.echo)
    click.echo(f"{name} batch {action.batch_id}: {summary.line()}")
    return 1 if summary.stopped or summary.failed else 0


def _confirmed(name: str, found: Plan, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        click.echo(
            f"baton {name}: not confirmed: pass --yes to act on {len(found.ids)} saga(s)"
            " without a terminal", err=True,
        )  # fmt: skip
        return False
    return click.confirm(f"{name} {len(found.ids)} saga(s) holding {found.money()}?")
