"""Which code ``baton participant NAME`` runs: a package's entry, or ``--app module:factory``.

A participant is a handlers factory ``(redis, namespace) -> Handlers``. Without ``--app`` the
name is looked up in the ``participants:`` of the saga packages' manifests: ``--package PATH``
alone, else the configured packages (``BATON_ORCHESTRATOR__PACKAGES``) and then the bundled
ones, the first that lists it winning. The four payment services are the bundled payment
package's entries. Only the manifests are read: no contract is compiled, no definition proved.

Every refusal is a ``ParticipantNotFound`` with a one-line message (the CLI exits 2 with it).
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from baton_sdk.run import HandlersFactory
from messaging.errors import DefinitionError
from orchestrator.runtime.packages import REFERENCE, default_package_paths, read_manifest


class ParticipantNotFound(ValueError):
    """NAME, ``--app`` or ``--package`` names no runnable participant (one line, why)."""


@dataclass(frozen=True)
class Located:
    """A participant found: its factory, and where the reference came from."""

    name: str
    reference: str  # module:factory
    factory: HandlersFactory
    package: Path | None = None  # None for --app


def _root_of(module: str, near: Path) -> Path | None:
    """The folder above ``near`` that ``module`` imports from (``examples.checkout...``)."""
    for root in (near.resolve(), *near.resolve().parents):
        base = root.joinpath(*module.split("."))
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return root
    return None


def _import(module: str, near: Path | None) -> object:
    """Import ``module``; one that lives with its package imports even when Baton was
    started elsewhere than the package's repository (its root is added to the path)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if near is None or not module.startswith(missing.split(".")[0]):
            raise
        root = _root_of(module, near)
        if root is None or str(root) in sys.path:
            raise
        sys.path.append(str(root))
        return importlib.import_module(module)


def load_factory(reference: str, *, near: Path | None = None) -> HandlersFactory:
    """The callable ``module:factory`` names; ParticipantNotFound when it cannot be had."""
    if not re.match(REFERENCE, reference):
        raise ParticipantNotFound(f"{reference!r} is not a module:factory reference")
    module_name, _, attribute = reference.partition(":")
    try:
        module = _import(module_name, near)
    except ImportError as exc:
        raise ParticipantNotFound(f"cannot import {module_name}: {exc}") from None
    except Exception as exc:  # the module's own code failed on import
        raise ParticipantNotFound(f"importing {module_name} failed: {type(exc).__name__}") from None
    factory = getattr(module, attribute, None)
    if factory is None:
        raise ParticipantNotFound(f"{module_name} has no {attribute}")
    if not callable(factory):
        raise ParticipantNotFound(f"{reference} is not callable: it must be a handlers factory")
    return factory  # type: ignore[no-any-return]


def package_folders(configured: Iterable[str | Path] = ()) -> list[Path]:
    """The packages searched for a participant: the configured ones, then the bundled ones."""
    found = [Path(p) for p in configured] + default_package_paths()
    unique = {p.resolve(): p for p in reversed(found)}  # keep the first spelling of each
    return [unique[key] for key in dict.fromkeys(p.resolve() for p in found)]


def _listed(folder: Path) -> dict[str, str]:
    try:
        return dict(read_manifest(folder).participants)
    except DefinitionError as exc:
        raise ParticipantNotFound(f"package {folder}: {str(exc).splitlines()[0]}") from None


def _noop(name: str) -> Located:
    from participants.payments.noop import NOOP_SERVICES  # noqa: PLC0415 - bench only

    if name not in NOOP_SERVICES:
        known = ", ".join(sorted(NOOP_SERVICES))
        raise ParticipantNotFound(f"--noop: no no-op participant {name!r} (known: {known})")
    return Located(name, f"participants.payments.noop:{name}", NOOP_SERVICES[name])


def locate(
    name: str,
    *,
    app: str | None = None,
    package: Path | None = None,
    configured: Iterable[str | Path] = (),
    noop: bool = False,
) -> Located:
    """Participant ``name``'s factory: ``app`` when given, else from ``package``'s manifest,
    else from the first of ``package_folders(configured)`` that lists it. ``noop``: the
    payment participant's stand-in answering every command at once (``baton bench``)."""
    if noop:
        return _noop(name)
    if app is not None:
        return Located(name, app, load_factory(app, near=Path.cwd()))
    folders = [package] if package is not None else package_folders(configured)
    known: set[str] = set()
    for folder in folders:
        listed = _listed(folder)
        if name in listed:
            return Located(name, listed[name], load_factory(listed[name], near=folder), folder)
        known |= listed.keys()
    where = f"package {package}" if package is not None else "no configured or bundled package"
    names = ", ".join(sorted(known)) or "none"
    raise ParticipantNotFound(
        f"unknown participant {name!r}: {where} lists it (known: {names});"
        " pass --app module:factory for one of your own"
    )
