"""A demo world seeded so a generator can make payments that fail at each step on purpose.

Which input fails where (the saga runs authorize -> risk -> pci -> capture):

==========================  ===================  ========================
input                       failing step         reason
==========================  ===================  ========================
``poor_account``            authorize_payment    ``insufficient_funds``
``blocked_account``         assess_risk          ``risk_too_high``
``revoked_token``           check_compliance     ``invalid_card_token``
``non_compliant_merchant``  check_compliance     ``merchant_not_compliant``
``closed_merchant``         capture_transaction  ``merchant_closed``
==========================  ===================  ========================

Everything else (``accounts`` x ``merchants`` x ``tokens``) succeeds while balances last.
"""

from __future__ import annotations

from typing import Literal
from uuid import uuid4

from pydantic import BaseModel
from redis.asyncio import Redis

from contracts.money import Money
from participants.payments.contracts import StartTransaction
from participants.payments.ledger import AccountSeed, Ledger, MerchantSeed
from participants.payments.pci import COMPLIANT, PciService
from participants.payments.risk import RiskService

FailAt = Literal["authorize", "risk", "pci", "pci_merchant", "capture"]


class DemoWorld(BaseModel):
    """The ids seeded by ``seed_demo_world``; see the module docstring for what fails where."""

    run_id: str
    currency: str
    accounts: list[str]
    merchants: list[str]
    tokens: list[str]
    poor_account: str
    blocked_account: str
    revoked_token: str
    non_compliant_merchant: str
    closed_merchant: str

    def transaction(
        self, n: int, *, fails_at: FailAt | None = None, amount_minor: int = 1_000
    ) -> StartTransaction:
        """The n-th demo payment; ``fails_at`` picks the step it is built to fail at."""
        account = self.accounts[n % len(self.accounts)]
        merchant = self.merchants[n % len(self.merchants)]
        token = self.tokens[n % len(self.tokens)]
        match fails_at:
            case "authorize":
                account = self.poor_account
            case "risk":
                account = self.blocked_account
            case "pci":
                token = self.revoked_token
            case "pci_merchant":
                merchant = self.non_compliant_merchant
            case "capture":
                merchant = self.closed_merchant
        return StartTransaction(
            idempotency_key=f"demo-{self.run_id}-{n}",
            account_id=account,
            merchant_id=merchant,
            amount=Money(minor=amount_minor, currency=self.currency),
            card_token=token,
            description=f"demo payment {n}" + (f" (fails at {fails_at})" if fails_at else ""),
        )


def _world(run_id: str, accounts: int, merchants: int, currency: str) -> DemoWorld:
    return DemoWorld(
        run_id=run_id,
        currency=currency,
        accounts=[f"acct-{i:05d}" for i in range(accounts)],
        merchants=[f"merch-{i:03d}" for i in range(merchants)],
        tokens=[f"tok_demo{i:08d}" for i in range(max(accounts, 1))],
        poor_account="acct-poor",
        blocked_account="acct-blocked",
        revoked_token="tok_revoked0000",
        non_compliant_merchant="merch-noncompliant",
        closed_merchant="merch-closed",
    )


async def seed_demo_world(
    redis: Redis,
    namespace: str,
    *,
    accounts: int,
    balance_minor: int,
    currency: str = "EUR",
    merchants: int = 4,
) -> DemoWorld:
    """Seed ledger, PCI statuses, revoked token and blocklist (idempotently); describe them."""
    world = _world(uuid4().hex[:8], accounts, merchants, currency)
    good = [AccountSeed(account_id=a, balance_minor=balance_minor, currency=currency)
            for a in [*world.accounts, world.blocked_account]]  # fmt: skip
    poor = AccountSeed(account_id=world.poor_account, balance_minor=1, currency=currency)
    open_ = [*world.merchants, world.non_compliant_merchant]
    await Ledger(redis, namespace).seed(
        [*good, poor],
        [MerchantSeed(merchant_id=m, currency=currency) for m in open_]
        + [MerchantSeed(merchant_id=world.closed_merchant, currency=currency, open=False)],
    )
    pci = PciService(redis, namespace)
    for merchant in [*world.merchants, world.closed_merchant]:
        await pci.set_merchant_status(merchant, COMPLIANT)
    await pci.set_merchant_status(world.non_compliant_merchant, "expired")
    await pci.revoke_token(world.revoked_token)
    await RiskService(redis, namespace).block(world.blocked_account)
    return world
