"""Every ``baton`` command, found by walking the click group, fails as an operator can act on:
bad input, a card number, RabbitMQ or Redis unreachable. One line on stderr, the documented
exit status, no traceback, no card number, no password (docs/operations.md, "Exit statuses
and errors"). A command added later is walked too, and must be given a row in EXPECTED.

The cases run in this process with click's ``CliRunner`` (tests/support/inprocess.py), ~0.05 s
each instead of ~1 s for a new interpreter; only the long-running commands' server cases (they
start servers, threads and loops of their own) run as processes, in parallel meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from baton.cli import main
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.trust.sealing import ACTIVE_VARIABLE, KEYS_VARIABLE, Sealer, generate_key
from messaging.trust.signing import ORCHESTRATOR, KeySet
from orchestrator.runtime.definition_registry import DefinitionRegistry
from orchestrator.runtime.keys import KeySpace
from orchestrator.runtime.packages import load_packages
from participants.payments import DemoWorld, seed_demo_world
from tests.integration.harness import eventually, running_baton
from tests.integration.test_versions import waiting_on
from tests.support.inprocess import Invoked, in_process_cli, invoke
from tests.support.versions import payment_package

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
BATON = str(REPO / ".venv" / "bin" / "baton")
NOT_A_KEY_OR_DEFINITION = str(REPO / "pyproject.toml")
PAN = "4111 1111 1111 1111"
PASSWORD = "s3cret-pw"
RABBIT_DOWN = f"amqp://guest:{PASSWORD}@127.0.0.1:1/"
REDIS_DOWN = f"redis://:{PASSWORD}@127.0.0.1:1/0"
WAIT_S = "0.5"  # a daemon's BATON_RABBIT__CONNECT_WAIT_S: how long it waits for its servers
TIMEOUT_S = 30  # a process that outlives this hangs on a server that is not there
# Commands that start servers, threads or loops of their own and run until stopped: their
# server cases run as processes, as an operator runs them. Their bad-input cases, refused by
# click or the group before the command runs, run in-process like every other case.
LONG_RUNNING = frozenset({"orchestrator", "participant", "bench-floor", "console", "demo",
                          "bench", "sim"})  # fmt: skip


@dataclass(frozen=True)
class Expect:
    """A command's exit status with RabbitMQ, then Redis, unreachable (None: not run, the
    command would run for long with the other server good), for a valid call ``args``."""

    rabbit: int | None
    redis: int | None
    args: tuple[str, ...] = ()
    logs: bool = False  # a daemon: JSON log lines on stderr before its one error line


START = ("--account", "a1", "--merchant", "m1", "--amount", "1", "--card-token", "tok_abcdefgh1",
         "--no-wait")  # fmt: skip
ACT = ("no-such-saga", "--reason", "checking the CLI's errors")  # a reason is required
# Why 0: the command does not touch that server. Why 2: it refuses before connecting.
EXPECTED: dict[str, Expect] = {
    "orchestrator": Expect(1, 1, logs=True),
    "bench-floor": Expect(1, None, logs=True),  # no Redis: it relays until stopped
    "participant": Expect(1, 1, ("payment",), logs=True),
    "declare": Expect(1, 0),
    "access": Expect(0, 0),
    "health": Expect(1, 1),
    "conformance": Expect(1, None, ("payment",)),  # no Redis used: it runs its checks
    "start": Expect(1, 0, START),
    "status": Expect(1, 1, ("no-such-saga",)),  # RabbitMQ unused: the saga is unknown, 1
    "list": Expect(0, 1),
    "stuck": Expect(0, 1),
    "definitions": Expect(0, 1),
    "retry": Expect(1, 1, ACT),
    "resume": Expect(1, 1, ACT),
    "abort": Expect(1, 1, ACT),
    "audit": Expect(0, 1, ("no-such-saga",)),  # RabbitMQ unused: an empty trail is intact, 0
    "books": Expect(0, 1),
    "top": Expect(1, 1, ("--once", "--interval", "0.1")),
    "dlq list": Expect(1, 0),
    "dlq show": Expect(1, 0, ("start",)),
    "dlq replay": Expect(1, 0, ("start",)),
    "schema": Expect(0, 0),
    "demo": Expect(1, 1, ("--sagas", "1")),
    "bench": Expect(1, 1, ("--sagas", "1", "--rounds", "1", "--concurrency", "1")),
    "sim": Expect(None, None),  # in memory: no server to lose; runs its seeds for long
    "keys sealing": Expect(0, 0),
    "keys generate": Expect(0, 0, ("orchestrator",)),
    "keys public": Expect(2, 2, (NOT_A_KEY_OR_DEFINITION,)),  # not a signing file
    "check": Expect(2, 2, (NOT_A_KEY_OR_DEFINITION,)),  # not a definition
    "accounts seed": Expect(0, 1, ("--demo",)),
    "accounts list": Expect(0, 1),
    "accounts show": Expect(1, 1, ("no-such-account",)),
    "merchants seed": Expect(0, 1, ("--demo",)),
    "merchants list": Expect(0, 1),
    "merchants show": Expect(1, 1, ("no-such-merchant",)),
    "pci seed": Expect(0, 1, ("--demo",)),
    "pci list": Expect(0, 1),
    "pci show": Expect(1, 1, ("no-such-merchant",)),
    "purge": Expect(1, 1, ("--namespace", "test-nothing.", "--dry-run")),
    "dashboards": Expect(0, 0, ("--out", ".")),  # writes files only (into the test's tmp dir)
    # serves until interrupted whatever its servers' state (its pages say what is down); its
    # failure is an address it cannot listen on: busy_port_case below
    "console": Expect(None, None),
}


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every leaf command's path under ``group``, hidden ones included."""
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def command_of(path: tuple[str, ...]) -> click.Command:
    found: click.Command = main
    for name in path:
        assert isinstance(found, click.Group)
        found = found.commands[name]
    return found


