"""`--run CMD`: the participant under test started by the kit, and stopped at the end.

The command runs through the shell (``cd node/shipping && node index.js`` works) in a
session of its own, so stopping it signals its whole process group: the shell and whatever
it started. Its output goes to the kit's stderr, keeping stdout for the report. It gets the
kit's environment, plus the namespace, broker and Redis URLs, a sealing key when none is
configured, and signing keys made for the run (``KeySet.env``), so nothing needs setting up.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress

from baton.conformance.samples import ConformanceUsageError
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.trust.sealing import ACTIVE_VARIABLE, KEYS_VARIABLE, generate_key
from messaging.trust.signing import KeySet

STOP_GRACE_S = 15.0  # SIGTERM, then SIGKILL after this long
STDERR = 2


def child_env(settings: Settings, participant: str, keys: KeySet | None) -> dict[str, str]:
    """The environment of the participant the kit starts."""
    env = {
        **os.environ,
        "BATON_NAMESPACE": settings.namespace,
        "BATON_RABBIT__URL": str(settings.rabbit.url),
        "BATON_REDIS__URL": str(settings.redis.url),
    }
    sealing = settings.sealing.keys.get_secret_value()
    if sealing.strip():
        env |= {KEYS_VARIABLE: sealing, ACTIVE_VARIABLE: settings.sealing.active}
    else:  # a fresh key dies with the run, like the conformance namespace's data
        env |= {KEYS_VARIABLE: json.dumps({"run": generate_key()}), ACTIVE_VARIABLE: "run"}
    if keys is not None:
        env |= keys.env(participant)
    return env


def _signal(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, sig)  # the group the kit created for this child


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        _signal(process, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE_S)
        except TimeoutError:
            _signal(process, signal.SIGKILL)
            await process.wait()


@asynccontextmanager
async def started(
    command: str, env: Mapping[str, str]
) -> AsyncIterator[asyncio.subprocess.Process | None]:
    """Run ``command`` for the block (nothing when it is empty), then stop it."""
    if not command.strip():
        yield None
        return
    try:
        process = await asyncio.create_subprocess_shell(
            command, env=dict(env), stdin=subprocess.DEVNULL, stdout=STDERR,
            start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        raise ConformanceUsageError(f"--run: {exc}") from None
    try:
        yield process
    finally:
        await _stop(process)


async def await_consumer(
    broker: Broker, queue: str, timeout_s: float, process: asyncio.subprocess.Process | None
) -> None:
    """Wait until ``queue`` has a consumer: the participant is up and listening."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout_s
    while await broker.consumer_count(queue) < 1:
        if process is not None and process.returncode is not None:
            raise ConformanceUsageError(
                f"the participant (--run) exited with code {process.returncode} before "
                f"consuming {queue}"
            )
        if loop.time() > give_up:
            hint = "" if process else ": start the participant or pass --run CMD"
            raise ConformanceUsageError(f"nobody consumes {queue} after {timeout_s:g}s{hint}")
        await asyncio.sleep(0.1)  # polling the broker for the consumer, with a deadline
