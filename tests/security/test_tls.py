"""TLS keeps working: amqps:// and rediss:// with client certificates and per-service users.

The private node's TLS listener and the private redis-server's TLS port both require a
client certificate signed by the test CA (openssl from the OS makes them).
"""

from __future__ import annotations

import asyncio
import ssl

import aiormq
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from baton_sdk.keys import InboxKeys
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.transport.codec import Wire
from tests.security.conftest import Deployment, baton, depth

pytestmark = pytest.mark.integration


async def test_a_participant_works_over_amqps_with_a_client_certificate(
    deployment: Deployment,
) -> None:
    d, t = deployment, deployment.topology
    url = d.amqps_url("payment")
    assert Settings.model_validate({"rabbit": {"url": url}}).rabbit.url.scheme == "amqps"
    broker = await Broker.connect(url, t)
    try:
        assert await broker.wait_for(*t.participant_needs("payment"), asyncio.Event())
        wire = Wire(body=b"{}", kind="test.probe.v1", message_id="m-1")
        await broker.publish(wire, exchange=t.replies_exchange, routing_key=t.replies_queue)
    finally:
        await broker.close()
    assert await depth(d, t.replies_queue) == 1

    # the same user, without a client certificate: the handshake is refused
    no_cert = url.split("?", 1)[0] + f"?cafile={d.broker.pki.ca}"
    with pytest.raises((OSError, ssl.SSLError, aiormq.exceptions.AMQPConnectionError)):
        await Broker.connect(no_cert, t)


async def test_a_participant_works_over_rediss_with_its_acl_user(
    deployment: Deployment,
) -> None:
    d = deployment
    url = d.rediss_url("payment")
    assert Settings.model_validate({"redis": {"url": url}}).redis.url.scheme == "rediss"
    client = aioredis.Redis.from_url(url)
    key = InboxKeys(d.topology.namespace, "payment").outcome("e-1")
    try:
        await client.set(key, "outcome")
        assert await client.get(key) == b"outcome"
    finally:
        await client.aclose()
    no_cert = aioredis.Redis.from_url(url.split("&ssl_certfile", 1)[0])
    try:
        with pytest.raises((RedisConnectionError, ssl.SSLError, OSError)):
            await no_cert.ping()
    finally:
        await no_cert.aclose()


async def test_baton_health_answers_over_tls_and_never_prints_a_password(
    deployment: Deployment,
) -> None:
    d = deployment
    env = {
        "BATON_NAMESPACE": d.topology.namespace,
        "BATON_RABBIT__URL": d.amqps_url("admin"),
        "BATON_REDIS__URL": d.rediss_url("admin"),
    }
    code, out, err = await baton(env, "health")
    assert (code, out.strip()) == (0, "ok"), err
    wrong = {**env, "BATON_REDIS__URL": env["BATON_REDIS__URL"].replace("@", "x@", 1)}
    code, out, err = await baton(wrong, "health")
    assert code == 1
    assert "redis:" in err
    for password in (*d.passwords.values(), *d.redis_passwords.values()):
        assert password not in out + err
