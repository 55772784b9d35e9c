"""Fixtures of the console suite: the integration fixtures, a console on a spare port, and
the system's Chromium (installed from the OS packages when missing; never downloaded)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator

import pytest

from baton.console import listening_socket, server
from messaging.settings import Settings
from tests.integration.conftest import settings  # noqa: F401 - the namespace's settings
from tests.integration.harness import eventually

CHROMIUM = "/usr/bin/chromium"


def ensure_chromium() -> str:
    """Debian's chromium, installed with apt when missing (the tests run as root)."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(args, env=env, capture_output=True, timeout=900, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.decode()[-500:]}")
    found = shutil.which("chromium")
    if not found:
        raise RuntimeError("the chromium package installed no chromium binary")
    return found


@pytest.fixture(scope="session")
def chromium() -> str:
    return ensure_chromium()


@pytest.fixture
async def console_url(settings: Settings) -> AsyncIterator[str]:  # noqa: F811 - the fixture
    """``baton console`` for this test's namespace, served in-process on a spare port."""
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    served = server(settings)
    thread = threading.Thread(target=served.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()

    async def started() -> bool:
        return served.started

    try:
        await eventually(started, 10, "the console to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        served.should_exit = True
        thread.join(10)
        sock.close()
