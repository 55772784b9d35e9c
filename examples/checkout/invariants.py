"""The checkout world's invariants: what must hold after any run, whatever failed on the way.

``check(redis, namespace, outcomes)`` reads every participant's records (``snapshot``) and
judges them (``audit``, pure), as ``participants/payments/books.py`` does for the payment
saga. Conservation holds at every instant (each move is one script); the per-saga rules
hold once a saga is finished:

* stock, per sku: ``seeded = available + Σ quantity of reservations "reserved"`` (a
  completed order keeps its reservation: that stock is shipped);
* money, per currency: ``seeded = Σ balance + Σ held + Σ captured`` over the wallets; each
  wallet's ``held`` is the sum of its holds still ``held`` and its ``captured`` the sum of
  the captures of its holds; the shop's revenue is the sum of all captures;
* a compensated saga keeps no reservation ``reserved``, no hold ``held``, no shipment
  ``created``, and has no capture and no confirmation;
* a finished saga (not running, not compensating) holds no money;
* a completed saga has a capture (a second one is a ``double_captures``), a reservation
  ``reserved``, a shipment ``created`` and its order's confirmation.

Report fields hold saga ids (sorted), never customer ids: those are sensitive.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field
from redis.asyncio import Redis

from examples.checkout.keys import InventoryKeys, NotificationKeys, ShipmentKeys, WalletKeys
from examples.checkout.participants.records import text

COMPLETED = "completed"
COMPENSATED = "compensated"
IN_PROGRESS = frozenset({"running", "compensating"})
UNKNOWN = "unknown"
# Without outcomes, a saga's status is read from its records: a capture says it passed the
# pivot, any undo (or undo-first marker) that it compensated.
_UNDONE = frozenset({"released", "voided", "cancelled"})


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Stock(_Record):
    available: int
    seeded: int


class Reservation(_Record):
    saga_id: str
    order_id: str = ""
    sku: str = ""
    quantity: int = 0
    status: str


class Account(_Record):
    balance: int
    held: int
    captured: int
    currency: str


class Hold(_Record):
    hold_id: str
    saga_id: str
    customer_id: str = ""
    amount: int = 0
    currency: str = ""
    status: str


class Capture(_Record):
    capture_id: str
    saga_id: str
    hold_id: str
    amount: int
    currency: str
    status: str


class Confirmation(_Record):
    message_id: str
    order_id: str
    saga_id: str


class Shipment(_Record):
    status: str
    saga_id: str
    order_id: str = ""


class CheckoutState(BaseModel):
    """Every participant's records, read at one moment (consistent when nothing moves)."""

    stock: dict[str, Stock]  # sku ->
    reservations: dict[str, Reservation]  # forward effect id ->
    accounts: dict[str, Account]  # customer id ->
    holds: dict[str, Hold]
    captures: dict[str, Capture]
    revenue: dict[str, int]  # currency ->
    totals: dict[str, int]  # currency -> money seeded
    captures_per_saga: dict[str, int]
    confirmations: dict[str, Confirmation]  # order id ->
    shipments: dict[str, Shipment]  # key ->


class CheckoutReport(BaseModel):
    """What is wrong with the checkout world; lists hold saga ids, sorted."""

    stock_imbalance: dict[str, int]  # sku -> (stock found - stock seeded), only where != 0
    money_imbalance: dict[str, int]  # currency -> (money found - money seeded), where != 0
    revenue_imbalance: dict[str, int]  # currency -> (revenue - Σ captures), where != 0
    accounts_mismatched: int  # wallets whose held or captured disagree with their holds
    reservations_left: list[str]  # compensated sagas with a reservation still reserved
    holds_left: list[str]  # finished sagas with a hold still held
    shipments_left: list[str]  # compensated sagas with a shipment still created
    compensated_but_captured: list[str]
    compensated_but_confirmed: list[str]
    double_captures: list[str]
    completed_incomplete: dict[str, list[str]]  # saga -> what it lacks

    @computed_field  # type: ignore[prop-decorator]
    @property
    def problems(self) -> list[str]:
        """One line per rule broken, empty when all hold (what ``baton`` prints)."""
        found = self.model_dump(exclude={"problems", "ok"})
        return [f"{rule}: {value}" for rule, value in found.items() if value]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.problems


