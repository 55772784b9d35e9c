"""The rooms' import rules, read from the source: a move that breaks them fails here.

* ``orchestrator.core`` is pure: no runtime, no broker, no Redis, no metrics, no logging, no
  event loop. It may use the standard library's pure parts, pydantic and YAML, the shared
  contracts and the shared errors.
* Nothing below the orchestrator imports it: ``contracts``, ``messaging`` and the participant
  SDK stand without it (the SDK installs on its own).
* ``contracts`` imports nothing of Baton's but ``messaging.errors``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# what a pure module may never import (prefix match on the dotted name)
IO_LIBRARIES = (
    "aio_pika", "aiormq", "pamqp", "redis", "fakeredis", "prometheus_client", "structlog",
    "logging", "asyncio", "socket", "ssl", "subprocess", "threading", "http", "urllib",
    "opentelemetry",
)  # fmt: skip
BATON_ABOVE_CORE = ("orchestrator.runtime", "messaging", "participants", "baton", "sagas")
CORE_MAY_USE_FROM_MESSAGING = ("messaging.errors",)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """Every module a file imports, at module level or inside functions (line, dotted name).

    Imports under ``if TYPE_CHECKING:`` count too: a type-only import still ties the rooms.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:  # `from messaging import transport` names a module
                yield node.lineno, f"{node.module}.{alias.name}"


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def violations(
    package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()
) -> list[str]:
    found = []
    for path in sources(package):
        for line, name in imports_of(path):
            if under(name, forbidden) and not under(name, allowed):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return found


def test_the_core_is_pure() -> None:
    assert sources("orchestrator/core"), "the core moved: update this test"
    found = violations(
        "orchestrator/core", IO_LIBRARIES + BATON_ABOVE_CORE, CORE_MAY_USE_FROM_MESSAGING
    )
    assert found == []


@pytest.mark.parametrize("package", ["contracts", "messaging", "baton_sdk"])
def test_nothing_below_the_orchestrator_imports_it(package: str) -> None:
    assert violations(package, ("orchestrator", "baton", "sagas", "examples")) == []


def test_contracts_stand_on_the_shared_errors_alone() -> None:
    found = violations("contracts", ("messaging", "participants"), ("messaging.errors",))
    assert found == []


def test_the_rule_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself: an impure import in any form is found."""
    module = tmp_path / "bad.py"
    module.write_text(
        "import redis.asyncio\nfrom orchestrator.runtime import runner\n"
        "def f():\n    from messaging import transport\n"
    )
    names = [name for _, name in imports_of(module)]
    assert under(names[0], IO_LIBRARIES)
    assert under(names[1], BATON_ABOVE_CORE)
    assert "messaging.transport" in names
    assert not under("redisx", IO_LIBRARIES)
