"""Cluster URLs: several RabbitMQ nodes, a Redis Cluster or Sentinel set, and what they make."""

from __future__ import annotations

import pytest
from aio_pika import RobustConnection
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from messaging.durable_writes import Durability, DurableRedis, NotDurable
from messaging.redis_client import REDIS_UNAVAILABLE, redis_for, redis_from_url
from messaging.settings import RedisSettings, Settings
from messaging.transport.failover import (
    FailoverConnection,
    check_failover_hook,
    failover_class,
    node_urls,
)
from messaging.transport.poison import GROWTH_CAP, counts_as_poison, requeue_pause_s


def test_a_rabbit_url_lists_every_node_and_each_node_keeps_credentials_and_vhost() -> None:
    settings = Settings.model_validate(
        {"rabbit": {"url": "amqps://app:s%40cret@n1:5671,n2:5672,n3/prod?heartbeat=5"}}
    )
    assert node_urls(str(settings.rabbit.url)) == [
        "amqps://app:s%40cret@n1:5671/prod?heartbeat=5",
        "amqps://app:s%40cret@n2:5672/prod?heartbeat=5",
        "amqps://app:s%40cret@n3:5672/prod?heartbeat=5",
    ]
    assert node_urls("amqp://guest:guest@127.0.0.1:5672/") == ["amqp://guest:guest@127.0.0.1:5672/"]


@pytest.mark.parametrize("url", ["http://n1:5672/", "amqp://", "redis://n1:6379"])
def test_a_rabbit_url_of_another_kind_is_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        Settings.model_validate({"rabbit": {"url": url}})


@pytest.mark.parametrize(
    "url", ["http://h:1", "redis+cluster://", "memcached://h:1", "redis+x://h"]
)
def test_a_redis_url_of_another_kind_is_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        Settings.model_validate({"redis": {"url": url}})


def test_an_aio_pika_without_the_per_attempt_method_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Failover hooks a private method of aio-pika 10.2.1: another version must fail loudly at
    start-up, not reconnect silently to one node forever."""
    monkeypatch.delattr(RobustConnection, "_RobustConnection__connect_transport")
    with pytest.raises(TypeError, match="per-attempt"):
        check_failover_hook()
    with pytest.raises(TypeError):
        failover_class(["amqp://g:g@a:1/"], 0)


def test_each_failover_attempt_goes_to_the_next_node_from_where_it_starts() -> None:
    check_failover_hook()  # the pinned aio-pika has the per-attempt method the class hooks
    urls = ["amqp://g:g@a:1/", "amqp://g:g@b:2/", "amqp://g:g@c:3/"]
    bound = failover_class(urls, 4)  # 4 % 3: starts at b
    assert issubclass(bound, FailoverConnection)
    assert [u.host for u in bound.nodes] == ["b", "c", "a"]


async def test_the_redis_url_picks_a_server_a_cluster_or_a_sentinel_primary() -> None:
    one = redis_from_url("redis://127.0.0.1:6379/3")
    cluster = redis_from_url("redis+cluster://u:p@127.0.0.1:7000,127.0.0.1:7001")
    sentinel = redis_from_url("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/payments")
    try:
        assert isinstance(one, DurableRedis)
        assert one.connection_pool.connection_kwargs["db"] == 3
        assert isinstance(cluster, RedisCluster)
        assert [(n.host, n.port) for n in cluster.nodes_manager.startup_nodes.values()] == [
            ("127.0.0.1", 7000), ("127.0.0.1", 7001),
        ]  # fmt: skip
        assert isinstance(sentinel, Redis)
        assert sentinel.connection_pool.service_name == "payments"
    finally:
        for client in (one, cluster, sentinel):
            await client.aclose()
    with pytest.raises(ValueError, match="names its service"):
        redis_from_url("redis+sentinel://127.0.0.1:26379")


async def test_the_deployment_redis_waits_for_the_replicas_it_asks_for() -> None:
    client = redis_for(RedisSettings(durable_replicas=2, durable_timeout_ms=50))
    try:
        assert getattr(client, "durability", None) == Durability(2, 50)
    finally:
        await client.aclose()


def test_a_write_short_of_replicas_is_an_outage_never_the_message_s_fault() -> None:
    durability = Durability(1, 10)
    with pytest.raises(NotDurable):
        durability.check(0)
    with pytest.raises(NotDurable):
        durability.check(ResponseError("WAIT cannot be used with replica instances"))
    durability.check(1)
    refused = Durability.refused(ResponseError("NOREPLICAS Not enough good replicas to write."))
    assert isinstance(refused, NotDurable)
    other = ResponseError("ERR something else")
    assert Durability.refused(other) is other
    assert NotDurable in REDIS_UNAVAILABLE
    assert not counts_as_poison(NotDurable("short"))
    assert counts_as_poison(other)


def test_the_requeue_pause_grows_with_the_broker_s_delivery_count_up_to_a_cap() -> None:
    assert requeue_pause_s(0.2, {}) == 0.2  # classic queues send no count
    pauses = [requeue_pause_s(0.2, {"x-delivery-count": n}) for n in (1, 4, 8, 100)]
    assert pauses == sorted(pauses)
    assert pauses[1] == pytest.approx(0.4)
    assert pauses[-1] == pytest.approx(0.2 * GROWTH_CAP)
    # 1000 deliveries (the default delivery limit) last over half an hour of outage
    assert sum(requeue_pause_s(0.2, {"x-delivery-count": n}) for n in range(1000)) > 1800
