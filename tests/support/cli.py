"""``baton`` as a separate process, as an operator runs it, under a test's namespace."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.trust.signing import KeySet
from tests.integration.harness import eventually


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        """The last stdout line, parsed: the command's machine-readable answer."""
        return json.loads(self.out.strip().splitlines()[-1])


def cli_env(settings: Settings, keys: KeySet, signer: str, **extra: str) -> dict[str, str]:
    """The environment of a ``baton`` process signing as ``signer`` under the test's namespace."""
    return {
        **os.environ,
        **keys.env(signer),
        "BATON_NAMESPACE": settings.namespace,
        "BATON_RABBIT__URL": str(settings.rabbit.url),
        "BATON_REDIS__URL": str(settings.redis.url),
        "BATON_LOG__LEVEL": "warning",
        **extra,
    }


async def baton(
    settings: Settings, keys: KeySet, *args: str, env: dict[str, str] | None = None
) -> Result:
    """``baton ARGS`` as a separate process: ``start`` signs as the upstream ``cli``, operator
    actions as the orchestrator (participants take commands from nobody else). ``env`` adds
    variables (``BATON_ORCHESTRATOR__PACKAGES``)."""
    signer = "cli" if args[0] == "start" else "orchestrator"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "baton", *args, env=cli_env(settings, keys, signer, **(env or {})),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@asynccontextmanager
async def participant_process(
    settings: Settings, keys: KeySet, broker: Broker, name: str, *args: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``baton participant NAME ARGS`` consuming its queue for the block; SIGTERM must end
    it cleanly (exit 0)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "baton", "participant", name, *args,
        env=cli_env(settings, keys, name), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip

    async def consuming() -> bool:
        assert proc.returncode is None, (await proc.communicate())[1].decode()
        return await broker.consumer_count(broker.topology.command_queue(name)) == 1

    try:
        await eventually(consuming, 60, f"participant {name} consuming")
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
