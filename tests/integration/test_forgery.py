"""Forged replies and injected commands move no money (issue 11, replayed).

Each forgery of the issue is replayed against an in-process orchestrator and the four real
payment participants, while the saga it targets waits for the step it forges: a forged PCI
approval, a forged "captured" reply, a capture command injected to move the saga's held money
to another merchant, and a forged refusal. Each comes unsigned, signed with a key nobody
trusts, signed by the wrong service, or tampered with after it was signed. None changes the
saga (its state and history) or the ledger; each lands in the dead-letter queue with its
reason; and the saga then ends as the real participants decide.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import redis.asyncio as aioredis

from baton import deadletters
from contracts.base import Contract, StepFailed
from contracts.envelope import Envelope
from contracts.money import Money
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.transport.codec import Wire, encode
from messaging.trust.signing import Keyring, KeySet, SigningKey
from orchestrator.core.engine import effect_id
from orchestrator.core.state import SagaState, SagaStatus
from participants.payments import DemoWorld, Ledger, run_participant, seed_demo_world
from participants.payments import contracts as p
from participants.payments.books import Books
from tests.integration.harness import (
    Baton,
    ScriptedParticipant,
    eventually,
    fast_payment,
    running_baton,
)
from tests.support.sagas import catalog as catalog_of

pytestmark = pytest.mark.integration

PARTICIPANTS = ("payment", "risk", "pci", "transaction")
STEP = {"payment": "authorize_payment", "risk": "assess_risk", "pci": "check_compliance",
        "transaction": "capture_transaction"}  # fmt: skip


@dataclass
class System:
    """The orchestrator and the real participants; each participant can be held down."""

    baton: Baton
    world: DemoWorld
    ledger: Ledger
    keys: KeySet
    settings: Settings
    running: dict[str, tuple[asyncio.Event, asyncio.Task[None]]] = field(default_factory=dict)

    def start(self, name: str) -> None:
        stop = asyncio.Event()
        work = run_participant(name, self.settings, stop, keyring=self.keys.keyring(name))
        self.running[name] = (stop, asyncio.create_task(work))

    async def stop_all(self) -> None:
        for stop, _ in self.running.values():
            stop.set()
        await asyncio.gather(*(task for _, task in self.running.values()))

    @property
    def topology(self) -> Any:
        return self.baton.broker.topology

    async def waiting_at(self, saga_id: str, step: str) -> SagaState:
        """The saga once it has sent ``step``'s command and waits for the answer."""

        async def sent() -> SagaState | None:
            state = await self.baton.store.load(saga_id)
            waiting = next((w for w in state.waiting if w.step == step), None) if state else None
            return state if waiting and waiting.sent else None

        return await eventually(sent, what=f"{saga_id} waiting at {step}")

    async def untouched(self, saga_id: str) -> tuple[SagaState, list[dict[str, str]], Books]:
        """What a forgery must not change: the saga's state and history, and the ledger."""
        state = await self.baton.state(saga_id)
        return state, await self.baton.store.history(saga_id), await self.ledger.snapshot()

    async def dead_letter_reasons(self, queue: str, count: int) -> dict[str, str]:
        """message id -> reason of the ``count`` messages ``queue``'s dead letters hold."""
        dead = self.topology.dead_letter_queue(queue)

        async def all_there() -> bool:
            return await self.baton.broker.queue_depth(dead) >= count

        await eventually(all_there, what=f"{count} dead letters in {dead}")
        letters = await deadletters.peek(self.baton.broker, dead, count + 10)
        return {letter.message_id: letter.reason for letter in letters}


