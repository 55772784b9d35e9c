"""One Redis client for a single server, a Redis Cluster or a Sentinel set, chosen by the URL.

* ``redis://host:port/db`` (``rediss://`` with TLS): one server.
* ``redis+cluster://h1:p1,h2:p2,...``: redis-py's asyncio cluster client; the listed nodes
  are where it starts, it learns the rest and follows failovers and slot moves itself.
  Every script Baton runs touches keys of one hash slot (orchestrator/runtime/keys.py).
* ``redis+sentinel://s1:p1,s2:p2/<service>``: the primary the Sentinels name for
  ``service``, asked again whenever a connection to it fails.

The cluster client is not a subclass of ``Redis``, but it answers every command Baton sends
(scripts, pipelines without MULTI, hashes, sorted sets, SCAN across nodes); callers type it
as ``Redis`` so that one server and a cluster share every code path.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import unquote

import redis.exceptions as rx
from pydantic_core import MultiHostUrl
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from messaging.durable_writes import Durability, DurableRedis, DurableRedisCluster, NotDurable
from messaging.settings import RedisSettings

# A Redis that cannot answer right now (down, failing over, not yet replicated): the message
# that met it is redelivered later, never counted as its own fault.
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (
    rx.ConnectionError,
    rx.TimeoutError,
    rx.ClusterDownError,
    rx.TryAgainError,
    rx.MasterDownError,
    rx.ReadOnlyError,
    rx.BusyLoadingError,
    rx.ClusterError,  # too many redirections: slots still moving
    # no startup node reachable; also a client-side CROSSSLOT, which our one-slot keys never
    # cause (a bug would requeue, slowly, until the quorum queue's delivery limit)
    rx.RedisClusterException,
    NotDurable,
)


def redis_from_url(url: str, durability: Durability | None = None, **options: Any) -> Redis:
    """A client for ``url``'s server, cluster or Sentinel-named primary; connects on first use.

    With ``durability`` every script call waits for that many replicas (durable_writes.py).
    ``options`` are redis-py connection options (timeouts, ``decode_responses``).
    """
    client = _client(url, options)
    if durability is not None and isinstance(client, DurableRedis | DurableRedisCluster):
        client.durability = durability
    return client


def _client(url: str, options: dict[str, Any]) -> Redis:
    parsed = MultiHostUrl(url)
    scheme = parsed.scheme
    if scheme in ("redis", "rediss"):
        return DurableRedis.from_url(url, **options)
    hosts = parsed.hosts()
    auth: dict[str, Any] = {
        "username": unquote(hosts[0]["username"] or "") or None,
        "password": unquote(hosts[0]["password"] or "") or None,
    }
    if scheme.startswith("rediss"):
        options = {"ssl": True, **options}
    if scheme.endswith("+cluster"):
        nodes = [ClusterNode(h["host"] or "127.0.0.1", h["port"] or 6379) for h in hosts]
        cluster = DurableRedisCluster(startup_nodes=nodes, **auth, **options)
        return cast(Redis, cluster)
    service = (parsed.path or "").strip("/")
    if not service:
        raise ValueError("a redis+sentinel URL names its service: redis+sentinel://s1:p1,.../name")
    sentinels = [(h["host"] or "127.0.0.1", h["port"] or 26379) for h in hosts]
    # The Sentinels get the socket timeouts too (redis-py's default, lost once sentinel_kwargs
    # is given): without them one hung Sentinel hangs every reconnect. And no retries: the
    # next Sentinel is the retry (redis-py's 10 would cost 10 timeouts per hung Sentinel).
    timeouts = {key: value for key, value in options.items() if key.startswith("socket_")}
    asking = {**timeouts, **auth, "retry": Retry(NoBackoff(), 0)}
    sentinel = Sentinel(sentinels, sentinel_kwargs=asking, **options)  # type: ignore[no-untyped-call]
    return cast(Redis, sentinel.master_for(service, redis_class=_SentinelPrimary, **auth))


class _SentinelPrimary(DurableRedis):
    """The Sentinel-named primary; closing it closes the connections to the Sentinels too
    (redis-py leaves them to the ``Sentinel`` object, which nothing else holds)."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            await cast(SentinelConnectionPool, self.connection_pool).sentinel_manager.aclose()


def redis_for(settings: RedisSettings, **options: Any) -> Redis:
    """The deployment's Redis (``BATON_REDIS__*``), its writes as durable as it asks."""
    durability = Durability(settings.durable_replicas, settings.durable_timeout_ms)
    return redis_from_url(str(settings.url), durability, **options)
