"""The checks on answers: reply shape, one outcome per effect id, stale attempts, tombstones.

One function per check, each on saga ids of its own, so a failure in one tells nothing to
another. Only the wire is observed (the participant may be in any language): an effect that
ran twice shows as two different replies to one effect id; one that ran once, as the same
reply again, stamped with each command's attempt (docs/protocol.md, "Duplicates").
"""

from __future__ import annotations

import asyncio
from collections import Counter

from baton.conformance.kit import Kit, distinct, same
from baton.conformance.report import CheckFailed, CheckSkipped
from contracts.base import StepFailed


async def reply_schema(kit: Kit) -> None:
    """A command, then its compensation: each answered once, with a success reply of the
    contract the sample names, signed by the participant, echoing the command's envelope."""
    saga = kit.new_saga()
    steps = [(kit.subject.command, kit.forward(saga))]
    if kit.subject.compensation is not None:
        steps.append((kit.subject.compensation, kit.compensation(saga)))
    problems: list[str] = []
    for n, (sample, pos) in enumerate(steps, start=1):
        sent = await kit.send(sample, pos)
        heard = (await kit.driver.replies(saga, n, f"{pos.phase} command {sample.kind}"))[-1]
        kit.success(heard, sample, f"the {pos.phase} command")
        problems += [f"{pos.phase}: {p}" for p in kit.problems(heard, sent)]
    if problems:
        raise CheckFailed("; ".join(problems))


async def duplicate(kit: Kit) -> None:
    """The same command published twice, then retried with the next attempt: three
    identical replies (the stored outcome), stamped with attempts 1, 1 and 2."""
    pos = kit.forward(kit.new_saga())
    first = await kit.send(kit.subject.command, pos, attempt=1)
    await kit.driver.replies(pos.saga_id, 1, "the command")
    await kit.driver.publish(first)  # an outbox re-publish: the very same message
    await kit.send(kit.subject.command, pos, attempt=2)  # a retry after a lost reply
    replies = await kit.driver.replies(pos.saga_id, 3, "the duplicated command")
    if not same(replies):
        raise CheckFailed(
            f"one effect id got different replies (it ran again): {distinct(kit, replies)}"
        )
    attempts = sorted(r.attempt for r in replies)
    if attempts != [1, 1, 2]:
        raise CheckFailed(f"replies carry attempts {attempts}, the commands' were [1, 1, 2]")


async def concurrent_duplicates(kit: Kit) -> None:
    """N copies of one command (attempts 1..N) published at once: exactly N replies, one
    body (the handler ran once), each attempt answered once."""
    n, pos = kit.copies, kit.forward(kit.new_saga())
    wires = [await kit.command(kit.subject.command, pos, attempt=a) for a in range(1, n + 1)]
    await asyncio.gather(*(kit.driver.publish(w) for w in wires))
    await kit.driver.replies(pos.saga_id, n, f"{n} concurrent copies")
    await kit.barrier()
    replies = kit.driver.heard(pos.saga_id)
    if len(replies) != n:
        raise CheckFailed(f"{n} copies got {len(replies)} replies")
    if not same(replies):
        raise CheckFailed(f"{n} concurrent copies ran more than once: {distinct(kit, replies)}")
    if {r.header("x-baton-effect-id") for r in replies} != {pos.effect_id}:
        raise CheckFailed("the replies name different effect ids")
    counts = Counter(r.attempt for r in replies)
    if sorted(counts.elements()) != list(range(1, n + 1)):
        raise CheckFailed(f"replies carry attempts {sorted(counts.elements())}, not 1..{n}")


async def stale_attempt(kit: Kit) -> None:
    """Attempt 3, then a stale attempt 1 of the same effect: the stored outcome again,
    stamped with attempt 1 (a repeat is answered, never run)."""
    pos = kit.forward(kit.new_saga())
    await kit.send(kit.subject.command, pos, attempt=3)
    newer = (await kit.driver.replies(pos.saga_id, 1, "attempt 3"))[0]
    await kit.send(kit.subject.command, pos, attempt=1)
    replies = await kit.driver.replies(pos.saga_id, 2, "the stale attempt 1")
    if not same(replies):
        raise CheckFailed(f"the stale attempt got a different reply: {distinct(kit, replies)}")
    if (newer.attempt, replies[1].attempt) != (3, 1):
        attempts = (newer.attempt, replies[1].attempt)
        raise CheckFailed(f"replies carry attempts {attempts}, the commands' were (3, 1)")


async def tombstone(kit: Kit) -> None:
    """The compensation first (nothing to undo: it succeeds), then the late command it
    undoes: refused StepFailed("cancelled", retriable=false), and so on every repeat."""
    compensation = kit.subject.compensation
    if compensation is None:
        raise CheckSkipped("the samples have no compensation")
    saga = kit.new_saga()
    undo = await kit.round_trip(compensation, kit.compensation(saga), "the early compensation")
    kit.success(undo, compensation, "the compensation sent before its command")
    for attempt in (1, 2):
        await kit.send(kit.subject.command, kit.forward(saga), attempt=attempt)
        late = (await kit.driver.replies(saga, 1 + attempt, "the late command"))[-1]
        body = late.body() if late.wire.kind == StepFailed.KIND else None
        if not isinstance(body, dict) or body.get("reason") != "cancelled":
            raise CheckFailed(
                f"the command after its compensation (attempt {attempt}) was not refused "
                f"as cancelled: {kit.describe(late)}"
            )
        if body.get("retriable", False) is not False:
            raise CheckFailed("the cancelled refusal is retriable: it must be final")