@asynccontextmanager
async def system_without(
    held_down: str, broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> AsyncIterator[System]:
    """Everything running but ``held_down``, whose commands wait in its queue."""
    world = await seed_demo_world(redis_client, settings.namespace, accounts=4,
                                  balance_minor=10**6)  # fmt: skip
    catalog = catalog_of(fast_payment(timeout_s=60.0, deadline_s=300.0))  # no retry meanwhile
    async with running_baton(broker, redis_client, settings, catalog, keys=keys) as baton:
        system = System(baton, world, Ledger(redis_client, settings.namespace), keys, settings)
        for name in PARTICIPANTS:
            if name != held_down:
                system.start(name)
        try:
            yield system
        finally:
            await system.stop_all()


# -- forgeries ---------------------------------------------------------------------------------


def forged(wire: Wire, case: str, signer: Keyring | None) -> Wire:
    """``wire`` under the message id ``forged-<case>``, signed by ``signer`` (or not at all)."""
    named = replace(wire, message_id=f"forged-{case}")
    return signer.sign(named) if signer else named


def impostor(keys: KeySet, signer: str, *, same_key_id: bool) -> Keyring:
    """A key nobody trusts, presented as ``signer``'s (under its real key id, or a new one)."""
    key_id = keys.keys[signer].key_id if same_key_id else "forged-1"
    return KeySet([SigningKey.generate(signer, key_id)]).keyring(signer)


def tampered(genuine: Wire, body: Contract) -> Wire:
    """A genuinely signed message whose type and body were swapped for ``body`` afterwards."""
    return replace(genuine, kind=body.KIND, body=body.model_dump_json().encode())


def forged_replies(keys: KeySet, sender: str, envelope: Envelope, body: Contract,
                   genuine: Contract) -> dict[str, tuple[Wire, str]]:  # fmt: skip
    """case -> (the forged reply, the dead-letter reason it must get)."""
    wire = encode(envelope.model_copy(update={"kind": body.KIND}), body)
    other = next(name for name in PARTICIPANTS if name != sender)
    intercepted = keys.keyring(sender).sign(
        forged(encode(envelope.model_copy(update={"kind": genuine.KIND}), genuine), "tampered",
               None)
    )  # fmt: skip
    return {
        "unsigned": (forged(wire, "unsigned", None), "unsigned"),
        "stranger": (forged(wire, "stranger", impostor(keys, sender, same_key_id=True)),
                     "bad_signature"),
        "unknown-key": (forged(wire, "unknown-key", impostor(keys, sender, same_key_id=False)),
                        "unknown_key"),
        "other-participant": (forged(wire, "other-participant", keys.keyring(other)),
                              "wrong_sender"),
        "upstream": (forged(wire, "upstream", keys.keyring("cli")), "wrong_sender"),
        "tampered": (tampered(intercepted, body), "bad_signature"),
    }  # fmt: skip


async def replay_forged_replies(
    system: System, saga_id: str, sender: str, body: Contract, genuine: Contract
) -> None:
    """Publish every forgery of ``sender``'s answer to the step the saga waits at; check that
    each is dead-lettered with its reason and that nothing changed."""
    step = STEP[sender]
    state = await system.waiting_at(saga_id, step)
    assert len(state.waiting) == 1
    envelope = Envelope(
        kind=body.KIND, saga_id=saga_id, saga="payment", step=step, phase="forward",
        effect_id=effect_id(saga_id, step, "forward"), attempt=state.waiting[0].attempt,
    )  # fmt: skip
    before = await system.untouched(saga_id)
    cases = forged_replies(system.keys, sender, envelope, body, genuine)
    t = system.topology
    for wire, _ in cases.values():
        await system.baton.broker.publish(
            wire, exchange=t.replies_exchange, routing_key=t.replies_queue
        )
    reasons = await system.dead_letter_reasons(t.replies_queue, len(cases))
    for case, (_, reason) in cases.items():
        assert reasons[f"forged-{case}"].startswith(reason), (case, reasons)
    assert await system.untouched(saga_id) == before, "a forged reply changed something"


# -- the four forgeries of the issue -------------------------------------------------------


async def test_a_forged_pci_approval_does_not_let_a_revoked_card_capture(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> None:
    async with system_without("pci", broker, redis_client, settings, keys) as system:
        start = system.world.transaction(1, fails_at="pci")  # a revoked card
        saga_id = await system.baton.start(start)
        await replay_forged_replies(
            system, saga_id, "pci",
            p.ComplianceApproved(attestation_id="att_000000000000000000000000"),
            StepFailed(reason="invalid_card_token"),
        )  # fmt: skip
        system.start("pci")  # the real PCI answers now
        final = await system.baton.final(saga_id)
    assert (final["event"], final["reason"]) == ("compensated", "invalid_card_token")
    books = await system.ledger.snapshot()
    assert books.captures == {}
    assert all(hold.status == "voided" for hold in books.holds.values())


async def test_a_forged_captured_reply_does_not_tell_the_caller_completed(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> None:
    async with system_without("transaction", broker, redis_client, settings, keys) as system:
        start = system.world.transaction(2, fails_at="capture")  # the merchant is closed
        saga_id = await system.baton.start(start)
        await replay_forged_replies(
            system, saga_id, "transaction", p.TransactionCaptured(capture_id="cap_forged"),
            StepFailed(reason="merchant_closed"),
        )  # fmt: skip
        system.start("transaction")  # the real capture is refused
        final = await system.baton.final(saga_id)
        answers = [a["event"] for a in system.baton.answers if a["saga_id"] == saga_id]
    assert (final["event"], final["reason"]) == ("compensated", "merchant_closed")
    assert "completed" not in answers, "the caller was never told completed"
    books = await system.ledger.snapshot()
    assert books.captures == {}
    assert books.merchants[start.merchant_id].balance == 0


async def test_a_forged_refusal_does_not_cancel_a_good_payment(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> None:
    async with system_without("risk", broker, redis_client, settings, keys) as system:
        start = system.world.transaction(3)
        saga_id = await system.baton.start(start)
        await replay_forged_replies(
            system, saga_id, "risk", StepFailed(reason="risk_too_high"), p.RiskAssessed(score=1)
        )
        system.start("risk")
        final = await system.baton.final(saga_id)
    assert final["event"] == "completed"
    books = await system.ledger.snapshot()
    assert books.captures_per_saga == {saga_id: 1}
    assert books.merchants[start.merchant_id].balance == start.amount.minor


async def test_an_injected_capture_to_another_merchant_moves_nothing(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> None:
    """The transaction participant runs and would execute it: it is refused unread."""
    async with system_without("pci", broker, redis_client, settings, keys) as system:
        start = system.world.transaction(4)
        saga_id = await system.baton.start(start)
        state = await system.waiting_at(saga_id, "check_compliance")
        hold_id = state.steps["authorize_payment"].output["hold_id"]
        thief = next(m for m in system.world.merchants if m != start.merchant_id)
        step = "capture_transaction"
        envelope = Envelope(
            kind=p.CaptureTransaction.KIND, saga_id=saga_id, saga="payment", step=step,
            effect_id=effect_id(saga_id, step, "forward"), attempt=1, deadline=time.time() + 60,
        )  # fmt: skip
        steal = p.CaptureTransaction(hold_id=hold_id, merchant_id=thief, amount=start.amount,
                                     attestation_id="att_000000000000000000000000")  # fmt: skip
        honest = steal.model_copy(update={"merchant_id": start.merchant_id})
        intercepted = keys.keyring("orchestrator").sign(
            forged(encode(envelope, honest), "tampered", None)
        )
        wire = encode(envelope, steal)
        cases = {
            "unsigned": (forged(wire, "unsigned", None), "unsigned"),
            "stranger": (forged(wire, "stranger", impostor(keys, "orchestrator",
                                                           same_key_id=True)), "bad_signature"),
            "unknown-key": (forged(wire, "unknown-key", impostor(keys, "orchestrator",
                                                                 same_key_id=False)),
                            "unknown_key"),
            "participant": (forged(wire, "participant", keys.keyring("payment")),
                            "wrong_sender"),
            "upstream": (forged(wire, "upstream", keys.keyring("cli")), "wrong_sender"),
            "tampered": (tampered(intercepted, steal), "bad_signature"),
        }  # fmt: skip
        before = await system.untouched(saga_id)
        t = system.topology
        for forgery, _ in cases.values():
            await broker.publish(forgery, exchange=t.commands_exchange, routing_key="transaction")
        reasons = await system.dead_letter_reasons(t.command_queue("transaction"), len(cases))
        for case, (_, reason) in cases.items():
            assert reasons[f"forged-{case}"].startswith(reason), (case, reasons)
        assert await system.untouched(saga_id) == before, "an injected command moved something"
        system.start("pci")
        final = await system.baton.final(saga_id)
    assert final["event"] == "completed"
    books = await system.ledger.snapshot()
    assert books.captures_per_saga == {saga_id: 1}
    assert books.merchants[start.merchant_id].balance == start.amount.minor
    assert books.merchants[thief].balance == 0


# -- a reply validly signed, by another participant than the step's -----------------------------


async def test_a_reply_signed_by_another_participant_is_dead_lettered_wrong_sender(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> None:
    async with running_baton(broker, redis_client, settings, keys=keys) as baton:
        payment = await ScriptedParticipant(broker, "payment", keys).start()
        risk = await ScriptedParticipant(broker, "risk", keys).start()
        saga_id = await baton.start(
            p.StartTransaction(
                idempotency_key="wrong-sender", account_id="acct-1", merchant_id="m-1",
                amount=Money(minor=100, currency="EUR"), card_token="tok_abcdef123456",
            )
        )  # fmt: skip
        command = await payment.next()
        before = await baton.state(saga_id)
        await risk.reply(command, p.PaymentAuthorized(hold_id="hold_forged"))  # risk's own key
        t = broker.topology

        async def dead() -> bool:
            return await baton.dead_letters(t.replies_queue) == 1

        await eventually(dead, what="the reply dead-lettered")
        (letter,) = await deadletters.peek(broker, t.dead_letter_queue(t.replies_queue), 5)
        assert letter.reason.startswith("wrong_sender: risk does not run step authorize_payment")
        assert await baton.state(saga_id) == before
        await payment.reply(command, p.PaymentAuthorized(hold_id="hold-1"))  # the real one
        assert (await risk.next()).envelope.saga_id == saga_id  # and the saga moved on
        assert (await baton.state(saga_id)).status is SagaStatus.RUNNING
        assert payment.refused == risk.refused == []  # every command came signed


# -- a signed reply that does not say what it answers ---------------------------------------


@pytest.mark.parametrize("header", ["x-baton-step", "x-baton-phase", "x-baton-attempt"])
async def test_a_reply_missing_a_required_header_is_dead_lettered_not_dropped(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet, header: str
) -> None:
    async with running_baton(broker, redis_client, settings, keys=keys) as baton:
        payment = await ScriptedParticipant(broker, "payment", keys).start()
        saga_id = await baton.start(
            p.StartTransaction(
                idempotency_key=f"no-{header}", account_id="acct-1", merchant_id="m-1",
                amount=Money(minor=100, currency="EUR"), card_token="tok_abcdef123456",
            )
        )  # fmt: skip
        command = await payment.next()
        before = await baton.state(saga_id)
        answer = p.PaymentAuthorized(hold_id="hold-1")
        wire = encode(command.envelope.reply(answer.KIND), answer)
        headers = {k: v for k, v in wire.headers.items() if k != header}
        t = broker.topology
        await broker.publish(  # signed by the right participant: only the header is missing
            payment.keyring.sign(replace(wire, headers=headers)),
            exchange=t.replies_exchange, routing_key=t.replies_queue,
        )  # fmt: skip

        async def dead() -> bool:
            return await baton.dead_letters(t.replies_queue) == 1

        await eventually(dead, what="the reply dead-lettered")
        (letter,) = await deadletters.peek(broker, t.dead_letter_queue(t.replies_queue), 5)
        assert letter.reason == f"missing_header: {header}"
        assert await baton.state(saga_id) == before  # nothing applied, nothing dropped silently
        await payment.reply(command, answer)  # the well-formed answer still counts
        await eventually(
            lambda: _moved_on(baton, saga_id), what="the saga moved on after the good reply"
        )


async def _moved_on(baton: Any, saga_id: str) -> bool:
    state = await baton.state(saga_id)
    return state.steps["authorize_payment"].status.value == "succeeded"
