"""Private servers for the security suite, and one deployment's users per test.

A RabbitMQ node (management API, a TLS listener that requires client certificates, the
broker-side message size limit) and a redis-server (a plain and a TLS port) for the whole
session: users and TLS are never set on the shared servers. Each test gets a namespace
whose users are created exactly as deployed: the definitions file rendered for it imported
through the management API, and the Redis ACL users of ``baton.access``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import sys
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from baton.access import broker_users, redis_users, user_name
from baton.definitions import render_definitions
from contracts.topology import Topology
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.trust.signing import KeySet
from tests.conftest import PARTICIPANTS, delete_keys
from tests.security.pki import Pki
from tests.security.servers import RedisServer
from tests.support.rabbit_node import RabbitNode, free_port

pytestmark = pytest.mark.integration


@dataclass
class PrivateBroker:
    """The private node and its TLS port."""

    node: RabbitNode
    tls_port: int
    pki: Pki

    def management(self, method: str, path: str, body: Any = None) -> Any:
        """Call the management API as the node's guest (an administrator, on this node only)."""
        url = f"http://127.0.0.1:{self.node.management_port}/api/{path}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as answer:
            raw = answer.read()
        return json.loads(raw) if raw else None


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def private_broker(pki: Pki) -> Iterator[PrivateBroker]:
    tls_port = free_port()
    tls = (
        f"listeners.ssl.1 = 127.0.0.1:{tls_port}\n"
        f"ssl_options.cacertfile = {pki.ca}\n"
        f"ssl_options.certfile = {pki.server_cert}\n"
        f"ssl_options.keyfile = {pki.server_key}\n"
        "ssl_options.verify = verify_peer\n"
        "ssl_options.fail_if_no_peer_cert = true\n"
    )
    node = RabbitNode("baton-security", management=True, extra_config=tls)
    try:
        node.start()
        yield PrivateBroker(node, tls_port, pki)
    finally:
        node.close()


@pytest.fixture(scope="session")
def private_redis(pki: Pki) -> Iterator[RedisServer]:
    server = RedisServer(pki)
    try:
        server.start()
        yield server
    finally:
        server.close()


@dataclass
class Deployment:
    """One namespace on the private servers with its users as deployed."""

    topology: Topology
    broker: PrivateBroker
    redis: RedisServer
    passwords: dict[str, str]  # broker user -> password
    redis_passwords: dict[str, str]  # Redis user -> password

    def user(self, service: str) -> str:
        return user_name(self.topology, service)

    def amqp_url(self, service: str) -> str:
        user = self.user(service)
        return f"amqp://{user}:{self.passwords[user]}@127.0.0.1:{self.broker.node.port}/"

    def amqps_url(self, service: str) -> str:
        user, pki = self.user(service), self.broker.pki
        query = urllib.parse.urlencode(
            {"cafile": pki.ca, "certfile": pki.client_cert, "keyfile": pki.client_key}
        )
        return f"amqps://{user}:{self.passwords[user]}@localhost:{self.broker.tls_port}/?{query}"

    def redis_url(self, service: str) -> str:
        user = self.user(service)
        return self.redis.url(user, self.redis_passwords[user])

    def rediss_url(self, service: str) -> str:
        user = self.user(service)
        return self.redis.tls_url(user, self.redis_passwords[user])

    @property
    def admin_url(self) -> str:
        return self.amqp_url("admin")

    def settings(self, service: str, keys: KeySet, **more: Any) -> Settings:
        """A process's settings: its own broker and Redis users, its own signing key."""
        return Settings.model_validate({
            "namespace": self.topology.namespace,
            "rabbit": {"url": self.amqp_url(service)},
            "redis": {"url": self.redis_url(service)},
            "signing": keys.settings(service),
            **more,
        })  # fmt: skip


@pytest.fixture
async def deployment(
    private_broker: PrivateBroker, private_redis: RedisServer, namespace: str
) -> AsyncIterator[Deployment]:
    topology = Topology(namespace=namespace)
    passwords = {u.name: secrets.token_urlsafe(12) for u in broker_users(topology, PARTICIPANTS)}
    definitions = render_definitions(topology, PARTICIPANTS, passwords)
    private_broker.management("POST", "definitions", definitions)
    users = redis_users(topology, PARTICIPANTS)
    redis_passwords = {u.name: secrets.token_urlsafe(12) for u in users}
    root = aioredis.Redis.from_url(private_redis.url())  # the server's default user: set-up
    try:
        for user in users:
            password = f">{redis_passwords[user.name]}"  # the rules exactly as an ACL file has
            await root.execute_command(  # type: ignore[no-untyped-call]
                "ACL", "SETUSER", user.name, "reset", "on", password, *user.rules()
            )
        yield Deployment(topology, private_broker, private_redis, passwords, redis_passwords)
    finally:
        await delete_keys(root, namespace)
        await root.aclose()


async def depth(d: Deployment, queue: str) -> int:
    admin = await Broker.connect(d.admin_url, d.topology)
    try:
        return await admin.queue_depth(queue)
    finally:
        await admin.close()


async def baton(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run ``python -m baton ARGS`` with ``env`` over the test process's environment."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "baton", *args,
        env={**os.environ, "BATON_LOG__LEVEL": "warning", **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()