BAD_VALUES = {click.INT: "many", click.FLOAT: "soon", click.IntRange: "0", click.Choice: "nope"}


def bad_option(command: click.Command) -> tuple[str, ...]:
    """An option given a value its type refuses, else an option the command does not have."""
    for param in command.params:
        if isinstance(param, click.Option) and not param.is_flag:
            for kind, value in BAD_VALUES.items():
                if param.type is kind or isinstance(param.type, type(kind) if not isinstance(
                    kind, type) else kind):  # fmt: skip
                    return (param.opts[0], value)
    return ("--no-such-option",)


def pan_call(command: click.Command, required: tuple[str, ...]) -> tuple[str, ...] | None:
    """The card number as the value of the command's first option or argument taking text."""
    for param in command.params:
        if isinstance(param, click.Option) and not param.is_flag:
            return (*required, param.opts[0], PAN)
        if isinstance(param, click.Argument):
            return (PAN, *required[1:])
    return None


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    code: int
    rabbit: str = ""  # "": the real server's URL
    redis: str = ""
    logs: bool = False
    process: bool = False  # run as a process (a long-running command reaching its servers)


# Refusals the walk above does not reach: the operator actions' own checks (before anything
# connects), and their bulk form (--where) with a server down.
BULK = ("--where", "status=running", "--reason", "checking the CLI's errors", "--dry-run")
ALSO = tuple(
    case
    for action in ("retry", "resume", "abort")
    for case in (
        Case(f"{action}: no reason", (action, "no-such-saga"), 2),
        Case(f"{action}: no SAGA_ID or --where", (action, "--reason", "x"), 2),
        Case(f"{action}: both SAGA_ID and --where", (action, "s", *BULK), 2),
        Case(f"{action}: bad --where", (action, "--where", "nope=1", "--reason", "x"), 2),
        Case(f"{action} --where: redis down", (action, *BULK), 1, redis=REDIS_DOWN),
    )
)


def busy_port_case(port: int) -> Case:
    """``baton console`` on an address in use: refused at once, exit 1 (its documented one)."""
    return Case("console: port in use", ("console", "--port", str(port)), 1, process=True)


def cases() -> list[Case]:
    found: list[Case] = []
    for path in commands(main):
        key = " ".join(path)
        command = command_of(path)
        expect = EXPECTED.get(key)
        assert expect is not None, f"`baton {key}`: add its expected exit statuses to EXPECTED"
        if any(isinstance(p, click.Argument) and p.required for p in command.params):
            found.append(Case(f"{key}: missing argument", path, 2))
        found.append(Case(f"{key}: bad option", (*path, *bad_option(command)), 2))
        pan = pan_call(command, expect.args)
        if pan is not None:
            found.append(Case(f"{key}: card number", (*path, *pan), 2))
        call, process = (*path, *expect.args), key in LONG_RUNNING
        if expect.rabbit is not None:
            found.append(Case(f"{key}: rabbit down", call, expect.rabbit, rabbit=RABBIT_DOWN,
                              logs=expect.logs, process=process))  # fmt: skip
        if expect.redis is not None:
            found.append(Case(f"{key}: redis down", call, expect.redis, redis=REDIS_DOWN,
                              logs=expect.logs, process=process))  # fmt: skip
    return found


