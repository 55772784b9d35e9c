"""The SQLite example's business write and outcome commit together (examples/sqlite_inbox).

The port's contract itself runs in test_inbox_contract.py; this is what ``apply`` adds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from baton_sdk import ClaimStatus, MessageContext, held
from contracts.base import StepFailed
from contracts.envelope import Phase
from examples.sqlite_inbox import (
    ReleaseStock,
    ReserveStock,
    StockReleased,
    StockReserved,
    Warehouse,
    open_warehouse,
)
from messaging.errors import StepRejected

FORWARD, UNDO = "e-reserve", "e-release"
RESERVE = ReserveStock(sku="tea", quantity=3)


def context(effect_id: str, compensates: str = "") -> MessageContext:
    phase: Phase = "compensate" if compensates else "forward"
    return MessageContext(
        saga_id="s-1", saga="order", step="reserve", phase=phase, effect_id=effect_id,
        compensates=compensates, attempt=1, traceparent="", message_id="m-1",
    )  # fmt: skip


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    house, _ = open_warehouse(tmp_path / "warehouse.db")
    house.stock("tea", 5)
    yield house
    house.inbox.close()


def reservations(house: Warehouse) -> int:
    row = house.inbox.atomic(lambda db: db.execute("SELECT count(*) FROM reservations").fetchone())
    return int(row[0])


async def test_the_effect_and_its_outcome_commit_together(warehouse: Warehouse) -> None:
    async with held(warehouse.inbox, FORWARD, lease_s=5.0) as claim:
        reply = await warehouse.reserve(RESERVE, context(FORWARD))
        assert reply == StockReserved(sku="tea", quantity=3)
        assert await warehouse.inbox.stored(FORWARD) == reply  # before record: same commit
        assert await claim.record(reply) == reply  # what the worker does next: it stays
    assert warehouse.available("tea") == 2
    again = await warehouse.inbox.claim(FORWARD, lease_s=5.0)
    assert again.status is ClaimStatus.OUTCOME


async def test_a_second_delivery_finds_the_outcome_and_changes_nothing(
    warehouse: Warehouse,
) -> None:
    first = await warehouse.reserve(RESERVE, context(FORWARD))
    stale = await warehouse.reserve(RESERVE, context(FORWARD))  # e.g. its lease ran out
    assert stale == first
    assert warehouse.available("tea") == 2
    assert reservations(warehouse) == 1


async def test_a_refusal_or_a_crash_leaves_neither_effect_nor_outcome(
    warehouse: Warehouse,
) -> None:
    with pytest.raises(StepRejected):
        await warehouse.reserve(ReserveStock(sku="tea", quantity=9), context(FORWARD))

    def half_done(db: object) -> StockReserved:
        warehouse.inbox.db.execute("UPDATE stock SET available = 0")
        raise RuntimeError("crash after the business write")

    with pytest.raises(RuntimeError):
        await warehouse.inbox.apply(FORWARD, "", half_done)
    assert warehouse.available("tea") == 5
    assert await warehouse.inbox.stored(FORWARD) is None


async def test_a_compensation_undoes_and_buries_the_forward_effect(warehouse: Warehouse) -> None:
    await warehouse.reserve(RESERVE, context(FORWARD))
    undone = await warehouse.release(ReleaseStock(), context(UNDO, compensates=FORWARD))
    assert undone == StockReleased(released=3)
    assert warehouse.available("tea") == 5
    assert await warehouse.release(ReleaseStock(), context(UNDO, compensates=FORWARD)) == undone


async def test_a_forward_effect_after_its_compensation_is_cancelled(warehouse: Warehouse) -> None:
    early = await warehouse.release(ReleaseStock(), context(UNDO, compensates=FORWARD))
    assert early == StockReleased(released=0)
    late = await warehouse.reserve(RESERVE, context(FORWARD))
    assert late == StepFailed(reason="cancelled", retriable=False)
    assert warehouse.available("tea") == 5
    assert reservations(warehouse) == 0
    assert await warehouse.inbox.stored(FORWARD) == late
