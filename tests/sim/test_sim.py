"""The deterministic simulation: hundreds of seeded worlds hold every invariant, a seed
replays identically, and planted bugs are caught (a checker that cannot fail proves nothing).

``BATON_SIM_SEEDS`` sets how many seeds the main test runs (``make sim`` runs thousands).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import replace

import pytest

from baton.sim import SeedResult, run_seed
from baton.sim.report import run_seeds
from baton_sdk.inbox import Claim, ClaimStatus
from baton_sdk.redis_inbox import RedisInbox
from orchestrator.core.engine import draft, sending
from participants.payments.ledger import Ledger

SEEDS = int(os.environ.get("BATON_SIM_SEEDS", "200"))
MONEY = ("holds_left", "live holds", "captured twice", "double_captures", "not conserved",
         "completed_not_captured", "compensated_but_captured")  # fmt: skip


def _first_failure(seeds: range) -> list[str]:
    """The violations of the first failing seed of ``seeds`` (in this process)."""
    for seed in seeds:
        result = run_seed(seed)
        if result.violations:
            return result.violations
    return []


@pytest.mark.timeout(600)
def test_seeded_worlds_hold_every_invariant() -> None:
    failed: list[SeedResult] = []

    def keep_failures(result: SeedResult) -> None:
        if not result.ok:
            failed.append(result)

    report = run_seeds(range(SEEDS), jobs=2, on_result=keep_failures)
    summary = report.summary()
    assert report.seeds == SEEDS
    if failed:
        first = min(failed, key=lambda r: r.seed)
        trace = "\n".join(first.trace[-40:])
        pytest.fail(
            f"seeds {summary['failing_seeds']} broke {summary['invariants']}.\n"
            f"seed {first.seed}: {first.violations}\nthe end of its trace:\n{trace}\n"
            f"replay it alone: baton sim --seed {first.seed} --trace"
        )
    if SEEDS >= 100:  # every kind of trouble was exercised
        assert summary["scenarios_missing"] == [], summary["scenarios"]
    assert sum(report.outcomes.values()) == report.sagas > 0


def test_a_seed_replays_identically() -> None:
    first, again = run_seed(7), run_seed(7)
    assert first.trace == again.trace
    assert (first.violations, first.outcomes, first.scenarios) == (
        again.violations, again.outcomes, again.scenarios,
    )  # fmt: skip
    assert len(first.trace) > 20
    assert run_seed(8).trace != first.trace


def test_catches_an_engine_that_forgets_effect_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted: every send gets a fresh effect id, so a retried authorize holds twice and a
    void never finds the hold it should release."""
    fresh = itertools.count()
    planted = lambda *_, **__: f"planted{next(fresh):025d}"  # noqa: E731
    for module in (draft, sending):  # where commands are built, and where timeouts find them
        monkeypatch.setattr(module, "effect_id", planted)
    violations = _first_failure(range(10))
    assert any(money in v for v in violations for money in MONEY), violations


def test_catches_a_void_that_releases_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted: the compensation says it released the hold and leaves the money held."""

    async def void(self: Ledger, forward_effect_id: str) -> bool:
        return True

    monkeypatch.setattr(Ledger, "void", void)
    violations = _first_failure(range(10))
    assert any(v.startswith("holds_left") for v in violations), violations


def test_catches_an_inbox_without_a_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted: a delivery finding its effect id busy runs anyway (no lease), so a slow
    handler and its own retry run side by side."""
    claim = RedisInbox.claim

    async def no_lease(self: RedisInbox, effect_id: str, *, compensates: str = "",
                       lease_s: float) -> Claim:  # fmt: skip
        found = await claim(self, effect_id, compensates=compensates, lease_s=lease_s)
        return replace(found, status=ClaimStatus.GRANTED, token="planted") if found.busy else found

    monkeypatch.setattr(RedisInbox, "claim", no_lease)
    violations = _first_failure(range(30))
    assert any(v.startswith("parallel_run") for v in violations), violations
