"""Baton's core names no saga's messages: which messages exist is data in saga packages.

Every message kind (and the class name it compiles to) of the bundled packages and of the
example packages is collected from their contract files, with the payment participants'
typed classes; none of them may appear in the source of ``orchestrator/``, ``messaging/``
or ``contracts/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contracts.compiler import class_name, contract_files, load_contract_file
from participants.payments import contracts as typed

ROOT = Path(__file__).resolve().parents[2]
CORE = ("orchestrator", "messaging", "contracts")
PACKAGES = ("sagas", "examples")


def _saga_names() -> set[str]:
    names = {model.__name__ for model in typed.MODELS}
    for package in PACKAGES:
        for folder in (ROOT / package).glob("**/contracts"):
            for path in contract_files(folder):
                for model in load_contract_file(path):
                    names |= {model.KIND, model.__name__, class_name(model.KIND)}
    return names


NAMES = _saga_names()
SOURCES = sorted(
    path
    for package in CORE
    for path in (ROOT / package).rglob("*")
    if path.is_file() and path.suffix in (".py", ".lua", ".yaml", ".yml", ".json")
)


def test_the_names_were_found() -> None:
    assert {"payments.start_transaction.v1", "StartTransaction", "AuthorizePayment"} <= NAMES
    assert len(SOURCES) > 20


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_core_file_names_a_saga_message(path: Path) -> None:
    text = path.read_text()
    found = sorted(name for name in NAMES if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text))
    where = path.relative_to(ROOT)
    assert not found, f"{where} names {found}: a saga's message belongs in its package"
