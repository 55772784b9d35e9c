"""The bank's books: accounts, merchants, holds and captures, shared by the payment services.

It models the card network; the authorization and transaction services are its clients.
Every change is one Lua script (see ``scripts``), idempotent by effect id and atomic
against the void marker that a compensation leaves when it runs before its command. An
effect id has one outcome: a refused authorize or capture is recorded (status ``refused``,
kept ``marker_ttl_s``, never indexed, so the books never count it) and repeated as is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from baton_sdk.scripts import call_many
from contracts.money import Money
from messaging.errors import StepRejected
from messaging.text import as_text
from participants.payments import scripts
from participants.payments.books import Books, BooksReport, audit

DEFAULT_MARKER_TTL_S = 30 * 24 * 3600
# The ledger's Redis Cluster hash tag. PCI's attestations carry it too, so that a capture
# checks the attestation in the same atomic script as the hold it moves.
BOOKS_SLOT = "{books}"


def derive_id(prefix: str, effect_id: str) -> str:
    """A short stable id from an effect id, so a repeated command finds the same record."""
    return f"{prefix}_{hashlib.blake2b(effect_id.encode(), digest_size=12).hexdigest()}"


class AccountSeed(BaseModel):
    account_id: str
    balance_minor: int = Field(ge=0)
    currency: str


class MerchantSeed(BaseModel):
    merchant_id: str
    currency: str
    open: bool = True


@dataclass(frozen=True, slots=True)
class LedgerKeys:
    """Every ledger key shape. One hash tag keeps a ledger in one Redis Cluster slot."""

    namespace: str

    @property
    def prefix(self) -> str:
        return f"{self.namespace}ledger:{BOOKS_SLOT}:"

    def account(self, account_id: str) -> str:
        return f"{self.prefix}account:{account_id}"

    def merchant(self, merchant_id: str) -> str:
        return f"{self.prefix}merchant:{merchant_id}"

    def hold(self, hold_id: str) -> str:
        return f"{self.prefix}hold:{hold_id}"

    def void_marker(self, effect_id: str) -> str:
        return f"{self.prefix}void:{effect_id}"

    def capture(self, capture_id: str) -> str:
        return f"{self.prefix}capture:{capture_id}"

    def index(self, what: Literal["accounts", "merchants", "holds", "captures"]) -> str:
        return f"{self.prefix}{what}"

    @property
    def totals(self) -> str:
        return f"{self.prefix}totals"

    @property
    def captures_per_saga(self) -> str:
        return f"{self.prefix}captures_per_saga"


def _outcome(result: list[Any]) -> str:
    """The value of an ``{'ok', value}`` script answer; ``{'err', reason}`` raises StepRejected."""
    status, value = as_text(result[0]), as_text(result[1])
    if status == "err":
        raise StepRejected(value)
    return value


class Ledger:
    """Operations on the books. Amounts are integer minor units."""

    def __init__(
        self, redis: Redis, namespace: str, *, marker_ttl_s: int = DEFAULT_MARKER_TTL_S
    ) -> None:
        self._redis = redis
        self.keys = LedgerKeys(namespace)
        self._marker_ttl_s = marker_ttl_s
        self._authorize = redis.register_script(scripts.AUTHORIZE)
        self._void = redis.register_script(scripts.VOID)
        self._capture = redis.register_script(scripts.CAPTURE)
        self._seed = redis.register_script(scripts.SEED)

    async def authorize(self, effect_id: str, saga_id: str, account: str, amount: Money) -> str:
        """Move ``amount`` from the account into a hold; returns the hold id.

        A refusal is recorded for the effect id: repeating it gets the same refusal.
        """
        k, hold_id = self.keys, derive_id("hold", effect_id)
        keys = [k.hold(hold_id), k.void_marker(effect_id), k.account(account), k.index("holds")]
        args: list[str | int] = [
            hold_id,
            effect_id,
            saga_id,
            account,
            amount.minor,
            amount.currency,
            self._marker_ttl_s,
        ]
        _outcome(await self._authorize(keys=keys, args=args))
        return hold_id

    async def void(self, forward_effect_id: str) -> bool:
        """Release the hold of ``forward_effect_id``; True only if money went back just now.

        With no hold yet (or a refused one), leave a marker so a late authorize is refused.
        A captured hold is never released.
        """
        k, hold_id = self.keys, derive_id("hold", forward_effect_id)
        while True:
            account = as_text(await self._redis.hget(k.hold(hold_id), "account") or "")
            keys = [k.hold(hold_id), k.void_marker(forward_effect_id), k.account(account)]
            result = as_text(await self._void(keys=keys, args=[account, self._marker_ttl_s]))
            if result != "retry":  # "retry": the hold appeared between our read and the script
                return result == "released"

    async def capture(
        self,
        effect_id: str,
        saga_id: str,
        hold_id: str,
        merchant: str,
        amount: Money,
        attestation_key: str,
    ) -> str:
        """Move a held amount to the merchant; returns the capture id (the same on repeats).

        Checked against the records, not the command: the hold must be this saga's, held,
        of this amount and currency (else ``hold_not_capturable``), and ``attestation_key``
        (PCI's record of the attestation, in the ledger's slot) must be ``issued`` for this
        saga and this merchant (else ``attestation_mismatch``). A refusal is recorded for the
        effect id: repeating it gets the same refusal.
        """
        k, capture_id = self.keys, derive_id("cap", effect_id)
        keys = [
            k.capture(capture_id), k.hold(hold_id), k.merchant(merchant),
            k.index("captures"), k.captures_per_saga, attestation_key,
        ]  # fmt: skip
        args: list[str | int] = [
            capture_id,
            saga_id,
            hold_id,
            merchant,
            amount.minor,
            amount.currency,
            self._marker_ttl_s,
        ]
        _outcome(await self._capture(keys=keys, args=args))
        return capture_id

    async def seed(
        self, accounts: Iterable[AccountSeed], merchants: Iterable[MerchantSeed] = ()
    ) -> None:
        """Open accounts and merchants (existing ones are left alone) and record the totals."""
        k = self.keys
        calls: list[tuple[list[str], list[str | int]]] = []
        for a in accounts:
            keys = [k.account(a.account_id), k.index("accounts"), k.totals]
            calls.append((keys, [a.account_id, a.balance_minor, a.currency, ""]))
        for m in merchants:
            keys = [k.merchant(m.merchant_id), k.index("merchants"), k.totals]
            calls.append((keys, [m.merchant_id, 0, m.currency, "1" if m.open else "0"]))
        await call_many(self._redis, self._seed, calls)

    async def balance(self, account: str) -> int | None:
        """The account's available balance in minor units, None if it does not exist."""
        raw = await self._redis.hget(self.keys.account(account), "balance")
        return None if raw is None else int(raw)

    async def snapshot(self) -> Books:
        """Everything in the books, read in one pipeline (consistent when nothing is moving)."""
        return await _read_books(self._redis, self.keys)

    async def check_books(self, outcomes: Mapping[str, str]) -> BooksReport:
        """Check the invariants against each saga's final status (saga id -> status)."""
        return audit(await self.snapshot(), outcomes)


async def _members(redis: Redis, key: str) -> list[str]:
    return sorted(as_text(m) for m in await redis.smembers(key))


async def _hashes(redis: Redis, keys: list[str]) -> list[dict[str, str]]:
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hgetall(key)
        rows = await pipe.execute()
    return [{as_text(f): as_text(v) for f, v in row.items()} for row in rows]


async def _read_books(redis: Redis, k: LedgerKeys) -> Books:
    accounts = await _members(redis, k.index("accounts"))
    merchants = await _members(redis, k.index("merchants"))
    holds = await _members(redis, k.index("holds"))
    captures = await _members(redis, k.index("captures"))
    rows = await _hashes(
        redis,
        [k.account(a) for a in accounts] + [k.merchant(m) for m in merchants]
        + [k.hold(h) for h in holds] + [k.capture(c) for c in captures]
        + [k.totals, k.captures_per_saga],
    )  # fmt: skip
    it = iter(rows)
    return Books.model_validate({
        "accounts": {a: next(it) for a in accounts},
        "merchants": {m: next(it) for m in merchants},
        "holds": {h: next(it) for h in holds},
        "captures": {c: next(it) for c in captures},
        "totals": next(it),
        "captures_per_saga": next(it),
    })  # fmt: skip
