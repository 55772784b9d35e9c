"""The error a contract file or a contract registration raises: a DefinitionError that names where.

It derives from ``messaging.errors.DefinitionError`` so whatever refuses a bad saga definition
(``baton run`` exits, a package fails to load) refuses a bad contract the same way. Import
direction: this module, ``contracts.registry`` and ``contracts.compiler`` import ``messaging``;
nothing in ``messaging`` may import them at run time (only for type checking), and
``contracts/__init__.py`` does not import them, so either package can be imported first.
"""

from __future__ import annotations

from messaging.errors import DefinitionError


class ContractDefinitionError(DefinitionError):
    """A contract breaks a rule checked at load. ``source`` is the file (or class), ``message``
    the kind, ``field`` the field; each is "" when the error is not about one."""

    def __init__(
        self, problem: str, *, source: str = "", message: str = "", field: str = ""
    ) -> None:
        where = ": ".join(part for part in (source, message, field and f"field {field}") if part)
        super().__init__(f"{where}: {problem}" if where else problem)
        self.problem = problem
        self.source = source
        self.message = message
        self.field = field
