"""Starting a private ``redis-server``: the one way every suite's launcher does it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.redis_ping import redis_answers


def start_redis(
    directory: Path, port: int, args: Sequence[str], timeout_s: float = 30.0
) -> subprocess.Popen[bytes]:
    """``redis-server ARGS`` run in ``directory`` (its output in ``server.out`` there), in a
    process group of its own so that a kill takes it whole. Returns once 127.0.0.1:``port``
    answers PING; raises, naming the log, if it exits first or does not answer in time."""
    with (directory / "server.out").open("ab") as out:
        proc = subprocess.Popen(
            ["redis-server", *args], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=directory,
        )  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while not redis_answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise TimeoutError(f"redis-server on {port} not ready; see {directory / 'server.out'}")
        time.sleep(0.1)
    return proc
