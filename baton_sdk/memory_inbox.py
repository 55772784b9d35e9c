"""The in-memory twin of the inbox port, for unit tests and simulations.

Every method runs without awaiting anything, so each is atomic on the event loop exactly
as a Lua script is atomic on Redis. Time comes from an injectable clock, so a simulation
on virtual time sees leases and outcomes expire when its clock says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from baton_sdk.inbox import CANCELLED, Claim, ClaimStatus, subject_of
from contracts.base import Reply

DEFAULT_TTL_S = 30 * 24 * 3600


class MemoryInbox:
    """The ``Inbox`` port in dictionaries; passes the same contract tests as ``RedisInbox``."""

    def __init__(
        self, *, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._outcomes: dict[str, tuple[Reply, float]] = {}  # effect id -> (outcome, expiry)
        self._tombstones: dict[str, float] = {}  # forward effect id -> expiry
        self._leases: dict[str, tuple[str, float]] = {}  # subject -> (token, expiry)
        self._fence = 0

    def _live(self, expires_at: float) -> bool:
        return expires_at > self._clock()

    def _outcome(self, effect_id: str) -> Reply | None:
        found = self._outcomes.get(effect_id)
        return found[0] if found and self._live(found[1]) else None

    def _holder(self, subject: str) -> tuple[str, float] | None:
        lease = self._leases.get(subject)
        return lease if lease and self._live(lease[1]) else None

    async def claim(self, effect_id: str, *, compensates: str = "", lease_s: float) -> Claim:
        subject, now = subject_of(effect_id, compensates), self._clock()
        found = Claim(ClaimStatus.GRANTED, effect_id, subject, compensates)
        if (stored := self._outcome(effect_id)) is not None:
            return replace(found, status=ClaimStatus.OUTCOME, outcome=stored)
        if not compensates and self._live(self._tombstones.get(effect_id, 0.0)):
            self._outcomes[effect_id] = (CANCELLED, now + self._ttl_s)
            return replace(found, status=ClaimStatus.CANCELLED, outcome=CANCELLED)
        if (holder := self._holder(subject)) is not None:
            return replace(found, status=ClaimStatus.BUSY, retry_after_s=holder[1] - now)
        self._fence += 1
        self._leases[subject] = (str(self._fence), now + lease_s)
        return replace(found, token=str(self._fence))

    async def renew(self, claim: Claim, *, lease_s: float) -> bool:
        holder = self._holder(claim.subject)
        if holder is None or holder[0] != claim.token:
            return False
        self._leases[claim.subject] = (claim.token, self._clock() + lease_s)
        return True

    async def record(self, claim: Claim, outcome: Reply, *, bury: bool = False) -> Reply:
        expires_at = self._clock() + self._ttl_s
        stored = self._outcome(claim.effect_id)
        if stored is None:
            self._outcomes[claim.effect_id] = (outcome, expires_at)
        if bury and claim.compensates:
            self._tombstones[claim.compensates] = expires_at
        await self.release(claim)
        return outcome if stored is None else stored

    async def release(self, claim: Claim) -> None:
        holder = self._holder(claim.subject)
        if holder is not None and holder[0] == claim.token:
            del self._leases[claim.subject]

    async def stored(self, effect_id: str) -> Reply | None:
        return self._outcome(effect_id)
