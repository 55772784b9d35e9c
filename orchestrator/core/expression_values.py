"""The values side of step conditions (``orchestrator.core.expressions``): total semantics.

Comparisons never raise, whatever a reply holds: bool is not a number, a list and a tuple
are both lists, a float beside a Decimal literal is read as the decimal text it came from,
self-referencing values compare without recursion, and a foreign object's operators that
raise answer False.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final


def _kind(value: Any) -> str:
    """The type a comparison sees: bool is not a number, tuple and list are both lists."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | tuple):
        return "list"
    return "map" if isinstance(value, Mapping) else "other"


def _numbers(a: Any, b: Any) -> tuple[Any, Any]:
    """A float beside a Decimal literal is read as its shortest decimal text (what the JSON
    said), so `input.rate == 0.1` holds for a reply carrying 0.1."""
    if isinstance(a, Decimal) and isinstance(b, float):
        return a, Decimal(repr(b))
    if isinstance(a, float) and isinstance(b, Decimal):
        return Decimal(repr(a)), b
    return a, b


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(operator.eq(*_numbers(a, b)))
    except Exception:  # a signalling Decimal NaN, or a foreign object's __eq__
        return False


def _equal(a: Any, b: Any) -> bool:
    """Deep equality with the kinds above, iterative and safe on self-referencing values."""
    pending: list[tuple[Any, Any]] = [(a, b)]
    seen: set[tuple[int, int]] = set()
    while pending:
        x, y = pending.pop()
        kind = _kind(x)
        if kind != _kind(y):
            return False
        if kind in ("list", "map"):
            if (id(x), id(y)) in seen:
                continue
            seen.add((id(x), id(y)))
            if len(x) != len(y) or (kind == "map" and x.keys() != y.keys()):
                return False
            if kind == "map":
                pending.extend((x[key], y[key]) for key in x)
            else:
                pending.extend(zip(x, y, strict=True))
        elif not _same(x, y):
            return False
    return True


def _ordering(compare: Callable[[Any, Any], Any]) -> Callable[[Any, Any], bool]:
    def ordered(a: Any, b: Any) -> bool:
        kind = _kind(a)
        if kind != _kind(b) or kind not in ("number", "str"):
            return False
        try:
            return bool(compare(*_numbers(a, b)))
        except ArithmeticError:  # a Decimal NaN refuses ordering
            return False

    return ordered


def _contains(item: Any, container: Any) -> bool:
    kind = _kind(container)
    if kind == "list":
        return any(_equal(item, element) for element in container)
    return kind == "str" and isinstance(item, str) and item in container


def truthy(value: Any) -> bool:
    try:
        return bool(value)
    except Exception:  # a foreign object's __bool__
        return False


COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "==": _equal,
    "!=": lambda a, b: not _equal(a, b),
    "<": _ordering(operator.lt),
    "<=": _ordering(operator.le),
    ">": _ordering(operator.gt),
    ">=": _ordering(operator.ge),
    "in": _contains,
    "not in": lambda a, b: not _contains(a, b),
}
