"""The inbox port's contract, run against the in-memory twin, the real Redis inbox and the
SQLite example (examples/sqlite_inbox)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from baton_sdk import Claim, ClaimStatus, Inbox, InboxKeys, MemoryInbox, RedisInbox, held
from contracts.base import StepFailed
from examples.sqlite_inbox import SqliteInbox
from participants.payments.contracts import (
    AuthorizationVoided,
    PaymentAuthorized,
    payment_contracts,
)

LEASE_S = 5.0
TTL_S = 3600
FORWARD, UNDO = "e-forward", "e-undo"
HELD = PaymentAuthorized(hold_id="hold_1")
VOIDED = AuthorizationVoided(released=True)


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.integration)])
def inbox(request: pytest.FixtureRequest, namespace: str) -> Iterator[Inbox]:
    if request.param == "memory":
        yield MemoryInbox(ttl_s=TTL_S)
    elif request.param == "sqlite":  # the example of an inbox in the participant's own database
        tmp_path: Path = request.getfixturevalue("tmp_path")
        sqlite = SqliteInbox(tmp_path / "inbox.db", ttl_s=TTL_S, contracts=payment_contracts())
        yield sqlite
        sqlite.close()
    else:
        client: aioredis.Redis = request.getfixturevalue("redis_client")  # cleans up namespace
        yield RedisInbox(client, namespace, "payment", ttl_s=TTL_S, contracts=payment_contracts())


async def claimed_when_free(inbox: Inbox, effect_id: str, timeout_s: float = 5.0) -> Claim:
    """Poll until the effect's lease is granted again (the holder's lease expired)."""
    async with asyncio.timeout(timeout_s):
        while True:
            claim = await inbox.claim(effect_id, lease_s=LEASE_S)
            if not claim.busy:
                assert claim.status is ClaimStatus.GRANTED
                return claim
            await asyncio.sleep(0.02)  # polling the lease's expiry (Redis has no event for it)


async def test_a_claim_is_granted_once_until_the_lease_ends(inbox: Inbox) -> None:
    first = await inbox.claim(FORWARD, lease_s=LEASE_S)
    assert first.status is ClaimStatus.GRANTED
    assert first.token
    second = await inbox.claim(FORWARD, lease_s=LEASE_S)
    assert second.busy
    assert 0 < second.retry_after_s <= LEASE_S
    await inbox.release(first)
    third = await inbox.claim(FORWARD, lease_s=LEASE_S)
    assert third.status is ClaimStatus.GRANTED
    assert int(third.token) > int(first.token)  # fencing tokens only grow


async def test_record_stores_the_outcome_and_ends_the_lease(inbox: Inbox) -> None:
    claim = await inbox.claim(FORWARD, lease_s=LEASE_S)
    assert await inbox.stored(FORWARD) is None
    assert await inbox.record(claim, HELD) == HELD
    assert await inbox.stored(FORWARD) == HELD
    again = await inbox.claim(FORWARD, lease_s=LEASE_S)
    assert again.status is ClaimStatus.OUTCOME
    assert again.outcome == HELD
    undo = await inbox.claim(UNDO, compensates=FORWARD, lease_s=LEASE_S)
    assert undo.status is ClaimStatus.GRANTED  # the subject's lease was released


async def test_the_first_outcome_recorded_wins(inbox: Inbox) -> None:
    slow = await inbox.claim(FORWARD, lease_s=0.2)
    taken = await claimed_when_free(inbox, FORWARD)  # the slow delivery's lease expired
    assert int(taken.token) > int(slow.token)
    refused = StepFailed(reason="insufficient_funds")
    assert await inbox.record(taken, refused) == refused
    assert await inbox.record(slow, HELD) == refused  # the stale holder's outcome loses
    assert await inbox.stored(FORWARD) == refused


async def test_a_stale_token_neither_renews_nor_releases_the_new_holders_lease(
    inbox: Inbox,
) -> None:
    stale = await inbox.claim(FORWARD, lease_s=0.2)
    await claimed_when_free(inbox, FORWARD)
    assert not await inbox.renew(stale, lease_s=LEASE_S)
    await inbox.release(stale)
    await inbox.record(stale, HELD)  # the outcome is stored, the lease stays the new holder's
    assert await inbox.stored(FORWARD) == HELD
    assert (await inbox.claim(UNDO, compensates=FORWARD, lease_s=LEASE_S)).busy


async def test_renew_keeps_a_lease_past_its_first_expiry(inbox: Inbox) -> None:
    claim = await inbox.claim(FORWARD, lease_s=0.5)
    for _ in range(8):
        await asyncio.sleep(0.1)  # renewing on a beat, as the heartbeat does
        assert await inbox.renew(claim, lease_s=0.5)
    assert (await inbox.claim(FORWARD, lease_s=LEASE_S)).busy


async def test_a_compensation_waits_for_its_forward_command(inbox: Inbox) -> None:
    forward = await inbox.claim(FORWARD, lease_s=LEASE_S)
    undo = await inbox.claim(UNDO, compensates=FORWARD, lease_s=LEASE_S)
    assert undo.busy
    await inbox.record(forward, HELD)
    undo = await inbox.claim(UNDO, compensates=FORWARD, lease_s=LEASE_S)
    assert undo.status is ClaimStatus.GRANTED
    assert undo.subject == FORWARD
    assert (await inbox.claim(FORWARD, lease_s=LEASE_S)).status is ClaimStatus.OUTCOME


async def test_a_forward_command_after_its_compensation_is_cancelled_for_good(
    inbox: Inbox,
) -> None:
    undo = await inbox.claim(UNDO, compensates=FORWARD, lease_s=LEASE_S)
    late = await inbox.claim(FORWARD, lease_s=LEASE_S)
    assert late.busy  # the compensation holds the forward effect's subject
    assert await inbox.record(undo, VOIDED, bury=True) == VOIDED
    late = await inbox.claim(FORWARD, lease_s=LEASE_S)
    assert late.status is ClaimStatus.CANCELLED
    assert late.outcome == StepFailed(reason="cancelled", retriable=False)
    assert await inbox.stored(FORWARD) == late.outcome  # recorded: the final outcome
    again = await inbox.claim(FORWARD, lease_s=LEASE_S)
    assert again.status is ClaimStatus.OUTCOME
    assert again.outcome == late.outcome


async def test_a_refused_compensation_leaves_no_tombstone(inbox: Inbox) -> None:
    undo = await inbox.claim(UNDO, compensates=FORWARD, lease_s=LEASE_S)
    await inbox.record(undo, StepFailed(reason="not_now"))
    assert (await inbox.claim(FORWARD, lease_s=LEASE_S)).status is ClaimStatus.GRANTED


async def test_held_releases_the_lease_when_nothing_was_recorded(inbox: Inbox) -> None:
    async with held(inbox, FORWARD, lease_s=LEASE_S) as first:
        assert first.claim.status is ClaimStatus.GRANTED
        assert (await inbox.claim(FORWARD, lease_s=LEASE_S)).busy
    async with held(inbox, FORWARD, lease_s=LEASE_S) as second:
        assert second.claim.status is ClaimStatus.GRANTED
        assert await second.record(HELD) == HELD
    async with held(inbox, FORWARD, lease_s=LEASE_S) as third:
        assert third.outcome == HELD


async def test_held_waits_while_busy_and_gives_up_after_the_lease_time(inbox: Inbox) -> None:
    await inbox.claim(FORWARD, lease_s=LEASE_S)
    async with held(inbox, FORWARD, lease_s=0.3) as waited:
        assert waited.busy
    holder = await inbox.claim(UNDO, compensates="another", lease_s=LEASE_S)

    async def finish_soon() -> None:
        await asyncio.sleep(0.1)
        await inbox.record(holder, VOIDED, bury=True)

    finishing = asyncio.create_task(finish_soon())
    async with held(inbox, "another", lease_s=LEASE_S) as late:
        assert late.claim.status is ClaimStatus.CANCELLED
    await finishing


@pytest.mark.integration
async def test_redis_keys_share_one_slot_and_expire(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    inbox = RedisInbox(
        redis_client, namespace, "payment", ttl_s=TTL_S, contracts=payment_contracts()
    )
    undo = await inbox.claim(UNDO, compensates=FORWARD, lease_s=LEASE_S)
    await inbox.record(undo, VOIDED, bury=True)
    keys = InboxKeys(namespace, "payment")
    names = [keys.outcome(UNDO), keys.tombstone(FORWARD), keys.lease(FORWARD), keys.fence]
    assert len({key_slot(name.encode()) for name in names}) == 1
    assert all(name.startswith(namespace) for name in names)
    for name in (keys.outcome(UNDO), keys.tombstone(FORWARD)):
        assert 0 < await redis_client.ttl(name) <= TTL_S
    with pytest.raises(ValueError, match="braces"):
        InboxKeys(namespace, "pay{ment}")
