"""One fault scenario end to end: real processes, a stream of payments, faults, then the books.

``FaultRun`` starts orchestrator replicas and the four participants as OS processes under
a namespace of their own, on the suite's private RabbitMQ node and Redis server, seeds a
world, publishes payments (a share crafted to fail at each step) with a bounded number in
flight while fault tasks run beside it, waits with a deadline for every saga to finish and
for the queues and the outbox to drain, and checks: nothing lost or unfinished, the books
hold, nothing captured twice, and the dead-letter queues hold exactly the injected
malformed messages. A supervisor restarts every process that dies, unless a fault holds it
down on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import redis.asyncio as aioredis

from baton.processes import ProcessGroup
from baton.runtime import wait_for_consumers
from contracts.envelope import H_REASON, Envelope
from contracts.topology import Topology
from messaging.redis_client import redis_from_url
from messaging.transport.amqp import Broker
from messaging.transport.codec import Wire, encode
from messaging.trust.signing import KeySet
from orchestrator.core.catalog import saga_id_for
from orchestrator.core.state import SagaState, SagaStatus
from orchestrator.runtime.redis_store import RedisSagaStore
from participants.payments import DemoWorld, FailAt, Ledger, seed_demo_world
from participants.payments.contracts import StartTransaction
from tests.fault.services import RabbitNode, RedisServer
from tests.support.rabbit_cluster import RabbitCluster
from tests.support.redis_cluster import RedisClusterServers
from tests.support.sagas import payment_data

PARTICIPANTS = ("payment", "risk", "pci", "transaction")
FAIL_POINTS: tuple[FailAt, ...] = ("authorize", "risk", "pci", "pci_merchant", "capture")
LONG = os.environ.get("BATON_FAULTS_LONG") == "1"
DELIVERY_LIMIT = 1000  # quorum queues: the settings' default, declared by the run itself
KILLED = -9  # Popen.returncode of a SIGKILL'd child
# Fault kinds that kill a process or restart a server (prefixes of faults_injected keys).
CRASH_FAULTS = (
    "orchestrator_kill", "orchestrator_crash", "participant_kill", "participant_crash",
    "rabbit_restart", "redis_restart", "rabbit_node", "redis_primary", "rabbit_rolling",
)  # fmt: skip
CRASHED = 137  # exit code of an injected crash (participant chaos or an orchestrator crash point)

# command_handled outcomes a healthy run without faults never produces
FAULT_OUTCOMES = frozenset({"duplicate", "busy", "retry", "expired", "cancelled"})

Fault = Callable[["FaultRun"], Coroutine[Any, Any, None]]


def fault_definition(path: Path, *, version: int, deadline_s: float, attempts: int) -> Path:
    """The payment saga with short timeouts, as a higher version the catalog uses for new sagas.

    Same name ``payment`` (so saga ids and the books see a payment), same trigger; JSON is
    YAML, so the file is written with ``json``.
    """
    data = payment_data()
    data.update(version=version, deadline_s=deadline_s)
    for step in data["steps"]:
        step["action"]["timeout_s"] = 2.0
        step["action"]["retry"].update(
            max_attempts=attempts, initial_backoff_s=0.1, max_backoff_s=1.0
        )
        if step.get("compensation"):
            step["compensation"]["timeout_s"] = 2.0
            step["compensation"]["retry"].update(
                max_attempts=200, initial_backoff_s=0.1, max_backoff_s=1.0
            )
    path.write_text(json.dumps(data))
    return path


@dataclass
class Scenario:
    """What one run does. Faults run beside the stream; the run waits for all of them."""

    name: str
    sagas: int
    faults: list[Fault] = field(default_factory=list)
    replicas: int = 2
    in_flight: int = 40
    fail_share: float = 0.2
    deadline_s: float = 60.0  # the saga deadline of the definition used
    attempts: int = 8  # forward attempts before the pivot
    orchestrator_env: dict[str, str] = field(default_factory=dict)
    participant_env: dict[str, dict[str, str]] = field(default_factory=dict)
    finish_within_s: float = 240.0
    rate_per_s: float = 0.0  # starts published per second at most; 0: as fast as the window
    expect_outcomes: bool = True  # crafted failures compensated, the rest completed
    # Refusals a payment built to succeed may still end compensated with (a race it can lose,
    # e.g. insufficient_funds when several sagas share a small balance); any other reason is
    # unexpected. Those refusals are counted as faults (``refused_<reason>``).
    allowed_refusals: frozenset[str] = frozenset()
    # Realistic balances: ``accounts`` accounts (0: one per five sagas) seeded with
    # ``balance_minor`` each, and the amount of each payment drawn from ``amounts_minor``.
    accounts: int = 0
    balance_minor: int = 10**9
    amounts_minor: tuple[int, ...] = (1_000,)
    env: dict[str, str] = field(default_factory=dict)  # every process's (clusters: quorum...)
    queue_type: str = "classic"  # how the run declares its queues


@dataclass
class Result:
    scenario: str
    sagas: int
    completed: int
    compensated: int
    failed: int
    lost: int
    unfinished: int
    unexpected_outcomes: int
    double_captures: int
    books_balanced: bool
    books: dict[str, Any]
    faults_injected: dict[str, int]
    dead_lettered: dict[str, int]
    dead_letters_expected: dict[str, int]
    dead_letters_without_reason: int
    elapsed_s: float
    # why messages were dead-lettered ("<queue tail> <reason>"), and copies of one message
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    dead_letter_copies: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # why sagas were compensated
    restarts_after_outage: int = 0  # processes that could not start during an outage
    overdrawn: list[str] = field(default_factory=list)  # accounts with a negative balance
    # what the faults found when they struck (not faults themselves): e.g. sagas in flight
    fault_notes: dict[str, int] = field(default_factory=dict)
    rabbit_nodes: int = 1  # the size of the clusters it ran on
    redis_primaries: int = 1

    @property
    def crashed(self) -> bool:
        """A process died or a server restarted: a dead letter may then be copied twice (its
        copy confirmed, the process gone before the mark that recognises a redelivery)."""
        return any(n and kind.startswith(CRASH_FAULTS) for kind, n in self.faults_injected.items())

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.unfinished == 0
            and self.failed == 0
            and self.double_captures == 0
            and self.books_balanced
            and self.dead_lettered == self.dead_letters_expected
            and self.dead_letters_without_reason == 0
            and (self.dead_letter_copies == 0 or self.crashed)
            and not self.overdrawn
        )


class FaultRun:
    """The state shared by the driver, the supervisor and the fault tasks of one scenario."""

    def __init__(
        self,
        scenario: Scenario,
        rabbit: RabbitNode | RabbitCluster,
        redis_server: RedisServer | RedisClusterServers,
    ) -> None:
        self.scenario = scenario
        self.rabbit = rabbit
        self.redis_server = redis_server
        self.namespace = f"fault-{uuid4().hex[:10]}."
        self.topology = Topology(namespace=self.namespace)
        self.rng = random.Random(hash(scenario.name) & 0xFFFF)
        self.dir = Path(tempfile.mkdtemp(prefix=f"baton-{scenario.name}-"))
        self.faults: Counter[str] = Counter()
        self.fault_notes: Counter[str] = Counter()
        self.expected_dead: Counter[str] = Counter()
        self.held_down: set[str] = set()  # processes a fault keeps down on purpose
        self.restarts_after_outage = 0
        self.infra = asyncio.Lock()  # one broker or Redis fault at a time
        self.outage_at = -1e9  # monotonic time of the last broker or Redis outage
        self.publishing = True
        self._supervisor: asyncio.Task[None] | None = None
        self.finished_seen = 0
        self.saga_ids: list[str] = []
        self.expected: dict[str, str] = {}  # saga id -> completed / compensated
        self.world: DemoWorld | None = None
        self.broker: Broker
        self.redis: aioredis.Redis
        self.store: RedisSagaStore
        definition = fault_definition(
            self.dir / "payment.json",
            version=1000,
            deadline_s=scenario.deadline_s,
            attempts=scenario.attempts,
        )
        env = {
            "BATON_NAMESPACE": self.namespace,
            "BATON_RABBIT__URL": rabbit.url,
            "BATON_REDIS__URL": redis_server.url,
            "BATON_RABBIT__PREFETCH": "32",
            "BATON_ORCHESTRATOR__DEFINITIONS": json.dumps([str(definition)]),
            "BATON_ORCHESTRATOR__OUTBOX_GRACE_S": "1.0",
            **scenario.env,
        }
        self.group = ProcessGroup(env, self.dir / "logs")
        self.keys = KeySet.generate(("orchestrator", *PARTICIPANTS, "cli"))  # one per process

    # -- processes -----------------------------------------------------------------------

    @property
    def orchestrators(self) -> list[str]:
        return [f"orchestrator-{i}" for i in range(self.scenario.replicas)]

    def spawn(self, name: str) -> None:
        if name.startswith("orchestrator"):
            env = {**self.keys.env("orchestrator"), **self.scenario.orchestrator_env}
            self.group.spawn(name, "orchestrator", env=env)
        else:
            env = {**self.keys.env(name), **(self.scenario.participant_env.get(name) or {})}
            self.group.spawn(name, "participant", name, env=env)

    def kill(self, name: str, kind: str) -> None:
        """SIGKILL ``name`` (counted as ``kind``); the supervisor restarts it."""
        if self.group.procs[name].poll() is None:
            self.group.kill(name)
            self.faults[kind] += 1

    async def supervise(self) -> None:
        """Restart whatever died, and count the injected crashes among the deaths."""
        while True:
            for name, proc in list(self.group.procs.items()):
                code = proc.poll()
                if code is None or name in self.held_down:
                    continue
                if code not in (KILLED, CRASHED):
                    # A process that cannot reach RabbitMQ or Redis at start-up exits non-zero
                    # and relies on its supervisor (as under Kubernetes); any other exit is a bug.
                    if time.monotonic() - self.outage_at > 30:
                        raise AssertionError(f"{name} exited with {code}; see {self.dir}/logs")
                    self.restarts_after_outage += 1
                if code == CRASHED and not name.startswith("orchestrator"):
                    self.faults["participant_crash"] += 1  # orchestrators log their crash point
                self.spawn(name)
            await asyncio.sleep(0.1)

    def check(self) -> None:
        """Raise at once what the supervisor found (a process that died on its own)."""
        if self._supervisor is not None and self._supervisor.done():
            self._supervisor.result()

    # -- messages --------------------------------------------------------------------------

    async def publish(self, wire: Wire, routing_key: str, exchange: str = "") -> None:
        """Publish with a confirm, retrying across broker restarts until it is confirmed."""
        for _ in range(600):
            try:
                await self.broker.publish(wire, exchange=exchange, routing_key=routing_key)
            except Exception:  # a closed or reconnecting channel: try again shortly
                await asyncio.sleep(0.1)
            else:
                return
        raise AssertionError(f"could not publish to {routing_key}")

    async def inject(self, queue: str, wire: Wire, kind: str) -> None:
        """A message that must end in ``queue``'s dead-letter queue."""
        await self.publish(wire, queue)
        self.expected_dead[self.topology.dead_letter_queue(queue)] += 1
        self.faults[kind] += 1

    async def finished(self) -> int:
        counts = await self.store.counts()
        return sum(counts[s] for s in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED))

    async def sagas_in_flight(self) -> list[SagaState]:
        """Running or compensating sagas, a sample for faults that target live sagas."""
        states = []
        try:
            for saga_id in self.rng.sample(self.saga_ids, min(len(self.saga_ids), 40)):
                state = await self.store.load(saga_id)
                if state is not None and not state.status.is_finished:
                    states.append(state)
        except Exception:  # Redis restarting under another fault: no targets this round
            return []
        return states

    # -- the run -----------------------------------------------------------------------------

    def transactions(self) -> list[StartTransaction]:
        assert self.world is not None
        starts = []
        for n in range(self.scenario.sagas):
            fails = self.rng.random() < self.scenario.fail_share
            fails_at = self.rng.choice(FAIL_POINTS) if fails else None
            amount = self.rng.choice(self.scenario.amounts_minor)
            start = self.world.transaction(n, fails_at=fails_at, amount_minor=amount)
            starts.append(start)
        return starts

    async def drive(self, starts: list[StartTransaction]) -> None:
        """Publish every start, keeping at most ``in_flight`` sagas unfinished."""
        began = time.monotonic()
        for n, body in enumerate(starts):
            if self.scenario.rate_per_s:
                await asyncio.sleep(
                    max(0.0, began + n / self.scenario.rate_per_s - time.monotonic())
                )
            while n - await self._finished_quietly() >= self.scenario.in_flight:
                self.check()
                await asyncio.sleep(0.05)
            saga_id = saga_id_for("payment", body.idempotency_key)
            self.saga_ids.append(saga_id)
            crafted = "fails at" in body.description
            self.expected[saga_id] = "compensated" if crafted else "completed"
            wire = encode(Envelope(kind=body.KIND, saga_id="-"), body)
            wire = self.keys.keyring("cli").sign(wire)  # as `baton start` does
            await self.publish(wire, self.topology.start_queue)
        self.publishing = False

    async def _finished_quietly(self) -> int:
        """Finished sagas, or the last known figure while Redis restarts."""
        with contextlib.suppress(Exception):
            self.finished_seen = await self.finished()
        return self.finished_seen

    async def wait_until_settled(self) -> None:
        """Every saga final, the queues drained and the outbox empty (or the deadline)."""
        deadline = time.monotonic() + self.scenario.finish_within_s
        queues = [self.topology.start_queue, self.topology.replies_queue]
        queues += [self.topology.command_queue(p) for p in PARTICIPANTS]
        while time.monotonic() < deadline:
            self.check()
            try:
                done = await self.finished() >= len(self.saga_ids)
                depths = [await self.broker.queue_depth(q) for q in queues] if done else [1]
                outbox = await self.store.outbox_pending(time.time() + 60, 1) if done else [1]
                if done and not any(depths) and not outbox:
                    return
            except Exception:  # a fault's restart still under way
                pass
            await asyncio.sleep(0.25)

    async def run(self) -> Result:
        began = time.perf_counter()
        self.redis = redis_from_url(self.redis_server.url)
        self.broker = await Broker.connect(
            self.rabbit.url, self.topology, prefetch=32, queue_type=self.scenario.queue_type,
            delivery_limit=DELIVERY_LIMIT, wait_s=60,
        )  # fmt: skip
        self.store = RedisSagaStore(
            self.redis, namespace=self.namespace, shards=16, retention_s=3600
        )
        try:
            await self.broker.declare(PARTICIPANTS)
            self.world = await seed_demo_world(
                self.redis, self.namespace,
                accounts=self.scenario.accounts or max(20, self.scenario.sagas // 5),
                balance_minor=self.scenario.balance_minor,
            )  # fmt: skip
            for name in [*self.orchestrators, *PARTICIPANTS]:
                self.spawn(name)
            await self._wait_for_consumers()
            faults: list[asyncio.Task[None]] = []
            supervisor = self._supervisor = asyncio.create_task(self.supervise())
            try:
                faults += [asyncio.create_task(f(self)) for f in self.scenario.faults]
                await self.drive(self.transactions())
                while not all(fault.done() for fault in faults):
                    self.check()
                    await asyncio.sleep(0.1)
                await asyncio.gather(*faults)
                self.held_down.clear()
                await self.wait_until_settled()
                self.check()
            finally:
                supervisor.cancel()
                for fault in faults:
                    fault.cancel()
            return await self.judge(time.perf_counter() - began)
        finally:
            await self.close()

    async def _wait_for_consumers(self) -> None:
        t = self.topology
        await wait_for_consumers(self.broker, dict.fromkeys(t.work_queues(PARTICIPANTS), 1), 90)

    async def judge(self, elapsed: float) -> Result:
        outcomes: dict[str, str] = {}
        lost = unfinished = unexpected = 0
        reasons: Counter[str] = Counter()
        for saga_id in self.saga_ids:
            state = await self.store.load(saga_id)
            if state is None:
                lost += 1
                continue
            outcomes[saga_id] = state.status.value
            if state.status is SagaStatus.COMPENSATED:
                reasons[(state.reason or "").split(":")[0]] += 1
            if not state.status.is_finished:
                unfinished += 1
            elif state.status.value != self.expected[saga_id]:
                reason = (state.reason or "").split(":")[0]
                if reason in self.scenario.allowed_refusals:
                    self.faults[f"refused_{reason}"] += 1  # lost a race it may lose
                else:
                    unexpected += 1
        counts = Counter(outcomes.values())
        ledger = Ledger(self.redis, self.namespace)
        report = await ledger.check_books(outcomes)
        books = await ledger.snapshot()
        overdrawn = sorted(a for a, b in books.accounts.items() if b.balance < 0)
        dead, without_reason, why, copies = await self._dead_letters()
        self._count_logged_faults()
        return Result(
            scenario=self.scenario.name,
            sagas=len(self.saga_ids),
            completed=counts["completed"],
            compensated=counts["compensated"],
            failed=counts["failed"],
            lost=lost,
            unfinished=unfinished,
            unexpected_outcomes=unexpected,
            double_captures=len(report.double_captures),
            books_balanced=report.ok,
            books=report.model_dump(exclude={"ok"}),
            faults_injected=dict(sorted(self.faults.items())),
            dead_lettered=dead,
            dead_letters_expected=dict(sorted(self.expected_dead.items())),
            dead_letters_without_reason=without_reason,
            elapsed_s=round(elapsed, 1),
            dead_letter_reasons=dict(sorted(why.items())),
            dead_letter_copies=copies,
            reasons=dict(reasons),
            restarts_after_outage=self.restarts_after_outage,
            overdrawn=overdrawn,
            fault_notes=dict(sorted(self.fault_notes.items())),
        )

    async def _dead_letters(self) -> tuple[dict[str, int], int, Counter[str], int]:
        """Distinct messages per dead-letter queue (only non-empty ones), how many lack a
        reason, the reasons, and how many are a second copy of a message (same queue and
        message id): docs/guarantees.md #14, copied once except in a crash's window.

        Counted first, then drained to read each one's reason header; the queues are
        deleted right after anyway.
        """
        t = self.topology
        queues = t.work_queues(PARTICIPANTS)
        counts: dict[str, int] = {}
        without_reason = 0
        why: Counter[str] = Counter()
        seen: Counter[tuple[str, str]] = Counter()
        channel = await self.broker.connection.channel()
        try:
            for queue in queues:
                dead = t.dead_letter_queue(queue)
                depth = await self.broker.queue_depth(dead)
                if not depth:
                    continue
                counts[dead] = depth
                declared = await channel.declare_queue(dead, passive=True)
                while (message := await declared.get(no_ack=True, fail=False)) is not None:
                    reason = str((message.headers or {}).get(H_REASON) or "")
                    without_reason += not reason
                    code = reason.split(":", maxsplit=1)[0]
                    why[f"{queue.removeprefix(t.namespace)} {code}"] += 1
                    seen[(queue, str(message.message_id))] += 1
        finally:
            await channel.close()
        copies = sum(n - 1 for n in seen.values())
        distinct = Counter(queue for queue, _ in seen)
        counts = {t.dead_letter_queue(q): n for q, n in distinct.items()}
        return dict(sorted(counts.items())), without_reason, why, copies

    def _count_logged_faults(self) -> None:
        """Faults only the processes themselves see: crash points, reply and handler chaos.

        Also what the participants' protocol did about them (``handled_<outcome>`` for the
        outcomes that only a fault causes: a duplicate delivery answered from the inbox, a
        busy lease waited out, an infrastructure error redelivered, an expired command),
        so a scenario can assert its faults reached the code they are meant to exercise.
        """
        for path in (self.dir / "logs").glob("*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if '"crash_point"' in line or '"reply_chaos"' in line:
                    event = json.loads(line)
                    kind = event.get("point") or event.get("action")
                    prefix = "orchestrator_crash_" if event["event"] == "crash_point" else "reply_"
                    self.faults[prefix + str(kind).removeprefix("reply_")] += 1
                elif '"handler_chaos"' in line:
                    self.faults[f"handler_{json.loads(line).get('action')}"] += 1
                elif '"command_handled"' in line:
                    outcome = json.loads(line).get("outcome")
                    if outcome in FAULT_OUTCOMES:
                        self.faults[f"handled_{outcome}"] += 1

    async def close(self) -> None:
        """Stop every process, delete every queue and key, remove the run's directory."""
        self.group.stop_all()
        t = self.topology
        try:
            await self.broker.delete(t.all_queues(PARTICIPANTS), t.exchanges)
            async for key in self.redis.scan_iter(match=f"{self.namespace}*", count=1000):
                await self.redis.delete(key)
        finally:
            await self.broker.close()
            await self.redis.aclose()
            if os.environ.get("BATON_FAULTS_KEEP_LOGS") != "1":
                shutil.rmtree(self.dir, ignore_errors=True)
