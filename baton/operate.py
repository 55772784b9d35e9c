"""Operator commands behind the CLI: inspect sagas, act on them, check health and the books."""

from __future__ import annotations

import asyncio
import getpass
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from baton import deadletters
from baton.acting import Operator
from baton.runtime import (
    load_catalog,
    open_broker,
    open_reader,
    open_runtime,
    orchestrator_keyring,
)
from baton.versions import catalog_for, registered_hidden
from contracts.base import Start
from contracts.envelope import Envelope
from contracts.pan import mask_pans
from messaging.errors import BatonError, ContractError
from messaging.observability.logs import masked
from messaging.observability.tracing import trace_id
from messaging.redis_client import redis_for
from messaging.settings import Settings
from messaging.transport.amqp import Broker, wire_of
from messaging.transport.codec import encode
from messaging.trust.sealing import Sealer
from messaging.trust.signing import ORCHESTRATOR, Keyring
from orchestrator.core.catalog import Catalog
from orchestrator.core.effects import OperatorAction
from orchestrator.core.state import SagaState, SagaStatus
from orchestrator.runtime.audit_store import AuditStore

console = Console()


def actor() -> str:
    """Who acted, for the saga's history."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


async def health(settings: Settings) -> int:
    """0 when both RabbitMQ and Redis answer within a few seconds."""
    problems: list[str] = []
    try:
        async with asyncio.timeout(5), open_broker(settings):
            pass
    except (Exception, TimeoutError) as exc:
        problems.append(f"rabbitmq: {masked(str(exc) or type(exc).__name__)}")
    client = redis_for(settings.redis)
    try:
        async with asyncio.timeout(5):
            await client.ping()
    except (Exception, TimeoutError) as exc:
        problems.append(f"redis: {masked(str(exc) or type(exc).__name__)}")
    finally:
        await client.aclose()
    for problem in problems:
        click.echo(problem, err=True)
    if not problems:
        click.echo("ok")
    return 1 if problems else 0


async def start_and_wait(
    broker: Broker, envelope: Envelope, body: Start, timeout_s: float, keyring: Keyring
) -> dict[str, Any]:
    """Publish a start, signed with ``keyring``, with a private reply queue and wait for the
    saga's final event; an answer not signed by the orchestrator is ignored."""
    channel = await broker.connection.channel()
    try:
        t = broker.topology  # a reply queue under the prefix the orchestrator answers
        name = f"{t.reply_prefix}{uuid4().hex}"
        queue = await channel.declare_queue(name, exclusive=True, auto_delete=True)
        wire = keyring.sign(encode(envelope.model_copy(update={"reply_to": queue.name}), body))
        await broker.publish(wire, exchange=t.start_exchange, routing_key=t.start_queue)
        async with asyncio.timeout(timeout_s), queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                try:
                    keyring.verify_from(wire_of(message), (ORCHESTRATOR,), "answers")
                except ContractError as exc:
                    click.echo(f"baton start: ignored an answer: {exc.reason}", err=True)
                    continue
                event: dict[str, Any] = json.loads(message.body)
                return event
    finally:
        await channel.close()
    raise BatonError("no final event")  # pragma: no cover - the iterator only ends on close


def _hidden(state: SagaState, catalog: Catalog) -> frozenset[str] | None:
    """The input fields an operator's screen must not show: those the contract that started
    the saga marks sensitive; None when its definition is not loaded here."""
    definition = catalog.get(state.saga, state.definition_version)
    model = catalog.contracts.get(definition.trigger) if definition else None
    return model.SENSITIVE if model is not None else None


async def hidden_fields(settings: Settings, state: SagaState, catalog: Catalog) -> frozenset[str]:
    """``_hidden``, else what the start contract registered with the saga's version marks
    (a version no longer loaded: ``baton.versions``), else every input field."""
    hidden = _hidden(state, catalog)
    if hidden is None:
        hidden = await registered_hidden(settings, state)
    return hidden if hidden is not None else frozenset(state.input)


