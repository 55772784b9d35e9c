"""``baton purge``: remove one namespace's queues, exchanges and Redis keys, and nothing else.

A namespace prefixes every name a deployment owns (contracts/topology.py for the broker;
the saga store, the participants' inboxes, the payment services' ledger, PCI and risk keys
in Redis). The broker cannot be listed without the management API, so the queues come from
the topology: the work and dead-letter queues of every participant this process knows of
(the payment saga's, the configured packages', and any named). Redis keys are found by
SCAN with the namespace as a literal prefix: MATCH metacharacters are escaped, every key is
checked again in Python, and the namespace ends in '.', so ``ns1.`` never reaches ``ns10.``.
A nested namespace (``ns1.team.``) is another deployment, left alone: every key Baton writes
continues its namespace with a plain word (``baton:``, ``participant:``, ``ledger:``...), so
a key whose next word holds a '.' belongs to a namespace inside this one.

The empty namespace is always refused: every key in Redis starts with it, other
namespaces' included, so no prefix tells the default deployment's keys apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from baton.payment_data import escaped
from baton.runtime import PARTICIPANTS, load_catalog, open_broker
from messaging.redis_client import redis_for
from messaging.settings import NAMESPACE, Settings
from messaging.text import as_text
from messaging.transport.amqp import Broker

SCAN_COUNT = 1000
DELETE_BATCH = 500


class Refused(ValueError):
    """A namespace purge will not touch (empty, or not a namespace at all)."""


def checked(namespace: str) -> str:
    """``namespace`` if it is one purge may remove: as Settings accepts it, and not empty."""
    if not namespace:
        raise Refused("refusing the empty namespace: every key in Redis starts with it")
    if not NAMESPACE.fullmatch(namespace):
        raise Refused("a namespace may use only letters, digits and - _ . :")
    if not namespace.endswith("."):
        raise Refused(f"a namespace ends in '.': did you mean {namespace + '.'!r}?")
    return namespace


@dataclass
class Plan:
    """What a purge of ``namespace`` finds: the counts it asks to confirm, then deletes."""

    namespace: str
    queues: list[str] = field(default_factory=list)
    exchanges: list[str] = field(default_factory=list)
    messages: int = 0
    keys: int = 0
    families: dict[str, int] = field(default_factory=dict)  # "ledger" -> keys under it

    def summary(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "queues": len(self.queues),
            "messages": self.messages,
            "exchanges": len(self.exchanges),
            "redis_keys": self.keys,
            "redis_keys_by_family": self.families,
        }

    def lines(self) -> list[str]:
        families = ", ".join(f"{n} {f}" for f, n in self.families.items()) or "none"
        return [
            f"namespace {self.namespace}",
            f"  {len(self.queues)} queues ({self.messages} messages waiting)",
            f"  {len(self.exchanges)} exchanges",
            f"  {self.keys} Redis keys ({families})",
        ]


def participants_of(settings: Settings, extra: Iterable[str] = ()) -> list[str]:
    """The participants whose queues may exist: the payment saga's, the configured
    packages' (when they load) and those named on the command line."""
    names = set(PARTICIPANTS) | set(extra)
    with suppress(Exception):  # a broken package configuration must not block a clean-up
        names |= set(load_catalog(settings).participants)
    return sorted(names)


def _family(key: str, namespace: str) -> str:
    """The first part of a key after the namespace: ``ledger``, ``pci``, ``baton``..."""
    return key.removeprefix(namespace).split(":", 1)[0] or "?"


async def _keys(client: aioredis.Redis, namespace: str) -> list[str]:
    found = []
    async for raw in client.scan_iter(match=escaped(namespace) + "*", count=SCAN_COUNT):
        key = as_text(raw)
        if key.startswith(namespace) and "." not in _family(key, namespace):
            found.append(key)  # the pattern is literal; checked again all the same
    return found


async def _existing(broker: Broker, queues: list[str], exchanges: list[str]) -> Plan:
    absent = set(await broker.missing(queues, exchanges))
    plan = Plan(broker.topology.namespace)
    plan.queues = [q for q in queues if f"queue {q}" not in absent]
    plan.exchanges = [e for e in exchanges if f"exchange {e}" not in absent]
    plan.messages = sum([await broker.queue_depth(q) for q in plan.queues])
    return plan


async def plan(settings: Settings, participants: Iterable[str]) -> Plan:
    """Count what is there under ``settings.namespace`` (which ``checked`` accepted)."""
    namespace = checked(settings.namespace)
    t = settings.topology
    async with open_broker(settings) as broker:
        found = await _existing(broker, t.all_queues(participants), t.exchanges)
    client = redis_for(settings.redis)
    try:
        keys = await _keys(client, namespace)
    finally:
        await client.aclose()
    found.keys = len(keys)
    found.families = dict(sorted(Counter(_family(k, namespace) for k in keys).items()))
    return found


async def purge(settings: Settings, found: Plan) -> int:
    """Delete what ``found`` names, and every key under the namespace now (keys written
    since the count go too); returns the number of keys deleted."""
    namespace = checked(settings.namespace)
    async with open_broker(settings) as broker:
        await broker.delete(found.queues, found.exchanges)
    client = redis_for(settings.redis)
    deleted = 0
    try:
        keys = await _keys(client, namespace)
        for start in range(0, len(keys), DELETE_BATCH):
            deleted += int(await client.unlink(*keys[start : start + DELETE_BATCH]))
    finally:
        await client.aclose()
    return deleted
