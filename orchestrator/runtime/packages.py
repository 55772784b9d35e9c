"""Saga packages: the folders that say which sagas a deployment runs and what their messages are.

A package (design-10.md "Saga packages") is a folder with a ``package.yaml`` manifest, saga
definitions in ``definitions/*.yaml`` and contracts in ``contracts/`` (YAML form or JSON
Schema, compiled by ``contracts.compiler``). Loading packages fills one ``ContractRegistry``
with every package's contracts and checks every definition against it, so Baton's core
names no saga and no message: all of that is data here.

The manifest may name Python code (participants, an invariants check) as ``module:attribute``.
It is not imported on load: an orchestrator never runs participant code, so ``resolve`` is
called only by what does (``baton run participant``, ``baton conformance``, ``baton demo``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

import sagas
from contracts.base import Contract
from contracts.compiler import load_contracts
from contracts.registry import ContractRegistry
from messaging.errors import DefinitionError
from orchestrator.core.catalog import Catalog
from orchestrator.core.definition import SagaDefinition, load_definition
from orchestrator.core.engine.explore import explore

MANIFEST = "package.yaml"
DEFINITIONS, CONTRACTS = "definitions", "contracts"
# "package.module:attribute", as in a console-script entry point
REFERENCE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
PARTICIPANT = r"^[a-z][a-z0-9_-]{0,63}$"  # as a step's participant


class Manifest(BaseModel):
    """``package.yaml``. Unknown keys are refused: a misspelt key must not go unnoticed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    description: str = ""
    # participant name -> "module:factory", factory(redis, namespace) -> Handlers
    participants: dict[str, str] = {}
    # "module:check", async check(redis, namespace) -> a report with ``ok`` and ``problems``
    invariants: str | None = None
    conformance: str | None = None  # sample commands per participant, relative to the folder

    @field_validator("participants")
    @classmethod
    def _factories(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            _reference(ref)
            if not re.match(PARTICIPANT, name):
                raise ValueError(f"participant name {name!r} is not lower case")
        return value

    @field_validator("invariants")
    @classmethod
    def _check(cls, value: str | None) -> str | None:
        return None if value is None else _reference(value)


def _reference(ref: str) -> str:
    if not re.match(REFERENCE, ref):
        raise ValueError(f"{ref!r} is not module:attribute")
    return ref


def resolve(reference: str) -> Any:
    """The object a ``module:attribute`` reference names (imports the module)."""
    module, _, attribute = reference.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise DefinitionError(f"cannot load {reference}: {exc}") from exc


@dataclass(frozen=True)
class SagaPackage:
    """One loaded package: its manifest, its compiled contracts and its checked definitions."""

    path: Path
    manifest: Manifest
    contracts: tuple[type[Contract], ...]
    definitions: tuple[SagaDefinition, ...]

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def description(self) -> str:
        return self.manifest.description

    @property
    def participants(self) -> dict[str, str]:
        """Bundled Python participants: name -> ``module:factory``."""
        return dict(self.manifest.participants)

    def participant(self, name: str) -> Any:
        """The handlers factory of a bundled participant: ``factory(redis, namespace)``."""
        if name not in self.manifest.participants:
            known = ", ".join(sorted(self.manifest.participants)) or "none"
            raise KeyError(f"package {self.name} bundles no participant {name!r} ({known})")
        return resolve(self.manifest.participants[name])

    def invariants(self) -> Any | None:
        """The package's ``async check(redis, namespace)``, or None when it has none."""
        return resolve(self.manifest.invariants) if self.manifest.invariants else None

    @property
    def conformance(self) -> Path | None:
        """The conformance samples file, or None when the package has none."""
        return self.path / self.manifest.conformance if self.manifest.conformance else None


@dataclass(frozen=True)
class Packages:
    """Packages loaded together: one registry of all their contracts, one catalog."""

    packages: tuple[SagaPackage, ...]
    registry: ContractRegistry
    catalog: Catalog

    @property
    def definitions(self) -> tuple[SagaDefinition, ...]:
        return tuple(d for p in self.packages for d in p.definitions)

    def package(self, name: str) -> SagaPackage:
        for candidate in self.packages:
            if candidate.name == name:
                return candidate
        raise KeyError(f"no package {name!r} loaded")


def read_manifest(path: Path) -> Manifest:
    file = path / MANIFEST
    try:
        data = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DefinitionError(f"{file}: {exc}") from exc
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(f"{file}: {exc}") from exc


def _compile(path: Path) -> tuple[type[Contract], ...]:
    folder = path / CONTRACTS
    return tuple(load_contracts(folder)) if folder.is_dir() else ()


def _definitions(path: Path, registry: ContractRegistry) -> tuple[SagaDefinition, ...]:
    folder = path / DEFINITIONS
    files = sorted({*folder.glob("*.yaml"), *folder.glob("*.yml")})
    return tuple(_definition(file, registry) for file in files)


def _definition(file: Path, registry: ContractRegistry) -> SagaDefinition:
    try:
        return load_definition(file, registry)
    except DefinitionError as exc:
        message = str(exc)
        raise DefinitionError(message if str(file) in message else f"{file}: {message}") from exc


def load_package(path: Path | str, contracts: ContractRegistry | None = None) -> SagaPackage:
    """One package; its contracts are added to ``contracts`` (a fresh registry when None),
    which its definitions are checked against."""
    path = Path(path)
    manifest, models = read_manifest(path), _compile(path)
    registry = contracts if contracts is not None else ContractRegistry()
    for model in models:
        registry.register(model)
    return SagaPackage(path, manifest, models, _definitions(path, registry))


_PROVED: set[str] = set()  # definitions (as JSON) already proved in this process


def prove_safe(definition: SagaDefinition) -> None:
    """Refuse a definition that some outcome of its steps leaves owing money (DefinitionError
    with the rule and the shortest path of outcomes that breaks it). A definition is proved
    once per process: every `baton` command loads the packages, and the proof is pure."""
    text = definition.model_dump_json()
    if text in _PROVED:
        return
    proof = explore(definition)
    if proof.violation is not None:
        where = f"{definition.name} v{definition.version}"
        raise DefinitionError(f"{where} is unsafe: {proof.violation}")
    _PROVED.add(text)


def load_packages(paths: Iterable[Path | str], *, prove: bool = True) -> Packages:
    """Several packages: every package's contracts first, in one registry (a kind two
    packages define differently is an error), then every definition checked against it.
    ``prove`` (the default, as the orchestrator loads them) also explores every outcome of
    every definition and refuses an unsafe one (``prove_safe``)."""
    folders = [Path(p) for p in paths]
    read = [(folder, read_manifest(folder), _compile(folder)) for folder in folders]
    names = [manifest.name for _, manifest, _ in read]
    if len(set(names)) != len(names):
        raise DefinitionError(f"package names repeat: {names}")
    registry = ContractRegistry()
    for _, _, models in read:
        for model in models:
            registry.register(model)
    packages = tuple(
        SagaPackage(folder, manifest, models, _definitions(folder, registry))
        for folder, manifest, models in read
    )
    definitions = [d for package in packages for d in package.definitions]
    if prove:
        for definition in definitions:
            prove_safe(definition)
    return Packages(packages, registry, Catalog(definitions, registry))


def default_package_paths() -> list[Path]:
    """The packages bundled with Baton (``sagas/<name>/``, installed with it): today the card
    payment saga. What ``BATON_ORCHESTRATOR__PACKAGES`` left empty means."""
    root = Path(next(iter(sagas.__path__)))
    return sorted(p.parent for p in root.glob(f"*/{MANIFEST}"))
