"""The payment services' data by hand: accounts, merchants and PCI standings, checked.

The four payment services are a simulation over a real ledger in Redis; an operator (or a
README example) needs accounts and merchants to pay with. Everything goes through the
services' own code: the ledger's seeding script (which records the money it opens in the
books' totals, so the books stay balanced), ``PciService`` and ``seed_demo_world``. What is
added here is the operator's contract: inputs checked against the contracts, seeding
idempotent, and never money made silently: an existing account is never changed, and a seed
asking for another balance than it holds is a conflict (or, asked for, left as it is).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Protocol

from pydantic import TypeAdapter, ValidationError
from redis.asyncio import Redis

from contracts.money import CURRENCY_EXPONENTS, MAX_MINOR_UNITS
from contracts.pan import contains_pan
from messaging.text import as_text
from participants.payments.books import Books
from participants.payments.contracts import AccountId, MerchantId
from participants.payments.demo import seed_demo_world
from participants.payments.ledger import AccountSeed, Ledger, MerchantSeed
from participants.payments.pci import COMPLIANT, PciService

Outcome = Literal["created", "exists", "kept", "conflict"]
PCI_STATUSES = (COMPLIANT, "expired", "suspended", "pending")  # only "compliant" passes a check
DEMO_ACCOUNTS = 20  # as many as `baton demo` seeds for its default stream
DEMO_BALANCE_MINOR = 10**9  # the balance `baton demo` gives each account
DEMO_CURRENCY = "EUR"

_ACCOUNT = TypeAdapter(AccountId)
_MERCHANT = TypeAdapter(MerchantId)


class BadInput(ValueError):
    """An operator's input the contracts refuse: one line, naming the option, not a secret."""


def _no_card_number(what: str, value: str) -> str:
    """Refuse an id holding a card number: it would be stored and echoed back."""
    if contains_pan(value, anywhere=True):
        raise BadInput(f"{what} contains a card number (12-19 digits passing Luhn)")
    return value


def account_id(value: str) -> str:
    """``value`` if it is an account id the payment contracts accept."""
    try:
        valid = _ACCOUNT.validate_python(value)
    except ValidationError:
        raise BadInput("account id must be 1-64 letters, digits, '_' or '-'") from None
    return _no_card_number("account id", valid)


def merchant_id(value: str) -> str:
    """``value`` if it is a merchant id the payment contracts accept."""
    try:
        valid = _MERCHANT.validate_python(value)
    except ValidationError:
        raise BadInput("merchant id must be 1-64 letters, digits, '_' or '-'") from None
    return _no_card_number("merchant id", valid)


def currency(value: str) -> str:
    """``value`` if it is one of the ISO-4217 codes Baton knows (contracts/money.py)."""
    if value not in CURRENCY_EXPONENTS:
        raise BadInput(
            f"unknown currency {value!r}: one of {', '.join(sorted(CURRENCY_EXPONENTS))}"
        )
    return value


def minor_units(amount: str, code: str) -> int:
    """``amount`` ("100.00") in the currency's minor units: > 0, at most its exponent's
    decimals (no rounding: 0.001 EUR is refused, not made 0), within the contracts' bound."""
    exponent = CURRENCY_EXPONENTS[currency(code)]
    try:
        value = Decimal(amount.strip())
    except InvalidOperation:
        raise BadInput(f"amount {amount!r} is not a decimal number") from None
    if not value.is_finite() or value <= 0:
        raise BadInput("amount must be a number greater than 0")
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise BadInput(f"{code} has {exponent} decimal places: {amount!r} has more")
    if minor > MAX_MINOR_UNITS:
        raise BadInput(f"amount must be at most {MAX_MINOR_UNITS} minor units")
    return int(minor)


def pci_status(value: str) -> str:
    if value not in PCI_STATUSES:
        raise BadInput(f"PCI status must be one of {', '.join(PCI_STATUSES)}")
    return value


def shown(minor: int, code: str) -> str:
    """Minor units as the operator types them: 10000 EUR -> "100.00"."""
    exponent = CURRENCY_EXPONENTS.get(code, 0)
    return f"{Decimal(minor).scaleb(-exponent):.{exponent}f}"


