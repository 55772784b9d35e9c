"""A saga's timeline as bars on a time axis: pure, so the chart is tested without a browser.

One bar per attempt: from the history's ``sent`` entry of a (step, phase, attempt) to the
entry that answered it (``succeeded``, ``failed``, ``rejected``, ``timed_out``,
``unpublished``), or to the saga's last update (or now) while none has. Saga-level entries
(``compensating``, the final event, operator actions) become markers. ``chart`` then places
bars and markers in pixels, one row per (step, phase), in the order they first ran.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from orchestrator.core.state import SagaState

ANSWERS = frozenset({"succeeded", "failed", "rejected", "timed_out", "unpublished"})
MARKERS = frozenset({"compensating", "completed", "compensated", "failed"})
OPEN = "open"  # an attempt with no answer yet


@dataclass(frozen=True, slots=True)
class Bar:
    """One attempt: when it was sent and answered (seconds since the saga started)."""

    step: str
    phase: str  # forward | compensate
    attempt: int
    start: float
    end: float
    outcome: str  # an ANSWERS entry, or OPEN
    detail: str = ""  # the reply's kind or the refusal's reason, as the history has it


@dataclass(frozen=True, slots=True)
class Marker:
    """A saga-level moment: compensation began, the saga ended, an operator acted."""

    at: float
    what: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Timeline:
    bars: tuple[Bar, ...]
    markers: tuple[Marker, ...]
    span: float  # seconds from the saga's start to its last bar or marker


def _seconds(entry: Mapping[str, str], origin: float) -> float:
    return max(float(entry["at"]) - origin, 0.0)


def layout(state: SagaState, history: Iterable[Mapping[str, str]], now: float) -> Timeline:
    """Bars and markers of a saga's history; an unanswered attempt runs to the saga's last
    update when it is finished (nothing more came), else to ``now``."""
    origin = state.started_at
    opened: dict[tuple[str, str, int], tuple[float, int]] = {}  # -> (start, index in bars)
    bars: list[Bar] = []
    markers: list[Marker] = []
    for entry in history:
        what, at = entry["what"], _seconds(entry, origin)
        key = (entry["step"], entry["phase"], int(entry["attempt"] or 0))
        if what == "sent":
            opened[key] = (at, len(bars))
            bars.append(Bar(key[0], key[1], key[2], at, at, OPEN))
        elif what in ANSWERS and key in opened and entry["step"]:
            start, index = opened.pop(key)
            bars[index] = Bar(*key, start, at, what, entry["detail"])
        elif what in MARKERS or what.startswith("operator_"):
            markers.append(Marker(at, what, entry["detail"]))
    until = (state.updated_at if state.status.is_finished else now) - origin
    for start, index in opened.values():
        bars[index] = Bar(*_key(bars[index]), start, max(until, start), OPEN)
    span = max([b.end for b in bars] + [m.at for m in markers] + [0.0])
    return Timeline(tuple(bars), tuple(markers), span)


def _key(bar: Bar) -> tuple[str, str, int]:
    return (bar.step, bar.phase, bar.attempt)


# -- pixels ---------------------------------------------------------------------------------

LABEL_W, ROW_H, BAR_H, AXIS_H, MIN_BAR_W = 170, 26, 16, 28, 3.0


@dataclass(frozen=True, slots=True)
class PlacedBar:
    bar: Bar
    x: float
    y: float
    width: float


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Everything the SVG template draws, in pixels."""

    width: int
    height: int
    rows: tuple[tuple[str, str, float], ...]  # (step, phase, y of the row's label)
    bars: tuple[PlacedBar, ...]
    markers: tuple[tuple[Marker, float], ...]  # (marker, x)
    ticks: tuple[Tick, ...]
    plot_left: int = LABEL_W
    plot_bottom: float = 0.0


def _tick_step(span: float) -> float:
    """A round step giving four to ten ticks over ``span`` seconds."""
    step = 0.001
    while span / step > 10:
        for factor in (2, 2.5, 2):  # 1, 2, 5, 10, 20, 50 ...
            step *= factor
            if span / step <= 10:
                break
    return step


def _label(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:g} s"


def chart(timeline: Timeline, width: int = 900) -> Chart:
    """Place ``timeline`` on a ``width``-pixel SVG: rows top-down in first-run order, a
    linear time axis at the bottom; a bar is never thinner than ``MIN_BAR_W`` pixels."""
    rows = list(dict.fromkeys((b.step, b.phase) for b in timeline.bars))
    plot_w = width - LABEL_W - 20
    span = timeline.span or 1.0

    def x_of(seconds: float) -> float:
        return round(LABEL_W + seconds / span * plot_w, 2)

    placed = tuple(
        PlacedBar(
            bar,
            x_of(bar.start),
            AXIS_H / 2 + rows.index((bar.step, bar.phase)) * ROW_H + (ROW_H - BAR_H) / 2,
            max(round((bar.end - bar.start) / span * plot_w, 2), MIN_BAR_W),
        )
        for bar in timeline.bars
    )
    bottom = AXIS_H / 2 + len(rows) * ROW_H
    step = _tick_step(span)
    count = int(span / step + 1e-9) + 1
    ticks = tuple(Tick(x_of(i * step), _label(round(i * step, 6))) for i in range(count))
    return Chart(
        width=width,
        height=int(bottom + AXIS_H),
        rows=tuple((s, p, AXIS_H / 2 + i * ROW_H + ROW_H / 2) for i, (s, p) in enumerate(rows)),
        bars=placed,
        markers=tuple((m, x_of(m.at)) for m in timeline.markers),
        ticks=ticks,
        plot_bottom=bottom,
    )