def test_every_command_has_a_row_and_every_row_a_command() -> None:
    """A command added without a row fails here (and in the test below); a row left after its
    command was removed or renamed is a check that silently stopped running."""
    walked = {" ".join(path) for path in commands(main)}
    assert not walked - EXPECTED.keys(), f"add rows to EXPECTED: {sorted(walked - EXPECTED.keys())}"
    assert not EXPECTED.keys() - walked, f"no such commands: {sorted(EXPECTED.keys() - walked)}"
    assert set(LONG_RUNNING) <= walked


@dataclass(frozen=True)
class Servers:
    rabbit: str
    redis: str
    namespace: str
    signing: dict[str, str]
    home: Path

    def env(self, case: Case) -> dict[str, str]:
        """Only what ``baton`` needs: the URLs, a namespace, a sealing key, a signing key."""
        return {
            "HOME": str(self.home),
            "BATON_NAMESPACE": self.namespace,
            "BATON_RABBIT__URL": case.rabbit or self.rabbit,
            "BATON_REDIS__URL": case.redis or self.redis,
            "BATON_RABBIT__CONNECT_WAIT_S": WAIT_S,
            "BATON_SEALING__KEYS": json.dumps({"t": generate_key()}),
            "BATON_SEALING__ACTIVE": "t",
            **self.signing,
        }


@dataclass(frozen=True)
class Ran:
    case: Case
    code: int | None
    out: str
    err: str
    raised: str | None = None  # in-process: an exception the command let escape


