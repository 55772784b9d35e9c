"""The two small languages of saga definitions: payload paths and step conditions (`when:`).

Definitions come from files operators edit, so a condition is never handed to `eval` or to
Python's own parser: a typo must not run code, and it must be refused when the definition is
loaded, with the column where it went wrong, not discovered by a saga at run time. Hence a
hand-written tokenizer and recursive-descent parser with hard limits (text length, nesting,
list size) so that no input can exhaust the stack, and an evaluator that is total: whatever a
reply holds, a condition answers True or False, never raises.

Grammar::

    expr    := or
    or      := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | cmp
    cmp     := operand (('=='|'!='|'<'|'<='|'>'|'>='|'in'|'not in') operand)?
    operand := literal | path | '(' expr ')' | '[' literal (',' literal)* ']'
    literal := integer | decimal | 'string' | "string" | true | false | null
    path    := (input | steps | saga) ('.' identifier)*
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, TypeAlias

from orchestrator.core.expression_values import COMPARE, truthy

__all__ = ["MAX_DEPTH", "MAX_ITEMS", "MAX_LENGTH", "ROOTS", "Condition", "ExpressionError"]
__all__ += ["check_path", "parse", "resolve"]

ROOTS: Final = frozenset({"input", "steps", "saga"})
MAX_LENGTH: Final = 500
MAX_DEPTH: Final = 32
MAX_ITEMS: Final = 100


class ExpressionError(ValueError):
    """A condition that cannot be parsed; the message names the column where it went wrong."""


# -- paths ---------------------------------------------------------------------------------


def resolve(context: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path: KeyError when a segment is missing, TypeError when a
    segment would index into something that is not an object (the engine reports both)."""
    value: Any = context
    for part in path.split("."):
        if not isinstance(value, Mapping):
            raise TypeError(f"{path!r}: cannot look up {part!r} in a {type(value).__name__}")
        value = value[part]
    return value


def check_path(path: str, known: Mapping[str, AbstractSet[str]]) -> str | None:
    """Why `path` names nothing known at this point, or None when it does. `known` maps
    "input" to the start contract's fields and each step visible here to its reply's fields;
    only the first field is checked, deeper segments index into objects."""
    parts = path.split(".")
    if "" in parts:
        return f"path {path!r} has an empty segment"
    head, rest = parts[0], parts[1:]
    if head == "saga":
        return None if rest == ["id"] else f"path {path!r}: saga has only 'id'"
    if head == "input":
        return _check_field(path, rest, known.get("input", frozenset()), "the start contract")
    if head == "steps":
        if not rest or rest[0] == "input" or rest[0] not in known:
            step = rest[0] if rest else ""
            return f"path {path!r}: no step {step!r} has replied before this point"
        return _check_field(path, rest[1:], known[rest[0]], f"the reply of step {rest[0]}")
    return f"path {path!r} must start with input, steps or saga"


def _check_field(path: str, rest: list[str], fields: AbstractSet[str], owner: str) -> str | None:
    if not rest:
        return f"path {path!r} names no field of {owner}"
    if rest[0] not in fields:
        return f"path {path!r}: {owner} has no field {rest[0]!r}"
    return None


# -- the tree --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Literal:
    literal: Any  # None, bool, int, Decimal, str, or a tuple of those (a list literal)


@dataclass(frozen=True)
class _Path:
    parts: tuple[str, ...]


@dataclass(frozen=True)
class _Op:
    op: str  # "and", "or", "not" or a key of COMPARE
    operands: tuple[_Node, ...]


_Node: TypeAlias = _Literal | _Path | _Op


def _value(node: _Node, context: Mapping[str, Any]) -> Any:
    if isinstance(node, _Literal):
        return node.literal
    if isinstance(node, _Path):
        found: Any = context
        for part in node.parts:  # a missing path is null, never an error
            found = found.get(part) if isinstance(found, Mapping) else None
        return found
    results = (_value(operand, context) for operand in node.operands)
    if node.op == "and":
        return all(truthy(result) for result in results)
    if node.op == "or":
        return any(truthy(result) for result in results)
    if node.op == "not":
        return not truthy(next(results))
    return COMPARE[node.op](next(results), next(results))


@dataclass(frozen=True)
class Condition:
    """A parsed `when:`: immutable, checked against known fields at load, evaluated per saga."""

    text: str
    root: _Node = field(repr=False)
    paths: frozenset[str]

    def evaluate(self, context: Mapping[str, Any]) -> bool:
        """True or False for this saga context; never raises (a missing path is null)."""
        return truthy(_value(self.root, context))

    def check(self, known: Mapping[str, AbstractSet[str]]) -> str | None:
        """The first path that names nothing known (see check_path), or None."""
        errors = (check_path(path, known) for path in sorted(self.paths))
        return next((error for error in errors if error is not None), None)


# -- tokens ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "literal" | "path" | "word" (and/or/not/in) | "op" | "end"
    text: str
    column: int
    value: Any = None


_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?![A-Za-z0-9_.])")
_DIGIT = re.compile(r"-?[0-9]")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]*)*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS: Final = ("==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", ",")
_KEYWORDS: Final = frozenset({"and", "or", "not", "in"})
_CONSTANTS: Final[dict[str, Any]] = {"true": True, "false": False, "null": None}


