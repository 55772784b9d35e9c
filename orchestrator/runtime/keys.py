"""Every Redis key shape the orchestrator uses, in one place.

All saga keys carry a shard hash tag, ``{namespace}baton:{s<N>}:…``, with N derived from the
saga id, so every key one transition touches hashes to one Redis Cluster slot. The registered
definitions carry their own, ``{def:<name>}``: all versions of one definition in one slot.
"""

from __future__ import annotations

import zlib

from orchestrator.core.state import SagaStatus

PREFIX = "baton"
SAGA = "saga"  # hash: state (SagaState JSON), version, status
HISTORY = "history"  # list: one compact JSON array per HistoryEntry
DEADLINES = "deadlines"  # zset per shard: saga id -> wake_at
OUTBOX = "outbox"  # hash per shard: entry id -> OutboxEntry.dumps()
OUTBOX_AT = "outbox:at"  # zset per shard: entry id -> enqueue time (state.updated_at)
OUTBOX_CLAIMED = "outbox:claimed"  # zset per shard: entry id -> until when a sweeper has it
STATUS = "status"  # zset per shard and status: saga id -> updated_at
DEFINITION = "versions"  # hash per definition: version -> registered record (never expires)
DEFINITION_NAMES = "names"  # set: the names of the registered definitions (never expires)
AUDIT = "audit"  # list per saga: its operator actions' hash chain (audit_store.py; kept)
AUDIT_HEAD = "audit_head"  # string per saga: "seq:hash" of the chain's last entry
OPERATOR_ACTIONS = "operator:actions"  # hash per shard: "action:result" -> count


def shard_of(saga_id: str, shards: int) -> int:
    """Stable across processes and languages (unlike ``hash()``), so every replica agrees."""
    return zlib.crc32(saga_id.encode()) % shards


class KeySpace:
    """Key names for one namespace and shard count; the only place keys are spelled."""

    __slots__ = ("namespace", "shards")

    def __init__(self, namespace: str, shards: int) -> None:
        if shards < 1:
            raise ValueError("shards must be at least 1")
        if "{" in namespace or "}" in namespace:
            raise ValueError("namespace must not contain braces: they would move the hash tag")
        self.namespace = namespace
        self.shards = shards

    def shard(self, saga_id: str) -> int:
        return shard_of(saga_id, self.shards)

    def _base(self, shard: int) -> str:
        return f"{self.namespace}{PREFIX}:{{s{shard}}}"

    def saga(self, saga_id: str) -> str:
        return f"{self._base(self.shard(saga_id))}:{SAGA}:{saga_id}"

    def history(self, saga_id: str) -> str:
        return f"{self._base(self.shard(saga_id))}:{HISTORY}:{saga_id}"

    def audit(self, saga_id: str) -> str:
        return f"{self._base(self.shard(saga_id))}:{AUDIT}:{saga_id}"

    def audit_head(self, saga_id: str) -> str:
        return f"{self._base(self.shard(saga_id))}:{AUDIT_HEAD}:{saga_id}"

    def operator_actions(self, shard: int) -> str:
        return f"{self._base(shard)}:{OPERATOR_ACTIONS}"

    def deadlines(self, shard: int) -> str:
        return f"{self._base(shard)}:{DEADLINES}"

    def outbox(self, shard: int) -> str:
        return f"{self._base(shard)}:{OUTBOX}"

    def outbox_at(self, shard: int) -> str:
        return f"{self._base(shard)}:{OUTBOX_AT}"

    def outbox_claimed(self, shard: int) -> str:
        return f"{self._base(shard)}:{OUTBOX_CLAIMED}"

    def status(self, shard: int, status: SagaStatus) -> str:
        return f"{self._base(shard)}:{STATUS}:{status.value}"

    def definition(self, name: str) -> str:
        """Every registered version of one definition, in one hash: a slot of its own,
        ``{def:<name>}`` (orchestrator/runtime/definition_registry.py)."""
        return f"{self.namespace}{PREFIX}:{{def:{name}}}:{DEFINITION}"

    def definition_names(self) -> str:
        return f"{self.namespace}{PREFIX}:{{definitions}}:{DEFINITION_NAMES}"

    def all_shards(self) -> range:
        return range(self.shards)
