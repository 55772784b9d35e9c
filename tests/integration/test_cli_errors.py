"""Every ``baton`` command, found by walking the click group, fails as an operator can act on:
bad input, a card number, RabbitMQ or Redis unreachable. One line on stderr, the documented
exit status, no traceback, no card number, no password (docs/operations.md, "Exit statuses
and errors"). A command added later is walked too, and must be given a row in EXPECTED."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from baton.cli import main
from messaging.transport.amqp import Broker
from messaging.trust.sealing import generate_key
from messaging.trust.signing import KeySet

pytestmark = pytest.mark.integration
BATON = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "baton")
PAN = "4111 1111 1111 1111"
PASSWORD = "s3cret-pw"
RABBIT_DOWN = f"amqp://guest:{PASSWORD}@127.0.0.1:1/"
REDIS_DOWN = f"redis://:{PASSWORD}@127.0.0.1:1/0"
WAIT_S = "2"  # a daemon's BATON_RABBIT__CONNECT_WAIT_S: how long it waits for its servers
TIMEOUT_S = 45  # a case that outlives this hangs on a server that is not there


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
    "retry": Expect(1, 1, ("no-such-saga",)),
    "resume": Expect(1, 1, ("no-such-saga",)),
    "abort": Expect(1, 1, ("no-such-saga",)),
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
    "keys public": Expect(2, 2, ("pyproject.toml",)),  # not a signing file
    "check": Expect(2, 2, ("pyproject.toml",)),  # not a definition
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
    "dashboards": Expect(0, 0),  # writes files only
    "console": Expect(1, 1),
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
    rabbit: str = "amqp://guest:guest@127.0.0.1:5672/"
    redis: str = "redis://127.0.0.1:6379/0"
    logs: bool = False


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
        call = (*path, *expect.args)
        if expect.rabbit is not None:
            found.append(Case(f"{key}: rabbit down", call, expect.rabbit, rabbit=RABBIT_DOWN,
                              logs=expect.logs))  # fmt: skip
        if expect.redis is not None:
            found.append(Case(f"{key}: redis down", call, expect.redis, redis=REDIS_DOWN,
                              logs=expect.logs))  # fmt: skip
    return found


def environment(case: Case, namespace: str, keys: KeySet, home: Path) -> dict[str, str]:
    """Only what ``baton`` needs: the URLs, a namespace, a sealing key, a signing key."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "BATON_NAMESPACE": namespace,
        "BATON_RABBIT__URL": case.rabbit,
        "BATON_REDIS__URL": case.redis,
        "BATON_RABBIT__CONNECT_WAIT_S": WAIT_S,
        "BATON_SEALING__KEYS": json.dumps({"t": generate_key()}),
        "BATON_SEALING__ACTIVE": "t",
        **keys.env("orchestrator"),
    }


@dataclass(frozen=True)
class Ran:
    case: Case
    code: int | None
    out: str
    err: str


def run(case: Case, env: dict[str, str], cwd: Path) -> Ran:
    try:
        done = subprocess.run(  # our own command, arguments from the table
            [BATON, *case.args], env=env, cwd=cwd, capture_output=True, text=True,
            timeout=TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return Ran(case, None, "", "")
    return Ran(case, done.returncode, done.stdout, done.stderr)


def problems(ran: Ran) -> list[str]:
    """What is wrong with one case's outcome (empty: it failed as documented)."""
    case, found = ran.case, []
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


@pytest.mark.timeout(400)  # ~160 processes: slow on a 2-core machine
def test_every_command_fails_in_one_line_with_its_exit_status(
    broker: Broker, namespace: str, keys: KeySet, tmp_path: Path
) -> None:
    """``broker``: the namespace's topology exists (and is removed after), as deployed."""
    all_cases = cases()
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda c: run(c, environment(c, namespace, keys, tmp_path),
                                              tmp_path), all_cases))  # fmt: skip
    wrong = {r.case.name: (p, r.err[-400:]) for r in results if (p := problems(r))}
    assert not wrong, "\n".join(f"{name}: {p}\n  stderr: {err!r}" for name, (p, err) in
                                wrong.items())  # fmt: skip
