"""Print the fault run's table and, on the last line, one JSON object of totals.

Usage: ``python -m tests.fault.report FILE`` where FILE is what the fault suite wrote to
``BATON_FAULTS_REPORT``. Exit 1 when a figure is off target or no scenario ran.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def totals(results: list[dict[str, Any]], wall_s: float | None = None) -> dict[str, Any]:
    faults: Counter[str] = Counter()
    dead: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    for r in results:
        faults.update(r["faults_injected"])
        dead.update(r["dead_lettered"])
        expected.update(r["dead_letters_expected"])
    summary: dict[str, Any] = {
        "scenarios": len(results),
        "sagas": sum(r["sagas"] for r in results),
        "faults_injected": dict(sorted(faults.items())),
        "faults_total": sum(faults.values()),
        "lost": sum(r["lost"] for r in results),
        "double_captures": sum(r["double_captures"] for r in results),
        "unfinished": sum(r["unfinished"] for r in results),
        "failed": sum(r["failed"] for r in results),
        "books_balanced": all(r["books_balanced"] for r in results),
        "dead_lettered": sum(dead.values()),
        "dead_letters_expected": sum(expected.values()),
        "dead_letters_match": all(
            r["dead_lettered"] == r["dead_letters_expected"] for r in results
        ),
        "elapsed_s": round(sum(r["elapsed_s"] for r in results), 1),
        "node_faults": sum(
            n for kind, n in faults.items() if kind.startswith(("rabbit_node", "redis_primary"))
        ),
        "rabbit_nodes": max((r.get("rabbit_nodes", 1) for r in results), default=0),
        "redis_primaries": max((r.get("redis_primaries", 1) for r in results), default=0),
    }
    if wall_s is not None:
        summary["wall_s"] = wall_s
    return summary


def table(results: list[dict[str, Any]]) -> Table:
    t = Table("scenario", "sagas", "completed", "compensated", "lost", "unfinished", "double",
              "books", "faults", "dead letters", "s", title="Baton fault run")  # fmt: skip
    for r in results:
        t.add_row(
            r["scenario"], str(r["sagas"]), str(r["completed"]), str(r["compensated"]),
            str(r["lost"]), str(r["unfinished"]), str(r["double_captures"]),
            "ok" if r["books_balanced"] else "BROKEN", str(sum(r["faults_injected"].values())),
            f"{sum(r['dead_lettered'].values())}/{sum(r['dead_letters_expected'].values())}",
            str(r["elapsed_s"]),
        )  # fmt: skip
    return t


def main(argv: list[str]) -> int:
    path = Path(argv[0])
    results: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
    wall = float(argv[1]) if len(argv) > 1 else None
    console = Console()
    console.print(table(results))
    for r in results:
        kinds = ", ".join(f"{k} {v}" for k, v in r["faults_injected"].items())
        console.print(f"  {r['scenario']}: {kinds}")
    summary = totals(results, wall)
    print(json.dumps(summary), flush=True)
    healthy = (
        results
        and summary["lost"] == summary["double_captures"] == summary["unfinished"] == 0
        and summary["books_balanced"]
        and summary["dead_letters_match"]
    )
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
