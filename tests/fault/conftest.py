"""Fault-suite fixtures: a private RabbitMQ node and Redis server, and the run report.

The report of every scenario is kept for the session; ``BATON_FAULTS_REPORT`` names a file
to write it to, which ``python -m tests.fault.report`` turns into the table and JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.harness import Result
from tests.fault.services import RabbitNode, RedisServer

RESULTS: list[Result] = []


@pytest.fixture(scope="session")
def rabbit_node() -> Iterator[RabbitNode]:
    node = RabbitNode("baton-fault")
    try:
        node.start()
        yield node
    finally:
        node.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("BATON_FAULTS_REPORT")
    if target and RESULTS:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([dataclasses.asdict(r) for r in RESULTS], indent=1))
