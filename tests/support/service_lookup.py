"""Where the test suite's RabbitMQ and Redis come from: one order, shared with scripts/services.sh.

For each service, the first that applies wins:

1. ``env``: its URL is set (``BATON_RABBIT__URL`` / ``BATON_REDIS__URL``): someone else's
   server, used as given;
2. ``local``: the local default answers (RabbitMQ 127.0.0.1:5672 as guest, Redis
   127.0.0.1:6379): CI's and this machine's servers, or the ones scripts/services.sh started
   (services.sh alone also tries to start an installed server, or install it with apt as root,
   before step 3);
3. ``container``: a Docker engine answers (a developer's laptop): a throwaway container for
   the session, started here with testcontainers, by services.sh with ``docker compose`` and
   the test overlay tests/services/compose.yml;
4. ``missing``: the run fails, saying what to do. A missing service never skips a test.

``choose`` is the order itself (pure, unit-tested); ``locate`` probes and starts.
"""

from __future__ import annotations

import enum
import os
import shutil
import socket
import subprocess
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.support.redis_ping import redis_answers

__all__ = ["RABBIT", "REDIS", "Service", "ServiceMissing", "Source", "choose", "describe", "locate"]


class ServiceMissing(RuntimeError):
    """No URL, no local server, no Docker engine: the message says what to do."""


class Source(enum.Enum):
    """Where a service's URL came from (the values are what the session's summary prints)."""

    ENV = "env"
    LOCAL = "local"
    CONTAINER = "container"
    MISSING = "missing"


def choose(*, url_set: bool, local_answers: bool, docker_reachable: bool) -> Source:
    """The lookup order: an explicit URL, then a local server, then a container, else fail."""
    if url_set:
        return Source.ENV
    if local_answers:
        return Source.LOCAL
    if docker_reachable:
        return Source.CONTAINER
    return Source.MISSING


@dataclass(frozen=True)
class Service:
    """One server the suite needs: its variable, local default and container image."""

    name: str
    variable: str
    local_url: str
    port: int
    image: str  # the major version docker-compose.yml runs
    answers: Callable[[int], bool]


def _tcp_answers(port: int) -> bool:
    """RabbitMQ accepts connections only once it is up (as scripts/services.sh checks)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


RABBIT = Service("rabbitmq", "BATON_RABBIT__URL", "amqp://guest:guest@127.0.0.1:5672/", 5672,
                 "rabbitmq:3.13-management", _tcp_answers)  # fmt: skip
REDIS = Service("redis", "BATON_REDIS__URL", "redis://127.0.0.1:6379/0", 6379, "redis:7",
                redis_answers)  # fmt: skip


def docker_reachable() -> bool:
    """A Docker engine answers (``docker info``, the check scripts/services.sh makes)."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def describe(service: Service, source: Source, url: str) -> str:
    """One phrase for the session summary: where the server is, never its credentials."""
    where = url.split("://", 1)[-1].rsplit("@", 1)[-1]
    return {
        Source.ENV: f"{service.name} from {service.variable} ({where})",
        Source.LOCAL: f"{service.name} local ({where})",
        Source.CONTAINER: f"{service.name} in a testcontainers container ({where})",
        Source.MISSING: f"{service.name} missing",
    }[source]


def missing_message(service: Service) -> str:
    """Why the run stops, and the three ways out."""
    return (
        f"{service.name}: {service.variable} is not set, nothing answers at "
        f"127.0.0.1:{service.port} and no Docker engine answers. Run `make services` "
        f"(scripts/services.sh), start a Docker engine, or set {service.variable}."
    )


@contextmanager
def locate(service: Service) -> Iterator[tuple[Source, str]]:
    """(source, url) for ``service`` by ``choose``'s order; a container lives until exit."""
    url = os.environ.get(service.variable, "")
    local = not url and service.answers(service.port)
    docker = not url and not local and docker_reachable()
    source = choose(url_set=bool(url), local_answers=local, docker_reachable=docker)
    if source is Source.ENV:
        yield source, url
    elif source is Source.LOCAL:
        yield source, service.local_url
    elif source is Source.CONTAINER:
        with _container(service) as container_url:
            yield source, container_url
    else:
        raise ServiceMissing(missing_message(service))


@contextmanager
def _container(service: Service) -> Iterator[str]:
    """A throwaway server (testcontainers' RabbitMQ or Redis module), removed at exit."""
    classes = container_classes()
    with classes[service.name](service.image) as container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(service.port)
        if service is RABBIT:
            yield f"amqp://{container.username}:{container.password}@{host}:{port}/"
        else:
            yield f"redis://{host}:{port}/0"


def container_classes() -> dict[str, type]:
    """testcontainers' RabbitMqContainer and RedisContainer, imported only when needed."""
    with warnings.catch_warnings():
        # testcontainers 4.15's RabbitMQ module warns at import about its own decorator
        # (wait_container_is_ready); not ours to fix, and the suite turns warnings into errors.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from testcontainers.community.rabbitmq import RabbitMqContainer
            from testcontainers.community.redis import RedisContainer
        except ImportError:  # releases before the community namespace
            from testcontainers.rabbitmq import RabbitMqContainer
            from testcontainers.redis import RedisContainer
    return {"rabbitmq": RabbitMqContainer, "redis": RedisContainer}
