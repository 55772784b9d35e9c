"""Every definition version an orchestrator loads, registered in Redis with its contracts.

A saga finishes on the version it started with, possibly after the file that defined it has
left the deployment. What tools need to read such a saga (which fields its start contract
marks sensitive, what its steps are) is therefore kept next to the saga, in Redis under the
namespace: ``baton status`` masks with it, ``baton retry``/``resume``/``abort`` act with it
and ``baton definitions`` lists it, given only the URLs.

A version is immutable once registered: the same name and version with another body is
refused (DefinitionError) when an orchestrator starts, before it consumes anything. The body
is the definition as written (defaults left out: a Baton upgrade that adds a defaulted field
changes no body). The contracts it names are stored with it as JSON Schema
(``contract_json_schema``, compiled back by ``compile_json_schema``) and follow the newest
registration: a contract's version is its kind (a compatible change keeps it, a breaking one
is a new kind, so a new definition version).

Keys (``orchestrator.runtime.keys``), never expiring: ``<ns>baton:{def:<name>}:versions``, a hash
version -> record JSON (one Redis Cluster slot per definition), and
``<ns>baton:{definitions}:names``, the set of registered names.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import redis.asyncio as aioredis
import structlog

from contracts.errors import ContractDefinitionError
from contracts.json_schema import SENSITIVE_KEY, compile_json_schema, contract_json_schema
from contracts.registry import ContractRegistry
from messaging.errors import DefinitionError
from messaging.text import as_text
from orchestrator.core.definition import SagaDefinition, parse_definition
from orchestrator.runtime.keys import KeySpace

log = structlog.get_logger("baton.definitions")


def _canonical(value: Any) -> Any:
    """Plain JSON data, equal for equal definitions in any process: sets sorted (their order
    follows string hashing, which differs between processes), tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_canonical(v) for v in value), key=_dumps)
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def message_kinds(definition: SagaDefinition) -> tuple[str, ...]:
    """The start, commands and replies a definition names, each once, in flow order."""
    kinds = [definition.trigger]
    for step in definition.steps:
        for action in filter(None, (step.action, step.compensation)):
            kinds += [action.command, action.reply]
    return tuple(dict.fromkeys(kinds))


@dataclass(frozen=True)
class RegisteredDefinition:
    """One registered version: its body as data, its digest and its contracts' schemas."""

    name: str
    version: int
    trigger: str
    digest: str
    definition: dict[str, Any]
    contracts: dict[str, dict[str, Any]]  # kind -> JSON Schema with Baton's x-baton-* keys
    registered_at: float = field(default=0.0, compare=False)

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.version)

    def sensitive(self, kind: str) -> frozenset[str]:
        """The fields of ``kind`` its registered contract marks sensitive."""
        return frozenset(self.contracts.get(kind, {}).get(SENSITIVE_KEY, ()))

    @property
    def stages(self) -> list[tuple[str, list[str]]]:
        """(stage name, its steps): a step alone, or a parallel group and its branches."""
        found: list[tuple[str, list[str]]] = []
        for item in self.definition.get("steps", []):
            group = item.get("parallel")
            if group is None:
                found.append((item["name"], [item["name"]]))
            else:
                found.append((group["name"], [s["name"] for s in group.get("steps", [])]))
        return found

    def parse(self) -> SagaDefinition:
        """The definition, checked against its registered contracts (not the local ones):
        how a tool acts on a saga of a version this deployment no longer loads."""
        contracts = ContractRegistry()
        source = f"registered {self.name} v{self.version}"
        try:
            for schema in self.contracts.values():
                contracts.register(compile_json_schema(schema, source))
        except ContractDefinitionError as exc:
            raise DefinitionError(f"{source}: {exc}") from exc
        return parse_definition(self.definition, contracts)

    def dumps(self) -> str:
        return _dumps(
            {"name": self.name, "version": self.version, "trigger": self.trigger,
             "digest": self.digest, "registered_at": self.registered_at,
             "definition": self.definition, "contracts": self.contracts}
        )  # fmt: skip

    @classmethod
    def loads(cls, raw: bytes | str) -> RegisteredDefinition:
        data = json.loads(raw)
        return cls(
            name=data["name"], version=int(data["version"]), trigger=data["trigger"],
            digest=data["digest"], definition=data["definition"], contracts=data["contracts"],
            registered_at=float(data.get("registered_at", 0.0)),
        )  # fmt: skip


def registration(definition: SagaDefinition, at: float = 0.0) -> RegisteredDefinition:
    """What registering ``definition`` writes: its body, digest and contracts' schemas."""
    body = _canonical(definition.model_dump(mode="python", by_alias=True, exclude_defaults=True))
    contracts = {
        kind: json.loads(_dumps(contract_json_schema(definition.contract(kind))))
        for kind in message_kinds(definition)
    }
    digest = "sha256:" + hashlib.sha256(_dumps(body).encode()).hexdigest()
    return RegisteredDefinition(
        definition.name, definition.version, definition.trigger, digest, body, contracts, at
    )


class DefinitionRegistry:
    """The registered definitions of one namespace, in Redis."""

    def __init__(self, client: aioredis.Redis, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys

    async def register(self, definitions: Iterable[SagaDefinition]) -> None:
        """Register each version, idempotently. A version registered with another body is
        refused, all such versions named in one DefinitionError; the others are written."""
        conflicts: list[str] = []
        for definition in definitions:
            existing = await self._register(registration(definition, time.time()))
            if existing is not None:
                conflicts.append(
                    f"{definition.name} v{definition.version} (registered "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(existing.registered_at))}"
                    f" UTC as {existing.digest[:19]}…)"
                )
        if conflicts:
            raise DefinitionError(
                f"{', '.join(conflicts)}: registered with another body, and a version is "
                "immutable once registered: give the changed definition a new version"
            )

    async def _register(self, record: RegisteredDefinition) -> RegisteredDefinition | None:
        """Write ``record`` unless its version is registered; the registered one when its
        body differs (a conflict), else None. Same body, other contracts: refreshed."""
        key, version = self.keys.definition(record.name), str(record.version)
        await self.client.sadd(self.keys.definition_names(), record.name)
        if await self.client.hsetnx(key, version, record.dumps()):
            log.info("definition_registered", saga=record.name, version=record.version)
            return None
        raw = await self.client.hget(key, version)
        existing = RegisteredDefinition.loads(raw) if raw is not None else None
        if existing is None:  # removed by hand in between: write ours
            await self.client.hset(key, version, record.dumps())
            return None
        if existing.digest != record.digest:
            return existing
        if existing.contracts != record.contracts:
            kept = replace(record, registered_at=existing.registered_at)
            await self.client.hset(key, version, kept.dumps())
            log.info("definition_contracts_refreshed", saga=record.name, version=record.version)
        return None

    async def get(self, name: str, version: int) -> RegisteredDefinition | None:
        raw = await self.client.hget(self.keys.definition(name), str(version))
        return None if raw is None else RegisteredDefinition.loads(raw)

    async def all(self) -> list[RegisteredDefinition]:
        """Every registered version, by name then version."""
        names = sorted(as_text(n) for n in await self.client.smembers(self.keys.definition_names()))
        async with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hvals(self.keys.definition(name))
            per_name: list[list[bytes | str]] = await pipe.execute()
        found = [RegisteredDefinition.loads(raw) for rows in per_name for raw in rows]
        return sorted(found, key=lambda r: r.key)
