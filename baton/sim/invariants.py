"""What must hold after every money-moving step and at the end of every seeded run.

The books are read through a synchronous client of the in-memory Redis: the read is one
uninterrupted step (no other task runs in between, so the snapshot is consistent), and it
works during a simulated store outage (fakeredis's synchronous clients ignore it). The
judgement uses the shipped audit (``participants.payments.books.audit``) plus what only
the simulation knows: each saga's amount, which sagas had a compensation refused on
purpose, and which were aborted by an operator without compensation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from fakeredis import FakeRedis as SyncFakeRedis

from messaging.text import as_text
from participants.payments.books import Books, audit, imbalance
from participants.payments.ledger import LedgerKeys

IN_PROGRESS = frozenset({"running", "compensating"})


def read_books(client: SyncFakeRedis, keys: LedgerKeys) -> Books:
    """The ledger as the shipped ``Ledger.snapshot`` reads it, in one synchronous step."""

    def members(key: str) -> list[str]:
        return sorted(as_text(m) for m in client.smembers(key))

    def row(key: str) -> dict[str, str]:
        return {as_text(f): as_text(v) for f, v in client.hgetall(key).items()}

    return Books.model_validate({
        "accounts": {a: row(keys.account(a)) for a in members(keys.index("accounts"))},
        "merchants": {m: row(keys.merchant(m)) for m in members(keys.index("merchants"))},
        "holds": {h: row(keys.hold(h)) for h in members(keys.index("holds"))},
        "captures": {c: row(keys.capture(c)) for c in members(keys.index("captures"))},
        "totals": row(keys.totals),
        "captures_per_saga": row(keys.captures_per_saga),
    })  # fmt: skip


def money_now(books: Books, amounts: Mapping[str, int]) -> list[str]:
    """What is wrong with the books at any moment, whatever the sagas' statuses."""
    wrong = [f"money not conserved: {diff}" for diff in [imbalance(books)] if diff]
    wrong += [
        f"captured twice: {saga_id}" for saga_id, n in books.captures_per_saga.items() if int(n) > 1
    ]
    for capture in books.captures.values():
        wanted = amounts.get(capture.saga_id)
        if wanted is not None and capture.amount != wanted:
            wrong.append(f"captured {capture.amount} for {capture.saga_id}, asked {wanted}")
    holds = Counter(h.saga_id for h in books.holds.values() if h.status != "voided")
    wrong += [f"{n} live holds for {saga_id}" for saga_id, n in holds.items() if n > 1]
    return wrong


@dataclass
class Verdict:
    """The end-of-run judgement: counts per invariant and one line per violation."""

    counts: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def add(self, kind: str, sagas: list[str], labels: Mapping[str, str]) -> None:
        if sagas:
            self.counts[kind] += len(sagas)
            named = ", ".join(sorted(labels.get(s, s[:8]) for s in sagas))
            self.violations.append(f"{kind}: {named}")


def judge(
    books: Books,
    outcomes: Mapping[str, str],
    amounts: Mapping[str, int],
    *,
    refused: set[str],
    aborted: set[str],
    labels: Mapping[str, str],
    interrupted: bool = False,
) -> Verdict:
    """Every saga the client started against the books and its final status.

    ``outcomes`` maps saga id -> status ("missing" if the store has none); ``refused``
    names the sagas whose compensation was refused on purpose: only they may end failed
    and keep their hold while they wait for an operator. ``aborted`` names the sagas an
    operator stopped without compensation: they may end failed, but not holding money.
    An ``interrupted`` run (stopped at its first violation) is judged on money only.
    """
    verdict = Verdict()
    report = audit(books, outcomes)
    failed = {s for s, st in outcomes.items() if st == "failed"}
    excused = failed & refused
    verdict.add("holds_left", [s for s in report.holds_left if s not in excused], labels)
    verdict.add("double_captures", report.double_captures, labels)
    verdict.add("completed_not_captured", report.completed_not_captured, labels)
    verdict.add("compensated_but_captured", report.compensated_but_captured, labels)
    if not report.balanced:
        verdict.counts["imbalance"] += 1
        verdict.violations.append(f"money not conserved: {report.imbalance}")
    wrong_amount = [
        c.saga_id for c in books.captures.values() if c.amount != amounts.get(c.saga_id, c.amount)
    ]
    verdict.add("wrong_amount_captured", wrong_amount, labels)
    if not interrupted:  # else sagas were cut off mid-flight: not stuck, not lost
        verdict.add("stuck", [s for s, st in outcomes.items() if st in IN_PROGRESS], labels)
        verdict.add("lost", [s for s, st in outcomes.items() if st == "missing"], labels)
    verdict.add("failed_unexpectedly", sorted(failed - refused - aborted), labels)
    return verdict
