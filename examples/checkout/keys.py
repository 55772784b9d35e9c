"""Every Redis key shape of the checkout participants, in one place (README "key layout").

Each participant's records share one hash tag, so a script that moves stock or money and
writes the record saying why touches one Redis Cluster slot, and a compensation finds its
record from the forward effect id alone. The shipping participant is Node.js: only the
prefix of its hashes is spelled here, for the invariants to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


def _check(namespace: str) -> None:
    if "{" in namespace or "}" in namespace:
        raise ValueError("namespace must not contain braces: they would move the hash tag")


@dataclass(frozen=True, slots=True)
class InventoryKeys:
    """Stock per sku and reservations per forward effect id."""

    namespace: str

    def __post_init__(self) -> None:
        _check(self.namespace)

    @property
    def prefix(self) -> str:
        return f"{self.namespace}checkout:inventory:{{stock}}:"

    def stock(self, sku: str) -> str:
        return f"{self.prefix}stock:{sku}"

    def reservation(self, effect_id: str) -> str:
        return f"{self.prefix}reservation:{effect_id}"

    def index(self, what: Literal["skus", "reservations"]) -> str:
        return f"{self.prefix}{what}"


@dataclass(frozen=True, slots=True)
class WalletKeys:
    """The payment participant's ledger: accounts, holds, captures, revenue."""

    namespace: str

    def __post_init__(self) -> None:
        _check(self.namespace)

    @property
    def prefix(self) -> str:
        return f"{self.namespace}checkout:payment:{{wallet}}:"

    def account(self, customer_id: str) -> str:
        return f"{self.prefix}account:{customer_id}"

    def hold(self, hold_id: str) -> str:
        return f"{self.prefix}hold:{hold_id}"

    def capture(self, capture_id: str) -> str:
        return f"{self.prefix}capture:{capture_id}"

    def index(self, what: Literal["accounts", "holds", "captures"]) -> str:
        return f"{self.prefix}{what}"

    @property
    def revenue(self) -> str:
        return f"{self.prefix}revenue"

    @property
    def totals(self) -> str:
        return f"{self.prefix}totals"

    @property
    def captures_per_saga(self) -> str:
        return f"{self.prefix}captures_per_saga"


@dataclass(frozen=True, slots=True)
class NotificationKeys:
    """One confirmation per order."""

    namespace: str

    def __post_init__(self) -> None:
        _check(self.namespace)

    @property
    def prefix(self) -> str:
        return f"{self.namespace}checkout:notification:{{outbox}}:"

    def confirmation(self, order_id: str) -> str:
        return f"{self.prefix}confirmation:{order_id}"

    @property
    def confirmations(self) -> str:
        return f"{self.prefix}confirmations"


@dataclass(frozen=True, slots=True)
class ShipmentKeys:
    """The Node.js shipping participant's hashes, one per create_shipment effect id."""

    namespace: str

    def __post_init__(self) -> None:
        _check(self.namespace)

    @property
    def prefix(self) -> str:
        return f"{self.namespace}checkout:shipment:"

    def shipment(self, effect_id: str) -> str:
        return f"{self.prefix}{{{effect_id}}}"
