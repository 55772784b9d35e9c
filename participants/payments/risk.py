"""Participant "risk": scores a payment and refuses it above a threshold.

The rules, deterministic and in major units of the payment's currency (a real service
would convert currencies; this one keeps one exposure window per account and currency):

* a blocklisted account scores 100;
* otherwise score = amount points + exposure points, capped at 100, where
  amount points are 10 below 100, 30 below 1,000, 50 below 5,000, else 70; and
  exposure (the account's spend in the last hour, this payment included) points are
  0 below 2,000, 20 below 10,000, else 40;
* a score above the threshold (default 80) is refused with ``risk_too_high``.

So one payment of 5,000 or more on an account that already spent 2,000 within the hour
is refused, as is one of 1,000-4,999 once hourly spend reaches 10,000.
``ReleaseRiskExposure`` takes the saga's payment back out of the window. Both are
idempotent by effect id; a release that runs first makes the late assessment refuse. A
refusal is recorded under the effect id too, so a repeat never scores again: one outcome per
effect id even when two deliveries of it race (the first one stored stands).
The window is read before the atomic commit, so two payments of one account assessed at
the same instant may each miss the other: exposure is advisory, never money.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from baton_sdk import Handlers, MessageContext, handles
from contracts.money import CURRENCY_EXPONENTS, Money
from messaging.errors import StepRejected
from messaging.text import as_text
from participants.payments import scripts
from participants.payments.contracts import (
    AssessRisk,
    ReleaseRiskExposure,
    RiskAssessed,
    RiskExposureReleased,
    payment_contracts,
)

Bands = tuple[tuple[int, int], ...]  # (upper bound in major units, exclusive; points)


@dataclass(frozen=True, slots=True)
class RiskRules:
    """The scoring rules; see the module docstring."""

    threshold: int = 80
    window_s: float = 3600.0
    amount_bands: Bands = ((100, 10), (1_000, 30), (5_000, 50))
    amount_top: int = 70
    exposure_bands: Bands = ((2_000, 0), (10_000, 20))
    exposure_top: int = 40


def points(major: float, bands: Bands, top: int) -> int:
    """The points of the first band ``major`` falls below, else ``top``."""
    return next((p for bound, p in bands if major < bound), top)


def score(amount: Money, exposure_minor: int, *, blocked: bool, rules: RiskRules) -> int:
    """The risk score (0-100) of a payment, given the account's spend so far in the window."""
    if blocked:
        return 100
    unit = 10 ** CURRENCY_EXPONENTS[amount.currency]
    by_amount = points(amount.minor / unit, rules.amount_bands, rules.amount_top)
    spent = (exposure_minor + amount.minor) / unit
    return min(100, by_amount + points(spent, rules.exposure_bands, rules.exposure_top))


def judge(value: int, rules: RiskRules) -> None:
    """Refuse a score above the threshold."""
    if value > rules.threshold:
        raise StepRejected("risk_too_high", f"score {value} > {rules.threshold}")


RISK_SLOT = "{risk}"  # the hash tag of every risk key


@dataclass(frozen=True, slots=True)
class RiskKeys:
    """Every risk key carries one hash tag, ``{risk}``: the commit and release scripts touch an
    assessment and an account's exposure together, which a Redis Cluster allows only within
    one slot. One slot is one primary's work; a bigger deployment would tag by account and
    carry the account on the release command (docs/operations.md)."""

    namespace: str

    def assessment(self, effect_id: str) -> str:
        return f"{self.namespace}risk:{RISK_SLOT}:assessment:{effect_id}"

    def exposure(self, account: str, currency: str) -> str:
        return f"{self.namespace}risk:{RISK_SLOT}:exposure:{account}:{currency}"

    @property
    def blocklist(self) -> str:
        return f"{self.namespace}risk:{RISK_SLOT}:blocklist"


def _previous(status: str, stored: list[Any]) -> list[Any]:
    """A stored assessment as the scripts answer it."""
    score_, reason, detail = stored
    if status == "assessed":
        return ["ok", score_]
    if status == "refused":
        return ["err", reason or "", detail or ""]
    return ["err", "cancelled", ""]  # released before it was assessed


def _answer(result: list[Any]) -> int:
    """The score of an ``{'ok', score}`` answer; ``{'err', reason, detail}`` raises."""
    if as_text(result[0]) == "err":
        raise StepRejected(as_text(result[1]), as_text(result[2]))
    return int(result[1])


class RiskService:
    """Scores payments against the rules and an exposure window kept in Redis."""

    def __init__(
        self,
        redis: Redis,
        namespace: str,
        rules: RiskRules | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self.keys = RiskKeys(namespace)
        self.rules = rules or RiskRules()
        self._clock = clock
        self._commit = redis.register_script(scripts.COMMIT_RISK)
        self._refuse = redis.register_script(scripts.REFUSE_RISK)
        self._release = redis.register_script(scripts.RELEASE_RISK)

    @handles(AssessRisk)
    async def assess(self, cmd: AssessRisk, ctx: MessageContext) -> RiskAssessed:
        key = self.keys.assessment(ctx.effect_id)
        status, *stored = await self._redis.hmget(key, ["status", "score", "reason", "detail"])
        if status is not None:  # answered before (or released first): never re-score
            return RiskAssessed(score=_answer(_previous(as_text(status), stored)))
        exposure_key = self.keys.exposure(cmd.account_id, cmd.amount.currency)
        now = self._clock()
        blocked = bool(await self._redis.sismember(self.keys.blocklist, cmd.account_id))
        value = score(cmd.amount, await self._spent(exposure_key, now), blocked=blocked,
                      rules=self.rules)  # fmt: skip
        try:
            judge(value, self.rules)
        except StepRejected as exc:  # recorded, unless a racing assessment answered first
            result = await self._refuse(keys=[key], args=[exc.reason, exc.detail])
        else:
            member = f"{cmd.amount.minor}:{ctx.effect_id}"
            args: list[str | float] = [value, member, now, now - self.rules.window_s]
            result = await self._commit(keys=[key, exposure_key], args=args)
        return RiskAssessed(score=_answer(result))

    async def _spent(self, exposure_key: str, now: float) -> int:
        """The account's spend inside the window, in minor units."""
        since = now - self.rules.window_s
        members = await self._redis.zrangebyscore(exposure_key, since, "+inf")
        return sum(int(as_text(m).split(":", 1)[0]) for m in members if isinstance(m, bytes | str))

    @handles(ReleaseRiskExposure)
    async def release(self, cmd: ReleaseRiskExposure, ctx: MessageContext) -> RiskExposureReleased:
        key = self.keys.assessment(ctx.compensates)
        while True:
            exposure_key = await self._redis.hget(key, "exposure")
            keys = [key, as_text(exposure_key) if exposure_key else key]
            result = as_text(await self._release(keys=keys))
            if result != "retry":  # "retry": the assessment landed between our read and script
                return RiskExposureReleased(released=result == "released")

    async def block(self, account: str) -> None:
        """Put an account on the blocklist: it scores 100 from now on."""
        await self._redis.sadd(self.keys.blocklist, account)

    async def spent(self, account: str, currency: str) -> int:
        """The account's current exposure in minor units (for tests and operators)."""
        return await self._spent(self.keys.exposure(account, currency), self._clock())


def risk_handlers(redis: Redis, namespace: str) -> Handlers:
    return Handlers.of(RiskService(redis, namespace), contracts=payment_contracts())
