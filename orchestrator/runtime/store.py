"""The SagaStore port, and its in-memory twin for unit tests of saga logic."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.core.effects import HistoryEntry
from orchestrator.core.state import SagaState, SagaStatus
from orchestrator.runtime.errors import ConcurrencyConflict
from orchestrator.runtime.in_flight import IN_FLIGHT, VersionCounts, tally
from orchestrator.runtime.outbox import OutboxEntry
from orchestrator.runtime.sealed_fields import SealedFields


class SagaStore(Protocol):
    """Where sagas live. Every write is one atomic transition; nothing is half-written."""

    async def create(
        self, state: SagaState, history: Sequence[HistoryEntry], outbox: Sequence[OutboxEntry]
    ) -> bool:
        """Write a new saga at version 1 unless one with its id exists (then False, no write)."""
        ...

    async def load(self, saga_id: str) -> SagaState | None: ...

    async def commit(
        self,
        expected_version: int,
        state: SagaState,
        history: Sequence[HistoryEntry],
        outbox: Sequence[OutboxEntry],
    ) -> SagaState:
        """Compare the version, write ``state`` at expected+1 (returned), append history,
        set or clear its deadline (``state.wake_at``), move it between status indexes, add
        the outbox entries, and start the retention clock if the status expires.
        Raises ConcurrencyConflict when the stored version is not ``expected_version``."""
        ...

    async def outbox_done(self, saga_id: str, entry_ids: Sequence[str]) -> None: ...

    async def outbox_holds(self, saga_id: str, entry_id: str) -> bool:
        """Whether the entry is still in the outbox (not yet published and marked)."""
        ...

    async def postpone(self, saga_id: str, until: float) -> None:
        """Move a waiting saga's wake-up to ``until``; its state is untouched."""
        ...

    async def outbox_done_many(self, done: Iterable[tuple[str, Sequence[str]]]) -> None:
        """``outbox_done`` for many (saga id, entry ids) pairs; it may wait briefly to share a
        round trip with other writes (the background marks and the sweeper use it)."""
        ...

    async def outbox_pending(
        self, enqueued_before: float, limit: int, *, claim: tuple[float, float] | None = None
    ) -> list[OutboxEntry]:
        """Entries of any saga enqueued before the given time and not yet marked done; with
        ``claim`` = (now, until), only those no other sweeper holds a live claim on, each
        now claimed until then."""
        ...

    async def due(self, now: float, limit: int) -> list[str]:
        """Ids of sagas whose ``wake_at`` is at or before ``now``, earliest first."""
        ...

    async def outbox_oldest_age(self, now: float) -> float:
        """Seconds since the oldest unsent outbox entry was enqueued; 0.0 when none is."""
        ...

    async def history(self, saga_id: str) -> list[dict[str, str]]: ...

    async def by_status(
        self, status: SagaStatus, limit: int, updated_before: float | None = None
    ) -> list[tuple[str, float]]:
        """(saga id, updated_at) of sagas in ``status``, least recently updated first."""
        ...

    async def counts(self) -> dict[SagaStatus, int]: ...

    async def versions(self, statuses: Sequence[SagaStatus] = IN_FLIGHT) -> VersionCounts:
        """Sagas in ``statuses`` per (definition name, version) and status: which versions
        an orchestrator must load (``orchestrator.runtime.in_flight``)."""
        ...


