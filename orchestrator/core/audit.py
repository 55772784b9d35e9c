"""A saga's audit trail as a hash chain: the canonical form of an entry, its hash, and the
check that finds the first entry edited, deleted, reordered or inserted.

Pure: the Redis adapter (``orchestrator.runtime.audit_store``) appends and reads; this module
decides what an entry is and whether a trail is intact. Each entry's ``hash`` is
``sha256(prev_hash + canonical(entry))`` where the canonical form holds every field but the
hash itself, ``prev`` included: changing, dropping or moving any entry breaks the chain at
that entry. Keyless: someone able to rewrite the whole suffix consistently is caught only by
the tail ``head`` kept beside the list and by the hashes published in the lifecycle events.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

GENESIS = "0" * 64  # the ``prev`` of a trail's first entry
Result = Literal["applied", "ignored", "refused"]
RESULTS: tuple[Result, ...] = ("applied", "ignored", "refused")
ACTIONS = ("retry", "resume", "abort")
Problem = Literal["unreadable", "edited", "deleted", "reordered", "inserted", "foreign"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One operator action on one saga, applied, ignored or refused."""

    seq: int
    at: float
    saga_id: str
    action: str
    actor: str
    reason: str
    result: str
    detail: str
    batch_id: str
    prev: str
    hash: str = ""

    def body(self) -> dict[str, Any]:
        """Every field the hash covers: all but the hash."""
        fields = asdict(self)
        del fields["hash"]
        return fields


def canonical(fields: Mapping[str, Any]) -> str:
    """One spelling per value: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, entry: AuditEntry) -> str:
    return hashlib.sha256((prev_hash + canonical(entry.body())).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Head:
    """The tail of a trail, kept beside it: what the next append must follow."""

    seq: int = 0
    hash: str = GENESIS

    def dumps(self) -> str:
        return f"{self.seq}:{self.hash}"

    @classmethod
    def loads(cls, raw: str | None) -> Head:
        if not raw:
            return cls()
        seq, _, digest = raw.partition(":")
        return cls(int(seq), digest)


def next_entry(head: Head, **fields: Any) -> AuditEntry:
    """The entry that follows ``head``, hashed. ``fields``: at, saga_id, action, actor,
    reason, result, detail, batch_id."""
    draft = AuditEntry(seq=head.seq + 1, prev=head.hash, **fields)
    return AuditEntry(**{**draft.body(), "hash": chain_hash(head.hash, draft)})


def dumps(entry: AuditEntry) -> str:
    return canonical(asdict(entry))


def loads(raw: str | bytes) -> AuditEntry:
    """Raises ValueError for anything that is not an entry (the trail is then broken)."""
    try:
        entry = AuditEntry(**json.loads(raw))
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError("not an audit entry") from exc
    if not _well_typed(entry):
        raise ValueError("not an audit entry")
    return entry


def _well_typed(entry: AuditEntry) -> bool:
    texts = (entry.saga_id, entry.action, entry.actor, entry.reason, entry.result,
             entry.detail, entry.batch_id, entry.prev, entry.hash)  # fmt: skip
    number = isinstance(entry.at, int | float) and not isinstance(entry.at, bool)
    seq = isinstance(entry.seq, int) and not isinstance(entry.seq, bool)
    return number and seq and all(isinstance(t, str) for t in texts)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a trail is intact; else the first bad position (1-based) and what is wrong."""

    intact: bool
    checked: int
    position: int = 0
    problem: Problem | None = None
    detail: str = ""


def verify(saga_id: str, raws: Sequence[str | bytes], head: Head | None) -> Verdict:
    """Walk the chain from its start; stop at the first entry that does not follow."""
    entries: list[AuditEntry | None] = []
    for raw in raws:
        try:
            entries.append(loads(raw))
        except ValueError:
            entries.append(None)
    seqs = [e.seq for e in entries if e is not None]
    previous = Head()
    for position, entry in enumerate(entries, start=1):
        problem = _problem(saga_id, entry, previous, seqs[position:])
        if problem is not None or entry is None:
            kind, detail = problem or ("unreadable", "not an audit entry")
            return Verdict(False, position - 1, position, kind, detail)
        previous = Head(entry.seq, entry.hash)
    if head is not None and head != previous:
        return Verdict(
            False, len(entries), len(entries) + 1, "deleted",
            f"the trail ends at seq {previous.seq}; its head says seq {head.seq}",
        )  # fmt: skip
    return Verdict(True, len(entries))


def _problem(
    saga_id: str, entry: AuditEntry | None, previous: Head, later_seqs: Sequence[int]
) -> tuple[Problem, str] | None:
    """What is wrong with ``entry`` following ``previous``, if anything."""
    if entry is None:
        return "unreadable", "not an audit entry"
    if entry.saga_id != saga_id:
        return "foreign", f"seq {entry.seq} belongs to saga {entry.saga_id}"
    if entry.seq != previous.seq + 1:
        return _out_of_order(entry, previous, later_seqs)
    if chain_hash(entry.prev, entry) != entry.hash:
        return "edited", f"seq {entry.seq}'s content does not match its hash"
    if entry.prev != previous.hash:
        return "inserted", f"seq {entry.seq} does not follow seq {previous.seq}'s hash"
    return None


def _out_of_order(
    entry: AuditEntry, previous: Head, later_seqs: Sequence[int]
) -> tuple[Problem, str]:
    """An entry whose seq does not follow: moved, after a gap, or a second copy."""
    expected = previous.seq + 1
    if expected in later_seqs:
        return "reordered", f"seq {entry.seq} stands where seq {expected} belongs"
    if entry.seq > expected:
        return "deleted", f"seq {expected} is missing before seq {entry.seq}"
    return "inserted", f"seq {entry.seq} appears again after seq {previous.seq}"
