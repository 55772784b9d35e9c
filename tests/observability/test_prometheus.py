"""Every dashboard panel and alert rule, evaluated by a real Prometheus scraping a real Baton.

One orchestrator and the four payment participants run as processes against a RabbitMQ node
owned by this test (so its rabbitmq_prometheus endpoint gives real queue depths) and the
shared Redis (under a namespace of the test's own). Prometheus scrapes them every second with
the job names of deploy/prometheus/prometheus.yml and evaluates deploy/prometheus/rules with
every ``for:`` set to 0s (the expressions are the deployed ones, unchanged). The test then
checks that every dashboard query and every alert expression parses and returns data, and
that stopping a participant makes "participant gone" and "sagas stuck" fire.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import redis.asyncio as aioredis
import yaml

from baton.demo import DemoOptions, transactions
from baton.load import drive
from baton.processes import ProcessGroup
from baton.runtime import wait_for_consumers
from contracts.envelope import Envelope
from contracts.topology import Topology
from messaging.transport.amqp import Broker
from messaging.transport.codec import Wire, encode
from messaging.trust.signing import KeySet
from participants.payments import seed_demo_world
from tests.conftest import PARTICIPANTS, delete_keys
from tests.observability.stack import (
    Prometheus,
    RabbitNode,
    ensure_prometheus,
    free_port,
    http_get,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "baton.json"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "baton.yml"
DEPLOY_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
SAGAS = 40
# The alerts this test provokes for real; every other alert is checked for data without its
# threshold (its condition is not met in a healthy run, which is the point).
PROVOKED = {"BatonParticipantGone", "BatonSagasStuck", "BatonDeadLettersGrowing"}


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]
    return rules


def without_threshold(expr: str) -> str:
    """The expression with its comparisons to a constant removed: the data it alerts on."""
    return re.sub(r"\s*(==|!=|>=|<=|>|<)\s*[0-9.]+", "", expr)


def immediate_rules() -> dict[str, Any]:
    """The deployed rules with every ``for:`` at 0s, so the test need not wait minutes."""
    rules: dict[str, Any] = copy.deepcopy(yaml.safe_load(RULES.read_text()))
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = "0s"
    return rules


def scrape_config(
    orchestrator_port: int, participant_ports: dict[str, int], rabbit_port: int
) -> dict[str, Any]:
    """The deployed scrape config with this test's targets, job names and paths kept."""
    deployed = yaml.safe_load(DEPLOY_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in deployed["scrape_configs"]}
    assert set(jobs) == {"orchestrator", "participants", "rabbitmq"}, "update this test"
    participants = [
        {"targets": [f"127.0.0.1:{port}"], "labels": {"participant": name}}
        for name, port in participant_ports.items()
    ]
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "orchestrator",
             "static_configs": [{"targets": [f"127.0.0.1:{orchestrator_port}"]}]},
            {"job_name": "participants", "static_configs": participants},
            {"job_name": "rabbitmq", "metrics_path": jobs["rabbitmq"]["metrics_path"],
             "static_configs": [{"targets": [f"127.0.0.1:{rabbit_port}"]}]},
        ],
    }  # fmt: skip


