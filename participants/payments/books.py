"""The ledger's contents and the invariants checked after every run (design §8)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, computed_field
from redis.asyncio import Redis

# Saga statuses the books are checked against.
COMPLETED = "completed"
COMPENSATED = "compensated"
# A saga in one of these may still void or capture its hold. Any other status (completed,
# compensated, failed, aborted, or none: unknown or expired) never will by itself, so a
# hold of such a saga still ``held`` is money stuck until an operator acts.
IN_PROGRESS = frozenset({"running", "compensating"})
UNKNOWN = "unknown"  # the status reported for a saga missing from the outcomes


class Balance(BaseModel):
    model_config = ConfigDict(frozen=True)

    balance: int
    currency: str
    open: str = "1"


class HoldRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    hold_id: str
    saga_id: str
    account: str
    amount: int
    currency: str
    status: Literal["held", "voided", "captured"]


class CaptureRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    capture_id: str
    saga_id: str
    hold_id: str
    merchant: str
    amount: int
    currency: str


class Books(BaseModel):
    """A snapshot of the ledger."""

    accounts: dict[str, Balance]
    merchants: dict[str, Balance]
    holds: dict[str, HoldRecord]
    captures: dict[str, CaptureRecord]
    totals: dict[str, int]  # currency -> total money seeded
    captures_per_saga: dict[str, int]


class BooksReport(BaseModel):
    """What is wrong with the books; every list holds saga ids, sorted."""

    balanced: bool
    imbalance: dict[str, int]  # currency -> (money found - money seeded), only where != 0
    holds_left: list[str]  # sagas not in progress that still have a hold ``held``
    holds_left_by_status: dict[str, list[str]] = {}  # the same sagas by status ("unknown")
    double_captures: list[str]
    completed_not_captured: list[str]
    compensated_but_captured: list[str]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.balanced and not (
            self.holds_left
            or self.double_captures
            or self.completed_not_captured
            or self.compensated_but_captured
        )


def imbalance(books: Books) -> dict[str, int]:
    """Money found minus money seeded, per currency: money is never created or lost."""
    found: dict[str, int] = defaultdict(int)
    for balance in (*books.accounts.values(), *books.merchants.values()):
        found[balance.currency] += balance.balance
    for hold in books.holds.values():
        if hold.status == "held":
            found[hold.currency] += hold.amount
    currencies = found.keys() | books.totals.keys()
    diff = {c: found.get(c, 0) - books.totals.get(c, 0) for c in currencies}
    return {c: d for c, d in sorted(diff.items()) if d}


def _captured_exactly(books: Books, saga_id: str) -> bool:
    """One capture for the saga, of the amount of the hold it captured."""
    captures = [c for c in books.captures.values() if c.saga_id == saga_id]
    if len(captures) != 1 or books.captures_per_saga.get(saga_id, 0) != 1:
        return False
    hold = books.holds.get(captures[0].hold_id)
    return hold is not None and hold.status == "captured" and hold.amount == captures[0].amount


def held_by_status(books: Books, outcomes: Mapping[str, str]) -> dict[str, list[str]]:
    """Sagas not in progress whose hold is still ``held``, by status (``unknown`` if none)."""
    found: dict[str, set[str]] = defaultdict(set)
    for hold in books.holds.values():
        status = outcomes.get(hold.saga_id, UNKNOWN)
        if hold.status == "held" and status not in IN_PROGRESS:
            found[status].add(hold.saga_id)
    return {status: sorted(sagas) for status, sagas in sorted(found.items())}


def audit(books: Books, outcomes: Mapping[str, str]) -> BooksReport:
    """Check the books against each saga's status (saga id -> status; missing: unknown)."""
    captured = {c.saga_id for c in books.captures.values()}
    diff = imbalance(books)
    left = held_by_status(books, outcomes)
    return BooksReport(
        balanced=not diff,
        imbalance=diff,
        holds_left=sorted({s for sagas in left.values() for s in sagas}),
        holds_left_by_status=left,
        double_captures=sorted(s for s, n in books.captures_per_saga.items() if n > 1),
        completed_not_captured=sorted(
            s for s, st in outcomes.items() if st == COMPLETED and not _captured_exactly(books, s)
        ),
        compensated_but_captured=sorted(
            s for s, st in outcomes.items() if st == COMPENSATED and s in captured
        ),
    )


async def check(
    redis: Redis, namespace: str, outcomes: Mapping[str, str] | None = None
) -> BooksReport:
    """The payment saga's invariants under ``namespace``: the package's ``invariants:`` entry.

    ``outcomes`` maps saga ids to their status; without it, call this when no saga is in
    flight: every hold still ``held`` is then money stuck, and the checks that need a
    saga's status (completed but not captured, compensated but captured) have none to use.
    """
    from participants.payments.ledger import Ledger  # noqa: PLC0415 - it imports this module

    return await Ledger(redis, namespace).check_books(outcomes or {})
