"""One seed's world: the real processes on an in-memory broker and Redis, and the checks.

Orchestrator replicas run ``orchestrator.runtime.runner.Orchestrator`` on ``RedisSagaStore``;
participants run ``baton_sdk.worker.Worker`` with the real payment handlers, each
process with its own Redis client, broker connection and signing key. A process that ends
by itself is restarted with a backoff, as a supervisor would; ``storm.Storm`` crashes them
on purpose. The books are checked after every call that may move money.

The coupling to the code under test is here, in ``runner`` and ``_participant`` (the
constructors of the runner, the store and the worker) and in ``seed_books``.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fakeredis import FakeRedis as SyncFakeRedis
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from baton.sim import plan as p
from baton.sim.clock import VirtualLoop
from baton.sim.handlers import Conduct
from baton.sim.hosts import Gate, Host
from baton.sim.invariants import money_now, read_books
from baton.sim.network import Network, SimBroker
from baton.sim.trace import Trace
from baton_sdk import Worker
from contracts.events import SagaEvent
from contracts.topology import Topology
from messaging.settings import ParticipantSettings
from messaging.transport.codec import Wire
from messaging.transport.dead_marks import RedisDeadLetterMarks
from messaging.trust.sealing import Sealer
from messaging.trust.signing import ORCHESTRATOR, KeySet, SigningKey
from orchestrator.core.catalog import Catalog, saga_id_for
from orchestrator.core.definition import load_definition
from orchestrator.runtime.packages import default_package_paths, load_packages
from orchestrator.runtime.redis_store import RedisSagaStore
from orchestrator.runtime.runner import Orchestrator, RunnerConfig
from orchestrator.runtime.sealed_fields import SealedFields, sensitive_fields
from participants.payments import SERVICES, AccountSeed, Ledger, MerchantSeed
from participants.payments.ledger import LedgerKeys
from participants.payments.pci import COMPLIANT, PciService
from participants.payments.risk import RiskService

NAMESPACE = "sim."
CLIENT = "client"  # the upstream system's signer name
EVENTS = "sim.events"  # a queue bound to every lifecycle event, read after the run
SHARDS = 2
RETENTION_S = 30 * 24 * 3600
RUNNER = RunnerConfig(state_interval_s=30.0)  # gauges only: read them rarely
EXPECTED_EXITS = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)
_catalogs: dict[bool, Catalog] = {}
# Odd seeds run the payment saga with authorization, risk and compliance in one parallel
# group (as `baton bench --parallel` does): every fault of the storm then also hits branches
# in flight together, interrupted branches and a wave of compensations.
GROUPED = Path(__file__).parents[1] / "bench" / "payment_parallel.yaml"


def signing_keys(seed: int) -> KeySet:
    """A key per signer, drawn from the seed (so runs replay byte for byte)."""
    rng = random.Random(f"keys-{seed}")
    signers = (ORCHESTRATOR, *p.PARTICIPANTS, CLIENT)
    return KeySet(
        SigningKey(s, f"k{i}", Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)))
        for i, s in enumerate(signers)
    )


def grouped(seed: int) -> bool:
    """Whether ``seed`` runs the grouped payment definition (by parity: no RNG draw, so
    every seed's plan stays what it was)."""
    return seed % 2 == 1


def catalog(with_group: bool = False) -> Catalog:
    """The bundled packages' definitions (plus the grouped payment v2, which new sagas then
    take), loaded once per process: the YAML never changes in a run."""
    if with_group not in _catalogs:
        packages = load_packages(default_package_paths())
        definitions = list(packages.definitions)
        if with_group:
            definitions.append(load_definition(GROUPED, packages.registry))
        _catalogs[with_group] = Catalog(definitions, packages.registry)
    return _catalogs[with_group]


def _never_exit(code: int) -> NoReturn:
    raise SystemExit(code)  # the SDK's injected crashes are off; this only guards the sim


class World:
    """The processes, the shared Redis and broker, and everything seen while it ran."""

    def __init__(self, plan: p.Plan, loop: VirtualLoop) -> None:
        self.plan = plan
        self.loop = loop
        self.topology = Topology(namespace=NAMESPACE)
        self.trace = Trace(loop.time)
        self.tally: Counter[str] = Counter()
        self.redis = FakeServer()
        self.sync = SyncFakeRedis(server=self.redis)  # the checker's view: no outage, no await
        self.observer = FakeRedis(server=self.redis)  # reads after the storm
        self.catalog = catalog(grouped(plan.seed))
        key = random.Random(f"sealing-{plan.seed}").randbytes(32)
        self.sealed = SealedFields(Sealer({"sim": key}, "sim"), sensitive_fields(self.catalog))
        self.store = self.saga_store(self.observer)
        self.saga_ids = {s.index: saga_id_for("payment", s.key) for s in plan.sagas}
        self.amounts = {self.saga_ids[s.index]: s.amount for s in plan.sagas}
        self.trace.labels.update({sid: f"s{i}" for i, sid in self.saga_ids.items()})
        seed = plan.seed
        self.network = Network(random.Random(f"net-{seed}"), plan.knobs, self.trace, self.tally,
                               self._roles())  # fmt: skip
        self.broker = SimBroker(self.topology, faults=self.network, name="root")
        self.broker.network = self.network
        self.broker.server.on_dead = self._on_dead
        self.keys = signing_keys(seed)
        refusals = {(self.saga_ids[i], step): n for (i, step), n in plan.refusals.items()}
        self.conduct = Conduct(random.Random(f"handlers-{seed}"), plan.knobs.slow, refusals,
                               self.trace, self.tally, self.check_money,
                               self.violation)  # fmt: skip
        self.hosts: dict[str, Host] = {}
        self._incarnations: Counter[str] = Counter()
        self._exits: Counter[str] = Counter()
        self.client = self.host("client")
        self.violations: list[str] = []
        self.broken = asyncio.Event()
        self.stopping = False
        self.dead: Counter[str] = Counter()  # why the broker itself dead-lettered or dropped

    def _roles(self) -> dict[str, str]:
        t = self.topology
        roles = {t.command_queue(name): "command" for name in p.PARTICIPANTS}
        roles[t.replies_queue] = "reply"
        return roles

    # -- processes ------------------------------------------------------------------------------

    def host(self, name: str) -> Host:
        self._incarnations[name] += 1
        n = self._incarnations[name]
        gate = Gate(random.Random(f"redis-{self.plan.seed}-{name}-{n}"), self.plan.knobs.latency_s)
        return Host(name, self.redis, gate, lambda redis: self._connect(name, redis))

    def _connect(self, name: str, redis: FakeRedis) -> SimBroker:
        """A process's broker connection, with dead-letter marks in its Redis (as deployed)."""
        broker = self.broker.connect(name, dead_marks=RedisDeadLetterMarks(redis, NAMESPACE))
        broker.network = self.network
        return broker

    def spawn(self, name: str) -> None:
        """Start (or restart) the process ``name``: ``orchestrator-N`` or ``<participant>-N``."""
        if self.stopping:
            return
        host = self.hosts[name] = self.host(name)
        kind = name.rsplit("-", 1)[0]
        main: Callable[[Host], Awaitable[None]]
        if kind == "orchestrator":
            main = self._orchestrator
        else:
            main = lambda h: self._participant(h, kind)  # noqa: E731 - one line, one use
        host.start(lambda h: self._life(h, main))
        self.trace(f"start {name}#{self._incarnations[name]}")

    async def _life(self, host: Host, main: Callable[[Host], Awaitable[None]]) -> None:
        """Run a process to its end; one that ends by itself is restarted with a backoff."""
        try:
            await main(host)
        except EXPECTED_EXITS as exc:
            self.trace(f"{host.name} exited: {type(exc).__name__}: {str(exc)[:80]}")
        except Exception as exc:
            self.violation(f"process_error: {host.name} raised {type(exc).__name__}: {exc}")
        if self.stopping or self.hosts.get(host.name) is not host or host.stop.is_set():
            return
        self._exits[host.name] += 1
        delay = min(10.0, 0.5 * 2 ** min(self._exits[host.name], 5))
        host.kill()
        self.loop.call_later(delay, self.spawn, host.name)

    async def _orchestrator(self, host: Host) -> None:
        await self.runner(host).run(host.stop)

    def saga_store(self, client: FakeRedis) -> RedisSagaStore:
        """The store as ``baton.runtime.open_store`` builds it: sensitive fields sealed."""
        return RedisSagaStore(client, namespace=NAMESPACE, shards=SHARDS,
                              retention_s=RETENTION_S, sealed=self.sealed)  # fmt: skip

    def runner(self, host: Host) -> Orchestrator:
        """An orchestrator replica (or the operator's) as ``baton.runtime`` builds one."""
        store = self.saga_store(host.redis)
        keyring = self.keys.keyring(ORCHESTRATOR, upstreams=(CLIENT,))
        return Orchestrator(self.catalog, store, host.broker, keyring=keyring,
                            config=RUNNER, clock=self.loop.wall)  # fmt: skip

    async def _participant(self, host: Host, name: str) -> None:
        t = self.topology  # as ``run_participant``: wait for the declared topology first
        if not await host.broker.wait_for([t.command_queue(name)], [t.replies_exchange], host.stop):
            return
        handlers = self.conduct.wrap(name, SERVICES[name](host.redis, NAMESPACE))
        rng = random.Random(f"worker-{self.plan.seed}-{host.name}-{self._incarnations[host.name]}")
        worker = Worker(
            name, handlers, host.broker, host.redis, NAMESPACE,
            ParticipantSettings(), rng=rng, exit_process=_never_exit, clock=self.loop.wall,
            keyring=self.keys.keyring(name),
        )  # fmt: skip
        await worker.run(host.stop)

    # -- watching ---------------------------------------------------------------------------------

    def violation(self, text: str) -> None:
        if text not in self.violations:
            self.violations.append(text)
            self.trace(f"VIOLATION {text}")
        self.broken.set()

    def check_money(self) -> None:
        """After every step that may move money: the books as they are right now."""
        for wrong in money_now(read_books(self.sync, LedgerKeys(NAMESPACE)), self.amounts):
            self.violation(wrong)

    def _on_dead(self, queue: str, wire: Wire, why: str) -> None:
        self.dead[why] += 1
        if why == "expired":
            self.tally["expired_command"] += 1
        self.trace(f"broker {why}: {self.trace.message(wire)} from {queue}")

    # -- setting up and tearing down --------------------------------------------------------------

    async def seed_books(self) -> None:
        """Accounts at the plan's balances, one open and one closed merchant, PCI and risk."""
        accounts = [AccountSeed(account_id=a, balance_minor=b, currency=p.CURRENCY)
                    for a, b in self.plan.balances.items()]  # fmt: skip
        merchants = [
            MerchantSeed(merchant_id=p.MERCHANT, currency=p.CURRENCY),
            MerchantSeed(merchant_id=p.CLOSED_MERCHANT, currency=p.CURRENCY, open=False),
        ]
        await Ledger(self.observer, NAMESPACE).seed(accounts, merchants)
        pci = PciService(self.observer, NAMESPACE)
        for merchant in (p.MERCHANT, p.CLOSED_MERCHANT):
            await pci.set_merchant_status(merchant, COMPLIANT)
        await pci.revoke_token(p.REVOKED_TOKEN)
        await RiskService(self.observer, NAMESPACE).block(p.BLOCKED_ACCOUNT)
        self.tally.update(self.plan.edges)
        await self.broker.declare(p.PARTICIPANTS)
        self.broker.bind(EVENTS, self.topology.events_exchange, "#")

    def rejected(self) -> set[str]:
        """Saga ids whose start the orchestrator refused and said so (a ``rejected`` event)."""
        found = set()
        for wire in self.broker.messages(EVENTS):
            try:
                event = SagaEvent.model_validate_json(wire.body)
            except ValueError:
                continue
            if event.event == "rejected" and event.saga_id:
                found.add(event.saga_id)
        return found

    async def stop(self, timeout_s: float = 15.0) -> None:
        """Stop every process gracefully (killing what lingers), then close the clients."""
        self.stopping = True
        hosts = [*self.hosts.values(), self.client]
        await asyncio.gather(*(h.shutdown(timeout_s) for h in hosts))
        await self.observer.aclose()
        self.sync.close()
