"""Contracts as data: a saga package's YAML and JSON Schema files compiled to pydantic models.

A compiled model is an ordinary ``Start``, ``Command`` or ``Reply`` subclass (frozen, unknown
fields ignored) with ``KIND`` and ``SENSITIVE`` set, so everything downstream (the codec,
the engine, sealing, the AsyncAPI document) treats it like a hand-written class. Field
types (design-10.md): ``string`` (pattern, min_length, max_length, refuse_pan), ``text``
(free text: a card number is refused), ``id`` (an issued id: 1..200 characters, not
scanned), ``integer`` and ``number`` (minimum, maximum), ``boolean``, ``money``,
``enum`` (values), ``list`` (items, min_items, max_items), ``object`` (a free mapping).
Anything not understood is refused with the file, message and field it is in: a typo must
never loosen a contract silently. The JSON Schema form is read by ``contracts.json_schema``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import new_class
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from contracts.base import Command, Contract, Reply, Start
from contracts.errors import ContractDefinitionError
from contracts.money import Money
from contracts.pan import FreeText, refuse_pan_anywhere

KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+\.v[1-9][0-9]{0,5}$")
FIELD_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
TYPE_NAME_PATTERN = re.compile(r"^[A-Z][A-Za-z0-9_]{0,63}$")
MAX_KIND_CHARS = 200  # the envelope's limit
RESERVED_CONTEXT = "baton"  # baton.step_failed.v1, baton.saga_event.v1: Baton's own
ROLES: dict[str, type[Contract]] = {"start": Start, "command": Command, "reply": Reply}
# Each builtin type and the constraint keys it takes.
CONSTRAINTS: dict[str, frozenset[str]] = {
    "string": frozenset({"pattern", "min_length", "max_length", "refuse_pan"}),
    "text": frozenset({"min_length", "max_length"}),
    "id": frozenset(),
    "integer": frozenset({"minimum", "maximum"}),
    "number": frozenset({"minimum", "maximum"}),
    "boolean": frozenset(),
    "money": frozenset(),
    "enum": frozenset({"values"}),
    "list": frozenset({"items", "min_items", "max_items"}),
    "object": frozenset(),
}
FIELD_KEYS = frozenset({"type", "sensitive", "default", "optional", "doc"})
MESSAGE_KEYS = frozenset({"role", "doc", "fields"})
FILE_KEYS = frozenset({"types", "messages"})
ISSUED_ID_CHARS = 200
COMPILED_MODULE = "contracts.compiled"  # the __module__ of every compiled model
TYPE_MARK, REFUSE_PAN_MARK = "x-baton-type", "x-baton-refuse-pan"


@dataclass(frozen=True, slots=True)
class Mark:
    """Extension keys a compiled field adds to its JSON Schema (``x-baton-type: text``), so
    the JSON form written by ``baton schema`` says what the schema keywords cannot: which
    strings refuse a card number. Registries compare shapes without them."""

    keys: tuple[tuple[str, Any], ...]

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(self.keys)
        return schema


TEXT, ISSUED, MONEY = (Mark(((TYPE_MARK, name),)) for name in ("text", "id", "money"))
NO_PAN = Mark(((REFUSE_PAN_MARK, True),))


@dataclass(frozen=True, slots=True)
class Where:
    """Where a spec sits, for error messages: file, message kind, field."""

    source: str
    message: str = ""
    field: str = ""

    def error(self, problem: str) -> ContractDefinitionError:
        return ContractDefinitionError(
            problem, source=self.source, message=self.message, field=self.field
        )


def class_name(kind: str) -> str:
    """``shop.ship_parcel.v1`` -> ``ShipParcel`` (``ShipParcelV2`` from v2 on)."""
    parts = kind.split(".")
    words = [word for part in parts[1:-1] for word in part.split("_") if word]
    version = "" if parts[-1] == "v1" else parts[-1].upper()
    return "".join(word.capitalize() for word in words) + version


def check_kind(kind: object, where: Where) -> str:
    if not isinstance(kind, str) or len(kind) > MAX_KIND_CHARS or not KIND_PATTERN.match(kind):
        raise where.error(f"kind {kind!r} is not <context>.<name>.v<N> in lower case")
    if kind.split(".")[0] == RESERVED_CONTEXT:
        raise where.error(f"kind {kind!r}: the context {RESERVED_CONTEXT!r} is Baton's own")
    return kind


# -- field types ----------------------------------------------------------------------------


def _count(value: object, key: str, where: Where) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise where.error(f"{key} must be a whole number >= 0, not {value!r}")
    return value


def _bound(value: object, key: str, base: str, where: Where) -> float:
    wanted = int if base == "integer" else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted):
        raise where.error(f"{key} of an {base} must be a number of that kind, not {value!r}")
    return value


def _pattern(value: object, where: Where) -> str:
    if not isinstance(value, str):
        raise where.error(f"pattern must be a string, not {value!r}")
    try:
        re.compile(value)
    except re.error as exc:
        raise where.error(f"pattern {value!r} does not compile: {exc}") from None
    return value


def _strings(base: str, c: Mapping[str, Any], where: Where) -> Any:
    """string / text: constraints pydantic shows in the schema, plus the PAN validator."""
    limits: dict[str, Any] = {}
    if "pattern" in c:
        limits["pattern"] = _pattern(c["pattern"], where)
    for key in ("min_length", "max_length"):
        if key in c:
            limits[key] = _count(c[key], key, where)
    refuse = c.get("refuse_pan", False)
    if not isinstance(refuse, bool):
        raise where.error(f"refuse_pan must be true or false, not {refuse!r}")
    parts: list[Any] = [StringConstraints(**limits)] if limits else []
    if refuse:
        parts += [AfterValidator(refuse_pan_anywhere), NO_PAN]
    if base == "text":
        return Annotated[(FreeText, *parts, TEXT)]
    return Annotated[(str, *parts)] if parts else str


def _numbers(base: str, c: Mapping[str, Any], where: Where) -> Any:
    limits: dict[str, Any] = {}
    if "minimum" in c:
        limits["ge"] = _bound(c["minimum"], "minimum", base, where)
    if "maximum" in c:
        limits["le"] = _bound(c["maximum"], "maximum", base, where)
    inner = int if base == "integer" else float
    return Annotated[inner, Field(**limits)] if limits else inner


def _enum(c: Mapping[str, Any], where: Where) -> Any:
    values = c.get("values")
    if not isinstance(values, list) or not values:
        raise where.error("an enum needs values: a non-empty list")
    for value in values:
        if isinstance(value, float) or not isinstance(value, str | int | bool):
            raise where.error(f"enum value {value!r} is not a string, integer or boolean")
    if len({(type(v), v) for v in values}) != len(values):
        raise where.error("enum values repeat")
    return Literal[tuple(values)]


# The types that take no constraints, compiled once.
FIXED: dict[str, Any] = {
    "id": Annotated[str, StringConstraints(min_length=1, max_length=ISSUED_ID_CHARS), ISSUED],
    "boolean": bool,
    "money": Annotated[Money, MONEY],
    "object": dict[str, Any],
}


@dataclass(frozen=True, slots=True)
class TypeTable:
    """The named types of one file (``types:``), resolved on demand."""

    specs: Mapping[str, Any]

    def resolve(
        self, spec: Any, where: Where, seen: tuple[str, ...] = ()
    ) -> tuple[str, dict[str, Any]]:
        """(builtin type, constraints) of a type spec: a name or a mapping with ``type``."""
        spec = {"type": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, Mapping) or not isinstance(spec.get("type"), str):
            raise where.error(f"a type is a name or a mapping with 'type', not {spec!r}")
        name = spec["type"]
        own = {k: v for k, v in spec.items() if k != "type"}
        if name in CONSTRAINTS:
            return name, own
        if name not in self.specs:
            known = ", ".join([*CONSTRAINTS, *self.specs])
            raise where.error(f"unknown type {name!r} (known: {known})")
        if name in seen:
            raise where.error(f"type {name} refers to itself: {' -> '.join([*seen, name])}")
        base, inherited = self.resolve(self.specs[name], where, (*seen, name))
        return base, {**inherited, **own}

    def annotation(self, spec: Any, where: Where, seen: tuple[str, ...] = ()) -> Any:
        """The Python type (with constraints) a type spec compiles to."""
        base, c = self.resolve(spec, where, seen)
        unknown = sorted(set(c) - CONSTRAINTS[base])
        if unknown:
            raise where.error(f"{base} takes no {', '.join(unknown)}")
        if base in FIXED:
            return FIXED[base]
        if base in ("string", "text"):
            return _strings(base, c, where)
        if base in ("integer", "number"):
            return _numbers(base, c, where)
        return _enum(c, where) if base == "enum" else self._list(c, where, seen)

    def _list(self, c: Mapping[str, Any], where: Where, seen: tuple[str, ...]) -> Any:
        if "items" not in c:
            raise where.error("a list needs items: the type of its elements")
        items = self.annotation(c["items"], where, seen)
        limits: dict[str, Any] = {
            key: _count(c[source], source, where)
            for key, source in (("min_length", "min_items"), ("max_length", "max_items"))
            if source in c
        }
        inner = tuple[items, ...]  # type: ignore[valid-type]  # built at run time
        return Annotated[inner, Field(**limits)] if limits else inner


# -- fields and messages --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledField:
    """One field of a message: its type, its default (if any) and whether it is sensitive."""

    name: str
    annotation: Any
    info: FieldInfo
    sensitive: bool


def compile_field(name: str, spec: Any, types: TypeTable, where: Where) -> CompiledField:
    """A field spec: a type name, or a mapping of type, constraints and field keys."""
    if not isinstance(name, str) or not FIELD_PATTERN.match(name):
        raise where.error(f"field name {name!r} is not lower_snake_case (at most 64 characters)")
    spec = {"type": spec} if isinstance(spec, str) else spec
    if not isinstance(spec, Mapping):
        raise where.error(f"a field is a type name or a mapping, not {spec!r}")
    type_spec = {k: v for k, v in spec.items() if k not in FIELD_KEYS or k == "type"}
    annotation = types.annotation(type_spec, where)
    flags = {key: spec.get(key, False) for key in ("sensitive", "optional")}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise where.error(f"{key} must be true or false, not {value!r}")
    doc = spec.get("doc")
    if doc is not None and not isinstance(doc, str):
        raise where.error(f"doc must be text, not {doc!r}")
    if flags["optional"]:
        annotation = annotation | None
    extra: dict[str, Any] = {"description": doc} if doc else {}
    if "default" in spec:
        _check_default(annotation, spec["default"], where)
        info = Field(spec["default"], **extra)
    else:
        info = Field(None, **extra) if flags["optional"] else Field(**extra)
    return CompiledField(name, annotation, info, flags["sensitive"])


def _check_default(annotation: Any, default: Any, where: Where) -> None:
    try:
        TypeAdapter(annotation).validate_python(default)
    except ValidationError as exc:
        problem = exc.errors(include_input=False)[0]["msg"]
        raise where.error(f"default {default!r} is not valid: {problem}") from None


def build_model(
    kind: str, role: str, doc: str, fields: list[CompiledField], where: Where, *, name: str = ""
) -> type[Contract]:
    """The pydantic class of one message."""
    base = ROLES.get(role)
    if base is None:
        raise where.error(f"role {role!r} is not one of {', '.join(ROLES)}")
    inherited = set(base.model_fields)
    for field in fields:
        if field.name in inherited or hasattr(Contract, field.name):
            raise where.error(f"field {field.name!r} is defined by Baton ({base.__name__})")
    namespace: dict[str, Any] = {
        "__module__": COMPILED_MODULE,
        "__doc__": doc or None,
        "__annotations__": {f.name: f.annotation for f in fields},
        "__baton_source__": where.source,
        "KIND": kind,
        "SENSITIVE": frozenset(f.name for f in fields if f.sensitive),
        **{f.name: f.info for f in fields},
    }
    try:
        model: type[Contract] = new_class(
            name or class_name(kind), (base,), exec_body=lambda ns: ns.update(namespace)
        )
    except Exception as exc:  # pydantic refuses the model (e.g. a regex it cannot run)
        raise where.error(f"does not compile: {exc}") from exc
    return model


def _message(kind: Any, spec: Any, types: TypeTable, source: str) -> type[Contract]:
    where = Where(source, str(kind))
    check_kind(kind, where)
    if not isinstance(spec, Mapping):
        raise where.error("a message is a mapping with role, doc and fields")
    unknown = sorted(set(spec) - MESSAGE_KEYS)
    if unknown:
        raise where.error(f"unknown key(s) {', '.join(unknown)} (allowed: role, doc, fields)")
    doc, raw_fields = spec.get("doc", ""), spec.get("fields") or {}
    if not isinstance(doc, str):
        raise where.error(f"doc must be text, not {doc!r}")
    if not isinstance(raw_fields, Mapping):
        raise where.error("fields is a mapping of field name to type")
    fields = [
        compile_field(name, field, types, Where(source, kind, str(name)))
        for name, field in raw_fields.items()
    ]
    return build_model(kind, str(spec.get("role")), doc.strip(), fields, where)


def compile_yaml(data: Any, source: str) -> list[type[Contract]]:
    """The messages of one file in Baton's YAML contract form (already parsed)."""
    where = Where(source)
    if not isinstance(data, Mapping):
        raise where.error("a contract file is a mapping with types and messages")
    unknown = sorted(set(data) - FILE_KEYS)
    if unknown:
        raise where.error(f"unknown key(s) {', '.join(unknown)} (allowed: types, messages)")
    specs, messages = data.get("types") or {}, data.get("messages") or {}
    if not isinstance(specs, Mapping) or not isinstance(messages, Mapping):
        raise where.error("types and messages are mappings")
    for name in specs:
        if not isinstance(name, str) or not TYPE_NAME_PATTERN.match(name):
            raise where.error(f"type name {name!r} is not CamelCase")
    types = TypeTable(specs)
    for name, spec in specs.items():  # a broken type is reported even when unused
        types.annotation(spec, Where(source, f"types.{name}"), (name,))
    return [_message(kind, spec, types, source) for kind, spec in messages.items()]