@dataclass(frozen=True)
class Seeded:
    """What one seed did. ``conflict``: it exists with other values and was not touched."""

    kind: str
    id: str
    outcome: Outcome
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome != "conflict"

    def row(self) -> dict[str, str]:
        return asdict(self)


async def _hash(redis: Redis, key: str) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in (await redis.hgetall(key)).items()}


def _judged(
    kind: str,
    id_: str,
    found: dict[str, str],
    wanted: dict[str, str],
    keep_existing: bool,
    *,
    existed: bool,
) -> Seeded:
    """Compare what a record holds with what the seed asked for."""
    different = {k: (found.get(k), v) for k, v in wanted.items() if found.get(k) != v}
    if not different:
        return Seeded(kind, id_, "exists" if existed else "created")
    detail = "; ".join(f"{k} is {have}, asked {want}" for k, (have, want) in different.items())
    return Seeded(kind, id_, "kept" if keep_existing else "conflict", detail)


async def seed_account(
    redis: Redis, namespace: str, id_: str, minor: int, code: str, *, keep_existing: bool = False
) -> Seeded:
    """Open an account through the ledger's funding path (its totals record the money).

    An existing account is never changed: the same balance and currency is ``exists``; other
    values are a ``conflict`` (``kept`` with ``keep_existing``): topping it up would make money.
    """
    ledger = Ledger(redis, namespace)
    key = ledger.keys.account(id_)
    before = await _hash(redis, key)
    if not before:
        await ledger.seed([AccountSeed(account_id=id_, balance_minor=minor, currency=code)])
    after = await _hash(redis, key)  # a racing seed of another balance shows up here
    found = {
        "balance": shown(int(after.get("balance", 0)), code),
        "currency": after.get("currency", ""),
    }
    wanted = {"balance": shown(minor, code), "currency": code}
    return _judged("account", id_, found, wanted, keep_existing, existed=bool(before))


async def seed_merchant(
    redis: Redis,
    namespace: str,
    id_: str,
    code: str,
    *,
    open_: bool = True,
    keep_existing: bool = False,
) -> Seeded:
    """Open a merchant with nothing captured yet (a merchant is never seeded with money)."""
    ledger = Ledger(redis, namespace)
    key = ledger.keys.merchant(id_)
    before = await _hash(redis, key)
    if not before:
        await ledger.seed([], [MerchantSeed(merchant_id=id_, currency=code, open=open_)])
    after = await _hash(redis, key)
    wanted = {"currency": code, "open": "1" if open_ else "0"}
    return _judged("merchant", id_, after, wanted, keep_existing, existed=bool(before))


async def seed_pci(
    redis: Redis, namespace: str, id_: str, status: str, *, keep_existing: bool = False
) -> Seeded:
    """Record a merchant's PCI standing, what the pci participant checks; set only if absent
    (SET NX), so a standing another seed or operator recorded is never overwritten."""
    pci = PciService(redis, namespace)
    key = pci.keys.merchant(id_)
    created = await redis.set(key, status, nx=True)
    found = as_text(await redis.get(key)) or ""
    return _judged(
        "pci", id_, {"status": found}, {"status": status}, keep_existing, existed=not created
    )


async def seed_demo(redis: Redis, namespace: str, *, keep_existing: bool = False) -> list[Seeded]:
    """The world ``baton demo`` seeds (accounts, merchants, PCI standings, the revoked token,
    the blocklist), by the demo's own code; existing accounts and merchants are left alone
    and reported as conflicts if they hold other values."""
    ledger = Ledger(redis, namespace)
    before = await ledger.snapshot()
    world = await seed_demo_world(
        redis,
        namespace,
        accounts=DEMO_ACCOUNTS,
        balance_minor=DEMO_BALANCE_MINOR,
        currency=DEMO_CURRENCY,
    )
    after = await ledger.snapshot()
    results = []
    for id_ in [*world.accounts, world.blocked_account, world.poor_account]:
        minor = 1 if id_ == world.poor_account else DEMO_BALANCE_MINOR
        found = after.accounts[id_]
        results.append(
            _judged(
                "account",
                id_,
                {"balance": shown(found.balance, DEMO_CURRENCY), "currency": found.currency},
                {"balance": shown(minor, DEMO_CURRENCY), "currency": DEMO_CURRENCY},
                keep_existing,
                existed=id_ in before.accounts,
            )
        )
    for id_ in [*world.merchants, world.non_compliant_merchant, world.closed_merchant]:
        found = after.merchants[id_]
        wanted = {"currency": DEMO_CURRENCY, "open": "0" if id_ == world.closed_merchant else "1"}
        results.append(
            _judged(
                "merchant",
                id_,
                {"currency": found.currency, "open": found.open},
                wanted,
                keep_existing,
                existed=id_ in before.merchants,
            )
        )
    return results


