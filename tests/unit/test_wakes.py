"""The deadline loop's knowledge of when to look next."""

from __future__ import annotations

from orchestrator.runtime.wakes import WakeTimes


def test_earliest_latest_wake_up_wins() -> None:
    wakes = WakeTimes()
    wakes.note("a", 10.0)
    wakes.note("b", 5.0)
    wakes.note("b", 20.0)  # b moved on: its 5.0 is superseded
    assert wakes.next_after(0.0) == 10.0


def test_a_saga_waiting_for_nothing_is_forgotten() -> None:
    wakes = WakeTimes()
    wakes.note("a", 10.0)
    wakes.note("a", None)
    assert wakes.next_after(0.0) is None


def test_wake_ups_a_poll_has_seen_are_dropped() -> None:
    wakes = WakeTimes()
    wakes.note("a", 1.0)
    wakes.note("b", 2.0)
    wakes.note("c", 3.0)
    assert wakes.next_after(2.0) == 3.0
    wakes.note("a", 2.5)  # a scheduled again after the poll
    assert wakes.next_after(2.0) == 2.5


def test_only_a_sooner_wake_up_interrupts_the_plan() -> None:
    wakes = WakeTimes()
    wakes.plan(10.0)
    wakes.note("a", 15.0)
    assert not wakes.earlier.is_set()
    wakes.note("b", 5.0)
    assert wakes.earlier.is_set()
    wakes.plan(5.0)
    assert not wakes.earlier.is_set()


def test_superseded_entries_do_not_pile_up() -> None:
    wakes = WakeTimes()
    for i in range(10_000):
        wakes.note("a", float(i + 1))
    assert len(wakes._heap) < 2_000
    assert wakes.next_after(0.0) == 10_000.0