def _secrets(state: SagaState, hidden: frozenset[str]) -> list[str]:
    # short values (an account "a") would mask half of every line: those are left as they are
    return [str(v) for k, v in state.input.items() if k in hidden and len(str(v)) >= 4]


def _scrub(text: str, secrets: list[str]) -> str:
    """Free text as shown: card numbers and the saga's own sensitive values masked (the
    engine keeps them out of what it writes; this also covers records written before)."""
    text = mask_pans(text)
    for value in secrets:
        text = text.replace(value, "***")
    return text


def _redacted(state: SagaState, hidden: frozenset[str]) -> SagaState:
    """The state with its input's sensitive fields (card token, account id) masked, and
    its free text scrubbed. Masked by name, not by validating the input again: a record
    the contract would refuse today must not be printed whole instead."""
    secrets = _secrets(state, hidden)
    steps = {
        name: step.model_copy(update={"error": _scrub(step.error, secrets)}) if step.error else step
        for name, step in state.steps.items()
    }
    return state.model_copy(
        update={
            "input": {k: "***" if k in hidden else v for k, v in state.input.items()},
            "steps": steps,
            "reason": _scrub(state.reason, secrets) if state.reason else state.reason,
        }
    )


async def show_status(settings: Settings, saga_id: str, as_json: bool) -> int:
    catalog = load_catalog(settings)
    async with open_reader(settings, catalog=catalog) as store:
        state = await store.load(saga_id)
        history = await store.history(saga_id)
    if state is None:
        click.echo(
            f"baton status: no saga {saga_id} (unknown, or expired after its retention)",
            err=True,
        )
        return 1
    hidden = await hidden_fields(settings, state, catalog)
    secrets = _secrets(state, hidden)
    history = [{**entry, "detail": _scrub(entry["detail"], secrets)} for entry in history]
    state = _redacted(state, hidden)
    if as_json:
        trace = trace_id(state.traceparent)
        state_json = state.model_dump(mode="json")
        click.echo(json.dumps({"state": state_json, "trace_id": trace, "history": history}))
        return 0
    console.print(
        f"[bold]{state.saga}[/] v{state.definition_version}  {state.saga_id}  "
        f"status [bold]{state.status.value}[/]  version {state.version}"
    )
    if trace_id(state.traceparent):  # find its spans in the tracing backend, its lines in logs
        console.print(f"trace {trace_id(state.traceparent)}")
    if state.reason:
        console.print(f"reason: {state.reason} (step {state.failed_step})")
    steps = Table("step", "status", "attempts", "compensation attempts", "error")
    for name, record in state.steps.items():
        steps.add_row(
            name,
            record.status.value,
            str(record.attempts),
            str(record.compensation_attempts),
            record.error or "",
        )
    console.print(steps)
    timeline = Table("at", "what", "step", "phase", "attempt", "detail")
    for entry in history:
        timeline.add_row(
            _when(float(entry["at"])),
            entry["what"],
            entry["step"],
            entry["phase"],
            entry["attempt"] if entry["attempt"] != "0" else "",
            entry["detail"],
        )
    console.print(timeline)
    return 0


async def list_sagas(
    settings: Settings, status: str, older_than: float, limit: int, as_json: bool
) -> int:
    before = time.time() - older_than if older_than else None
    async with open_reader(settings) as store:
        found = await store.by_status(SagaStatus(status), limit, before)
        counts = await store.counts()
    now = time.time()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "counts": {k.value: v for k, v in counts.items()},
                    "sagas": [{"saga_id": s, "idle_s": round(now - at, 3)} for s, at in found],
                }
            )
        )
        return 0
    console.print("  ".join(f"{k.value}: {v}" for k, v in counts.items()))
    table = Table("saga id", "updated", "idle (s)")
    for saga_id, at in found:
        table.add_row(saga_id, _when(at), f"{now - at:.1f}")
    console.print(table)
    return 0


