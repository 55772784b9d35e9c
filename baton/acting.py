"""One audited operator action: apply it, then record it whatever came of it (applied,
ignored or refused) in the saga's audit trail, a lifecycle event, the action counter and
one log line. ``baton retry|resume|abort`` and the bulk runner (``baton.bulk``) both act
through ``Operator.perform``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from contracts.envelope import Envelope
from contracts.operator import OperatorActionEvent
from contracts.pan import contains_pan
from messaging.errors import BatonError, ContractError
from messaging.observability.logs import masked
from messaging.transport.codec import Wire
from messaging.transport.port import Transport
from messaging.trust.signing import Keyring
from orchestrator.core.audit import AuditEntry
from orchestrator.core.effects import OperatorAction
from orchestrator.runtime.audit_store import AuditStore
from orchestrator.runtime.runner import Orchestrator
from orchestrator.runtime.store import SagaStore

log = structlog.get_logger("baton.operator")
REASON_MAX = 500  # characters: a sentence or two, not a document
ACTOR_MAX = 64
UNKNOWN_VERSION_HINT = (
    "; this configuration does not load that version and no orchestrator registered it in"
    " Redis: run this command where BATON_ORCHESTRATOR__PACKAGES names its saga package, or"
    " start an orchestrator that runs it (it registers its versions), then try again"
)


def check_reason(reason: str) -> str:
    """The reason as recorded, or ValueError with the line to show (exit 2)."""
    reason = reason.strip()
    if not reason:
        raise ValueError("--reason is required: say why (it goes into the audit trail)")
    if len(reason) > REASON_MAX or not reason.isprintable():
        raise ValueError(f"--reason must be 1-{REASON_MAX} printable characters on one line")
    if contains_pan(reason, anywhere=True):
        raise ValueError("--reason holds a card number: never type one")
    return reason


def check_actor(actor: str) -> str:
    """The actor as recorded, or ValueError with the line to show (exit 2)."""
    if not 1 <= len(actor) <= ACTOR_MAX or not actor.isprintable() or actor != actor.strip():
        raise ValueError(f"--actor must be 1-{ACTOR_MAX} printable characters")
    if contains_pan(actor, anywhere=True):
        raise ValueError("--actor holds a card number: never type one")
    return actor


def refusal(exc: BatonError) -> str:
    """Why an operator action was refused, with what to do when the saga's version is
    unknown here (``baton.versions.catalog_for`` found it neither loaded nor registered)."""
    if isinstance(exc, ContractError) and exc.reason == "unknown_definition":
        return f"saga runs on {exc.detail}{UNKNOWN_VERSION_HINT}"
    return masked(str(exc))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one action came to, and the audit entry that records it."""

    saga_id: str
    result: str  # applied | ignored | refused
    detail: str  # the ignored reason, the refusal, or the saga's new status
    status: str  # the saga's status after it ("" when refused)
    entry: AuditEntry


class Operator:
    """Acts on sagas through an orchestrator's ``apply`` and audits every action."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        store: SagaStore,
        audit: AuditStore,
        broker: Transport,
        keyring: Keyring,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._orchestrator = orchestrator
        self.store = store
        self.audit = audit
        self._broker = broker
        self._keyring = keyring
        self._clock = clock

    async def perform(self, saga_id: str, action: OperatorAction) -> Outcome:
        """Apply, then audit. The audit append raising (Redis gone) is the caller's failure."""
        saga = ""
        try:
            decision = await self._orchestrator.apply(saga_id, action)
        except BatonError as exc:
            result, detail, status = "refused", refusal(exc), ""
        else:
            saga, status = decision.state.saga, decision.state.status.value
            result, detail = ("ignored", decision.ignored) if decision.ignored else (
                "applied", f"now {status}")  # fmt: skip
        entry = await self.audit.append(
            saga_id, at=self._clock(), action=action.action, actor=action.actor,
            reason=action.reason, result=result, detail=detail, batch_id=action.batch_id,
        )  # fmt: skip
        log.info(
            "operator_action", saga_id=saga_id, action=action.action, actor=action.actor,
            reason=action.reason, result=result, detail=detail, batch_id=action.batch_id,
            seq=entry.seq,
        )  # fmt: skip
        await self._announce(saga or await self._saga_name(saga_id), entry)
        return Outcome(saga_id, result, detail, status, entry)

    async def _saga_name(self, saga_id: str) -> str:
        try:
            state = await self.store.load(saga_id)
        except Exception:  # a record this process cannot open still gets its event
            return "unknown"
        return state.saga if state is not None else "unknown"

    async def _announce(self, saga: str, entry: AuditEntry) -> None:
        """Publish the lifecycle event; the audit trail is the record, so a broker that is
        away costs only the event (logged), not the action."""
        event = OperatorActionEvent(
            saga_id=entry.saga_id, saga=saga, action=entry.action, actor=entry.actor,
            reason=entry.reason, result=entry.result, detail=entry.detail,
            batch_id=entry.batch_id, seq=entry.seq, hash=entry.hash,
        )  # fmt: skip
        envelope = Envelope(kind=event.KIND, saga_id=entry.saga_id, saga=saga)
        wire = Wire(
            event.model_dump_json().encode(), event.KIND, envelope.message_id, entry.saga_id,
            headers=envelope.headers(),
        )  # fmt: skip
        t = self._broker.topology
        try:
            await self._broker.publish(
                self._keyring.sign(wire), exchange=t.events_exchange,
                routing_key=t.event_routing_key(saga, "operator_action"),
            )  # fmt: skip
        except Exception as exc:
            log.warning("operator_event_not_published", saga_id=entry.saga_id, error=str(exc))