def test_deployed_prometheus_config_and_rules_pass_promtool() -> None:
    ensure_prometheus()
    for args in (["check", "config", str(DEPLOY_CONFIG)], ["check", "rules", str(RULES)]):
        done = subprocess.run(["promtool", *args], capture_output=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_every_alert_has_a_runbook_entry_and_the_dashboard_a_datasource() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    for rule in alert_rules():
        assert rule["alert"] in operations, f"{rule['alert']} missing from docs/operations.md"
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uid = datasource["datasources"][0]["uid"]
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid, panel["title"]


def _nonempty(prometheus: Prometheus, expr: str) -> bool:
    return bool(prometheus.query(expr))


async def test_dashboard_and_alerts_against_a_real_prometheus(redis_url: str) -> None:
    binary = await asyncio.to_thread(ensure_prometheus)
    namespace = f"obs-{uuid4().hex[:10]}."
    logs = Path(tempfile.mkdtemp(prefix="baton-obs-logs-"))
    node = RabbitNode("baton-obs", prometheus=True)
    ports = {name: free_port() for name in ("orchestrator", *PARTICIPANTS)}
    prometheus: Prometheus | None = None
    group: ProcessGroup | None = None
    broker: Broker | None = None
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await asyncio.to_thread(node.start)
        group = ProcessGroup(
            {
                "BATON_NAMESPACE": namespace,
                "BATON_RABBIT__URL": node.url,
                "BATON_REDIS__URL": redis_url,
                "BATON_ORCHESTRATOR__STUCK_AFTER_S": "2",
                "BATON_ORCHESTRATOR__STATE_INTERVAL_S": "0.5",
            },
            logs,
        )
        keys = KeySet.generate(["orchestrator", *PARTICIPANTS, "cli"])  # each its own key
        group.spawn("orchestrator", "orchestrator",
                    env={"BATON_METRICS__PORT": str(ports["orchestrator"]),
                         **keys.env("orchestrator")})  # fmt: skip
        for name in PARTICIPANTS:
            metrics = {"BATON_METRICS__PORT": str(ports[name])}
            group.spawn(name, "participant", name, env={**metrics, **keys.env(name)})
        upstream = keys.keyring("cli")
        prometheus = Prometheus(
            scrape_config(
                ports["orchestrator"], {p: ports[p] for p in PARTICIPANTS}, node.prometheus_port
            ),
            immediate_rules(),
        )
        await asyncio.to_thread(prometheus.start, binary)

        topology = Topology(namespace=namespace)
        broker = await Broker.connect(node.url, topology)
        await broker.declare(PARTICIPANTS)
        queues = [topology.start_queue, topology.replies_queue]
        await wait_for_consumers(
            broker, dict.fromkeys([*queues, *map(topology.command_queue, PARTICIPANTS)], 1)
        )

        # Readiness: every process answers /healthz with 200 and names its checks.
        for name, port in ports.items():
            status, body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/healthz")
            assert status == 200, (name, body)
            checks = {"rabbitmq": True, "redis": True, "consumers": True}  # every queue consumed
            assert json.loads(body) == {"ready": True, "checks": checks}

        # A healthy run with crafted failures at every step, and one undecodable start.
        world = await seed_demo_world(redis, namespace, accounts=20, balance_minor=10**9)
        starts, _ = transactions(world, DemoOptions(sagas=SAGAS, fail_rate=0.5, seed=11))
        _, progress = await drive(broker, starts, concurrency=20, timeout_s=60, keyring=upstream)
        assert progress.done == SAGAS, progress
        await broker.publish(
            upstream.sign(Wire(b"{not json", "payments.start_transaction.v1", uuid4().hex)),
            exchange="",
            routing_key=topology.start_queue,
        )

        p = prometheus

        def scraped_everything() -> bool:
            finished = p.query("sum(baton_sagas_finished_total)")
            return (
                bool(finished)
                and float(finished[0]["value"][1]) >= SAGAS
                and _nonempty(p, "baton_dead_letters_total")
                and _nonempty(p, f'rabbitmq_queue_messages_ready{{queue=~"{namespace}.*"}}')
            )

        await asyncio.to_thread(wait_until, scraped_everything, "the run in Prometheus", 30)

        # Every dashboard query parses (a bad one raises) and has data. Rates need two
        # samples after the run, so poll the whole set until it is complete.
        queries = dashboard_queries()
        assert len(queries) >= 20

        def empty_panels() -> list[str]:
            return [title for title, expr in queries if not p.query(expr)]

        missing: list[str] = []

        def all_panels_have_data() -> bool:
            missing[:] = empty_panels()
            return not missing

        try:
            await asyncio.to_thread(wait_until, all_panels_have_data, "panel data", 20)
        except AssertionError:
            raise AssertionError(f"panels without data: {missing}") from None

        # Every alert expression parses; the ones not provoked have data under the threshold.
        for rule in alert_rules():
            p.query(rule["expr"])
            if rule["alert"] not in PROVOKED:
                assert p.query(without_threshold(rule["expr"])), rule["alert"]

        # Provoke: the capture participant goes away while payments keep coming. Its
        # scrape fails (participant gone) and sagas wait at the pivot past stuck_after.
        assert group.stop("transaction") is not None
        for n in range(3):
            payment = world.transaction(1000 + n)
            envelope = Envelope(kind=payment.KIND, saga_id="-")
            await broker.publish(
                upstream.sign(encode(envelope, payment)),
                exchange="",
                routing_key=topology.start_queue,
            )
        fired: set[str] = set()  # stuck sagas come and go as timeouts retry them: accumulate

        def provoked_fired() -> bool:
            fired.update(p.firing())
            return fired >= PROVOKED

        try:
            await asyncio.to_thread(wait_until, provoked_fired, "alerts firing", 45)
        except AssertionError:
            state = {e: p.query(e) for e in ("baton_sagas_stuck", 'up{job="participants"}')}
            raise AssertionError(f"fired: {fired}; {state}") from None
        assert "BatonOrchestratorDown" not in fired
    finally:
        if group is not None:
            group.stop_all()
        if broker is not None:
            await broker.close()
        if prometheus is not None:
            prometheus.close()
        node.close()
        await delete_keys(redis, namespace)
        await redis.aclose()
        shutil.rmtree(logs, ignore_errors=True)
