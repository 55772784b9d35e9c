"""What the checks share: fresh saga positions, signed commands built from the samples, the
participant's replies judged against its contracts, and a barrier.

Every command is built and signed the way the orchestrator builds one
(``orchestrator/runtime/outbox``):
the envelope's headers, message id ``<effect id>.<attempt>``, a deadline rounded up to what
AMQP carries, signed with the orchestrator's key.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from uuid import uuid4

from baton.conformance.driver import Driver, Heard
from baton.conformance.report import CheckFailed
from baton.conformance.samples import Sample, Samples, Subject
from baton.conformance.schemas import reply_problem
from contracts import envelope as env
from contracts.base import StepFailed
from contracts.envelope import Envelope
from contracts.registry import ContractRegistry
from messaging.observability.tracing import new_traceparent
from messaging.transport.codec import Wire
from messaging.trust.signing import Keyring, binary32_up

DEADLINE_S = 300.0  # a live command's x-baton-deadline: well after any check is over
Prepare = Callable[[Sample, str], Awaitable[dict[str, Any]]]


def effect_id(saga_id: str, step: str, phase: env.Phase) -> str:
    """The engine's generation-0 effect id (docs/protocol.md, "Effect ids")."""
    return hashlib.sha256(f"{saga_id}|{step}|{phase}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Position:
    """Where a command sits: saga, step, phase, its effect id and what it compensates."""

    saga_id: str
    step: str
    phase: env.Phase
    effect_id: str
    compensates: str = ""


class Kit:
    """One participant's samples over one driver, for the checks."""

    def __init__(
        self,
        driver: Driver,
        samples: Samples,
        registry: ContractRegistry,
        keyring: Keyring,
        prepare: Prepare,
        *,
        copies: int = 5,
    ) -> None:
        self.driver = driver
        self.samples = samples
        self.registry = registry
        self.keyring = keyring  # the orchestrator's: participants take commands signed by it
        self.copies = copies
        self._prepare = prepare
        self._bodies: dict[tuple[str, str], dict[str, Any]] = {}

    @property
    def subject(self) -> Subject:
        return self.samples.subject

    @property
    def participant(self) -> str:
        return self.samples.participant

    @staticmethod
    def new_saga() -> str:
        return f"conformance-{uuid4().hex}"

    def forward(self, saga_id: str) -> Position:
        step = self.subject.step
        return Position(saga_id, step, "forward", effect_id(saga_id, step, "forward"))

    def compensation(self, saga_id: str) -> Position:
        step = self.subject.step
        undoes = effect_id(saga_id, step, "forward")
        return Position(saga_id, step, "compensate", effect_id(saga_id, step, "compensate"), undoes)

    async def body(self, sample: Sample, saga_id: str) -> dict[str, Any]:
        """The sample's body for this saga, prepared once (repeats must be identical)."""
        key = (sample.kind, saga_id)
        if key not in self._bodies:
            self._bodies[key] = await self._prepare(sample, saga_id)
        return self._bodies[key]

    def wire(
        self, kind: str, pos: Position, body: bytes, *, attempt: int = 1,
        deadline: float | None = None, headers: Mapping[str, Any] | None = None,
    ) -> Wire:  # fmt: skip
        """An unsigned command; ``headers`` overrides envelope headers (None removes one)."""
        envelope = Envelope(
            kind=kind, message_id=f"{pos.effect_id}.{attempt}", saga_id=pos.saga_id,
            saga=self.subject.saga, step=pos.step, phase=pos.phase, effect_id=pos.effect_id,
            compensates=pos.compensates, attempt=attempt, traceparent=new_traceparent(),
            deadline=binary32_up(time.time() + DEADLINE_S) if deadline is None else deadline,
        )  # fmt: skip
        merged = {**envelope.headers(), **(headers or {})}
        kept = {name: value for name, value in merged.items() if value is not None}
        return Wire(body, kind, envelope.message_id, pos.saga_id, headers=kept)

    async def command(
        self, sample: Sample, pos: Position, *, attempt: int = 1, deadline: float | None = None
    ) -> Wire:
        """The sample as the orchestrator would send it at ``pos``, signed."""
        body = json.dumps(await self.body(sample, pos.saga_id), separators=(",", ":")).encode()
        wire = self.wire(sample.kind, pos, body, attempt=attempt, deadline=deadline)
        return self.keyring.sign(wire)

    async def send(
        self, sample: Sample, pos: Position, *, attempt: int = 1, deadline: float | None = None
    ) -> Wire:
        wire = await self.command(sample, pos, attempt=attempt, deadline=deadline)
        await self.driver.publish(wire)
        return wire

    async def round_trip(self, sample: Sample, pos: Position, what: str) -> Heard:
        """Send the sample (attempt 1) and wait for the first reply of its saga."""
        await self.send(sample, pos)
        return (await self.driver.replies(pos.saga_id, 1, what))[0]

    async def barrier(self) -> None:
        """A fresh command answered: what the participant took before it has been handled.

        Commands are taken in queue order, so a reply still to come for anything sent
        earlier would, for a participant handling one at a time, have come by now.
        """
        saga = self.new_saga()
        await self.round_trip(self.subject.command, self.forward(saga), "a barrier command")

    def success(self, heard: Heard, sample: Sample, what: str) -> None:
        """CheckFailed unless ``heard`` is one of the sample's success replies."""
        if heard.wire.kind == StepFailed.KIND:
            raise CheckFailed(f"{what} was refused: {self.describe(heard)}")
        if heard.wire.kind not in sample.replies:
            raise CheckFailed(
                f"{what} got {heard.wire.kind}, not one of {', '.join(sample.replies)}"
            )

    def describe(self, heard: Heard) -> str:
        """A reply for a failure message, its contract's sensitive fields masked."""
        model = self.registry.get(heard.wire.kind or "")
        return heard.describe(model.SENSITIVE if model is not None else ())

    def problems(self, heard: Heard, sent: Wire) -> list[str]:
        """How a reply breaks docs/protocol.md's "Replies" for the command ``sent``."""
        found = [f"not signed by {self.participant}: {heard.problem}"] if heard.problem else []
        problem = reply_problem(self.registry, heard.wire.kind or "", heard.wire.body)
        found += [problem] if problem else []
        for name in (env.H_SAGA_ID, env.H_SAGA, env.H_STEP, env.H_PHASE, env.H_EFFECT_ID,
                     env.H_ATTEMPT):  # fmt: skip
            if heard.header(name) != sent.headers.get(name):
                found.append(
                    f"{name} is {heard.header(name)!r}, the command's {sent.headers.get(name)!r}"
                )
        if heard.wire.correlation_id != sent.correlation_id:
            found.append(f"correlation_id is {heard.wire.correlation_id!r}, not the saga id")
        if not heard.wire.message_id or heard.wire.message_id == sent.message_id:
            found.append("the reply has no message_id of its own")
        if heard.header(env.H_DEADLINE) is not None:
            found.append(f"the reply carries {env.H_DEADLINE}")
        return found


def same(replies: list[Heard]) -> bool:
    """Whether every reply has one kind and one body (JSON compared, not bytes)."""
    return len({(r.wire.kind, json.dumps(r.body(), sort_keys=True)) for r in replies}) <= 1


def distinct(kit: Kit, replies: list[Heard]) -> str:
    """The different replies among ``replies``, for a failure message."""
    seen = {kit.describe(r): None for r in replies}
    return " | ".join(seen)


def without_signature(wire: Wire) -> Wire:
    gone = {env.H_SIGNER, env.H_KEY_ID, env.H_SIGNATURE}
    return replace(wire, headers={k: v for k, v in wire.headers.items() if k not in gone})