@dataclass
class InMemorySagaStore:
    """A dict-backed twin of the Redis store with the same semantics (no retention).

    ``sealed`` works as in the Redis store for saga states (nothing leaves the process, but
    the same refusals and round trip); outbox entries are kept as objects.
    """

    sagas: dict[str, SagaState] = field(default_factory=dict)
    timelines: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    outbox: dict[str, tuple[float, OutboxEntry]] = field(default_factory=dict)
    postponed: dict[str, float] = field(default_factory=dict)  # wake-ups moved by postpone
    claims: dict[str, float] = field(default_factory=dict)  # outbox entry id -> claimed until
    sealed: SealedFields | None = None

    async def create(
        self, state: SagaState, history: Sequence[HistoryEntry], outbox: Sequence[OutboxEntry]
    ) -> bool:
        if state.saga_id in self.sagas:
            return False
        self._write(state.model_copy(update={"version": 1}), history, outbox)
        return True

    async def load(self, saga_id: str) -> SagaState | None:
        state = self.sagas.get(saga_id)
        if state is None or self.sealed is None:
            return state
        return self.sealed.open_state(state)

    async def commit(
        self,
        expected_version: int,
        state: SagaState,
        history: Sequence[HistoryEntry],
        outbox: Sequence[OutboxEntry],
    ) -> SagaState:
        current = self.sagas.get(state.saga_id)
        if current is None or current.version != expected_version:
            raise ConcurrencyConflict(state.saga_id)
        written = state.model_copy(update={"version": expected_version + 1})
        self._write(written, history, outbox)
        return written

    def _write(
        self, state: SagaState, history: Sequence[HistoryEntry], outbox: Sequence[OutboxEntry]
    ) -> None:
        self.sagas[state.saga_id] = state if self.sealed is None else self.sealed.seal_state(state)
        self.postponed.pop(state.saga_id, None)  # a write sets the wake-up afresh
        self.timelines.setdefault(state.saga_id, []).extend(h.fields() for h in history)
        for entry in outbox:
            self.outbox[entry.id] = (state.updated_at, entry)

    async def outbox_done(self, saga_id: str, entry_ids: Sequence[str]) -> None:
        for entry_id in entry_ids:
            self.outbox.pop(entry_id, None)
            self.claims.pop(entry_id, None)

    async def outbox_done_many(self, done: Iterable[tuple[str, Sequence[str]]]) -> None:
        for saga_id, entry_ids in done:
            await self.outbox_done(saga_id, entry_ids)

    async def outbox_holds(self, saga_id: str, entry_id: str) -> bool:
        return entry_id in self.outbox

    async def postpone(self, saga_id: str, until: float) -> None:
        self.postponed[saga_id] = until

    async def outbox_pending(
        self, enqueued_before: float, limit: int, *, claim: tuple[float, float] | None = None
    ) -> list[OutboxEntry]:
        ready = sorted((at, e.id, e) for at, e in self.outbox.values() if at < enqueued_before)
        found = [entry for _, _, entry in ready[:limit]]
        if claim is None:
            return found
        now, until = claim
        found = [e for e in found if self.claims.get(e.id, now) <= now]
        self.claims.update(dict.fromkeys((e.id for e in found), until))
        return found

    async def outbox_oldest_age(self, now: float) -> float:
        return max(now - min(at for at, _ in self.outbox.values()), 0.0) if self.outbox else 0.0

    async def due(self, now: float, limit: int) -> list[str]:
        wakes = {s.saga_id: s.wake_at for s in self.sagas.values() if s.wake_at is not None}
        wakes.update((k, v) for k, v in self.postponed.items() if k in wakes)
        ready = sorted((at, saga_id) for saga_id, at in wakes.items() if at <= now)
        return [saga_id for _, saga_id in ready[:limit]]

    async def history(self, saga_id: str) -> list[dict[str, str]]:
        return list(self.timelines.get(saga_id, []))

    async def by_status(
        self, status: SagaStatus, limit: int, updated_before: float | None = None
    ) -> list[tuple[str, float]]:
        found = sorted(
            (s.updated_at, s.saga_id)
            for s in self.sagas.values()
            if s.status is status and (updated_before is None or s.updated_at < updated_before)
        )
        return [(saga_id, at) for at, saga_id in found[:limit]]

    async def counts(self) -> dict[SagaStatus, int]:
        found = dict.fromkeys(SagaStatus, 0)
        for state in self.sagas.values():
            found[state.status] += 1
        return found

    async def versions(self, statuses: Sequence[SagaStatus] = IN_FLIGHT) -> VersionCounts:
        counts: VersionCounts = {}
        for state in self.sagas.values():
            if state.status in statuses:
                tally(counts, state.saga, state.definition_version, state.status)
        return counts
