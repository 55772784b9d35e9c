"""The participant's memory of what it already answered, and of what was cancelled first."""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from contracts.base import Reply
from contracts.registry import contract_for


def inbox_key(namespace: str, participant: str, effect_id: str) -> str:
    return f"{namespace}participant:{participant}:inbox:{effect_id}"


def tomb_key(namespace: str, participant: str, effect_id: str) -> str:
    return f"{namespace}participant:{participant}:tomb:{effect_id}"


def _dumps(reply: Reply) -> str:
    return json.dumps({"kind": reply.KIND, "body": reply.model_dump(mode="json")})


def _loads(raw: bytes | str) -> Reply:
    data = json.loads(raw)
    model = contract_for(data["kind"])
    if model is None or not issubclass(model, Reply):
        raise ValueError(f"inbox holds an unknown reply kind {data['kind']!r}")
    return model.model_validate(data["body"])


class Inbox:
    """Replies stored by effect id, and tombstones for forward effects compensated first."""

    def __init__(self, redis: Redis, namespace: str, participant: str, *, ttl_s: int) -> None:
        self._redis = redis
        self._namespace = namespace
        self._participant = participant
        self._ttl_s = ttl_s

    async def lookup(self, effect_id: str, *, forward: bool) -> tuple[Reply | None, bool]:
        """The stored reply for ``effect_id`` and, for a forward command, whether a compensation
        already ran (cancel-before-execute): one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(inbox_key(self._namespace, self._participant, effect_id))
            if forward:
                pipe.exists(tomb_key(self._namespace, self._participant, effect_id))
            found: list[Any] = await pipe.execute()
        raw = found[0]
        return (None if raw is None else _loads(raw)), forward and bool(found[1])

    async def remember(self, effect_id: str, reply: Reply) -> Reply:
        """Store ``reply`` unless one is stored already; return the one that stays.

        Two deliveries of one effect racing each other both get the first stored answer.
        """
        key = inbox_key(self._namespace, self._participant, effect_id)
        if await self._redis.set(key, _dumps(reply), ex=self._ttl_s, nx=True):
            return reply
        stored = await self._redis.get(key)
        return reply if stored is None else _loads(stored)

    async def bury(self, forward_effect_id: str) -> None:
        """Leave a tombstone so a late forward command for this effect is refused."""
        key = tomb_key(self._namespace, self._participant, forward_effect_id)
        await self._redis.set(key, "1", ex=self._ttl_s)
