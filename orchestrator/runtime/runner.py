"""The imperative shell around the engine: decode -> load -> decide -> commit -> publish -> ack.

Starts are handled in ``orchestrator.runtime.starts``, the background loops (deadlines, outbox
sweeper, state gauges) in ``orchestrator.runtime.loops``: mixins of ``Orchestrator`` here.

Per inbound message the transition (state, history, deadline, outbox) is one atomic write;
only then are the outbox entries published with confirms, marked done, and the message
acked. A crash anywhere leaves an unacked message (redelivered; the version and attempt
checks make the repeat harmless) or an unsent outbox entry (the sweeper publishes it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import cached_property

import structlog

from contracts import envelope as env
from contracts.base import StepFailed
from messaging.errors import ContractError, DefinitionError
from messaging.observability.tracing import trace_id
from messaging.transport.amqp import DECLARE_HINT, NOT_FOUND, wire_of
from messaging.transport.codec import Wire, decode, require_headers
from messaging.transport.poison import (
    POISON_AFTER,
    FailureCounts,
    counts_as_poison,
    poison_reason,
    requeue_pause_s,
)
from messaging.transport.port import Delivery, DeliveryHandler, Transport
from messaging.trust.signing import UNAUTHENTIC, Keyring
from orchestrator.core.catalog import Catalog
from orchestrator.core.effects import Decision, Event, ReplyReceived, Tick
from orchestrator.core.engine import decide, timed_out_commands
from orchestrator.core.state import SagaState, SagaStatus
from orchestrator.runtime.chaos import CrashPoints
from orchestrator.runtime.definition_registry import DefinitionRegistry
from orchestrator.runtime.errors import ConcurrencyConflict, UnknownSaga
from orchestrator.runtime.in_flight import IN_FLIGHT as UNFINISHED
from orchestrator.runtime.in_flight import describe as describe_counts
from orchestrator.runtime.loops import RECENT_STATES, BackgroundLoops, _wait
from orchestrator.runtime.marks import DoneMarks
from orchestrator.runtime.metrics import OrchestratorMetrics
from orchestrator.runtime.outbox import OutboxEntry, outbox_entries
from orchestrator.runtime.starts import StartHandling
from orchestrator.runtime.store import SagaStore
from orchestrator.runtime.wakes import WakeTimes

# A reply names what it answers; without these it matches nothing a saga waits for.
REPLY_HEADERS = (env.H_SAGA_ID, env.H_STEP, env.H_PHASE, env.H_ATTEMPT)
log = structlog.get_logger("baton.orchestrator")
REQUEUE_PAUSE_S = 0.2  # the first pause before a failed message goes back (poison.py grows it)

Clock = Callable[[], float]
MAX_CONFLICTS = 20


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    tick_interval_s: float = 0.05  # the least time between two polls of the deadline sets
    deadline_poll_s: float = 1.0  # the most: finds what other replicas scheduled
    start_prefetch: int = 4  # unacked starts per replica (replies use the broker's prefetch)
    outbox_grace_s: float = 2.0
    stuck_after_s: float = 300.0
    due_batch: int = 200
    state_interval_s: float = 5.0  # how often the shared-state gauges are read from the store
    start_ttl_s: float = 300.0  # a start sent longer ago is refused (start_expired)
    stuck_cap: int = 1000  # stuck sagas counted per status, at most (keeps the read cheap)
    poison_after: int = POISON_AFTER  # failures of one message before it is dead-lettered
    # The latency mechanisms, each only a saving (off: same behaviour, slower; for tests):
    cache_states: bool = True  # decide on the state this replica last wrote (off: read it)
    wake_times: bool = True  # sleep until the next known wake-up (off: poll every tick)
    batch_marks: bool = True  # mark outbox entries done in batches (off: inline, pre-ack)


class Orchestrator(StartHandling, BackgroundLoops):
    """One replica. Replicas share the queues and the store; any of them can finish any saga."""

    def __init__(
        self,
        catalog: Catalog,
        store: SagaStore,
        broker: Transport,
        *,
        keyring: Keyring,
        config: RunnerConfig | None = None,
        metrics: OrchestratorMetrics | None = None,
        clock: Clock = time.time,
        crash: CrashPoints | None = None,
        definitions: DefinitionRegistry | None = None,
    ) -> None:
        self._catalog = catalog
        # where the loaded versions are registered on start (None: not registered)
        self._definitions = definitions
        self._store = store
        self._broker = broker
        self._topology = broker.topology
        # signs everything this replica publishes; verifies starts (upstreams) and replies
        self._keyring = keyring
        self._config = config or RunnerConfig()
        self.metrics = metrics or OrchestratorMetrics()
        self.metrics.register(catalog.all())
        self._clock = clock
        self._in_flight: set[asyncio.Task[None]] = set()
        self._recent: dict[str, SagaState] = {}  # saga id -> state this replica last wrote
        self._marks = DoneMarks(store, batched=self._config.batch_marks)
        self._wakes = WakeTimes()
        self._tick_failures: dict[str, int] = {}  # saga id -> ticks failed in a row
        self._crash = crash  # fault tests only; None in production

    # -- applying events -------------------------------------------------------------------

    async def apply(self, saga_id: str, event: Event) -> Decision:
        """Load, decide, commit (retrying on conflicts), then publish what the decision sends."""
        for _ in range(MAX_CONFLICTS):
            cached = self._recent.pop(saga_id, None)
            state = cached or await self._store.load(saga_id)
            if state is None:
                raise UnknownSaga(saga_id)
            definition = self._catalog.get(state.saga, state.definition_version)
            if definition is None:
                raise ContractError(
                    "unknown_definition", f"{state.saga} v{state.definition_version}"
                )
            now = self._clock()
            decision = decide(definition, state, await self._facts(state, event, now), now)
            if decision.ignored and cached is not None:
                continue  # judged on a copy another replica may have moved on: ask the store
            if decision.ignored:
                self.metrics.ignored.labels(decision.ignored).inc()
                return decision
            outbox = outbox_entries(self._topology, decision.state, decision.effects, self._keyring)
            try:
                written = await self._store.commit(
                    state.version, decision.state, decision.history, outbox
                )
            except ConcurrencyConflict:
                self.metrics.conflicts.inc()
                continue  # another replica won; reload and decide again
            self._remember(written)
            self.metrics.observe(decision, state)
            if self._crash:
                self._crash("after_commit")
                if decision.state.status is SagaStatus.COMPENSATING:
                    self._crash("compensating")
            await self._publish(saga_id, outbox)
            return decision
        raise ConcurrencyConflict(saga_id)

    async def _facts(self, state: SagaState, event: Event, now: float) -> Event:
        """What the engine cannot see: whether a timed-out command ever left the outbox."""
        if not isinstance(event, Tick):
            return event
        held = [
            command
            for command in timed_out_commands(state, now)
            if await self._store.outbox_holds(state.saga_id, command)
        ]
        return Tick(unpublished=frozenset(held)) if held else event

    def _remember(self, state: SagaState) -> None:
        """Keep the state just written, so the saga's next event skips a Redis read, and
        its wake-up time, so the deadline loop knows when to look.

        Only a hint: the commit's version check rejects a copy another replica has moved
        on from, and an event the copy would ignore is decided again on the stored state.
        """
        if self._config.wake_times:
            self._wakes.note(state.saga_id, state.wake_at)
        if state.status.is_finished or not self._config.cache_states:
            return
        self._recent[state.saga_id] = state
        if len(self._recent) > RECENT_STATES:
            del self._recent[next(iter(self._recent))]  # the oldest entry

    async def _publish(self, saga_id: str, outbox: Sequence[OutboxEntry]) -> None:
        """Publish with confirms and mark done. On failure the sweeper publishes them later."""
        if not outbox:
            return
        try:
            await self._broker.publish_many((e.wire, e.exchange, e.routing_key) for e in outbox)
        except Exception as exc:  # the transition is committed; the outbox keeps the messages
            log.warning("publish_deferred_to_sweeper", saga_id=saga_id, error=str(exc))
            return
        if self._crash:
            self._crash("after_publish")
        await self._marks.mark(saga_id, [e.id for e in outbox])

    async def handle_reply(self, wire: Wire) -> str:
        """Apply a reply, read only once its signature is verified; the engine then accepts
        it only from the participant its step names (else ``wrong_sender``, dead-lettered)."""
        sender = self._keyring.verify(wire)
        require_headers(wire, REPLY_HEADERS)
        envelope, body = decode(wire, self._catalog.contracts)
        structlog.contextvars.bind_contextvars(
            saga_id=envelope.saga_id,
            saga=envelope.saga,
            step=envelope.step,
            phase=envelope.phase,
            attempt=envelope.attempt,
            trace_id=trace_id(envelope.traceparent),
        )
        failure = body if isinstance(body, StepFailed) else None
        event = ReplyReceived(
            step=envelope.step,
            phase=envelope.phase,
            attempt=envelope.attempt,
            kind=envelope.kind,
            body={} if failure else body.model_dump(mode="json"),
            failure_reason=failure.reason if failure else None,
            retriable=failure.retriable if failure else False,
            sender=sender,
        )
        decision = await self.apply(envelope.saga_id, event)
        if decision.ignored == "wrong_sender":
            raise ContractError("wrong_sender", f"{sender} does not run step {envelope.step}")
        return decision.ignored or "applied"

    # -- consuming ---------------------------------------------------------------------------

    def _callback(self, queue: str, handler: Callable[[Wire], Awaitable[str]]) -> DeliveryHandler:
        async def on_message(message: Delivery) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._in_flight.add(task)
            try:
                await self._settle(queue, handler, message)
            finally:
                if task is not None:
                    self._in_flight.discard(task)

        return on_message

    async def _settle(
        self,
        queue: str,
        handler: Callable[[Wire], Awaitable[str]],
        message: Delivery,
    ) -> None:
        """The one place that maps a handling outcome to a broker action."""
        wire = wire_of(message)  # safe values whatever the message's bytes
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            queue=queue, message_id=wire.message_id, kind=wire.kind
        )
        started = time.perf_counter()
        try:
            outcome = await handler(wire)
        except (ContractError, UnknownSaga) as exc:
            reason = exc.reason if isinstance(exc, ContractError) else "unknown_saga"
            outcome = "dead_lettered"
            self.metrics.dead_letters.labels(queue, reason).inc()
            log.warning("dead_lettered", reason=reason, detail=str(exc)[:300])
            # an unauthenticated start gets no answer: the orchestrator signs nothing about it
            if queue == self._topology.start_queue and reason not in UNAUTHENTIC:
                # an oversized body is not parsed for its idempotency key
                answered = replace(wire, body=b"") if reason == "body_too_large" else wire
                await self._answer_rejected_start(answered, reason)
            await self._broker.dead_letter(message, queue, str(exc))
            self.failures.settled(wire)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome = await self._failed(queue, message, wire, exc)
        else:
            await message.ack()
            self.failures.settled(wire)
        elapsed = time.perf_counter() - started
        self.metrics.messages.labels(queue, outcome).inc()
        self.metrics.handling.labels(queue).observe(elapsed)
        log.info("message_handled", outcome=outcome, duration_ms=round(elapsed * 1000, 2))

    async def _failed(self, queue: str, message: Delivery, wire: Wire, exc: Exception) -> str:
        """Requeue a message whose handling failed, or dead-letter it as poison: one that
        failed ``poison_after`` times for a reason of its own (not a dependency's outage)."""
        failures = self.failures.failed(wire) if counts_as_poison(exc) else 0
        if self.failures.is_poison(failures):
            log.error("poison_dead_lettered", failures=failures, exc_info=exc)
            self.metrics.dead_letters.labels(queue, "poison").inc()
            await self._broker.dead_letter(message, queue, poison_reason(exc))
            return "dead_lettered"
        log.error("handling_failed", failures=failures, exc_info=exc)
        # back off before the broker redelivers it, longer the more often it came back
        await asyncio.sleep(requeue_pause_s(REQUEUE_PAUSE_S, wire.headers))
        with suppress(Exception):  # a dead channel redelivers the message by itself
            await message.nack(requeue=True)
        return "requeued"

    @cached_property
    def failures(self) -> FailureCounts:
        """Failures per message, for poison messages and liveness (made on first use)."""
        return FailureCounts(self._config.poison_after)

    async def _start_consuming(self, stop: asyncio.Event) -> None:
        """Consume; a replica started while the broker restarts, or before ``baton declare``
        created the queues, waits. It never declares: its broker user may not (``baton
        orchestrator`` waits for the whole topology before it gets here)."""
        t = self._topology
        while not stop.is_set():
            try:
                await self._broker.consume(
                    t.start_queue,
                    self._callback(t.start_queue, self.handle_start),
                    prefetch=self._config.start_prefetch,
                )
                await self._broker.consume(
                    t.replies_queue, self._callback(t.replies_queue, self.handle_reply)
                )
            except NOT_FOUND as exc:  # checked passively: not declared yet
                log.warning("topology_missing", error=str(exc), hint=DECLARE_HINT)
                await self._broker.stop_consuming()
                await _wait(stop, 2.0)
            except Exception:  # the connection dropped mid-way: undo and try again
                log.warning("start_consuming_failed", exc_info=True)
                await self._broker.stop_consuming()
                await _wait(stop, 1.0)
            else:
                return

    async def check_definitions(self) -> None:
        """Refuse to run beside sagas whose definition version this replica would not load:
        it could neither move them on nor compensate them (their ticks would only fail).
        Running, compensating and failed sagas count (a failed one waits for an operator's
        retry, which compensates on its own version)."""
        in_flight = await self._store.versions(UNFINISHED)
        missing = sorted(k for k in in_flight if self._catalog.get(*k) is None)
        if missing:
            names = "; ".join(f"{n} v{v} ({describe_counts(in_flight[n, v])})" for n, v in missing)
            raise DefinitionError(
                f"sagas in flight use {names}, which this orchestrator does not load: keep "
                "each version's definition file (in its package, or BATON_ORCHESTRATOR__"
                "DEFINITIONS) until `baton definitions` shows none of its sagas in flight"
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume starts and replies, run the loops until ``stop``, then drain in-flight work."""
        await self.check_definitions()
        if self._definitions is not None:  # before any saga can start on a version
            await self._definitions.register(self._catalog.all())
        await self._start_consuming(stop)
        loops = [
            asyncio.create_task(self._deadline_loop(stop), name="deadlines"),
            asyncio.create_task(self._sweep_loop(stop), name="outbox-sweeper"),
            asyncio.create_task(self._state_loop(stop), name="state-gauges"),
            asyncio.create_task(self._marks.run(), name="outbox-marks"),
        ]
        log.info("orchestrator_running", participants=list(self._catalog.participants))
        await stop.wait()
        await self._broker.stop_consuming()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=10)
        for loop in loops:
            loop.cancel()
        for loop in loops:
            with suppress(asyncio.CancelledError):
                await loop
        await self._guarded(self._marks.flush())  # the last marks; the loop is gone
        log.info("orchestrator_stopped")
