"""The imperative shell around the engine: decode -> load -> decide -> commit -> publish -> ack.

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
from typing import TypeVar

import structlog
from aio_pika.abc import AbstractIncomingMessage

from contracts import envelope as env
from contracts.base import Start, StepFailed
from contracts.envelope import Envelope, new_message_id
from contracts.events import SagaEvent
from messaging.amqp import DECLARE_HINT, NOT_FOUND, Broker, wire_of
from messaging.codec import Wire, decode, require_headers
from messaging.errors import ConcurrencyConflict, ContractError, DefinitionError, UnknownSaga
from messaging.poison import POISON_AFTER, FailureCounts, counts_as_poison, poison_reason
from messaging.signing import UNAUTHENTIC, Keyring
from messaging.tracing import child, trace_id
from orchestrator.answers import idempotency_key_of, safe_reply_to
from orchestrator.catalog import Catalog, saga_id_for
from orchestrator.chaos import CrashPoints
from orchestrator.definition import SagaDefinition
from orchestrator.definition_registry import DefinitionRegistry
from orchestrator.effects import Decision, EmitEvent, Event, ReplyReceived, Tick
from orchestrator.engine import decide, describe, start, timed_out_commands
from orchestrator.in_flight import IN_FLIGHT as UNFINISHED
from orchestrator.in_flight import describe as describe_counts
from orchestrator.marks import DoneMarks
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.outbox import OutboxEntry, outbox_entries
from orchestrator.state import SagaState, SagaStatus
from orchestrator.store import SagaStore
from orchestrator.wakes import WakeTimes

# A reply names what it answers; without these it matches nothing a saga waits for.
REPLY_HEADERS = (env.H_SAGA_ID, env.H_STEP, env.H_PHASE, env.H_ATTEMPT)
log = structlog.get_logger("baton.orchestrator")

Clock = Callable[[], float]
MAX_CONFLICTS = 20
TICK_BACKOFF_S = 0.5  # first delay after a failed tick; doubles up to TICK_BACKOFF_MAX_S
TICK_BACKOFF_MAX_S = 60.0
RECENT_STATES = 10_000  # sagas whose last written state a replica keeps in memory
T = TypeVar("T")


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


class Orchestrator:
    """One replica. Replicas share the queues and the store; any of them can finish any saga."""

    def __init__(
        self,
        catalog: Catalog,
        store: SagaStore,
        broker: Broker,
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
        self._marks = DoneMarks(store)
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
        self._wakes.note(state.saga_id, state.wake_at)
        if state.status.is_finished:
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

    async def handle_start(self, wire: Wire) -> str:
        """Start a saga from a Start message; a repeated idempotency key starts nothing.

        Only a start signed by one of the configured upstreams is read at all."""
        self._keyring.verify_from(wire, self._keyring.upstreams, "starts")
        envelope, body = decode(wire, self._catalog.contracts, require_saga=False)
        if not isinstance(body, Start):
            raise ContractError("not_a_start_message", envelope.kind)
        self._refuse_expired(envelope)
        definition = self._catalog.for_trigger(envelope.kind)
        if definition is None:
            raise ContractError("no_saga_for_type", envelope.kind)
        saga_id = saga_id_for(definition.name, body.idempotency_key)
        structlog.contextvars.bind_contextvars(saga_id=saga_id, saga=definition.name)
        # the saga's own span, under the caller's when it sent one; else a new trace
        traceparent = child(envelope.traceparent, f"saga {definition.name}",
                            {"baton.saga_id": saga_id})  # fmt: skip
        structlog.contextvars.bind_contextvars(trace_id=trace_id(traceparent))
        decision = start(
            definition,
            saga_id,
            body,
            self._clock(),
            reply_to=safe_reply_to(wire.reply_to or "", self._topology),
            traceparent=traceparent,
        )
        outbox = outbox_entries(self._topology, decision.state, decision.effects, self._keyring)
        if await self._store.create(decision.state, decision.history, outbox):
            self._remember(decision.state.model_copy(update={"version": 1}))
            self.metrics.observe(decision)
            if self._crash:
                self._crash("after_commit")
            await self._publish(saga_id, outbox)
            return "started"
        existing = await self._store.load(saga_id)
        if existing is None:  # expired between the two calls: requeue and start afresh
            raise ConcurrencyConflict(saga_id)
        if existing.input != decision.state.input:
            raise ContractError("idempotency_key_reused", "same key, different transaction")
        await self._answer_duplicate(definition, existing, wire.reply_to or "")
        return "duplicate_start"

    def _refuse_expired(self, envelope: Envelope) -> None:
        """A start sent longer than ``start_ttl_s`` ago, or past its own deadline, starts
        nothing: its caller has likely given up (answered ``rejected``, ``start_expired``)."""
        now, ttl = self._clock(), self._config.start_ttl_s
        if envelope.sent_at is not None and now - envelope.sent_at > ttl:
            age = now - envelope.sent_at
            raise ContractError("start_expired", f"sent {age:.0f} s ago (limit {ttl:g} s)")
        if envelope.deadline is not None and now > envelope.deadline:
            raise ContractError("start_expired", "past its x-baton-deadline")

    async def _answer_duplicate(
        self, definition: SagaDefinition, existing: SagaState, reply_to: str
    ) -> None:
        """Tell the caller of a repeated start where its saga stands (on the events exchange,
        and on its ``reply_to``). Not stored: a failed publish requeues the start, whose
        redelivery answers again."""
        defined = self._catalog.get(existing.saga, existing.definition_version) or definition
        event = EmitEvent(describe(defined, existing, "duplicate"), final=True)
        answer = existing.model_copy(update={"reply_to": safe_reply_to(reply_to, self._topology)})
        entries = outbox_entries(self._topology, answer, (event,), self._keyring)
        await self._broker.publish_many((e.wire, e.exchange, e.routing_key) for e in entries)

    async def _answer_rejected_start(self, wire: Wire, reason: str) -> None:
        """A start that started nothing still gets an answer: a ``rejected`` event with the
        reason, on the events exchange and its ``reply_to``. Best effort: the message itself
        goes to the dead-letter queue with the same reason whatever happens here."""
        definition = self._catalog.for_trigger(wire.kind or "")
        key = idempotency_key_of(wire.body)
        saga = definition.name if definition else "unknown"
        event = SagaEvent(
            saga_id=saga_id_for(saga, key) if definition and key else "",
            saga=saga,
            event="rejected",
            status="rejected",
            reason=reason,
            idempotency_key=key,
        )
        body = event.model_dump_json().encode()
        routes = [
            (self._topology.events_exchange, self._topology.event_routing_key(saga, "rejected"))
        ]
        if reply_to := safe_reply_to(wire.reply_to or "", self._topology):
            routes.append(("", reply_to))
        with suppress(Exception):
            await self._broker.publish_many(
                (self._keyring.sign(Wire(body, event.KIND, new_message_id(), event.saga_id)),
                 exchange, key_)
                for exchange, key_ in routes
            )  # fmt: skip

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

    def _callback(
        self, queue: str, handler: Callable[[Wire], Awaitable[str]]
    ) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def on_message(message: AbstractIncomingMessage) -> None:
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
        message: AbstractIncomingMessage,
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

    async def _failed(
        self, queue: str, message: AbstractIncomingMessage, wire: Wire, exc: Exception
    ) -> str:
        """Requeue a message whose handling failed, or dead-letter it as poison: one that
        failed ``poison_after`` times for a reason of its own (not a dependency's outage)."""
        failures = self.failures.failed(wire) if counts_as_poison(exc) else 0
        if self.failures.is_poison(failures):
            log.error("poison_dead_lettered", failures=failures, exc_info=exc)
            self.metrics.dead_letters.labels(queue, "poison").inc()
            await self._broker.dead_letter(message, queue, poison_reason(exc))
            return "dead_lettered"
        log.error("handling_failed", failures=failures, exc_info=exc)
        await asyncio.sleep(0.2)  # back off before the broker redelivers it
        with suppress(Exception):  # a dead channel redelivers the message by itself
            await message.nack(requeue=True)
        return "requeued"

    @cached_property
    def failures(self) -> FailureCounts:
        """Failures per message, for poison messages and liveness (made on first use)."""
        return FailureCounts(self._config.poison_after)

    # -- background loops ----------------------------------------------------------------------

    async def _deadline_loop(self, stop: asyncio.Event) -> None:
        """Tick every saga whose wake-up time has passed (timeouts, retries, deadlines)."""
        while not stop.is_set():
            polled_at = self._clock()
            due = await self._guarded(self._store.due(polled_at, self._config.due_batch))
            if due:
                await asyncio.gather(*(self._tick(saga_id) for saga_id in due))
            else:
                await self._sleep_until_due(stop, polled_at)

    async def _sleep_until_due(self, stop: asyncio.Event, polled_at: float) -> None:
        """Until the earliest wake-up this replica wrote, or ``deadline_poll_s`` at most."""
        config = self._config
        latest = polled_at + config.deadline_poll_s
        while not stop.is_set():
            earliest = self._wakes.next_after(polled_at)
            at = latest if earliest is None else min(earliest, latest)
            self._wakes.plan(at)
            delay = max(at - self._clock(), config.tick_interval_s)
            if not await _wait_any((stop, self._wakes.earlier), delay):
                return  # the planned time came

    async def _tick(self, saga_id: str) -> None:
        """Apply a tick; one that fails moves the saga's wake-up later, doubling each time,
        so a saga that cannot be decided is neither polled in a tight loop nor in the way of
        the healthy sagas due behind it."""
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(saga_id=saga_id)
        try:
            await self.apply(saga_id, Tick())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("tick_failed")
            failures = self._tick_failures.pop(saga_id, 0) + 1
            self._tick_failures[saga_id] = failures
            if len(self._tick_failures) > RECENT_STATES:
                del self._tick_failures[next(iter(self._tick_failures))]
            delay = min(TICK_BACKOFF_MAX_S, TICK_BACKOFF_S * 2 ** min(failures - 1, 16))
            await self._guarded(self._store.postpone(saga_id, self._clock() + delay))
        else:
            self._tick_failures.pop(saga_id, None)

    async def _sweep_loop(self, stop: asyncio.Event) -> None:
        """Publish outbox entries a crashed or disconnected replica left behind."""
        while not stop.is_set():
            await self._guarded(self.sweep_outbox())
            await _wait(stop, max(self._config.outbox_grace_s / 2, 0.1))

    async def sweep_outbox(self) -> int:
        now, grace = self._clock(), self._config.outbox_grace_s
        # claimed for a grace period: replicas sweeping at once publish each entry once
        pending = await self._store.outbox_pending(now - grace, 500, claim=(now, now + grace))
        swept: list[tuple[str, Sequence[str]]] = []
        try:
            for entry in pending:
                await self._broker.publish(
                    entry.wire, exchange=entry.exchange, routing_key=entry.routing_key
                )
                swept.append((entry.saga_id, [entry.id]))
                self.metrics.outbox_swept.inc()
        finally:  # what was published is marked, even when a later publish failed
            if swept:
                await self._store.outbox_done_many(swept)
        if pending:
            log.info("outbox_swept", entries=len(pending))
        return len(pending)

    async def _state_loop(self, stop: asyncio.Event) -> None:
        """Refresh the gauges of shared state (counts, stuck, outbox lag): a few pipelined
        reads every ``state_interval_s``, never per message."""
        while not stop.is_set():
            await self._guarded(self.refresh_state())
            await _wait(stop, self._config.state_interval_s)

    async def refresh_state(self) -> None:
        now = self._clock()
        idle_before = now - self._config.stuck_after_s
        counts = await self._store.counts()
        stuck = {
            status: len(await self._store.by_status(status, self._config.stuck_cap, idle_before))
            for status in (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
        }
        lag = await self._store.outbox_oldest_age(now)
        self.metrics.refresh_state(counts, stuck, lag, self._config.stuck_after_s, now)

    async def _guarded(self, work: Awaitable[T]) -> T | None:
        """Background work survives a store or broker outage; the next round tries again."""
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background_work_failed")
            return None

    # -- lifecycle -------------------------------------------------------------------------------

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


async def _wait_any(events: Sequence[asyncio.Event], seconds: float) -> bool:
    """Wait until one of ``events`` is set (True) or ``seconds`` pass (False)."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        done, _ = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return bool(done)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