def _tokens(text: str) -> list[_Token]:
    found: list[_Token] = []
    at = 0
    while at < len(text):
        char = text[at]
        if char in " \t\r\n":
            at += 1
            continue
        if char in "'\"":
            token, at = _string(text, at)
        elif match := _NUMBER.match(text, at):
            number = match.group()
            value = Decimal(number) if "." in number else int(number)
            token, at = _Token("literal", number, at + 1, value), match.end()
        elif match := _WORD.match(text, at):
            token, at = _word(match.group(), at + 1), match.end()
        elif op := next((o for o in _OPS if text.startswith(o, at)), None):
            token, at = _Token("op", op, at + 1), at + len(op)
        elif _DIGIT.match(text, at):
            raise ExpressionError(f"malformed number at column {at + 1}")
        else:
            raise ExpressionError(f"unexpected character {char!r} at column {at + 1}")
        found.append(token)
    found.append(_Token("end", "", len(text) + 1))
    return found


def _string(text: str, start: int) -> tuple[_Token, int]:
    quote, chars, at = text[start], [], start + 1
    while at < len(text) and text[at] != quote:
        if text[at] == "\\":
            if at + 1 >= len(text) or text[at + 1] not in (quote, "\\"):
                escape = text[at : at + 2]
                raise ExpressionError(f"unsupported escape {escape!r} at column {at + 1}")
            at += 1
        chars.append(text[at])
        at += 1
    if at >= len(text):
        raise ExpressionError(f"unterminated string starting at column {start + 1}")
    return _Token("literal", text[start : at + 1], start + 1, "".join(chars)), at + 1


def _word(word: str, column: int) -> _Token:
    if word in _KEYWORDS:
        return _Token("word", word, column)
    if word in _CONSTANTS:
        return _Token("literal", word, column, _CONSTANTS[word])
    parts = word.split(".")
    for index, part in enumerate(parts[1:], start=1):
        if not _IDENTIFIER.fullmatch(part):
            where = column + len(".".join(parts[:index])) + 1
            raise ExpressionError(f"expected a field name after '.' at column {where}")
    if parts[0] not in ROOTS:
        raise ExpressionError(
            f"unknown name {parts[0]!r} at column {column}: a path starts with input, steps or saga"
        )
    return _Token("path", word, column, tuple(parts))


# -- the parser ------------------------------------------------------------------------------


def _expected(what: str, token: _Token) -> ExpressionError:
    found = "end of text" if token.kind == "end" else repr(token.text)
    return ExpressionError(f"expected {what} at column {token.column}, found {found}")


class _Parser:
    """Recursive descent over the grammar above; `depth` counts open '(' and 'not'."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0
        self.depth = 0
        self.paths: set[str] = set()

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.at + ahead, len(self.tokens) - 1)]

    def take(self, kind: str = "", text: str = "") -> _Token | None:
        """The next token; with kind/text, only when it matches (else None, nothing taken)."""
        token = self.peek()
        if (kind and token.kind != kind) or (text and token.text != text):
            return None
        self.at += 1
        return token

    def nest(self, token: _Token, by: int) -> None:
        self.depth += by
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"nesting deeper than {MAX_DEPTH} at column {token.column}")

    def junction(self, word: str) -> _Node:
        step = self.negation if word == "and" else lambda: self.junction("and")
        operands = [step()]
        while self.take("word", word):
            operands.append(step())
        return operands[0] if len(operands) == 1 else _Op(word, tuple(operands))

    def negation(self) -> _Node:
        if not (token := self.take("word", "not")):
            return self.comparison()
        self.nest(token, 1)
        node = _Op("not", (self.negation(),))
        self.nest(token, -1)
        return node

    def comparison(self) -> _Node:
        left = self.operand()
        token = self.peek()
        if token.kind in ("op", "word") and token.text in COMPARE:  # "not" alone is not a key
            self.at += 1
            op = token.text
        elif self.take("word", "not"):
            if not self.take("word", "in"):
                raise _expected("'in' after 'not'", self.peek())
            op = "not in"
        else:
            return left
        return _Op(op, (left, self.operand()))

    def operand(self) -> _Node:
        token = self.peek()
        if self.take("literal"):
            return _Literal(token.value)
        if self.take("path"):
            self.paths.add(token.text)
            return _Path(token.value)
        if self.take("op", "("):
            self.nest(token, 1)
            node = self.junction("or")
            if not self.take("op", ")"):
                raise _expected("')'", self.peek())
            self.nest(token, -1)
            return node
        if self.take("op", "["):
            return _Literal(self.items(token))
        raise _expected("an operand", token)

    def items(self, opening: _Token) -> tuple[Any, ...]:
        found = [self.literal()]
        while self.take("op", ","):
            found.append(self.literal())
            if len(found) > MAX_ITEMS:
                raise ExpressionError(
                    f"more than {MAX_ITEMS} items in the list at column {opening.column}"
                )
        if not self.take("op", "]"):
            raise _expected("',' or ']'", self.peek())
        return tuple(found)

    def literal(self) -> Any:
        token = self.peek()
        if not self.take("literal"):
            raise _expected("a literal", token)
        return token.value


def parse(text: str) -> Condition:
    """A condition from its text, or ExpressionError saying what is wrong and at which column."""
    if not isinstance(text, str):
        raise ExpressionError(f"a condition is a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"a condition is at most {MAX_LENGTH} characters, got {len(text)}")
    if not text.strip():
        raise ExpressionError("a condition cannot be empty")
    parser = _Parser(text)
    root = parser.junction("or")
    if (extra := parser.peek()).kind != "end":
        raise _expected("'and', 'or' or the end", extra)
    return Condition(text, root, frozenset(parser.paths))
