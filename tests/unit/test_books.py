"""A hold still held is reported whenever its saga is not in progress, whatever its status."""

from __future__ import annotations

import pytest

from participants.payments.books import Books, HoldRecord, audit


def books_with_holds(**holds: str) -> Books:
    """One 100 EUR hold per saga, in the given hold status; money seeded to match."""
    return Books(
        accounts={},
        merchants={},
        holds={
            f"hold-{saga}": HoldRecord(
                hold_id=f"hold-{saga}",
                saga_id=saga,
                account="a",
                amount=100,
                currency="EUR",
                status=status,
            )
            for saga, status in holds.items()
        },
        captures={},
        totals={"EUR": 100 * sum(status == "held" for status in holds.values())},
        captures_per_saga={},
    )


@pytest.mark.parametrize("status", ["compensated", "failed", "aborted", "completed"])
def test_a_held_hold_of_a_finished_saga_is_reported(status: str) -> None:
    report = audit(books_with_holds(s1="held"), {"s1": status})
    assert report.holds_left == ["s1"]
    assert report.holds_left_by_status == {status: ["s1"]}
    assert not report.ok


def test_a_saga_the_store_does_not_know_is_reported_as_unknown() -> None:
    report = audit(books_with_holds(s1="held"), {})
    assert report.holds_left_by_status == {"unknown": ["s1"]}
    assert not report.ok


@pytest.mark.parametrize("status", ["running", "compensating"])
def test_a_saga_in_progress_may_still_hold(status: str) -> None:
    report = audit(books_with_holds(s1="held"), {"s1": status})
    assert report.holds_left == []
    assert report.ok


def test_released_holds_are_not_reported() -> None:
    report = audit(books_with_holds(s1="voided", s2="held"), {"s1": "failed", "s2": "running"})
    assert report.ok, report
