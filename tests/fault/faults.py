"""The faults a scenario injects, each an ``async (run) -> None`` task running beside the stream.

Periodic faults repeat while payments are still being published (so they land while
sagas are in flight); an outage holds one process down for a stretch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from uuid import uuid4

from contracts.base import StepFailed
from contracts.envelope import Envelope
from messaging.transport.codec import MAX_BODY_BYTES, Wire, encode
from participants.payments.contracts import PaymentAuthorized
from tests.fault.harness import PARTICIPANTS, Fault, FaultRun
from tests.fault.services import RabbitNode, RedisServer
from tests.support.sagas import payment_definition

Action = Callable[[FaultRun], Awaitable[None]]


def every(interval_s: float, action: Action, *, limit: int = 10**6, first_s: float = 1.0) -> Fault:
    """Run ``action`` about every ``interval_s`` (jittered) while the stream lasts."""

    async def fault(run: FaultRun) -> None:
        await asyncio.sleep(first_s)
        done = 0
        while run.publishing and done < limit:
            await action(run)
            done += 1
            await asyncio.sleep(interval_s * run.rng.uniform(0.5, 1.5))

    return fault


def once(after_s: float, action: Action) -> Fault:
    async def fault(run: FaultRun) -> None:
        await asyncio.sleep(after_s)
        await action(run)

    return fault


def _node(run: FaultRun) -> RabbitNode:
    """The run's one RabbitMQ node (these faults are the single-node suite's)."""
    assert isinstance(run.rabbit, RabbitNode)
    return run.rabbit


def _server(run: FaultRun) -> RedisServer:
    assert isinstance(run.redis_server, RedisServer)
    return run.redis_server


async def kill_orchestrator(run: FaultRun) -> None:
    run.kill(run.rng.choice(run.orchestrators), "orchestrator_kill")


async def kill_participant(run: FaultRun) -> None:
    run.kill(run.rng.choice(PARTICIPANTS), "participant_kill")


async def close_connections(run: FaultRun) -> None:
    async with run.infra:
        run.outage_at = time.monotonic()
        await asyncio.to_thread(_node(run).close_all_connections)
    run.faults["rabbit_connections_closed"] += 1


async def restart_rabbit(run: FaultRun) -> None:
    async with run.infra:
        run.outage_at = time.monotonic() + 15  # the restart itself takes a while
        await asyncio.to_thread(_node(run).restart)
        run.outage_at = time.monotonic()
    run.faults["rabbit_restart"] += 1


async def restart_redis(run: FaultRun) -> None:
    async with run.infra:
        run.outage_at = time.monotonic()
        await asyncio.to_thread(_server(run).restart)
    run.faults["redis_restart"] += 1


def outage(name: str, *, after_s: float, down_s: float) -> Fault:
    """Hold ``name`` down for ``down_s``: its sagas wait, time out, retry, or hit the deadline."""

    async def fault(run: FaultRun) -> None:
        await asyncio.sleep(after_s)
        run.held_down.add(name)
        run.group.kill(name)
        run.faults["participant_outage"] += 1
        await asyncio.sleep(down_s)
        run.held_down.discard(name)  # the supervisor starts it again

    return fault


# -- messages ---------------------------------------------------------------------------------


def _wire(kind: str | None, body: bytes, headers: dict[str, object], **props: object) -> Wire:
    return Wire(
        body=body,
        kind=kind,
        message_id=f"malformed-{uuid4().hex}",
        correlation_id=props.pop("correlation_id", None),  # type: ignore[arg-type]
        content_type=props.pop("content_type", "application/json"),  # type: ignore[arg-type]
        headers=headers,
    )


def _money(minor: object, currency: str) -> dict[str, object]:
    return {"minor": minor, "currency": currency}


# The command each participant handles, a valid body for it, and whether it carries money.
COMMANDS: dict[str, tuple[str, dict[str, object]]] = {
    "payment": ("payments.authorize_payment.v1",
                {"account_id": "acct-00001", "amount": _money(100, "EUR")}),
    "risk": ("payments.assess_risk.v1", {"account_id": "acct-00001",
             "merchant_id": "merch-000", "amount": _money(100, "EUR")}),
    "pci": ("payments.check_compliance.v1",
            {"card_token": "tok_demo00000001", "merchant_id": "merch-000"}),
    "transaction": ("payments.capture_transaction.v1", {"hold_id": "hold_x",
                    "merchant_id": "merch-000", "amount": _money(100, "EUR"),
                    "attestation_id": "att_x"}),
}  # fmt: skip


def _bad_money(body: dict[str, object]) -> list[tuple[str, dict[str, object]]]:
    if "amount" not in body:
        return []
    return [
        ("invalid_money", {**body, "amount": _money("12.50", "EUR")}),
        ("negative_amount", {**body, "amount": _money(-100, "EUR")}),
        ("unknown_currency", {**body, "amount": _money(100, "XXX")}),
    ]


def malformed(kind: str, body: dict[str, object], headers: dict[str, object]) -> list[Wire]:
    """Every way one message can be broken, built from a valid kind, body and headers."""
    raw = encode_body(body)
    wires = [
        _wire(kind, b"{not json", headers),
        _wire(kind, b'{"unexpected": true}', headers),  # wrong schema
        _wire("payments.no_such_message.v1", raw, headers),  # unknown type
        _wire(None, raw, {}),  # missing headers and type
        _wire(kind, b'{"pad": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}', headers),  # huge body
        _wire(kind, raw, headers, content_type="text/plain"),
    ]
    wires += [_wire(kind, encode_body(bad), headers) for _, bad in _bad_money(body)]
    return wires


def encode_body(body: dict[str, object]) -> bytes:
    import json

    return json.dumps(body).encode()


def _command_headers(step: str) -> dict[str, object]:
    envelope = Envelope(kind="-", saga_id=str(uuid4()), step=step, effect_id=uuid4().hex, attempt=1)
    return dict(envelope.headers())


async def inject_malformed(run: FaultRun) -> None:
    """Every malformed variant on every queue: start, replies and each command queue.

    Each is sent twice: signed by its genuine sender, so that the checks behind the
    signature (decoding, schema, money) are what refuse it, and unsigned."""
    t = run.topology

    async def both(queue: str, wire: Wire, signer: str) -> None:
        await run.inject(queue, run.keys.keyring(signer).sign(wire), "malformed")
        unsigned = replace(wire, message_id=f"malformed-{uuid4().hex}")  # a message of its own
        await run.inject(queue, unsigned, "malformed")

    start = run.world.transaction(0).model_dump(mode="json") if run.world else {}
    start["idempotency_key"] = f"malformed-{uuid4().hex}"
    for wire in malformed("payments.start_transaction.v1", start, {}):
        await both(t.start_queue, wire, "cli")
    reply_headers = _command_headers("authorize_payment")
    for wire in malformed("payments.payment_authorized.v1", {"hold_id": "h"}, reply_headers):
        await both(t.replies_queue, wire, "payment")
    for participant, (kind, body) in COMMANDS.items():
        for wire in malformed(kind, body, _command_headers(participant)):
            await both(t.command_queue(participant), wire, "orchestrator")
        # a well-formed command without an effect id cannot be deduplicated: refused
        headers = {k: v for k, v in _command_headers(participant).items() if "effect" not in k}
        await both(t.command_queue(participant), _wire(kind, encode_body(body), headers),
                   "orchestrator")  # fmt: skip


async def unknown_saga_reply(run: FaultRun) -> None:
    """A well-formed reply for a saga nobody started: dead-lettered as ``unknown_saga``."""
    envelope = Envelope(
        kind=PaymentAuthorized.KIND, saga_id=str(uuid4()), step="authorize_payment",
        effect_id=uuid4().hex, attempt=1,
    )  # fmt: skip
    wire = encode(envelope, PaymentAuthorized(hold_id="hold_unknown"))
    signed = run.keys.keyring("payment").sign(wire)  # genuine: judged for its saga, not its key
    await run.inject(run.topology.replies_queue, signed, "unknown_saga_reply")


async def stale_replies(run: FaultRun) -> None:
    """Refusals stamped with a wrong attempt for live sagas: they must change nothing.

    Were one accepted, a payment built to succeed would be compensated, which the
    scenario's outcome check catches.
    """
    t = run.topology
    for state in await run.sagas_in_flight():
        waiting = state.waiting[0] if state.waiting else None
        if waiting is None:
            continue
        # older than current, or far beyond any retry: stale now and whatever happens next
        attempt = run.rng.choice([0, waiting.attempt - 1, waiting.attempt + 1000])
        envelope = Envelope(
            kind=StepFailed.KIND, saga_id=state.saga_id, saga=state.saga, step=waiting.step,
            phase=waiting.phase, effect_id=uuid4().hex, attempt=attempt,
        )  # fmt: skip
        body = StepFailed(reason="stale_injected", retriable=False)
        sender = payment_definition().step(waiting.step).participant  # signed as it: stale
        await run.publish(run.keys.keyring(sender).sign(encode(envelope, body)), t.replies_queue)
        run.faults["stale_reply"] += 1
