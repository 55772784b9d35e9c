"""What `baton conformance` found: one result per check, as a table or one JSON line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["passed", "failed", "skipped"]


class CheckFailed(Exception):
    """Raised by a check: the participant broke the protocol; the message says how."""


class CheckSkipped(Exception):
    """Raised by a check that does not apply (e.g. no compensation to send first)."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: str
    status: Status
    reason: str = ""


@dataclass(slots=True)
class Report:
    """Every check's result for one participant; ``ok`` when none failed."""

    participant: str
    results: list[CheckResult] = field(default_factory=list)

    def of(self, status: Status) -> list[CheckResult]:
        return [r for r in self.results if r.status == status]

    @property
    def ok(self) -> bool:
        return not self.of("failed")

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def as_json(self) -> dict[str, Any]:
        """``checks`` counts the checks run (passed + failed); skipped ones are listed apart."""
        passed, failed = self.of("passed"), self.of("failed")
        return {
            "participant": self.participant,
            "checks": len(passed) + len(failed),
            "passed": len(passed),
            "failed": len(failed),
            "failures": [{"check": r.check, "reason": r.reason} for r in failed],
            "skipped": [{"check": r.check, "reason": r.reason} for r in self.of("skipped")],
        }

    def json_line(self) -> str:
        return json.dumps(self.as_json(), separators=(",", ":"))

    def table(self) -> str:
        """A plain table: check, result, why (failures and skips only), then the totals."""
        width = max([len("check"), *(len(r.check) for r in self.results)])
        lines = [f"conformance of {self.participant}", f"{'check':<{width}}  result   detail"]
        for r in self.results:
            lines.append(f"{r.check:<{width}}  {r.status:<7}  {r.reason}".rstrip())
        summary = self.as_json()
        lines.append(
            f"{summary['checks']} checks: {summary['passed']} passed, {summary['failed']} failed"
            + (f", {len(summary['skipped'])} skipped" if summary["skipped"] else "")
        )
        return "\n".join(lines)