def _nonzero(diff: Mapping[str, int]) -> dict[str, int]:
    return {key: value for key, value in sorted(diff.items()) if value}


def stock_imbalance(state: CheckoutState) -> dict[str, int]:
    """Stock found (available + reserved) minus stock seeded, per sku."""
    diff: dict[str, int] = defaultdict(int)
    for sku, stock in state.stock.items():
        diff[sku] += stock.available - stock.seeded
    for r in state.reservations.values():
        if r.status == "reserved":
            diff[r.sku] += r.quantity
    return _nonzero(diff)


def money_imbalance(state: CheckoutState) -> dict[str, int]:
    """Money found in the wallets (balance + held + captured) minus money seeded."""
    diff: dict[str, int] = defaultdict(int)
    for a in state.accounts.values():
        diff[a.currency] += a.balance + a.held + a.captured
    for currency, seeded in state.totals.items():
        diff[currency] -= seeded
    return _nonzero(diff)


def revenue_imbalance(state: CheckoutState) -> dict[str, int]:
    """The shop's revenue minus the sum of the captures, per currency."""
    diff: dict[str, int] = defaultdict(int, state.revenue)
    for c in state.captures.values():
        if c.status == "captured":
            diff[c.currency] -= c.amount
    return _nonzero(diff)


def accounts_mismatched(state: CheckoutState) -> int:
    """Wallets whose ``held`` / ``captured`` differ from what their holds and captures say."""
    held: dict[str, int] = defaultdict(int)
    captured: dict[str, int] = defaultdict(int)
    for h in state.holds.values():
        if h.status == "held":
            held[h.customer_id] += h.amount
    for c in state.captures.values():
        hold = state.holds.get(c.hold_id)
        if c.status == "captured" and hold is not None:
            captured[hold.customer_id] += c.amount
    return sum(
        1 for customer, a in state.accounts.items()
        if a.held != held.get(customer, 0) or a.captured != captured.get(customer, 0)
    )  # fmt: skip


def inferred_outcomes(state: CheckoutState) -> dict[str, str]:
    """Each saga's status as its records tell it: ``completed`` once captured, else
    ``compensated`` once anything of it was undone. Sagas showing neither are not judged."""
    found: dict[str, str] = {}
    undone = [
        *((r.saga_id, r.status) for r in state.reservations.values()),
        *((h.saga_id, h.status) for h in state.holds.values()),
        *((s.saga_id, s.status) for s in state.shipments.values()),
    ]
    for saga, status in undone:
        if status in _UNDONE:
            found[saga] = COMPENSATED
    for saga, count in state.captures_per_saga.items():
        if count:
            found[saga] = COMPLETED
    return found


def _sagas(pairs: Any) -> set[str]:
    return {saga for saga, keep in pairs if keep}


def _lacks(state: CheckoutState, saga: str) -> list[str]:
    """What a completed saga lacks of: capture, reservation, shipment, confirmation."""
    orders = {r.order_id for r in state.reservations.values() if r.saga_id == saga}
    orders |= {s.order_id for s in state.shipments.values() if s.saga_id == saga}
    confirmed = any(c.saga_id == saga or c.order_id in orders for c in state.confirmations.values())
    has = {
        "capture": state.captures_per_saga.get(saga, 0) >= 1,  # twice: double_captures
        "reservation": any(
            r.saga_id == saga and r.status == "reserved" for r in state.reservations.values()
        ),
        "shipment": any(
            s.saga_id == saga and s.status == "created" for s in state.shipments.values()
        ),
        "confirmation": confirmed,
    }
    return [what for what, present in has.items() if not present]


