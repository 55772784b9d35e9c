"""Payment participants that break docs/protocol.md on purpose: `baton conformance` must say
which rule each one breaks.

Each plays the participant ``payment`` (authorize, void) with the SDK's worker and breaks one
rule, through its inbox or its handlers; everything else (signatures, dead letters, expiry)
stays the SDK's, so only the checks about that rule may fail:

* ``runs_duplicates_twice``: an inbox that remembers nothing (no outcome, no lease, no
  tombstone) and a handler that makes up a new hold id each run, so every repeat of an
  effect id gets a different reply;
* ``ignores_tombstones``: the real inbox's memory, but a compensation leaves no tombstone, so
  a forward command arriving after its compensation runs;
* ``wrong_reply_schema``: replies ``payments.payment_authorized.v1`` with a body that lacks
  its ``hold_id``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from itertools import count
from typing import ClassVar
from uuid import uuid4

from redis.asyncio import Redis

from baton_sdk import Claim, ClaimStatus, Handler, Handlers, Inbox, MessageContext, Worker
from baton_sdk.memory_inbox import MemoryInbox
from contracts.base import Reply
from messaging.settings import ParticipantSettings
from messaging.transport.amqp import Broker
from messaging.trust.signing import Keyring
from participants.payments.contracts import (
    AuthorizationVoided,
    AuthorizePayment,
    PaymentAuthorized,
    VoidAuthorization,
)
from participants.payments.ledger import derive_id

STOP_S = 15.0


class ForgetfulInbox:
    """Grants every claim at once and stores nothing: no outcome, lease or tombstone."""

    def __init__(self) -> None:
        self._tokens = count(1)

    async def claim(self, effect_id: str, *, compensates: str = "", lease_s: float) -> Claim:
        subject = compensates or effect_id
        token = str(next(self._tokens))
        return Claim(ClaimStatus.GRANTED, effect_id, subject, compensates, token=token)

    async def renew(self, claim: Claim, *, lease_s: float) -> bool:
        return True

    async def record(self, claim: Claim, outcome: Reply, *, bury: bool = False) -> Reply:
        return outcome

    async def release(self, claim: Claim) -> None:
        return None

    async def stored(self, effect_id: str) -> Reply | None:
        return None


class TombstoneBlindInbox(MemoryInbox):
    """The in-memory inbox, except that a compensation's success buries nothing."""

    async def record(self, claim: Claim, outcome: Reply, *, bury: bool = False) -> Reply:
        return await super().record(claim, outcome, bury=False)


class MisshapenAuthorized(Reply):
    """Claims to be ``payments.payment_authorized.v1``; its body has no ``hold_id``."""

    KIND: ClassVar[str] = PaymentAuthorized.KIND
    hold: str


async def new_hold_each_run(cmd: AuthorizePayment, ctx: MessageContext) -> PaymentAuthorized:
    return PaymentAuthorized(hold_id=f"hold_{uuid4().hex}")


async def hold_of_the_effect(cmd: AuthorizePayment, ctx: MessageContext) -> PaymentAuthorized:
    return PaymentAuthorized(hold_id=derive_id("hold", ctx.effect_id))


async def misshapen(cmd: AuthorizePayment, ctx: MessageContext) -> MisshapenAuthorized:
    return MisshapenAuthorized(hold=derive_id("hold", ctx.effect_id))


async def void(cmd: VoidAuthorization, ctx: MessageContext) -> AuthorizationVoided:
    return AuthorizationVoided(released=False)


def payment_handlers(authorize: Handler) -> Callable[[], Handlers]:
    def build() -> Handlers:
        handlers = Handlers()
        handlers.register(AuthorizePayment, authorize)
        handlers.register(VoidAuthorization, void)
        return handlers

    return build


@dataclass(frozen=True)
class Broken:
    """A broken participant, and the conformance checks it must fail (and no other)."""

    handlers: Callable[[], Handlers]
    inbox: Callable[[], Inbox]
    fails: frozenset[str]


BROKEN: dict[str, Broken] = {
    "runs_duplicates_twice": Broken(
        payment_handlers(new_hold_each_run), ForgetfulInbox,
        frozenset({"duplicate", "concurrent_duplicates", "stale_attempt", "tombstone"}),
    ),
    "ignores_tombstones": Broken(
        payment_handlers(hold_of_the_effect), TombstoneBlindInbox, frozenset({"tombstone"})
    ),
    "wrong_reply_schema": Broken(
        payment_handlers(misshapen), MemoryInbox, frozenset({"reply_schema"})
    ),
}  # fmt: skip


@asynccontextmanager
async def running(
    broken: Broken, broker: Broker, redis: Redis, namespace: str, keyring: Keyring
) -> AsyncIterator[None]:
    """``broken`` serving the ``payment`` command queue until the block ends."""
    stop = asyncio.Event()
    worker = Worker(
        "payment", broken.handlers(), broker, redis, namespace, ParticipantSettings(),
        keyring=keyring, rng=random.Random(7), inbox=broken.inbox(),
    )  # fmt: skip
    task = asyncio.create_task(worker.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, STOP_S)
