"""Metrics, health endpoint, logs and traces of a real saga, checked in-process.

The end-to-end test runs one orchestrator replica and the four real payment participants in
this process on the shared RabbitMQ and Redis (under the test's namespace), with structlog
captured and OpenTelemetry spans recorded in memory, and checks what an operator would read.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import AsyncExitStack
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from rich.console import Console

from baton.top import top
from baton_sdk import PrometheusWorkerMetrics, Worker
from baton_sdk import worker as worker_module
from contracts.envelope import Envelope
from contracts.topology import Topology
from messaging.observability import otel, tracing
from messaging.observability.health import ObservabilityServer, serving
from messaging.observability.logs import MASK, configure_logging, redact
from messaging.settings import ParticipantSettings, Settings
from messaging.transport.amqp import Broker
from messaging.transport.codec import encode
from messaging.trust.signing import KeySet
from orchestrator.core.catalog import saga_id_for
from orchestrator.runtime import runner
from participants.payments import SERVICES, seed_demo_world
from tests.conftest import PARTICIPANTS
from tests.integration.harness import running_baton
from tests.observability.stack import http_get
from tests.support.sagas import catalog as catalog_of

TRACE = "0af7651916cd43dd8448eb211c80319c"


# -- the health and metrics endpoint ------------------------------------------------------


async def _get(port: int, path: str) -> tuple[int, bytes]:
    return await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}{path}")


async def test_endpoint_serves_metrics_readiness_and_liveness() -> None:
    metrics = PrometheusWorkerMetrics(CollectorRegistry())
    metrics.register("payment", ["payments.authorize_payment.v1"])
    healthy: dict[str, bool | None] = {"rabbitmq": True, "redis": True}  # None: the check raises

    async def check(name: str) -> bool:
        if name == "redis" and healthy[name] is None:
            raise ConnectionError("down")
        return bool(healthy[name])

    checks = {name: (lambda n=name: check(n)) for name in healthy}
    async with ObservabilityServer(metrics.registry, checks, port=0, host="127.0.0.1") as server:
        status, body = await _get(server.port, "/metrics")
        assert status == 200
        assert b'baton_participant_messages_total{kind="payments.authorize_payment.v1"' in body
        status, body = await _get(server.port, "/healthz")
        assert (status, json.loads(body)["ready"]) == (200, True)
        healthy["rabbitmq"] = False
        status, body = await _get(server.port, "/healthz")
        assert (status, json.loads(body)) == (
            503, {"ready": False, "checks": {"rabbitmq": False, "redis": True}}
        )  # fmt: skip
        healthy.update(rabbitmq=True, redis=None)
        status, body = await _get(server.port, "/healthz")
        assert (status, json.loads(body)["checks"]["redis"]) == (503, False)
        assert (await _get(server.port, "/livez"))[0] == 200
        assert (await _get(server.port, "/nope"))[0] == 404


async def test_endpoint_is_off_when_the_port_is_zero() -> None:
    async with serving(CollectorRegistry(), {}, 0) as server:
        assert server is None


def test_participant_metrics_keep_unknown_kinds_out_of_the_label_set() -> None:
    metrics = PrometheusWorkerMetrics(CollectorRegistry())
    metrics.register("risk", ["payments.assess_risk.v1"])
    metrics.observe(participant="risk", kind="payments.assess_risk.v1", outcome="ok", seconds=0.01)
    metrics.observe(
        participant="risk", kind="attacker.chosen.v9", outcome="dead_lettered", seconds=0
    )
    value = metrics.registry.get_sample_value
    assert (
        value(
            "baton_participant_messages_total",
            {"participant": "risk", "kind": "payments.assess_risk.v1", "outcome": "ok"},
        )
        == 1
    )
    assert (
        value(
            "baton_participant_messages_total",
            {"participant": "risk", "kind": "unknown", "outcome": "dead_lettered"},
        )
        == 1
    )
    assert value("baton_participant_messages_total",
                 {"participant": "risk", "kind": "attacker.chosen.v9",
                  "outcome": "dead_lettered"}) is None  # fmt: skip


# -- logs -----------------------------------------------------------------------------------


def test_redaction_masks_secrets_at_any_depth_and_card_numbers_in_text() -> None:
    event = redact(None, "info", {
        "event": "x",
        "card_token": "tok_abc",
        "account_id": "acct-1",
        "Client_Secret": "s3cret",
        "nested": {"rows": [{"iban": "DE89370400440532013000", "note": "ok"}], "password": "p"},
        "detail": "card 4111 1111 1111 1111 / 4111111111111111 failed",
        "saga_id": "12345678-1234-1234-1234-123456789012",
        "at": "2026-11-22T03:37:03.123Z",
        "idempotency_key": "k-1",
    })  # fmt: skip
    assert event["card_token"] == event["account_id"] == event["Client_Secret"] == MASK
    assert event["nested"] == {"rows": [{"iban": MASK, "note": "ok"}], "password": MASK}
    assert event["detail"] == f"card {MASK} / {MASK} failed"
    # ids, timestamps and keys that only look alike stay readable
    assert event["saga_id"] == "12345678-1234-1234-1234-123456789012"
    assert event["at"] == "2026-11-22T03:37:03.123Z"
    assert event["idempotency_key"] == "k-1"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("restore_logging")
def test_configured_logging_is_json_levelled_and_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("warning", "json")
    log = structlog.get_logger("baton.test")
    log.info("hidden", saga_id="s")
    log.warning("shown", saga_id="s", card_token="tok_secret")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == ["shown"]
    assert lines[0]["card_token"] == MASK
    assert lines[0]["level"] == "warning"
    assert "timestamp" in lines[0]


# -- traces ---------------------------------------------------------------------------------


def test_each_hop_is_a_child_span_of_the_same_trace() -> None:
    parent = f"00-{TRACE}-b7ad6b7169203331-01"
    hop = tracing.child(parent)
    assert tracing.trace_id(hop) == TRACE
    assert tracing.span_id(hop) not in ("", "b7ad6b7169203331")
    assert hop.endswith("-01")
    fresh = tracing.child("garbage")
    assert tracing.trace_id(fresh) not in ("", TRACE)


def test_otel_export_is_off_without_an_endpoint() -> None:
    assert otel.enable_otlp("baton-test", environ={}) is False


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every hop recorded as an OpenTelemetry span, in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.set_span_hook(otel.span_hook(provider.get_tracer("test")))
    yield exporter
    tracing.set_span_hook(None)
    provider.shutdown()


# -- one real saga end to end ---------------------------------------------------------------


@pytest.fixture
async def participants(
    redis_client: aioredis.Redis, rabbit_url: str, topology: Topology, namespace: str,
    keys: KeySet,
) -> AsyncIterator[dict[str, PrometheusWorkerMetrics]]:  # fmt: skip
    """The four real payment participants, each a Worker on its own connection."""
    metrics = {name: PrometheusWorkerMetrics(CollectorRegistry()) for name in PARTICIPANTS}
    stop = asyncio.Event()
    async with AsyncExitStack() as stack:
        tasks = []
        for name in PARTICIPANTS:
            broker = await Broker.connect(rabbit_url, topology, prefetch=8)
            stack.push_async_callback(broker.close)
            handlers = SERVICES[name](redis_client, namespace)
            worker = Worker(
                name, handlers, broker, redis_client, namespace, ParticipantSettings(),
                keyring=keys.keyring(name), rng=random.Random(1), metrics=metrics[name],
            )  # fmt: skip
            tasks.append(asyncio.create_task(worker.run(stop)))
        try:
            yield metrics
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 15)


def _lines(logs: list[MutableMapping[str, Any]], event: str) -> list[MutableMapping[str, Any]]:
    return [line for line in logs if line["event"] == event]


async def test_a_saga_is_one_trace_with_canonical_lines_metrics_and_history(
    broker: Broker,
    redis_client: aioredis.Redis,
    settings: Settings,
    namespace: str,
    participants: dict[str, PrometheusWorkerMetrics],
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
    keys: KeySet,
) -> None:
    # A logger used once under a configuration with cache_logger_on_first_use (any earlier
    # in-process CLI call) keeps that configuration: give the two modules fresh ones.
    monkeypatch.setattr(runner, "log", structlog.get_logger("baton.orchestrator"))
    monkeypatch.setattr(worker_module, "log", structlog.get_logger(worker_module.__name__))
    world = await seed_demo_world(redis_client, namespace, accounts=2, balance_minor=10**6)
    catalog = catalog_of()
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        async with running_baton(broker, redis_client, settings, catalog, keys=keys) as baton:
            start = world.transaction(0)
            envelope = Envelope(
                kind=start.KIND, saga_id="-", reply_to=baton.reply_queue,
                traceparent=f"00-{TRACE}-b7ad6b7169203331-01",
            )  # fmt: skip
            await broker.publish(
                baton.upstream.sign(encode(envelope, start)), exchange="",
                routing_key=broker.topology.start_queue,
            )  # fmt: skip
            saga_id = saga_id_for("payment", start.idempotency_key)
            final = await baton.final(saga_id)
            state = await baton.state(saga_id)
            history = await baton.store.history(saga_id)
            metrics = baton.orchestrator.metrics
    assert final["event"] == "completed"

    # the trace: the saga's span under the caller's, every command and reply a child hop
    assert tracing.trace_id(state.traceparent) == TRACE
    assert f"trace {TRACE}" in history[0]["detail"]
    recorded = spans.get_finished_spans()
    assert recorded
    assert {f"{s.context.trace_id:032x}" for s in recorded} == {TRACE}
    assert len({s.context.span_id for s in recorded}) == len(recorded)
    by_id = {s.context.span_id: s for s in recorded}
    handled = [s for s in recorded if s.name.startswith(tuple(PARTICIPANTS))]
    assert len(handled) == 4
    for span in handled:  # participant span -> the command's send span -> the saga's span
        assert span.parent is not None
        sent = by_id[span.parent.span_id]
        assert sent.name.startswith("send ")
        assert sent.parent is not None
        assert f"{sent.parent.span_id:016x}" == tracing.span_id(state.traceparent)

    # one canonical line per handled message, with the saga's position and trace id
    replies = [line for line in _lines(logs, "message_handled") if line.get("step")]
    assert len(replies) == 4
    for line in replies:
        assert line["saga_id"] == saga_id
        assert line["saga"] == "payment"
        assert line["attempt"] == 1
        assert line["outcome"] == "applied"
        assert line["trace_id"] == TRACE
        assert line["duration_ms"] >= 0
    commands = _lines(logs, "command_handled")
    assert {line["participant"] for line in commands} == set(PARTICIPANTS)
    for line in commands:
        assert (line["saga_id"], line["trace_id"], line["attempt"]) == (saga_id, TRACE, 1)
        assert line["outcome"] == "ok"
        assert {"step", "saga", "duration_ms"} <= set(line)
    assert start.card_token not in json.dumps(commands)  # payloads are never logged whole

    # the metrics the dashboard reads
    value = metrics.registry.get_sample_value
    assert value("baton_sagas_finished_total", {"saga": "payment", "outcome": "completed"}) == 1
    for step in state.steps:
        labels = {"saga": "payment", "step": step, "outcome": "succeeded"}
        assert value("baton_step_duration_seconds_count", labels) == 1
    for name, worker_metrics in participants.items():
        total = sum(
            s.value
            for m in worker_metrics.registry.collect()
            for s in m.samples
            if s.name == "baton_participant_messages_total" and s.labels["outcome"] == "ok"
        )
        assert total == 1, name

    # the shared-state gauges
    await baton.orchestrator.refresh_state()
    assert value("baton_sagas", {"status": "completed"}) == 1
    assert value("baton_sagas_in_flight") == 0
    assert value("baton_outbox_lag_seconds") == 0


async def test_top_once_prints_outcomes_stuck_sagas_and_queues(
    broker: Broker, settings: Settings
) -> None:
    console = Console(record=True, width=160)
    assert await top(settings, once=True, interval_s=0.05, console=console) == 0
    text = console.export_text()
    for heading in ("finished/s", "in flight", "stuck", "completed", "compensated", "failed"):
        assert heading in text
    assert broker.topology.command_queue("payment") in text
    assert broker.topology.start_queue in text
