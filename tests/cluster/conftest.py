"""The clusters of the cluster suite, started once for the session, and the run report.

``make faults-cluster`` (BATON_FAULTS_LONG=1) writes its results where ``BATON_FAULTS_REPORT``
says, as the fault suite does (tests/fault/conftest.py), with the cluster sizes added.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fault.conftest import pytest_sessionfinish  # noqa: F401 - the same report file
from tests.support.rabbit_cluster import RabbitCluster
from tests.support.redis_cluster import RedisClusterServers


@pytest.fixture(scope="session")
def rabbit_cluster() -> Iterator[RabbitCluster]:
    cluster = RabbitCluster("baton-cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers("baton-cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
