"""What a saga package tells `baton conformance` about a participant: its ``conformance.yaml``.

The checks need one command the participant answers with success, under fresh saga ids
again and again, and (when it has one) the compensation that undoes it. Format::

    setup: participants.payments.conformance:seed     # optional: async def (redis, namespace)
    participants:
      payment:
        saga: payment                                  # x-baton-saga
        step: authorize_payment                        # x-baton-step
        command:                                       # the forward command
          kind: payments.authorize_payment.v1
          body: {account_id: conformance-acct, amount: {minor: 100, currency: EUR}}
          replies: [payments.payment_authorized.v1]    # its success reply kinds
          prepare: module:function                     # optional, per fresh saga:
                                   # async def (redis, namespace, saga_id, body) -> body
        compensation:                                  # optional: without it no tombstone check
          kind: payments.void_authorization.v1
          body: {}
          replies: [payments.authorization_voided.v1]

Hooks are Python (``module:function``) because they seed the participant's own store; a
participant in another language whose sample works as is needs none.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

# Bundled saga packages, relative to the repository: searched when --package is not given.
BUNDLED = ("sagas/payment", "examples/checkout")
REPOSITORY = Path(__file__).resolve().parents[2]
MANIFEST = "package.yaml"
DEFAULT_FILE = "conformance.yaml"
HOOK = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


class ConformanceUsageError(Exception):
    """The kit cannot run as asked (bad package, sample, namespace or keys): exit 2."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sample(_Strict):
    """One command the participant answers with success."""

    kind: str = Field(min_length=1, max_length=200)
    body: dict[str, Any] = {}
    replies: tuple[str, ...] = Field(min_length=1)
    prepare: str = Field(default="", pattern=HOOK + "|^$")


class Subject(_Strict):
    """A participant's samples: where its command sits in a saga, and what undoes it."""

    saga: str = Field(min_length=1, max_length=200)
    step: str = Field(min_length=1, max_length=200)
    command: Sample
    compensation: Sample | None = None


class ConformanceFile(_Strict):
    setup: str = Field(default="", pattern=HOOK + "|^$")
    participants: dict[str, Subject]


class Samples(BaseModel):
    """The samples for one participant, and the package they come from."""

    model_config = ConfigDict(frozen=True)

    participant: str
    package: Path
    setup: str
    subject: Subject


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConformanceUsageError(f"{path}: {exc}") from None


def _manifest(package: Path) -> dict[str, Any]:
    path = package / MANIFEST
    data = _yaml(path) if path.is_file() else {}
    return data if isinstance(data, dict) else {}


def conformance_path(package: Path) -> Path:
    """The package's conformance file: its manifest's ``conformance:``, else the default."""
    return package / str(_manifest(package).get("conformance") or DEFAULT_FILE)


def read_file(package: Path) -> ConformanceFile:
    path = conformance_path(package)
    if not path.is_file():
        raise ConformanceUsageError(f"{package} has no {path.name}: it lists no sample commands")
    try:
        return ConformanceFile.model_validate(_yaml(path))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConformanceUsageError(f"{path}: {where}: {first['msg']}") from None


def _lists(package: Path, participant: str) -> bool:
    """Whether ``package``'s manifest or conformance file names ``participant``."""
    listed = _manifest(package).get("participants") or {}
    if isinstance(listed, dict | list) and participant in listed:
        return True
    path = conformance_path(package)
    data = _yaml(path) if path.is_file() else None
    return isinstance(data, dict) and participant in (data.get("participants") or {})


def candidates(configured: Iterable[str] = ()) -> list[Path]:
    """The packages searched for a participant: the configured ones, then the bundled ones."""
    found = [Path(p) for p in configured] + [REPOSITORY / p for p in BUNDLED]
    return [p for p in dict.fromkeys(found) if p.is_dir()]


def find_package(participant: str, configured: Iterable[str] = ()) -> Path:
    """The first package that lists ``participant``; ConformanceUsageError if none does."""
    for package in candidates(configured):
        if _lists(package, participant):
            return package
    raise ConformanceUsageError(
        f"no saga package lists the participant {participant!r}: pass --package PATH"
    )


def load_samples(participant: str, package: Path) -> Samples:
    """``participant``'s samples from ``package``; ConformanceUsageError when absent or bad."""
    if not package.is_dir():
        raise ConformanceUsageError(f"--package {package}: not a folder")
    subject = read_file(package).participants.get(participant)
    if subject is None:
        raise ConformanceUsageError(
            f"{conformance_path(package)} has no sample commands for {participant!r}"
        )
    return Samples(
        participant=participant, package=package, setup=read_file(package).setup, subject=subject
    )


def _root_of(module_name: str, package: Path) -> Path | None:
    """The folder above ``package`` that ``module_name`` imports from, if there is one."""
    for root in package.resolve().parents:
        base = root.joinpath(*module_name.split("."))
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return root
    return None


def _module(module_name: str, package: Path) -> Any:
    """Import ``module_name``; a hook that lives with its package (``examples.checkout.seed``)
    imports even when the kit was started elsewhere than the package's repository."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError:
        root = _root_of(module_name, package)
        if root is None or str(root) in sys.path:
            raise
        sys.path.append(str(root))
        return importlib.import_module(module_name)


def hook(spec: str, package: Path) -> Callable[..., Any]:
    """The function named ``module:function`` (a hook of ``package``'s conformance file);
    ConformanceUsageError if it cannot be found."""
    module_name, _, name = spec.partition(":")
    try:
        found = getattr(_module(module_name, package), name)
    except (ImportError, AttributeError) as exc:
        raise ConformanceUsageError(f"hook {spec}: {exc}") from None
    if not callable(found):
        raise ConformanceUsageError(f"hook {spec}: not a function")
    return found  # type: ignore[no-any-return]
