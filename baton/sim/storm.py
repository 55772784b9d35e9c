"""The storm of one seed: the plan's faults applied at their moments, and the people outside.

Crashes (a restart after the downtime), outages of the store and of the broker (several at
once end with the last), dropped connections, malformed messages, and two actors: the
client, publishing starts as an upstream system does (signed, stamped with when it sent
them, retried until confirmed), and the operator, acting through ``Orchestrator.apply`` as
``baton retry|resume|abort`` does.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from baton.sim import plan as p
from baton.sim.world import CLIENT, EXPECTED_EXITS, World
from contracts.envelope import Envelope
from contracts.money import Money
from messaging.errors import BatonError
from messaging.transport.codec import Wire, encode
from orchestrator.core.effects import OperatorAction
from participants.payments.contracts import StartTransaction

ACTIONS = {
    "operator_retry": OperatorAction("retry", actor="sim"),
    "operator_resume": OperatorAction("resume", actor="sim"),
    "operator_abort": OperatorAction("abort", actor="sim"),
    "operator_abort_only": OperatorAction("abort", compensate=False, actor="sim"),
}


class Storm:
    """Applies the plan to ``world``, and remembers what the judge must know of it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.published: set[int] = set()  # saga indexes whose start was confirmed
        self.aborted_only: set[str] = set()  # saga ids an operator aborted without compensating
        self.malformed: dict[str, str] = {}  # message id -> the dead-letter queue it belongs in
        self._outages: Counter[str] = Counter()

    def schedule(self) -> None:
        """Put the plan's starts and faults on the clock."""
        later = self.world.loop.call_later
        for saga in self.world.plan.sagas:
            later(saga.start_at, self._client, self._start, saga, False)
            if saga.duplicate_at is not None:
                later(saga.duplicate_at, self._client, self._start, saga, True)
        for fault in self.world.plan.faults:
            later(fault.at, self.apply, fault)

    def _note(self, kind: str, text: str) -> None:
        self.world.tally[kind] += 1
        self.world.trace(text)

    def _client(self, work: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        """Run ``work(*args)`` as the client (created only now: a run may end first)."""
        self.world.client.run(self._guard(work(*args)))

    async def _guard(self, work: Coroutine[Any, Any, None]) -> None:
        """The client's and operator's own bugs end the run loudly, never in a log."""
        try:
            await work
        except Exception as exc:
            self.world.violation(f"sim_error: {type(exc).__name__}: {exc}")

    def apply(self, fault: p.Fault) -> None:
        if self.world.stopping:
            return
        if fault.kind in (p.CRASH_ORCHESTRATOR, p.CRASH_PARTICIPANT):
            self._crash(fault)
        elif fault.kind == p.STORE_OUTAGE:
            self._outage("store", fault.duration)
        elif fault.kind == p.BROKER_OUTAGE:
            self._outage("broker", fault.duration)
        elif fault.kind == p.CONNECTION_DROP:
            self._drop(fault)
        elif fault.kind in ACTIONS:
            self._client(self._operate, fault)
        elif fault.kind == p.MALFORMED:
            self._client(self._malformed, fault)

    # -- processes, the store and the broker ----------------------------------------------------

    def _crash(self, fault: p.Fault) -> None:
        host = self.world.hosts.get(fault.target)
        if host is None or not host.alive:
            return
        self._note(fault.kind, f"FAULT crash {fault.target}; back in {fault.duration:.2f}s")
        host.kill()
        self.world.loop.call_later(fault.duration, self.world.spawn, fault.target)

    def _drop(self, fault: p.Fault) -> None:
        host = self.world.hosts.get(fault.target)
        if host is None or not host.alive or not host.broker.is_connected:
            return
        self._note(fault.kind, f"FAULT connection of {fault.target} lost for {fault.duration:.2f}s")
        host.broker.drop(fault.duration)

    def _outage(self, what: str, seconds: float) -> None:
        self._note(f"{what}_outage", f"FAULT {what} outage for {seconds:.2f}s")
        self._outages[what] += 1
        self._set_up(what, up=False)
        self.world.loop.call_later(seconds, self._outage_ends, what)

    def _outage_ends(self, what: str) -> None:
        self._outages[what] -= 1
        if not self._outages[what]:
            self.world.trace(f"{what} is back")
            self._set_up(what, up=True)

    def _set_up(self, what: str, *, up: bool) -> None:
        if what == "store":
            self.world.redis.connected = up
        elif up:
            self.world.broker.server_up()
        else:
            self.world.broker.server_down()

    def end_outages(self) -> None:
        for what in ("store", "broker"):
            self._outages[what] = 0
            self._set_up(what, up=True)

    # -- the client and the operator ------------------------------------------------------------

    async def _publish(self, wire: Wire, queue: str) -> None:
        """Publish until confirmed, as an upstream system would."""
        while not self.world.stopping:
            try:
                await self.world.client.broker.publish(wire, exchange="", routing_key=queue)
            except ConnectionError:
                await asyncio.sleep(0.5)
            else:
                return

    async def _start(self, saga: p.SagaSpec, again: bool) -> None:
        world = self.world
        body = StartTransaction(
            idempotency_key=saga.key, account_id=saga.account, merchant_id=saga.merchant,
            amount=Money(minor=saga.amount, currency=p.CURRENCY), card_token=saga.token,
        )  # fmt: skip
        envelope = Envelope(kind=body.KIND, saga_id="-", sent_at=int(world.loop.wall()))
        signed = world.keys.keyring(CLIENT).sign(encode(envelope, body))  # as `baton start`
        await self._publish(signed, world.topology.start_queue)
        self.published.add(saga.index)
        if again:
            world.tally["duplicate_start"] += 1
        what = "started again" if again else "started"
        world.trace(f"client {what} s{saga.index} "
                    f"({saga.account}, {saga.amount}, {saga.merchant}, {saga.token})")  # fmt: skip

    async def _operate(self, fault: p.Fault) -> None:
        world, label = self.world, f"s{fault.target}"
        saga_id = world.saga_ids[int(fault.target)]
        host = world.host("operator")
        world.tally[fault.kind] += 1
        try:
            decision = await world.runner(host).apply(saga_id, ACTIONS[fault.kind])
        except (BatonError, *EXPECTED_EXITS) as exc:
            world.trace(f"operator {fault.kind} {label}: {type(exc).__name__}")
            return
        finally:
            await host.shutdown(0)
        status = decision.state.status.value
        world.trace(f"operator {fault.kind} {label}: {decision.ignored or 'accepted'}, {status}")
        if not decision.ignored and fault.kind == "operator_abort_only":
            self.aborted_only.add(saga_id)

    async def _malformed(self, fault: p.Fault) -> None:
        t = self.world.topology
        named = {"start": t.start_queue, "replies": t.replies_queue}
        queue = named.get(fault.target) or t.command_queue(fault.target)
        message_id = f"malformed-{len(self.malformed)}"
        variant = len(self.malformed) % 3
        wire = (
            Wire(b"{not json", kind=StartTransaction.KIND, message_id=message_id),
            Wire(b"{}", kind="sim.no_such_kind.v1", message_id=message_id),
            Wire(b"\xff\xfe", kind=None, message_id=message_id, content_type="image/png"),
        )[variant]
        self.malformed[message_id] = t.dead_letter_queue(queue)
        self.world.network.untouchable.add(message_id)  # copied exactly once, or it is a finding
        self._note(fault.kind, f"FAULT malformed message {message_id} ({variant}) to {queue}")
        await self._publish(wire, queue)
