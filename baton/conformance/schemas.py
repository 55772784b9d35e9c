"""The contracts a participant is judged against: its saga package's, compiled from data.

A reply must validate against the model its ``type`` names; the samples must name kinds the
package knows. A package without a ``contracts/`` folder yet (the payment saga, while its
contracts move to ``sagas/payment/contracts``) falls back to the typed classes the Python
participants use, so the kit works either way.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from baton.conformance.samples import ConformanceUsageError, Sample, Samples
from contracts.base import Command, Contract, Reply
from contracts.compiler import load_contracts
from contracts.registry import ContractRegistry
from messaging.errors import DefinitionError

# Typed classes consulted only for kinds the package's contracts folder does not define.
FALLBACK_MODULES = ("participants.payments.contracts", "contracts.payments")


def _typed(kinds: Iterable[str]) -> list[type[Contract]]:
    """The hand-written classes of ``kinds`` found in FALLBACK_MODULES."""
    wanted, found = set(kinds), []
    for name in FALLBACK_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for value in vars(module).values():
            kind = getattr(value, "KIND", None)
            if isinstance(value, type) and issubclass(value, Contract) and kind in wanted:
                found.append(value)
                wanted.discard(kind)
    return found


def _kinds(samples: Samples) -> list[str]:
    subject = samples.subject
    parts = [subject.command] + ([subject.compensation] if subject.compensation else [])
    return [kind for sample in parts for kind in (sample.kind, *sample.replies)]


def package_registry(samples: Samples) -> ContractRegistry:
    """The package's contracts (plus Baton's own); ConformanceUsageError when they do not
    compile or a sample names a kind they lack."""
    registry = ContractRegistry()
    folder = samples.package / "contracts"
    try:
        if folder.is_dir():
            for model in load_contracts(folder):
                registry.register(model)
        for model in _typed(k for k in _kinds(samples) if k not in registry):
            registry.register(model)
    except DefinitionError as exc:
        raise ConformanceUsageError(f"{folder}: {exc}") from None
    missing = [kind for kind in _kinds(samples) if kind not in registry]
    if missing:
        raise ConformanceUsageError(f"{samples.package}: no contract for {', '.join(missing)}")
    return registry


def check_body(registry: ContractRegistry, sample: Sample, body: Any) -> None:
    """Refuse a sample body its command contract does not accept (the sample is wrong)."""
    try:
        registry.require(sample.kind, Command).model_validate(body)
    except (ValidationError, DefinitionError) as exc:
        raise ConformanceUsageError(f"sample {sample.kind}: {_summary(exc)}") from None


def reply_problem(registry: ContractRegistry, kind: str, body: bytes) -> str:
    """Why ``body`` is not a valid ``kind`` reply, or "" when it is."""
    model = registry.get(kind)
    if model is None or not issubclass(model, Reply):
        return f"{kind!r} is not a reply contract of the package"
    try:
        model.model_validate_json(body)
    except ValidationError as exc:
        return f"{kind} body does not match its contract: {_summary(exc)}"
    return ""


def invalid_body(registry: ContractRegistry, sample: Sample, body: dict[str, Any]) -> bytes:
    """JSON that is well formed but that the command's contract refuses."""
    model = registry.require(sample.kind, Command)
    nested = {key: {"unexpected": [1]} for key in body}
    tries: list[Any] = [{}, nested, dict.fromkeys(body, 1.5), []]
    for candidate in tries:
        try:
            model.model_validate(candidate)
        except ValidationError:
            return json.dumps(candidate).encode()
    return b"[]"  # no command body is a list


def _summary(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
            for e in exc.errors()[:3]
        )
    return str(exc)
