"""Script writes that are on enough replicas before the message that caused them is acked.

Redis replicates asynchronously: a primary that fails over right after answering a write
can take it along, while the message that caused it was already acked to RabbitMQ. Then a
transition (or a participant's outcome) is gone and nothing redelivers its cause. With
``replicas`` > 0 every script call is followed, on the same connection, by
``WAIT replicas timeout``: it answers how many replicas acknowledged everything this
connection wrote. Fewer than asked raises ``NotDurable``, a transient error: the caller's
message is redelivered, and the script (idempotent by version or effect id) finds its own
write or writes it again on the new primary.

WAIT must run on the connection that wrote, so script and WAIT go in one pipeline; on a
Redis Cluster the WAIT is aimed at the node owning the script's first key (every script
touches one slot). A stale slot map (a redirect) sends the WAIT to a node that did not take
the write; a replica refuses WAIT and a former primary that is no longer ours answers for
nothing written, so the error or the short count fails the write closed, never open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError, ResponseError

Arg = str | int | float | bytes


class NotDurable(RedisError):
    """A write reached fewer replicas than required in time; the message is redelivered."""


@dataclass(frozen=True, slots=True)
class Durability:
    """How many replicas must hold a write, and how long to wait for them (milliseconds)."""

    replicas: int = 0
    timeout_ms: int = 1000

    @property
    def required(self) -> bool:
        return self.replicas > 0

    def add_wait(self, pipe: Any, client: Redis, key: Arg | None) -> None:
        """Queue a WAIT on ``pipe`` for the writes queued before it (aimed at ``key``'s node)."""
        if isinstance(client, RedisCluster):
            if key is None:
                raise ValueError("a cluster WAIT needs the written key to find its node")
            node = client.get_node_from_key(key)
            pipe.execute_command("WAIT", self.replicas, self.timeout_ms, target_nodes=node)
        else:
            pipe.execute_command("WAIT", self.replicas, self.timeout_ms)

    @staticmethod
    def refused(result: Any) -> Any:
        """``result``, or ``NotDurable`` when the primary refused the write for want of
        replicas (``min-replicas-to-write``: NOREPLICAS), a transient refusal like a short WAIT."""
        if isinstance(result, ResponseError) and str(result).startswith("NOREPLICAS"):
            return NotDurable(str(result))
        return result

    def check(self, answer: Any) -> None:
        """Raise unless ``answer`` (WAIT's reply, or its error) reports enough replicas."""
        if isinstance(answer, Exception):
            raise NotDurable(f"WAIT failed: {type(answer).__name__}") from answer
        if int(answer) < self.replicas:
            raise NotDurable(f"{int(answer)} of {self.replicas} replicas acknowledged in time")


def queue_evalsha(pipe: Any, sha: str, numkeys: int, *keys_and_args: Arg) -> None:
    """Queue EVALSHA on a pipeline of either kind. redis-py's cluster pipeline refuses
    ``evalsha`` by name, yet routes the raw command by its keys (one slot: ours always are)."""
    pipe.execute_command("EVALSHA", sha, numkeys, *keys_and_args)


def node_name(client: Redis, key: Arg) -> str:
    """The cluster node that owns ``key`` ("" for one server: every key is on it)."""
    if isinstance(client, RedisCluster):
        return str(client.get_node_from_key(key).name)
    return ""


class _DurableEval:
    """``evalsha`` followed by WAIT on its connection; everything else as the base client.

    Scripts registered with ``register_script`` (the participants' ledger, risk and inbox
    scripts) call ``evalsha`` and reload a lost script on ``NoScriptError``, so they become
    durable without knowing it. Pipelines (``ScriptBatch``) add their WAITs themselves.
    """

    durability: Durability = Durability()

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Arg) -> Any:
        base: Any = super()
        if not self.durability.required:
            try:
                return await base.evalsha(sha, numkeys, *keys_and_args)
            except ResponseError as exc:
                raise Durability.refused(exc) from None
        client: Any = self
        async with client.pipeline(transaction=False) as pipe:
            queue_evalsha(pipe, sha, numkeys, *keys_and_args)
            self.durability.add_wait(pipe, client, keys_and_args[0] if numkeys else None)
            result, answer = await pipe.execute(raise_on_error=False)
        result = Durability.refused(result)
        if isinstance(result, Exception):
            raise result
        self.durability.check(answer)
        return result


class DurableRedis(_DurableEval, Redis):  # type: ignore[misc]  # redis-py typing
    """One server (or a Sentinel-named primary) whose script writes wait for replicas."""


class DurableRedisCluster(_DurableEval, RedisCluster):  # type: ignore[misc]  # redis-py typing
    """A Redis Cluster whose script writes wait for the owning primary's replicas."""