def audit(state: CheckoutState, outcomes: Mapping[str, str] | None = None) -> CheckoutReport:
    """Judge the records against each saga's status (saga id -> status); without
    ``outcomes``, against the status the records show (``inferred_outcomes``)."""
    status = dict(inferred_outcomes(state) if outcomes is None else outcomes)
    compensated = {s for s, st in status.items() if st == COMPENSATED}
    captured = _sagas((c.saga_id, c.status == "captured") for c in state.captures.values())
    incomplete = {s: _lacks(state, s) for s, st in status.items() if st == COMPLETED}
    return CheckoutReport(
        stock_imbalance=stock_imbalance(state),
        money_imbalance=money_imbalance(state),
        revenue_imbalance=revenue_imbalance(state),
        accounts_mismatched=accounts_mismatched(state),
        reservations_left=sorted(compensated & _sagas(
            (r.saga_id, r.status == "reserved") for r in state.reservations.values())),
        holds_left=sorted(_sagas(
            (h.saga_id, h.status == "held" and status.get(h.saga_id, UNKNOWN) not in IN_PROGRESS)
            for h in state.holds.values())),
        shipments_left=sorted(compensated & _sagas(
            (s.saga_id, s.status == "created") for s in state.shipments.values())),
        compensated_but_captured=sorted(compensated & captured),
        compensated_but_confirmed=sorted(
            compensated & {c.saga_id for c in state.confirmations.values()}),
        double_captures=sorted(s for s, n in state.captures_per_saga.items() if n > 1),
        completed_incomplete={s: lacks for s, lacks in sorted(incomplete.items()) if lacks},
    )  # fmt: skip


async def _members(redis: Redis, key: str) -> list[str]:
    return sorted(text(m) for m in await redis.smembers(key))


async def _hashes(redis: Redis, keys: list[str]) -> list[dict[str, str]]:
    """HGETALL of each key; a key that is not a hash reads as empty."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hgetall(key)
        rows = await pipe.execute(raise_on_error=False)
    return [
        {text(f): text(v) for f, v in row.items()} if isinstance(row, dict) else {} for row in rows
    ]


async def _records(redis: Redis, index: str, key: Any) -> dict[str, dict[str, str]]:
    ids = await _members(redis, index)
    return dict(zip(ids, await _hashes(redis, [key(i) for i in ids]), strict=True))


async def _shipments(redis: Redis, keys: ShipmentKeys) -> dict[str, dict[str, str]]:
    """Every shipment hash the Node participant wrote (found by prefix: it keeps no index)."""
    found = sorted({text(k) async for k in redis.scan_iter(match=f"{keys.prefix}*", count=1000)})
    rows = await _hashes(redis, found)
    return {key: row for key, row in zip(found, rows, strict=True) if "status" in row}


async def snapshot(redis: Redis, namespace: str) -> CheckoutState:
    """Every participant's records under ``namespace``."""
    inv, wal = InventoryKeys(namespace), WalletKeys(namespace)
    note = NotificationKeys(namespace)
    extra = await _hashes(redis, [wal.revenue, wal.totals, wal.captures_per_saga])
    return CheckoutState.model_validate({
        "stock": await _records(redis, inv.index("skus"), inv.stock),
        "reservations": await _records(redis, inv.index("reservations"), inv.reservation),
        "accounts": await _records(redis, wal.index("accounts"), wal.account),
        "holds": await _records(redis, wal.index("holds"), wal.hold),
        "captures": await _records(redis, wal.index("captures"), wal.capture),
        "revenue": extra[0],
        "totals": extra[1],
        "captures_per_saga": extra[2],
        "confirmations": await _records(redis, note.confirmations, note.confirmation),
        "shipments": await _shipments(redis, ShipmentKeys(namespace)),
    })  # fmt: skip


async def check(
    redis: Redis, namespace: str, outcomes: Mapping[str, str] | None = None
) -> CheckoutReport:
    """The checkout invariants under ``namespace`` (the package's ``invariants:`` entry).

    ``outcomes`` maps saga ids to their status; without it, call this when no saga is in
    flight: the status is then read from the records (``inferred_outcomes``).
    """
    return audit(await snapshot(redis, namespace), outcomes)
