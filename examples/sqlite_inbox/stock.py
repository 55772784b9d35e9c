"""A sample participant keeping its stock in the same SQLite file as its inbox.

``reserve`` takes units off the shelf and stores its outcome in ONE transaction
(``SqliteInbox.apply``): a crash between the two is impossible, and a second delivery of the
same effect id, even one whose lease ran out meanwhile, finds the outcome and changes
nothing. ``release`` (the compensation) puts the units back the same way.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import Field

from baton_sdk import Handlers, MessageContext, handles
from contracts.base import Command, Reply, StepFailed
from examples.sqlite_inbox.inbox import SqliteInbox, script
from messaging.errors import StepRejected

STOCK = """
CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, available INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS reservations (
    effect_id TEXT PRIMARY KEY, sku TEXT NOT NULL, quantity INTEGER NOT NULL);
"""


class ReserveStock(Command):
    KIND: ClassVar[str] = "warehouse.reserve_stock.v1"
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    quantity: Annotated[int, Field(gt=0)]


class StockReserved(Reply):
    KIND: ClassVar[str] = "warehouse.stock_reserved.v1"
    sku: str
    quantity: int


class ReleaseStock(Command):
    KIND: ClassVar[str] = "warehouse.release_stock.v1"


class StockReleased(Reply):
    KIND: ClassVar[str] = "warehouse.stock_released.v1"
    released: int  # units put back (0: nothing had been reserved)


class Warehouse:
    """The handlers; ``inbox`` is also where the stock lives (one database, one transaction)."""

    def __init__(self, inbox: SqliteInbox) -> None:
        self.inbox = inbox
        inbox.atomic(lambda db: script(db, STOCK))

    def stock(self, sku: str, available: int) -> None:
        """Put ``available`` units of ``sku`` on the shelf (set-up)."""
        self.inbox.atomic(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO stock (sku, available) VALUES (?, ?)", (sku, available)
            )
        )

    def available(self, sku: str) -> int:
        found = self.inbox.atomic(
            lambda db: db.execute("SELECT available FROM stock WHERE sku = ?", (sku,)).fetchone()
        )
        return 0 if found is None else int(found[0])

    @handles(ReserveStock)
    async def reserve(
        self, command: ReserveStock, ctx: MessageContext
    ) -> StockReserved | StepFailed:
        def work(db: sqlite3.Connection) -> StockReserved:
            taken = db.execute(
                "UPDATE stock SET available = available - ? WHERE sku = ? AND available >= ?",
                (command.quantity, command.sku, command.quantity),
            )
            if taken.rowcount != 1:  # rolled back with everything else: nothing changed
                raise StepRejected("out_of_stock", command.sku)
            db.execute(
                "INSERT INTO reservations (effect_id, sku, quantity) VALUES (?, ?, ?)",
                (ctx.effect_id, command.sku, command.quantity),
            )
            return StockReserved(sku=command.sku, quantity=command.quantity)

        return await self.inbox.apply(ctx.effect_id, ctx.compensates, work)

    @handles(ReleaseStock)
    async def release(
        self, command: ReleaseStock, ctx: MessageContext
    ) -> StockReleased | StepFailed:
        def work(db: sqlite3.Connection) -> StockReleased:
            row = db.execute(
                "DELETE FROM reservations WHERE effect_id = ? RETURNING sku, quantity",
                (ctx.compensates,),
            ).fetchone()
            if row is None:  # the reservation never happened (or was refused)
                return StockReleased(released=0)
            db.execute("UPDATE stock SET available = available + ? WHERE sku = ?", (row[1], row[0]))
            return StockReleased(released=int(row[1]))

        return await self.inbox.apply(ctx.effect_id, ctx.compensates, work)


def open_warehouse(path: str | Path) -> tuple[Warehouse, Handlers]:
    """The warehouse on one SQLite file, and its ``Handlers`` (what a ``Worker`` runs, given
    ``inbox=warehouse.inbox``). The handlers are also what the inbox reads stored outcomes
    back with, so they exist first and are filled in once the warehouse does."""
    handlers = Handlers()
    warehouse = Warehouse(SqliteInbox(path, contracts=handlers))
    handlers.register(ReserveStock, warehouse.reserve)
    handlers.register(ReleaseStock, warehouse.release)
    return warehouse, handlers
