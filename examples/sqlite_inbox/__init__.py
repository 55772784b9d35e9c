"""The SDK's inbox port on SQLite, and a participant whose business write and inbox outcome
commit in one transaction (docs/sdk.md, "The inbox in your own database transaction")."""

from examples.sqlite_inbox.inbox import SqliteInbox
from examples.sqlite_inbox.stock import (
    ReleaseStock,
    ReserveStock,
    StockReleased,
    StockReserved,
    Warehouse,
    open_warehouse,
)

__all__ = [
    "ReleaseStock",
    "ReserveStock",
    "SqliteInbox",
    "StockReleased",
    "StockReserved",
    "Warehouse",
    "open_warehouse",
]