def _read(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise Where(str(path)).error(f"cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)  # JSON is YAML, too
    except yaml.YAMLError as exc:
        raise Where(str(path)).error(f"not valid YAML/JSON: {exc}") from None


def load_contract_file(path: Path) -> list[type[Contract]]:
    """The messages of one file: ``*.schema.json`` holds one, ``*.yaml``/``*.yml`` many."""
    from contracts.json_schema import compile_json_schema  # noqa: PLC0415 - it imports us

    if path.name.endswith(".schema.json"):
        return [compile_json_schema(_read(path), str(path))]
    return compile_yaml(_read(path), str(path))


def contract_files(folder: Path) -> list[Path]:
    """The contract files of a package's contracts folder, in name order."""
    patterns = ("*.yaml", "*.yml", "*.schema.json")
    return sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})


def load_contracts(folder: Path) -> list[type[Contract]]:
    """Compile every contract file in ``folder``; a kind defined twice is an error."""
    if not folder.is_dir():
        raise Where(str(folder)).error("no such contracts folder")
    found: dict[str, type[Contract]] = {}
    for path in contract_files(folder):
        for model in load_contract_file(path):
            if model.KIND in found:
                first = getattr(found[model.KIND], "__baton_source__", "")
                raise Where(str(path), model.KIND).error(f"defined again (first in {first})")
            found[model.KIND] = model
    return list(found.values())