class Row(Protocol):
    """A record ``baton ... list --json`` prints: one JSON object per record."""

    def row(self) -> dict[str, Any]: ...


@dataclass
class AccountView:
    """An account as ``baton accounts`` shows it: available and held money."""

    id: str
    currency: str
    balance: str
    held: str
    holds: list[dict[str, str]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return asdict(self)


def _account(books: Books, id_: str) -> AccountView:
    record = books.accounts[id_]
    holds = [h for h in books.holds.values() if h.account == id_ and h.status == "held"]
    return AccountView(
        id_,
        record.currency,
        shown(record.balance, record.currency),
        shown(sum(h.amount for h in holds), record.currency),
        [
            {
                "hold_id": h.hold_id,
                "saga_id": h.saga_id,
                "amount": shown(h.amount, h.currency),
                "currency": h.currency,
            }
            for h in sorted(holds, key=lambda h: h.hold_id)
        ],
    )


async def accounts(redis: Redis, namespace: str) -> list[AccountView]:
    books = await Ledger(redis, namespace).snapshot()
    return [_account(books, a) for a in sorted(books.accounts)]


async def account(redis: Redis, namespace: str, id_: str) -> AccountView | None:
    books = await Ledger(redis, namespace).snapshot()
    return _account(books, id_) if id_ in books.accounts else None


@dataclass
class MerchantView:
    """A merchant: what was captured for it, whether it takes captures, its PCI standing."""

    id: str
    currency: str
    captured: str
    open: bool
    pci: str | None
    captures: list[dict[str, str]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return asdict(self)


async def merchants(
    redis: Redis, namespace: str, *, with_captures: bool = False, only: str | None = None
) -> list[MerchantView]:
    books = await Ledger(redis, namespace).snapshot()
    pci = PciService(redis, namespace)
    ids = [m for m in sorted(books.merchants) if only is None or m == only]
    views = []
    for id_ in ids:
        record = books.merchants[id_]
        captures = (
            [c for c in books.captures.values() if c.merchant == id_] if with_captures else []
        )
        views.append(
            MerchantView(
                id_,
                record.currency,
                shown(record.balance, record.currency),
                record.open == "1",
                as_text(await redis.get(pci.keys.merchant(id_))),
                [
                    {
                        "capture_id": c.capture_id,
                        "saga_id": c.saga_id,
                        "amount": shown(c.amount, c.currency),
                        "currency": c.currency,
                    }
                    for c in sorted(captures, key=lambda c: c.capture_id)
                ],
            )
        )
    return views


@dataclass
class PciView:
    """PCI data: merchants' standings, and how many card tokens are revoked (their hashes
    only are stored; no token is ever shown)."""

    merchants: dict[str, str]
    revoked_tokens: int

    def row(self) -> dict[str, Any]:
        return asdict(self)


def escaped(prefix: str) -> str:
    """``prefix`` as a literal for a Redis MATCH pattern (``* ? [ ] \\`` escaped)."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix)


async def pci_data(redis: Redis, namespace: str) -> PciView:
    keys = PciService(redis, namespace).keys
    prefix = keys.merchant("")
    found: dict[str, str] = {}
    async for key in redis.scan_iter(match=escaped(prefix) + "*", count=1000):
        name = as_text(key)
        if name.startswith(prefix):
            found[name.removeprefix(prefix)] = as_text(await redis.get(name)) or ""
    return PciView(dict(sorted(found.items())), int(await redis.scard(keys.revoked_tokens)))
