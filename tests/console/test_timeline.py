"""The timeline layout, without a browser: history entries in, bars and pixels out."""

from __future__ import annotations

from baton.console.timeline import OPEN, chart, layout
from orchestrator.core.state import SagaState, SagaStatus

T0 = 1_000.0


def a_state(status: SagaStatus = SagaStatus.COMPLETED, updated: float = T0 + 2.0) -> SagaState:
    return SagaState(
        saga_id="s-1", saga="payment", definition_version=1, status=status, input={},
        steps={}, started_at=T0, updated_at=updated,
    )  # fmt: skip


def entry(at: float, what: str, step: str = "", phase: str = "", attempt: int = 0,
          detail: str = "") -> dict[str, str]:  # fmt: skip
    return {"at": f"{T0 + at:.6f}", "what": what, "step": step, "phase": phase,
            "attempt": str(attempt), "detail": detail}  # fmt: skip


def test_one_bar_per_attempt_from_sent_to_its_answer() -> None:
    history = [
        entry(0.0, "sent", "payment", "forward", 1),
        entry(0.1, "failed", "payment", "forward", 1, "db_down (retriable)"),
        entry(0.1, "retry_scheduled", "payment", "forward", 2),
        entry(0.3, "sent", "payment", "forward", 2),
        entry(0.4, "succeeded", "payment", "forward", 2, "payment.authorized.v1"),
        entry(0.4, "sent", "risk", "forward", 1),
        entry(0.7, "succeeded", "risk", "forward", 1, "risk.assessed.v1"),
        entry(0.7, "completed"),
    ]
    timeline = layout(a_state(), history, now=T0 + 99)
    spans = [(b.step, b.attempt, b.outcome, round(b.start, 3), round(b.end, 3))
             for b in timeline.bars]  # fmt: skip
    assert spans == [
        ("payment", 1, "failed", 0.0, 0.1),
        ("payment", 2, "succeeded", 0.3, 0.4),
        ("risk", 1, "succeeded", 0.4, 0.7),
    ]
    assert timeline.bars[1].detail == "payment.authorized.v1"
    assert [m.what for m in timeline.markers] == ["completed"]
    assert round(timeline.span, 3) == 0.7


def test_compensations_are_bars_of_their_own_phase_after_the_compensating_marker() -> None:
    history = [
        entry(0.0, "sent", "payment", "forward", 1),
        entry(0.2, "succeeded", "payment", "forward", 1),
        entry(0.2, "sent", "risk", "forward", 1),
        entry(0.3, "rejected", "risk", "forward", 1, "declined"),
        entry(0.3, "compensating", detail="declined; undo payment"),
        entry(0.3, "sent", "payment", "compensate", 1),
        entry(0.5, "succeeded", "payment", "compensate", 1),
        entry(0.5, "compensated", detail="declined"),
    ]
    timeline = layout(a_state(SagaStatus.COMPENSATED), history, now=T0 + 99)
    assert [(b.step, b.phase, b.outcome) for b in timeline.bars] == [
        ("payment", "forward", "succeeded"),
        ("risk", "forward", "rejected"),
        ("payment", "compensate", "succeeded"),
    ]
    assert [m.what for m in timeline.markers] == ["compensating", "compensated"]
    drawn = chart(timeline)
    assert [(s, p) for s, p, _ in drawn.rows] == [
        ("payment", "forward"), ("risk", "forward"), ("payment", "compensate"),
    ]  # fmt: skip
    undo = drawn.bars[2]
    assert undo.y > drawn.bars[1].y > drawn.bars[0].y  # its own row, below the forward ones


def test_an_unanswered_attempt_runs_to_now_while_the_saga_runs() -> None:
    history = [entry(0.0, "sent", "payment", "forward", 1)]
    running = layout(a_state(SagaStatus.RUNNING, updated=T0), history, now=T0 + 5)
    assert (running.bars[0].outcome, running.bars[0].end) == (OPEN, 5.0)
    failed = layout(a_state(SagaStatus.FAILED, updated=T0 + 2), history, now=T0 + 5)
    assert failed.bars[0].end == 2.0  # finished: nothing more came after its last update


def test_operator_actions_are_markers_and_a_resend_is_a_new_bar() -> None:
    history = [
        entry(0.0, "sent", "pci", "compensate", 3),
        entry(1.0, "timed_out", "pci", "compensate", 3),
        entry(5.0, "operator_retry", detail="alice: card system back"),
        entry(5.0, "sent", "pci", "compensate", 4),
    ]
    timeline = layout(a_state(SagaStatus.COMPENSATING, updated=T0 + 5), history, now=T0 + 6)
    assert [(b.attempt, b.outcome) for b in timeline.bars] == [(3, "timed_out"), (4, OPEN)]
    assert [(m.what, m.detail) for m in timeline.markers] == [
        ("operator_retry", "alice: card system back")
    ]


def test_chart_places_bars_on_a_linear_axis_within_the_width() -> None:
    history = [
        entry(0.0, "sent", "a", "forward", 1), entry(1.0, "succeeded", "a", "forward", 1),
        entry(1.0, "sent", "b", "forward", 1), entry(4.0, "succeeded", "b", "forward", 1),
        entry(4.0, "sent", "c", "forward", 1), entry(4.0, "succeeded", "c", "forward", 1),
    ]  # fmt: skip
    drawn = chart(layout(a_state(), history, now=T0 + 9), width=600)
    a, b, c = drawn.bars
    assert a.x == drawn.plot_left
    assert abs(b.width - 3 * a.width) < 0.05  # three times as long, three times as wide
    assert c.width == 3.0  # an instant answer stays visible
    assert max(p.x + p.width for p in drawn.bars) <= 600
    assert drawn.ticks[0].label == "0 ms"
    assert drawn.ticks[-1].x <= 600
    assert 4 <= len(drawn.ticks) <= 11


def test_an_empty_history_draws_an_empty_chart() -> None:
    drawn = chart(layout(a_state(), [], now=T0))
    assert drawn.bars == ()
    assert drawn.rows == ()
    assert drawn.ticks