def run_process(case: Case, servers: Servers) -> Ran:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **servers.env(case)}
    try:
        done = subprocess.run(  # our own command, arguments from the table
            [BATON, *case.args], env=env, cwd=servers.home, capture_output=True, text=True,
            timeout=TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return Ran(case, None, "", "")
    return Ran(case, done.returncode, done.stdout, done.stderr)


def problems(ran: Ran) -> list[str]:
    """What is wrong with one case's outcome (empty: it failed as documented)."""
    case, found = ran.case, []
    if ran.raised is not None:
        found.append(f"raised instead of exiting: {ran.raised.strip().splitlines()[-1]}")
    if ran.code != case.code:
        found.append(f"exit {ran.code}, expected {case.code}")
    text = ran.out + ran.err
    for secret, what in ((PAN, "card number"), (PAN.replace(" ", ""), "card number"),
                         (PASSWORD, "password"), ("Traceback", "traceback")):  # fmt: skip
        if secret in text:
            found.append(f"{what} in the output")
    lines = [line for line in ran.err.splitlines() if line.strip()]
    if case.logs:  # a daemon's JSON log lines come before its error line
        lines = [line for line in lines if not line.startswith("{")]
    if case.code == 0:
        return found
    usage = lines[:1] and lines[0].startswith("Usage:")
    if (usage and not lines[-1].startswith("Error: ")) or (not usage and len(lines) != 1):
        found.append(f"stderr is not one error line: {lines!r}")
    return found


@pytest.mark.timeout(120)
def test_every_command_fails_in_one_line_with_its_exit_status(
    broker: Broker, redis_client: aioredis.Redis, namespace: str, rabbit_url: str,
    redis_url: str, keys: KeySet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """``broker``: the namespace's topology exists (and is removed after), as deployed;
    ``redis_client``: what the seeding commands write under the namespace is removed after."""
    servers = Servers(rabbit_url, redis_url, namespace, keys.env(ORCHESTRATOR), tmp_path)
    monkeypatch.chdir(tmp_path)  # `dashboards`, `keys generate`: never into the repository
    with socket.create_server(("127.0.0.1", 0)) as busy:
        all_cases = [*cases(), *ALSO, busy_port_case(busy.getsockname()[1])]
        processes = [c for c in all_cases if c.process]
        with ThreadPoolExecutor(max_workers=len(processes)) as pool:
            started = [pool.submit(run_process, case, servers) for case in processes]
            with in_process_cli(monkeypatch) as runner:  # meanwhile, the rest in this process
                results = [ran_in_process(runner, case, servers) for case in all_cases
                           if not case.process]  # fmt: skip
            results += [future.result() for future in started]
    wrong = {r.case.name: (p, r.err[-400:]) for r in results if (p := problems(r))}
    assert not wrong, "\n".join(f"{name}: {p}\n  stderr: {err!r}" for name, (p, err) in
                                wrong.items())  # fmt: skip


def ran_in_process(runner: CliRunner, case: Case, servers: Servers) -> Ran:
    done = invoke(runner, main, case.args, servers.env(case))
    return Ran(case, done.code, done.out, done.err, done.raised)


def versions_env(settings: Settings, keys: KeySet) -> dict[str, str]:
    """The test's namespace and servers, its sealing key, signing as the orchestrator; no
    packages configured: the bundled one, whose payment saga is v1 only."""
    return {
        "BATON_NAMESPACE": settings.namespace,
        "BATON_RABBIT__URL": str(settings.rabbit.url),
        "BATON_REDIS__URL": str(settings.redis.url),
        KEYS_VARIABLE: os.environ[KEYS_VARIABLE],
        ACTIVE_VARIABLE: os.environ.get(ACTIVE_VARIABLE, ""),
        **keys.env(ORCHESTRATOR),
    }


@pytest.mark.timeout(60)
async def test_a_saga_of_a_version_known_nowhere_is_refused_naming_it(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A payment v2 saga where this configuration loads only v1. While no orchestrator has
    registered v2 in Redis, ``resume`` refuses in one line naming the version and what to do
    (not just ``unknown_definition``), and ``status`` shows the saga with its whole input
    masked (no contract says which fields are sensitive: ``baton.operate.hidden_fields``).
    Once v2 is registered, ``resume`` works and ``status`` masks only the sensitive fields."""
    world: DemoWorld = await seed_demo_world(
        redis_client, settings.namespace, accounts=1, balance_minor=10**6
    )
    v2 = load_packages([payment_package(tmp_path, 2)]).catalog
    sealer = Sealer.from_settings(settings.sealing)
    async with running_baton(broker, redis_client, settings, v2, keys=keys,
                             sealer=sealer) as baton:  # fmt: skip  # no registry: v2 unregistered
        saga_id = await baton.start(world.transaction(1))  # no participant: held at step one
        await eventually(waiting_on(baton.store, [saga_id], "authorize_payment"), what="held")
    env, sent = versions_env(settings, keys), world.transaction(1)

    def status_and_resume() -> list[Invoked]:
        calls = (("status", saga_id, "--json"), ("resume", saga_id, "--reason", "x"))
        with in_process_cli(monkeypatch) as runner:
            return [invoke(runner, main, args, env) for args in calls]

    status, refused = await asyncio.to_thread(status_and_resume)  # uvloop.run: not on our loop
    assert (refused.code, refused.raised, refused.out) == (1, None, ""), refused.err
    lines = refused.err.strip().splitlines()
    assert len(lines) == 1, refused.err
    assert lines[0].startswith("baton resume: saga runs on payment v2"), lines[0]
    assert "BATON_ORCHESTRATOR__PACKAGES" in lines[0], "the hint: how to make it known"
    assert (status.code, status.raised) == (0, None), status.err
    shown = json.loads(status.out)["state"]
    assert shown["definition_version"] == 2
    assert set(shown["input"].values()) == {"***"}, "no contract known: every field hidden"

    registry = DefinitionRegistry(redis_client, KeySpace(settings.namespace,
                                                         settings.orchestrator.shards))  # fmt: skip
    definition = v2.get("payment", 2)
    assert definition is not None
    await registry.register([definition])  # as an orchestrator running v2 does, elsewhere
    status, resumed = await asyncio.to_thread(status_and_resume)
    assert (resumed.code, resumed.raised) == (0, None), resumed.err
    assert f"resume: saga {saga_id} is now running" in resumed.out
    assert (status.code, status.raised) == (0, None), status.err
    shown = json.loads(status.out)["state"]
    assert (shown["input"]["card_token"], shown["input"]["account_id"]) == ("***", "***")
    assert shown["input"]["merchant_id"] == sent.merchant_id, "the registered contract's mask"
    assert sent.card_token not in status.out + resumed.out

    # An operator with only the URLs (no sealing key, no signing key) still reads the saga:
    # its sensitive fields stay sealed in the store and are masked as with a key.
    urls_only = {
        k: v for k, v in env.items() if not k.startswith(("BATON_SEALING__", "BATON_SIGNING__"))
    }
    assert "BATON_REDIS__URL" in urls_only

    def status_with_urls_only() -> Invoked:
        with in_process_cli(monkeypatch) as runner:
            return invoke(runner, main, ("status", saga_id, "--json"), urls_only)

    bare = await asyncio.to_thread(status_with_urls_only)
    assert (bare.code, bare.raised) == (0, None), bare.err
    shown = json.loads(bare.out)["state"]
    assert (shown["input"]["card_token"], shown["input"]["account_id"]) == ("***", "***")
    assert shown["input"]["merchant_id"] == sent.merchant_id
    assert sent.card_token not in bare.out + bare.err
