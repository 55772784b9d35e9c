"""Service-level objectives a saga definition may declare, limited to what Baton measures.

Every SLO here is a ratio of *finished* sagas of one definition, read from one histogram,
``baton_saga_duration_seconds{saga, outcome}`` (observed once per saga, when it finishes):

* good: the saga ended with one of ``outcomes`` (by default ``completed`` or
  ``compensated``: a clean end, where a refused payment is a good outcome for the service)
  and, when ``terminal_within_s`` is given, did so within that many seconds of its start;
* valid: every finished saga of that definition.

What is not measurable is refused rather than approximated: a latency threshold must be
one of the histogram's bucket bounds (anything else would be interpolated), and an
objective whose error budget is so large that the fastest burn rate could never be reached
would page on nothing. Sagas that never finish are not in the histogram at all: the
cluster-wide ``BatonSagasStuck`` alert covers them (the stuck gauges have no saga label).

SLOs are monitoring, not behaviour: they are excluded from a definition's registered body,
so changing an objective needs no new version.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

# The bucket bounds of baton_saga_duration_seconds (orchestrator/runtime/metrics.py; a unit
# test keeps the two equal). Core code must not import the runtime, hence the copy.
SAGA_DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
)  # fmt: skip
Outcome = Literal["completed", "compensated", "failed"]
OUTCOMES: tuple[Outcome, ...] = ("completed", "compensated", "failed")
# The fastest burn rate that pages (Google SRE workbook, ch. 5: 2% of a 30-day budget in
# 1 h). An objective must leave room for it: (1 - objective) * FASTEST_BURN < 1.
FASTEST_BURN = 14.4


class ServiceLevelObjective(BaseModel):
    """One objective: the share of finished sagas that must be good, over 30 days."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    objective: float
    terminal_within_s: float | None = None
    outcomes: tuple[Outcome, ...] = ("completed", "compensated")
    description: str = Field(default="", max_length=300)

    @field_validator("objective")
    @classmethod
    def _objective(cls, value: float) -> float:
        if not (math.isfinite(value) and 0 < value < 1):
            raise ValueError(f"objective {value} must be a ratio above 0 and below 1 (0.999)")
        if (1 - value) * FASTEST_BURN >= 1:
            floor = 1 - 1 / FASTEST_BURN
            raise ValueError(
                f"objective {value} leaves so large an error budget that a {FASTEST_BURN}x "
                f"burn would need more than every saga to fail: use an objective above "
                f"{floor:.4f}"
            )
        return value

    @field_validator("terminal_within_s")
    @classmethod
    def _bucket(cls, value: float | None) -> float | None:
        if value is not None and value not in SAGA_DURATION_BUCKETS:
            bounds = ", ".join(f"{b:g}" for b in SAGA_DURATION_BUCKETS)
            raise ValueError(
                f"terminal_within_s {value:g} is not a bucket bound of "
                f"baton_saga_duration_seconds, so it cannot be measured; use one of {bounds}"
            )
        return value

    @model_validator(mode="after")
    def _measures_something(self) -> ServiceLevelObjective:
        if not self.outcomes or len(set(self.outcomes)) != len(self.outcomes):
            raise ValueError(f"slo {self.name}: outcomes must be distinct and not empty")
        if self.terminal_within_s is None and set(self.outcomes) == set(OUTCOMES):
            raise ValueError(
                f"slo {self.name}: every outcome is good and there is no terminal_within_s, "
                "so nothing can be bad"
            )
        return self

    @property
    def error_budget(self) -> float:
        """The share of finished sagas allowed to be bad."""
        return 1 - self.objective


def _distinct_names(slos: tuple[ServiceLevelObjective, ...]) -> tuple[ServiceLevelObjective, ...]:
    names = [slo.name for slo in slos]
    if len(set(names)) != len(names):
        raise ValueError(f"slo names must be unique within a definition: {names}")
    return slos


# The ``slos:`` field of a definition.
Objectives = Annotated[tuple[ServiceLevelObjective, ...], AfterValidator(_distinct_names)]
