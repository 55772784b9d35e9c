"""The checks on commands a participant must not run: malformed, forged, expired.

Malformed and forged commands are copied to the participant's dead-letter queue with an
``x-baton-reason`` and ``x-baton-source-queue`` and never answered; an expired one is
dropped unanswered, and the same effect id sent again fresh is then handled
(docs/protocol.md, "What a participant does with each command", steps 1 and 2).
"""

from __future__ import annotations

import json
import time

from baton.conformance import schemas
from baton.conformance.kit import Kit, Position, without_signature
from baton.conformance.report import CheckFailed
from contracts import envelope as env
from messaging.transport.codec import Wire
from messaging.trust.signing import KeySet, SigningKey, binary32_up

EXPIRED_S = 3600.0  # how far in the past an expired command's deadline lies


def _code(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


async def _dead_lettered(kit: Kit, wire: Wire, what: str, code: str = "") -> None:
    """Publish ``wire``; it must come back as a dead letter with its reason (``code`` when
    the protocol names one) and source queue, and get no reply."""
    await kit.driver.publish(wire)
    dead = await kit.driver.dead_letter(wire.message_id or "", what)
    reason = str(dead.header(env.H_REASON) or "")
    source = dead.header(env.H_SOURCE_QUEUE)
    if not reason:
        raise CheckFailed(f"{what} was dead-lettered without {env.H_REASON}")
    if code and _code(reason) != code:
        raise CheckFailed(f"{what} was dead-lettered as {reason!r}, not {code!r}")
    if source != kit.driver.command_queue:
        raise CheckFailed(f"{what}: {env.H_SOURCE_QUEUE} is {source!r}")
    await kit.barrier()
    answered = kit.driver.heard(wire.correlation_id or "")
    if answered:
        raise CheckFailed(f"{what} was answered: {kit.describe(answered[0])}")


async def _valid(kit: Kit) -> tuple[Position, bytes]:
    """A fresh forward position and the sample's body for it."""
    pos = kit.forward(kit.new_saga())
    body = await kit.body(kit.subject.command, pos.saga_id)
    return pos, json.dumps(body).encode()


async def malformed_json(kit: Kit) -> None:
    """A signed command whose body is not JSON."""
    pos, _ = await _valid(kit)
    wire = kit.wire(kit.subject.command.kind, pos, b'{"not json')
    await _dead_lettered(kit, kit.keyring.sign(wire), "a body that is not JSON")


async def missing_effect_id(kit: Kit) -> None:
    """A signed command without x-baton-effect-id: ``missing_effect_id``."""
    pos, body = await _valid(kit)
    wire = kit.wire(kit.subject.command.kind, pos, body, headers={env.H_EFFECT_ID: None})
    await _dead_lettered(kit, kit.keyring.sign(wire), f"a command without {env.H_EFFECT_ID}",
                         "missing_effect_id")  # fmt: skip


async def invalid_body(kit: Kit) -> None:
    """A signed command whose JSON body its contract refuses."""
    pos, good = await _valid(kit)
    sample = kit.subject.command
    bad = schemas.invalid_body(kit.registry, sample, json.loads(good))
    wire = kit.wire(sample.kind, pos, bad)
    await _dead_lettered(kit, kit.keyring.sign(wire), f"a body {sample.kind} does not accept")


async def unsigned(kit: Kit) -> None:
    """A well-formed command without any signature header: ``unsigned``."""
    pos, _ = await _valid(kit)
    wire = without_signature(await kit.command(kit.subject.command, pos))
    await _dead_lettered(kit, wire, "an unsigned command", "unsigned")


async def unknown_key(kit: Kit) -> None:
    """A command signed as the orchestrator with a key nobody trusts: ``unknown_key``."""
    pos, _ = await _valid(kit)
    stranger = KeySet([SigningKey.generate("orchestrator", "conformance-stranger")])
    wire = stranger.keyring("orchestrator").sign(
        without_signature(await kit.command(kit.subject.command, pos))
    )
    await _dead_lettered(kit, wire, "a command signed with an unknown key", "unknown_key")


async def bad_signature(kit: Kit) -> None:
    """A signed command whose body changed after signing: ``bad_signature``."""
    pos, _ = await _valid(kit)
    signed = await kit.command(kit.subject.command, pos)
    tampered = Wire(
        signed.body + b" ", signed.kind, signed.message_id, signed.correlation_id,
        headers=signed.headers,
    )  # fmt: skip
    await _dead_lettered(kit, tampered, "a command altered after signing", "bad_signature")


async def expired(kit: Kit) -> None:
    """A command past its x-baton-deadline is dropped unanswered; the same effect id sent
    again with a live deadline (the engine's next attempt) is then handled."""
    sample, pos = kit.subject.command, kit.forward(kit.new_saga())
    await kit.send(sample, pos, attempt=1, deadline=binary32_up(time.time() - EXPIRED_S))
    await kit.barrier()
    early = kit.driver.heard(pos.saga_id)
    if early:
        raise CheckFailed(f"the expired command was answered: {kit.describe(early[0])}")
    await kit.send(sample, pos, attempt=2)
    fresh = (await kit.driver.replies(pos.saga_id, 1, "the next attempt after expiry"))[0]
    kit.success(fresh, sample, "the next attempt after an expired one")
    if fresh.attempt != 2:
        raise CheckFailed(f"the next attempt's reply carries attempt {fresh.attempt!r}, not 2")
    await kit.barrier()
    for late in kit.driver.heard(pos.saga_id)[1:]:  # a repeat of the stored outcome is harmless
        if late.body() != fresh.body() or late.wire.kind != fresh.wire.kind:
            raise CheckFailed(f"the expired command ran after all: {kit.describe(late)}")
