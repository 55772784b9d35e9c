"""``SqliteInbox``: the SDK's ``Inbox`` port on the standard library's sqlite3.

Every method is one ``BEGIN IMMEDIATE`` transaction (SQLite's write lock, taken up front), so
each step is atomic against every other connection to the same file, as a Lua script is on
Redis: processes on one host may share the database. WAL mode lets readers run beside the
writer. The blocking calls run in a worker thread (``asyncio.to_thread``), one at a time per
instance (its connection is not shared between threads at once).

Leases and expiries are compared with ``clock`` (wall-clock seconds, injectable): every
process sharing the file must see the same clock, which holds on one host.

``apply`` is what the port itself cannot offer: it runs a handler's own SQL and stores the
outcome in the *same* transaction, so "the effect happened" and "its outcome is recorded"
commit together or not at all.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

from baton_sdk.inbox import CANCELLED, Claim, ClaimStatus, subject_of
from baton_sdk.redis_inbox import dumps, loads
from contracts.base import Reply, StepFailed
from contracts.registry import ContractLookup
from messaging.errors import TransientError

DEFAULT_TTL_S = 30 * 24 * 3600
R = TypeVar("R", bound=Reply)
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox_outcomes (
    effect_id TEXT PRIMARY KEY, outcome TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS inbox_tombstones (
    effect_id TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS inbox_leases (
    subject TEXT PRIMARY KEY, token INTEGER NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS inbox_fence (
    id INTEGER PRIMARY KEY CHECK (id = 1), token INTEGER NOT NULL);
INSERT OR IGNORE INTO inbox_fence (id, token) VALUES (1, 0);
"""


