"""Contracts in JSON Schema form: one message per ``*.schema.json`` file, and back.

A file is an object schema with Baton's keys: ``x-baton-kind``, ``x-baton-role`` (start,
command, reply) and ``x-baton-sensitive`` (property names). Properties may use ``type``
(string, integer, number, boolean, array, object), ``pattern``, ``minLength``,
``maxLength``, ``minimum``, ``maximum``, ``enum``, ``items``, ``minItems``, ``maxItems``,
``default``, ``anyOf`` with ``null`` (optional) and ``$ref`` into the file's own ``$defs``
(a def named ``Money``, or marked ``x-baton-type: money``, is Baton's Money). The marks
``x-baton-type`` (text, id, money) and ``x-baton-refuse-pan`` say what keywords cannot;
``contract_json_schema`` writes them, so its output compiles back to the same contract.
Any other validation keyword is refused: Baton would not check it, so accepting it would
loosen the contract without saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.base import Contract, Start
from contracts.compiler import (
    ISSUED_ID_CHARS,
    REFUSE_PAN_MARK,
    TYPE_MARK,
    TYPE_NAME_PATTERN,
    TypeTable,
    Where,
    build_model,
    check_kind,
    compile_field,
)
from contracts.registry import role_of

DRAFT = "https://json-schema.org/draft/2020-12/schema"
KIND_KEY, ROLE_KEY, SENSITIVE_KEY = "x-baton-kind", "x-baton-role", "x-baton-sensitive"
# Keywords that describe without constraining: read past.
_PROSE = frozenset({"title", "description", "examples", "$comment", "deprecated", "readOnly"})
_TOP = frozenset({
    "$schema", "$id", "type", "properties", "required", "$defs", "additionalProperties",
    KIND_KEY, ROLE_KEY, SENSITIVE_KEY,
}) | _PROSE  # fmt: skip
# Per JSON type: its keywords and the compiler's constraint they become.
_KEYWORDS: dict[str, dict[str, str]] = {
    "string": {"pattern": "pattern", "minLength": "min_length", "maxLength": "max_length"},
    "integer": {"minimum": "minimum", "maximum": "maximum"},
    "number": {"minimum": "minimum", "maximum": "maximum"},
    "boolean": {},
    "array": {"minItems": "min_items", "maxItems": "max_items"},
    "object": {},
}


class _Reader:
    """Turns property schemas of one file into the compiler's type specs."""

    def __init__(self, defs: Mapping[str, Any], where: Where) -> None:
        self.defs = defs
        self.where = where

    def spec(self, node: Any, seen: tuple[str, ...] = ()) -> tuple[dict[str, Any], bool]:
        """(type spec, whether null is allowed) of one schema node."""
        if not isinstance(node, Mapping):
            raise self.where.error(f"a schema is an object, not {node!r}")
        node = {k: v for k, v in node.items() if k not in _PROSE and k != "default"}
        if node.get(TYPE_MARK) == "money":
            return {"type": "money"}, False
        if "$ref" in node:
            return self._ref(node, seen)
        if "anyOf" in node:
            return self._nullable(node, seen)
        if isinstance(node.get("type"), list):
            types = [t for t in node["type"] if t != "null"]
            if len(types) == 1 and len(node["type"]) == 2:
                return self.spec({**node, "type": types[0]}, seen)[0], True
            raise self.where.error(f"type {node['type']!r}: only one type, or one and null")
        if "enum" in node:
            self._only(node, {"enum", "type"})
            return {"type": "enum", "values": node["enum"]}, False
        return self._typed(node, seen), False

    def _only(self, node: Mapping[str, Any], allowed: set[str]) -> None:
        unknown = sorted(set(node) - allowed)
        if unknown:
            raise self.where.error(f"unsupported JSON Schema keyword(s) {', '.join(unknown)}")

    def _ref(self, node: Mapping[str, Any], seen: tuple[str, ...]) -> tuple[dict[str, Any], bool]:
        self._only(node, {"$ref"})
        ref = node["$ref"]
        name = ref.removeprefix("#/$defs/") if isinstance(ref, str) else ""
        if not name or name == ref or name not in self.defs:
            raise self.where.error(f"$ref {ref!r} does not name a $def of this file")
        if name == "Money" or self.defs[name].get(TYPE_MARK) == "money":
            return {"type": "money"}, False
        if name in seen:
            raise self.where.error(f"$def {name} refers to itself")
        return self.spec(self.defs[name], (*seen, name))

    def _nullable(
        self, node: Mapping[str, Any], seen: tuple[str, ...]
    ) -> tuple[dict[str, Any], bool]:
        self._only(node, {"anyOf"})
        options = node["anyOf"]
        rest = [o for o in options if o != {"type": "null"}] if isinstance(options, list) else []
        if len(options) != 2 or len(rest) != 1:
            raise self.where.error("anyOf is only supported as [<schema>, {type: null}]")
        return self.spec(rest[0], seen)[0], True

    def _typed(self, node: Mapping[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
        kind = node.get("type")
        if kind not in _KEYWORDS:
            raise self.where.error(f"type {kind!r} is not one of {', '.join(_KEYWORDS)}")
        keywords = _KEYWORDS[kind]
        mark = node.get(TYPE_MARK)
        if kind == "string" and mark in ("text", "id"):
            self._only(node, {"type", TYPE_MARK, "minLength", "maxLength"})
            if mark == "id":
                limits = (node.get("minLength", 1), node.get("maxLength", ISSUED_ID_CHARS))
                if limits != (1, ISSUED_ID_CHARS):
                    raise self.where.error(f"an id is 1..{ISSUED_ID_CHARS} characters")
                return {"type": "id"}
            spec: dict[str, Any] = {"type": "text"}
        elif kind == "object":
            self._only(node, {"type", "additionalProperties", "properties"})
            if node.get("properties") or node.get("additionalProperties") not in (None, True, {}):
                raise self.where.error("a nested object is a free mapping: no properties")
            return {"type": "object"}
        else:
            extra = {"array": {"items"}, "string": {REFUSE_PAN_MARK}}.get(kind, set())
            self._only(node, {"type", *keywords, *extra})
            spec = {"type": {"array": "list"}.get(kind, kind)}
            if node.get(REFUSE_PAN_MARK):
                spec["refuse_pan"] = True
        spec.update({keywords[k]: v for k, v in node.items() if k in keywords})
        if kind == "array":
            if "items" not in node:
                raise self.where.error("an array needs items")
            items, nullable = self.spec(node["items"], seen)
            if nullable:
                raise self.where.error("array items may not be null")
            spec["items"] = items
        return spec


def _field(
    reader: _Reader, name: str, node: Any, required: bool, sensitive: bool, source: str, kind: str
) -> Any:
    where = Where(source, kind, name)
    reader.where = where
    spec, nullable = reader.spec(node)
    has_default = isinstance(node, Mapping) and "default" in node
    if required and has_default:
        raise where.error("a required property has no use for a default")
    field: dict[str, Any] = {**spec, "sensitive": sensitive}
    if has_default:
        field["default"] = node["default"]
    field["optional"] = nullable or not (required or has_default)
    if field["optional"] and not has_default:
        field["default"] = None
    doc = node.get("description") if isinstance(node, Mapping) else None
    if isinstance(doc, str) and doc:
        field["doc"] = doc
    return compile_field(name, field, TypeTable({}), where)


def compile_json_schema(data: Any, source: str) -> type[Contract]:
    """The message of one ``*.schema.json`` file (already parsed)."""
    where = Where(source)
    if not isinstance(data, Mapping):
        raise where.error("a JSON Schema contract is an object")
    kind = check_kind(data.get(KIND_KEY), where)
    where = Where(source, kind)
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise where.error(f"unsupported top-level keyword(s) {', '.join(unknown)}")
    if data.get("type", "object") != "object" or data.get("additionalProperties") is False:
        raise where.error("a contract is an object that ignores unknown properties")
    properties, required = data.get("properties") or {}, data.get("required") or []
    sensitive, defs = data.get(SENSITIVE_KEY) or [], data.get("$defs") or {}
    if not isinstance(properties, Mapping) or not isinstance(defs, Mapping):
        raise where.error("properties and $defs are objects")
    for names, what in ((required, "required"), (sensitive, SENSITIVE_KEY)):
        if not isinstance(names, list) or not set(names) <= set(properties):
            raise where.error(f"{what} must list property names of this schema")
    role = data.get(ROLE_KEY)
    base_fields = set(Start.model_fields) if role == "start" else set()
    reader = _Reader(defs, where)
    fields = [
        _field(reader, name, node, name in required, name in sensitive, source, kind)
        for name, node in properties.items()
        if name not in base_fields  # idempotency_key: the Start base defines it
    ]
    title, doc = data.get("title"), data.get("description") or ""
    name = title if isinstance(title, str) and TYPE_NAME_PATTERN.match(title) else ""
    return build_model(kind, str(role), str(doc).strip(), fields, where, name=name)


def contract_json_schema(model: type[Contract]) -> dict[str, Any]:
    """``model``'s JSON Schema with Baton's keys: the file a ``*.schema.json`` contract is."""
    schema: dict[str, Any] = {"$schema": DRAFT, **model.model_json_schema()}
    schema[KIND_KEY] = model.KIND
    schema[ROLE_KEY] = role_of(model)
    if model.SENSITIVE:
        schema[SENSITIVE_KEY] = sorted(model.SENSITIVE)
    return schema
