"""`baton conformance` against real RabbitMQ and Redis: the bundled participants pass it, and
participants broken on purpose fail it, each on the check for the rule it breaks.

Adding a participant to the passing set is one ``CONFORMING`` entry: an in-process starter
(a Python participant), or the shell command that runs it (``run=``: the kit starts and stops
it itself, with keys of its own, as ``baton conformance --run`` does for any language), e.g.

    Conforming("inventory", CHECKOUT, package_participant(CHECKOUT, "inventory")),
    Conforming("shipping", CHECKOUT,
               run=f"cd {CHECKOUT / 'node' / 'shipping'} && exec node index.js"),
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import yaml

from baton.conformance import CHECKS, Options, run_conformance
from baton.conformance.samples import REPOSITORY, hook, load_samples
from baton_sdk import Worker
from contracts.topology import Topology
from messaging.settings import ParticipantSettings, Settings
from messaging.transport.amqp import Broker
from messaging.trust.signing import KeySet
from participants.payments import run_participant
from tests.support.broken_participants import BROKEN, running
from tests.support.node import npm_installed

pytestmark = pytest.mark.integration

PAYMENT = REPOSITORY / "sagas" / "payment"
CHECKOUT = REPOSITORY / "examples" / "checkout"
STOP_S = 15.0
CLI_S = 120.0
Starter = Callable[[Settings, KeySet], AbstractAsyncContextManager[None]]


def python_participant(name: str) -> Starter:
    """A bundled Python participant, run in-process as ``baton participant NAME`` runs it."""

    @asynccontextmanager
    async def start(settings: Settings, keys: KeySet) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_participant(name, settings, stop, keyring=keys.keyring(name))
        )
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(task, STOP_S)

    return start


def package_participant(package: Path, name: str) -> Starter:
    """A Python participant a package's manifest lists (``module:factory(redis, namespace)``),
    run in-process on the SDK's worker."""

    @asynccontextmanager
    async def start(settings: Settings, keys: KeySet) -> AsyncIterator[None]:
        reference = yaml.safe_load((package / "package.yaml").read_text())["participants"][name]
        factory = hook(reference, package)
        redis = aioredis.Redis.from_url(str(settings.redis.url))
        broker = await Broker.connect(str(settings.rabbit.url), settings.topology, prefetch=8)
        stop = asyncio.Event()
        handlers = factory(redis, settings.namespace)
        worker = Worker(name, handlers, broker, redis, settings.namespace, ParticipantSettings(),
                        keyring=keys.keyring(name))  # fmt: skip
        task = asyncio.create_task(worker.run(stop))
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(task, STOP_S)
            await broker.close()
            await redis.aclose()

    return start


@dataclass(frozen=True)
class Conforming:
    participant: str
    package: Path
    start: Starter | None = None  # in-process, signing with the session's keys ...
    run: str = ""  # ... or a shell command the kit runs itself (--run), any language


NODE_SHIPPING = CHECKOUT / "node" / "shipping"
CONFORMING = [
    *(
        pytest.param(Conforming(name, PAYMENT, python_participant(name)), id=name)
        for name in ("payment", "risk", "pci", "transaction")
    ),
    *(
        pytest.param(Conforming(name, CHECKOUT, package_participant(CHECKOUT, name)), id=name)
        for name in ("inventory", "fraud", "review", "wallet", "notification")
    ),
    pytest.param(
        Conforming("shipping", CHECKOUT, run=f"cd {NODE_SHIPPING} && exec node index.js"),
        id="shipping-node",
    ),
]


@pytest.fixture
async def own_queues(broker: Broker, topology: Topology) -> AsyncIterator[list[str]]:
    """Participants whose queues a test declares beyond the broker fixture's: deleted after."""
    names: list[str] = []
    yield names
    queues = [topology.command_queue(n) for n in names]
    await broker.delete([*queues, *(topology.dead_letter_queue(q) for q in queues)])