class SqliteInbox:
    """The ``Inbox`` port in one SQLite file; outcomes and tombstones live ``ttl_s`` seconds.

    ``contracts`` reads stored outcomes back (the participant's ``Handlers``), as for
    ``RedisInbox``. ``busy_timeout_s``: how long a step waits for another connection's write
    lock before it fails with ``TransientError`` (the command is redelivered).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        contracts: ContractLookup,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float = 5.0,
    ) -> None:
        self._contracts = contracts
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()  # one statement sequence at a time on the connection
        # isolation_level=None: no implicit transactions, each method says BEGIN itself
        self.db = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed outcome survives power loss
        self._cancelled = dumps(CANCELLED)
        self.atomic(lambda db: script(db, SCHEMA))

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # -- the port -------------------------------------------------------------------------

    async def claim(self, effect_id: str, *, compensates: str = "", lease_s: float) -> Claim:
        subject = subject_of(effect_id, compensates)
        found = Claim(ClaimStatus.GRANTED, effect_id, subject, compensates)

        def step(db: sqlite3.Connection) -> Claim:
            now = self._clock()
            if (stored := self._outcome(db, effect_id, now)) is not None:
                return Claim(ClaimStatus.OUTCOME, effect_id, subject, compensates, stored)
            if not compensates and self._tombstoned(db, effect_id, now):
                self._store(db, effect_id, self._cancelled, now)
                return Claim(ClaimStatus.CANCELLED, effect_id, subject, compensates, CANCELLED)
            row = db.execute(
                "SELECT expires_at FROM inbox_leases WHERE subject = ? AND expires_at > ?",
                (subject, now),
            ).fetchone()
            if row is not None:
                return Claim(
                    ClaimStatus.BUSY, effect_id, subject, compensates,
                    retry_after_s=row[0] - now,
                )  # fmt: skip
            (token,) = db.execute(
                "UPDATE inbox_fence SET token = token + 1 WHERE id = 1 RETURNING token"
            ).fetchone()
            db.execute(
                "INSERT OR REPLACE INTO inbox_leases (subject, token, expires_at) VALUES (?, ?, ?)",
                (subject, token, now + lease_s),
            )
            return Claim(found.status, effect_id, subject, compensates, token=str(token))

        return await self._run(step)

    async def renew(self, claim: Claim, *, lease_s: float) -> bool:
        def step(db: sqlite3.Connection) -> bool:
            now = self._clock()
            renewed = db.execute(
                "UPDATE inbox_leases SET expires_at = ?"
                " WHERE subject = ? AND token = ? AND expires_at > ?",
                (now + lease_s, claim.subject, _token(claim), now),
            )
            return renewed.rowcount == 1

        return await self._run(step)

    async def record(self, claim: Claim, outcome: Reply, *, bury: bool = False) -> Reply:
        ours = dumps(outcome)

        def step(db: sqlite3.Connection) -> str:
            stored = self._finish(db, claim.effect_id, claim.compensates, ours, bury=bury)
            self._release(db, claim)
            return stored

        stored = await self._run(step)
        return outcome if stored == ours else loads(stored, self._contracts)

    async def release(self, claim: Claim) -> None:
        await self._run(lambda db: self._release(db, claim))

    async def stored(self, effect_id: str) -> Reply | None:
        return await self._run(lambda db: self._outcome(db, effect_id, self._clock()))

    # -- the business write and its outcome in one transaction ----------------------------

    async def apply(
        self, effect_id: str, compensates: str, work: Callable[[sqlite3.Connection], R]
    ) -> R | StepFailed:
        """Run ``work`` (the handler's own SQL on this database) and store what it returns
        as ``effect_id``'s outcome, in one transaction; returns the outcome that stays.

        If an outcome is stored already (another delivery of the effect committed first,
        e.g. after this one's lease ran out), ``work`` does not run and that outcome is
        returned. A forward effect whose compensation already ran is not applied either:
        it gets ``cancelled``. A compensation that returns leaves the forward effect's
        tombstone. If ``work`` raises, nothing of it is committed (the exception
        propagates: ``StepRejected`` becomes the recorded refusal as usual); a lock that
        cannot be had within the busy timeout raises ``TransientError``.
        """

        def step(db: sqlite3.Connection) -> R | StepFailed:
            now = self._clock()
            if (stored := self._outcome(db, effect_id, now)) is not None:
                # what ``work`` returned for this effect id before, or a refusal/cancellation
                return cast("R | StepFailed", stored)
            if not compensates and self._tombstoned(db, effect_id, now):
                self._store(db, effect_id, self._cancelled, now)
                return CANCELLED
            reply = work(db)
            self._finish(db, effect_id, compensates, dumps(reply), bury=bool(compensates))
            return reply

        return await self._run(step)

    # -- inside one transaction -----------------------------------------------------------

    def _outcome(self, db: sqlite3.Connection, effect_id: str, now: float) -> Reply | None:
        row = db.execute(
            "SELECT outcome FROM inbox_outcomes WHERE effect_id = ? AND expires_at > ?",
            (effect_id, now),
        ).fetchone()
        return None if row is None else loads(row[0], self._contracts)

    @staticmethod
    def _tombstoned(db: sqlite3.Connection, effect_id: str, now: float) -> bool:
        row = db.execute(
            "SELECT 1 FROM inbox_tombstones WHERE effect_id = ? AND expires_at > ?",
            (effect_id, now),
        ).fetchone()
        return row is not None

    def _store(self, db: sqlite3.Connection, effect_id: str, outcome: str, now: float) -> None:
        db.execute(
            "INSERT OR REPLACE INTO inbox_outcomes (effect_id, outcome, expires_at)"
            " VALUES (?, ?, ?)",
            (effect_id, outcome, now + self._ttl_s),
        )  # only called when no live outcome exists: replaces an expired row at most

    def _finish(
        self, db: sqlite3.Connection, effect_id: str, compensates: str, outcome: str, *,
        bury: bool,
    ) -> str:  # fmt: skip
        """Store ``outcome`` unless a live one is stored (the first wins); maybe bury."""
        now = self._clock()
        row = db.execute(
            "SELECT outcome FROM inbox_outcomes WHERE effect_id = ? AND expires_at > ?",
            (effect_id, now),
        ).fetchone()
        if row is None:
            self._store(db, effect_id, outcome, now)
        if bury and compensates:
            db.execute(
                "INSERT OR REPLACE INTO inbox_tombstones (effect_id, expires_at) VALUES (?, ?)",
                (compensates, now + self._ttl_s),
            )
        return outcome if row is None else str(row[0])

    @staticmethod
    def _release(db: sqlite3.Connection, claim: Claim) -> None:
        db.execute(
            "DELETE FROM inbox_leases WHERE subject = ? AND token = ?",
            (claim.subject, _token(claim)),
        )  # fenced: a stale token matches no row, the new holder's lease stays

    # -- running a step -------------------------------------------------------------------

    def atomic(self, step: Callable[[sqlite3.Connection], T]) -> T:
        """``step`` in one BEGIN IMMEDIATE transaction, committed if it returns (blocking:
        for set-up and scripts; handlers use ``apply``)."""
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # locked past the busy timeout
                raise TransientError(f"inbox database: {exc}") from exc
            try:
                result = step(self.db)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            try:
                self.db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise TransientError(f"inbox database: {exc}") from exc
            return result

    async def _run(self, step: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self.atomic, step)


def script(db: sqlite3.Connection, statements: str) -> None:
    """Run ``;``-separated statements inside the current transaction (``executescript``
    would commit it first)."""
    for statement in statements.split(";"):
        if statement.strip():
            db.execute(statement)


def _token(claim: Claim) -> int:
    return int(claim.token) if claim.token else -1  # a claim never granted holds nothing
