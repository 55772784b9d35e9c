"""Contract JSON Schemas: inside the AsyncAPI document, and as self-contained files.

Inside the document every nested model (``Money``) is one entry of ``components/schemas``
and refs point there. A file written on its own cannot point into a document it is not
part of: ``baton schema --out`` used to copy those entries verbatim, so ``AuthorizePayment.json``
held ``{"$ref": "#/components/schemas/Money"}``, a ref that resolves nowhere in that file.
``standalone`` gives each file the definitions it needs under ``$defs`` instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from contracts.base import Contract

COMPONENT = "#/components/schemas/"
LOCAL = "#/$defs/"
REF_TEMPLATE = COMPONENT + "{model}"
# What pydantic generates; a file's "$schema" tells a validator which rules apply.
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def contract_schemas(models: Iterable[type[Contract]]) -> dict[str, Any]:
    """{name: schema} for ``models`` and the types they nest.

    Generated together so two models sharing a nested type share one definition. A
    contract's schema is named by its KIND, unique where class names are not (two packages
    may both compile an ``AuthorizePayment``); nested types keep pydantic's names.
    """
    models = list(models)
    pairs: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (model, "validation") for model in models
    ]
    refs, top = models_json_schema(pairs, ref_template=REF_TEMPLATE)
    renamed = {
        refs[(model, "validation")]["$ref"].removeprefix(COMPONENT): model.KIND for model in models
    }
    return {
        renamed.get(name, name): _renamed(schema, renamed)
        for name, schema in top.get("$defs", {}).items()
    }


def _renamed(node: Any, names: dict[str, str]) -> Any:
    """``node`` with refs to the schemas in ``names`` pointed at their new names."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.removeprefix(COMPONENT) in names:
            node = {**node, "$ref": COMPONENT + names[ref.removeprefix(COMPONENT)]}
        return {
            key: value if key == "$ref" else _renamed(value, names) for key, value in node.items()
        }
    if isinstance(node, list):
        return [_renamed(value, names) for value in node]
    return node


def refs_in(node: Any) -> list[str]:
    """Every ``$ref`` string anywhere in ``node``."""
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in refs_in(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs_in(value)]
    return []


def _relocated(node: Any) -> Any:
    """``node`` with refs into ``components/schemas`` pointed at ``$defs`` instead."""
    if isinstance(node, dict):
        return {
            key: value.replace(COMPONENT, LOCAL, 1)
            if key == "$ref" and isinstance(value, str)
            else _relocated(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_relocated(value) for value in node]
    return node


def _needed(name: str, schemas: dict[str, Any]) -> list[str]:
    """The component schemas ``name`` refers to, directly or through others (itself too,
    when it is recursive: the file's root has no name a ref could use)."""
    seen: list[str] = []
    pending = [name]
    while pending:
        for ref in refs_in(schemas[pending.pop()]):
            target = ref.removeprefix(COMPONENT)
            if ref.startswith(COMPONENT) and target not in seen:
                seen.append(target)
                pending.append(target)
    return sorted(seen)


def standalone(name: str, schemas: dict[str, Any]) -> dict[str, Any]:
    """Component schema ``name`` as a file of its own: it and everything it refers to."""
    body = _relocated(schemas[name])
    needed = _needed(name, schemas)
    document: dict[str, Any] = {"$schema": DIALECT, **body}
    if needed:
        document["$defs"] = {ref: _relocated(schemas[ref]) for ref in needed}
    return document


def _marks(message: Any) -> dict[str, Any]:
    """Baton's keys of a contract file (``contracts.json_schema``): kind, role, sensitive."""
    if not isinstance(message, dict) or "x-baton-role" not in message:
        return {}
    marks = {"x-baton-kind": message["name"], "x-baton-role": message["x-baton-role"]}
    if message.get("x-baton-sensitive"):
        marks["x-baton-sensitive"] = message["x-baton-sensitive"]
    return marks


def schema_files(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{file name: schema} for every schema of an AsyncAPI document, each self-contained.

    A contract's file carries Baton's keys too, so it is also a ``*.schema.json`` contract
    a saga package can hold.
    """
    schemas: dict[str, Any] = document["components"]["schemas"]
    messages: dict[str, Any] = document["components"]["messages"]
    return {
        f"{name}.json": {**standalone(name, schemas), **_marks(messages.get(name))}
        for name in sorted(schemas)
    }
