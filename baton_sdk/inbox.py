"""The inbox port: one final outcome per effect id, and one delivery at a time per subject.

A *claim* answers, atomically, what a delivery may do with its effect id (protocol §3):
answer a stored ``outcome`` again, answer ``cancelled`` (a forward effect whose compensation
already ran), wait because another delivery is ``busy`` with the same subject, or go ahead
(``granted``, with a fencing token). The lease is held on the *subject*: the effect id of a
forward command, the ``compensates`` id of a compensation, so an undo never runs alongside
the command it undoes. ``record`` stores the outcome (the first one stored wins) and ends
the lease in one step. ``held`` wraps all of it for the worker: wait while busy, renew the
lease while the handler runs, release it if nothing was recorded.

Implementations: ``RedisInbox`` (Lua scripts) and ``MemoryInbox`` (tests, simulations);
both pass ``tests/unit/test_inbox_contract.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import structlog

from contracts.base import Reply, StepFailed

log = structlog.get_logger(__name__)

CANCELLED = StepFailed(reason="cancelled", retriable=False)  # a forward effect undone first
FIRST_POLL_S = 0.05  # a busy subject is polled after 50 ms, doubling ...
MAX_POLL_S = 1.0  # ... up to once a second
# A handler is stopped this far into a lease it could not renew: the rest is the margin for
# the renewal's round trip and clock drift before Redis could grant the lease to another.
LEASE_SAFE_SHARE = 0.8


class ClaimStatus(StrEnum):
    """What a delivery may do with its effect id."""

    GRANTED = "granted"
    OUTCOME = "outcome"
    CANCELLED = "cancelled"
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class Claim:
    """One claim's answer, and what ``record``/``renew``/``release`` need to act on it."""

    status: ClaimStatus
    effect_id: str
    subject: str
    compensates: str = ""
    outcome: Reply | None = None  # OUTCOME and CANCELLED: the stored final outcome
    token: str = ""  # GRANTED: the fencing token that holds the lease
    retry_after_s: float = 0.0  # BUSY: how long the current holder's lease still runs

    @property
    def busy(self) -> bool:
        return self.status is ClaimStatus.BUSY


def subject_of(effect_id: str, compensates: str) -> str:
    """The id a lease is held on: a compensation shares its forward command's."""
    return compensates or effect_id


class Inbox(Protocol):
    """A participant's memory of final outcomes, tombstones and leases."""

    async def claim(self, effect_id: str, *, compensates: str = "", lease_s: float) -> Claim:
        """Answer one of outcome / cancelled / busy / granted, atomically (one round trip).

        ``cancelled`` also stores the refusal, so it is this effect id's final outcome.
        """
        ...

    async def renew(self, claim: Claim, *, lease_s: float) -> bool:
        """Extend a granted lease; False when the token no longer holds it."""
        ...

    async def record(self, claim: Claim, outcome: Reply, *, bury: bool = False) -> Reply:
        """Store ``outcome`` unless one is stored already, and end the lease if still ours.

        Returns the outcome that stays (the stored one wins). ``bury`` also leaves the
        tombstone of ``claim.compensates`` (a compensation that ran).
        """
        ...

    async def release(self, claim: Claim) -> None:
        """End the lease without recording anything, if the token still holds it."""
        ...

    async def stored(self, effect_id: str) -> Reply | None:
        """The final outcome stored for ``effect_id``, if any (a read, no lease)."""
        ...


class Held:
    """A claim as the worker holds it; ``record`` ends the lease."""

    def __init__(self, inbox: Inbox, claim: Claim) -> None:
        self.claim = claim
        self.recorded = False
        self._inbox = inbox

    @property
    def outcome(self) -> Reply | None:
        return self.claim.outcome

    @property
    def busy(self) -> bool:
        return self.claim.busy

    async def record(self, outcome: Reply, *, bury: bool = False) -> Reply:
        """Store the final outcome with the lease's release; returns the one that stays."""
        stored = await self._inbox.record(self.claim, outcome, bury=bury)
        self.recorded = True
        return stored


async def claim_waiting(
    inbox: Inbox, effect_id: str, *, compensates: str = "", lease_s: float
) -> tuple[Claim, float]:
    """Claim, polling with backoff while another delivery is busy; give up after ~lease_s.

    Also returns when (loop time) the last claim was sent: a granted lease runs at least
    ``lease_s`` from then, whatever the round trip took."""
    waited, pause = 0.0, FIRST_POLL_S
    loop = asyncio.get_running_loop()
    while True:
        sent = loop.time()
        claim = await inbox.claim(effect_id, compensates=compensates, lease_s=lease_s)
        if not claim.busy or waited >= lease_s:
            return claim, sent
        nap = min(pause, max(claim.retry_after_s, 0.001))  # no later than the lease expires
        await asyncio.sleep(nap)  # waiting for the other delivery, holding ours
        waited, pause = waited + nap, min(pause * 2, MAX_POLL_S)


async def _heartbeat(
    inbox: Inbox, claim: Claim, lease_s: float, handler_deadline: asyncio.Timeout
) -> None:
    """Renew the lease every lease_s/3 so a slow handler keeps it, and move the handler's
    own deadline along with each renewal that got through. When renewals fail (the store is
    away) the deadline is not moved, so the handler is stopped before the lease can expire
    in Redis and another delivery be granted beside it; a lost lease stops it at once."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(lease_s / 3)
        sent = loop.time()
        try:
            renewed = await inbox.renew(claim, lease_s=lease_s)
        except Exception:  # Redis hiccup: the next beat may get through before expiry
            log.warning("lease_renew_failed", subject=claim.subject, exc_info=True)
            continue
        if not renewed:
            log.warning("lease_lost", subject=claim.subject)
            handler_deadline.reschedule(loop.time())
            return
        handler_deadline.reschedule(sent + lease_s * LEASE_SAFE_SHARE)


@asynccontextmanager
async def held(
    inbox: Inbox, effect_id: str, *, compensates: str = "", lease_s: float
) -> AsyncIterator[Held]:
    """Claim ``effect_id`` (waiting while busy) and hold it for the block.

    A granted lease is renewed while the block runs and released on the way out unless
    ``record`` ended it. Errors of the claim itself propagate (infrastructure).
    """
    claim, sent = await claim_waiting(inbox, effect_id, compensates=compensates, lease_s=lease_s)
    holding = Held(inbox, claim)
    if claim.status is not ClaimStatus.GRANTED:
        yield holding
        return
    # The block may run only while the lease surely holds: TimeoutError (an infrastructure
    # error: the command is redelivered) once renewals stop getting through.
    async with asyncio.timeout_at(sent + lease_s * LEASE_SAFE_SHARE) as handler_deadline:
        beat = asyncio.create_task(_heartbeat(inbox, claim, lease_s, handler_deadline))
        try:
            yield holding
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)  # our own cancellation raises
            if not holding.recorded:
                with suppress(Exception):  # unreleased, the lease simply expires
                    await inbox.release(claim)