async def stuck(settings: Settings, older_than: float, as_json: bool) -> int:
    """Running or compensating sagas idle past ``older_than``, and every failed saga."""
    before = time.time() - older_than
    async with open_reader(settings) as store:
        found = {
            status.value: await store.by_status(
                status, 1000, None if status is SagaStatus.FAILED else before
            )
            for status in (SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.FAILED)
        }
    total = sum(len(v) for v in found.values())
    if as_json:
        click.echo(json.dumps({k: [s for s, _ in v] for k, v in found.items()}))
    else:
        for status, sagas in found.items():
            for saga_id, at in sagas:
                click.echo(f"{status:13} {saga_id}  idle {time.time() - at:.0f}s")
        click.echo(f"{total} saga(s) need attention" if total else "nothing stuck")
    return 1 if total else 0


async def act(settings: Settings, saga_id: str, action: OperatorAction) -> int:
    """Apply an operator action through the same path as any other event, on the saga's
    own definition version (the registered one when this configuration does not load it),
    and audit it whatever came of it (``baton.acting``)."""
    catalog = await catalog_for(settings, saga_id)
    async with operator_session(settings, catalog) as operator:
        outcome = await operator.perform(saga_id, action)
    if outcome.result == "refused":
        click.echo(f"baton {action.action}: {outcome.detail}", err=True)
        return 1
    if outcome.result == "ignored":
        click.echo(f"nothing done: {outcome.detail} (status {outcome.status})", err=True)
        return 1
    click.echo(f"{action.action}: saga {saga_id} is now {outcome.status}")
    return 0


@asynccontextmanager
async def operator_session(settings: Settings, catalog: Catalog) -> AsyncIterator[Operator]:
    """An ``Operator`` on this configuration's runtime: acts and audits."""
    keyring = orchestrator_keyring(settings, catalog)
    async with (
        open_runtime(settings, catalog=catalog, keyring=keyring) as rt,
        AuditStore.connect(
            str(settings.redis.url),
            namespace=settings.namespace,
            shards=settings.orchestrator.shards,
        ) as audit,  # fmt: skip
    ):
        yield Operator(rt.orchestrator, rt.store, audit, rt.broker, keyring)


async def show_dead_letters(settings: Settings, queue: str, limit: int, as_json: bool) -> int:
    async with open_broker(settings) as broker:
        letters = await deadletters.peek(
            broker, deadletters.dead_queue_of(broker.topology, queue), limit
        )
    if as_json:
        click.echo(json.dumps([letter.row() for letter in letters]))
        return 0
    table = Table("message id", "type", "saga id", "reason", "bytes", "sealed with")
    for letter in letters:  # Text: a message id like "[/]" is not markup
        cells = (letter.message_id, letter.kind, letter.saga_id, letter.reason,
                 str(letter.size), letter.sealed)  # fmt: skip
        table.add_row(*map(Text, cells))
    console.print(table)
    return 0


async def replay_dead_letters(settings: Settings, queue: str, limit: int) -> int:
    # the sealer opens sealed bodies; no key refuses here, before anything is moved
    async with open_broker(settings, sealer=Sealer.from_settings(settings.sealing)) as broker:
        dead = deadletters.dead_queue_of(broker.topology, queue)
        moved = await deadletters.replay(broker, dead, limit)
    click.echo(f"replayed {moved} message(s) from {dead}")
    return 0


async def dead_letters(settings: Settings, as_json: bool) -> int:
    signs_nothing = Keyring(ORCHESTRATOR, {})  # reads queue depths: no signing key needed
    async with open_runtime(settings, keyring=signs_nothing) as rt:
        depths = {
            q: await rt.broker.queue_depth(q)
            for q in rt.broker.topology.all_queues(rt.catalog.participants)
            if ".dead." in q
        }
    if as_json:
        click.echo(json.dumps(depths))
    else:
        for queue, depth in depths.items():
            click.echo(f"{depth:8}  {queue}")
    return 0