@pytest.mark.parametrize("subject", CONFORMING)
async def test_a_conforming_participant_passes_every_check(
    subject: Conforming, settings: Settings, broker: Broker, redis_client: aioredis.Redis,
    own_queues: list[str],
) -> None:  # fmt: skip
    if subject.run:
        npm_installed(NODE_SHIPPING)  # the one participant run by command today is Node's
    own_queues.append(subject.participant)
    await broker.declare([subject.participant])  # before it starts, as `baton declare` would
    keys = KeySet.generate(["orchestrator", subject.participant])
    options = Options(
        subject.participant, subject.package, run=subject.run, declare=True, start_timeout_s=20.0
    )
    started = subject.start(settings, keys) if subject.start else nullcontext()
    async with started:
        keyring = None if subject.run else keys.keyring("orchestrator")
        report = await run_conformance(settings, options, keyring=keyring)
    assert report.ok, report.table()
    ran = {r.check for r in report.results if r.status != "skipped"}
    undoable = load_samples(subject.participant, subject.package).subject.compensation
    skipped = set() if undoable else {"tombstone"}  # nothing to send before the command
    assert ran == {name for name, _ in CHECKS} - skipped, report.table()


@pytest.mark.parametrize("name", sorted(BROKEN))
async def test_a_broken_participant_fails_the_check_of_the_rule_it_breaks(
    name: str, settings: Settings, keys: KeySet, broker: Broker, rabbit_url: str,
    topology: Topology, redis_client: aioredis.Redis,
) -> None:  # fmt: skip
    broken = BROKEN[name]
    own = await Broker.connect(rabbit_url, topology, prefetch=8)  # the participant's connection
    try:
        async with running(broken, own, redis_client, settings.namespace, keys.keyring("payment")):
            report = await run_conformance(
                settings, Options("payment", PAYMENT, timeout_s=5.0),
                keyring=keys.keyring("orchestrator"),
            )  # fmt: skip
    finally:
        await own.close()
    failed = {r.check for r in report.of("failed")}
    assert failed == broken.fails, report.table()
    assert report.exit_code == 1
    assert report.as_json()["failed"] == len(broken.fails)


def cli_env(namespace: str, rabbit_url: str, redis_url: str) -> dict[str, str]:
    """The environment of a `baton` process in this test's namespace, without signing keys:
    with --run the kit makes its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_SIGNING__")}
    return env | {
        "BATON_NAMESPACE": namespace, "BATON_RABBIT__URL": rabbit_url,
        "BATON_REDIS__URL": redis_url, "BATON_LOG__FORMAT": "json",
    }  # fmt: skip


async def baton(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "baton", *args, env=env, cwd=REPOSITORY,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), CLI_S)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_command_starts_the_participant_and_ends_with_one_json_line(
    namespace: str, rabbit_url: str, redis_url: str, broker: Broker,
    redis_client: aioredis.Redis,
) -> None:  # fmt: skip
    env = cli_env(namespace, rabbit_url, redis_url)
    run = f"{sys.executable} -m baton participant pci"
    code, out, err = await baton(env, "conformance", "pci", "--run", run, "--declare", "--json")
    assert code == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["participant"] == "pci"
    assert result["checks"] == len(CHECKS) == result["passed"]
    assert (result["failed"], result["failures"]) == (0, [])
    assert await broker.consumer_count(broker.topology.command_queue("pci")) == 0  # stopped


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["conformance", "nobody"], "no saga package lists the participant 'nobody'"),
        (["conformance", "payment", "--package", "/nonexistent"], "not a folder"),
        (["conformance", "payment", "--namespace", "no-dot"], "--namespace"),
        (["conformance", "payment"], "BATON_SIGNING__PRIVATE_KEY"),  # no key, no --run
    ],
    ids=["unknown", "no_package", "bad_namespace", "no_key"],
)
async def test_bad_usage_is_one_line_and_exit_2(
    args: list[str], says: str, namespace: str, rabbit_url: str, redis_url: str
) -> None:
    code, out, err = await baton(cli_env(namespace, rabbit_url, redis_url), *args)
    assert code == 2, (out, err)
    assert says in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
