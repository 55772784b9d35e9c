"""No module over 400 lines, no function over 50, unless a reason is written next to it.

The reason is a comment ``# long: <reason>`` on the line of the ``def`` (for a function) or
on the module's first line (for a module). Tests are not measured.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEASURED = ("contracts", "messaging", "orchestrator", "participants", "baton", "examples", "sagas")
SKIPPED = {".venv", "node_modules", "__pycache__", "tests"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50
MARK = "# long:"


def _sources() -> list[Path]:
    found: list[Path] = []
    for top in MEASURED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if not SKIPPED.intersection(path.relative_to(ROOT).parts):
                found.append(path)
    return found


def _excused(line: str) -> bool:
    """A ``# long:`` comment with a reason after it."""
    _, mark, reason = line.partition(MARK)
    return bool(mark) and bool(reason.strip())


def _offenders(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    name = path.relative_to(ROOT)
    found: list[str] = []
    if len(lines) > MAX_MODULE_LINES and not (lines and _excused(lines[0])):
        found.append(f"{name}: module of {len(lines)} lines (limit {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if length > MAX_FUNCTION_LINES and not _excused(lines[node.lineno - 1]):
            found.append(
                f"{name}:{node.lineno}: function {node.name} of {length} lines "
                f"(limit {MAX_FUNCTION_LINES})"
            )
    return found


def test_the_measured_trees_hold_python() -> None:
    assert len(_sources()) > 50  # the walk finds the code it is meant to measure


def test_no_module_or_function_is_too_long_without_a_reason() -> None:
    offenders = [line for path in _sources() for line in _offenders(path)]
    assert not offenders, (
        f"too long, and no '{MARK} <reason>' comment on the def line or the module's first "
        "line:\n  " + "\n  ".join(offenders)
    )
