"""Copies of the bundled payment package with several versions of its definition, side by side.

Version 1 is the bundled ``payment.v1.yaml`` as it is; any later version is that file with its
``version:`` bumped and a longer deadline (``V2_DEADLINE_S`` instead of 120 s), a difference
each saga's state shows (``deadline - started_at``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import sagas

BUNDLED = Path(next(iter(sagas.__path__))) / "payment"
V1_DEADLINE_S = 120.0
V2_DEADLINE_S = 150.0


def definition_text(version: int) -> str:
    """``payment.v<version>.yaml``: the bundled v1, or a copy of it as ``version``."""
    v1 = (BUNDLED / "definitions" / "payment.v1.yaml").read_text()
    if version == 1:
        return v1
    for old, new in (
        ("version: 1\n", f"version: {version}\n"),
        (f"deadline_s: {V1_DEADLINE_S:g} ", f"deadline_s: {V2_DEADLINE_S:g} "),
    ):
        assert v1.count(old) == 1, f"payment.v1.yaml no longer has {old!r} once"
        v1 = v1.replace(old, new)
    return v1


def payment_package(root: Path, *versions: int) -> Path:
    """A package folder under ``root`` holding the payment saga's ``versions``."""
    folder = root / ("payment-v" + "-v".join(map(str, versions)))
    shutil.copytree(BUNDLED, folder, ignore=shutil.ignore_patterns("definitions", "__pycache__"))
    (folder / "definitions").mkdir()
    for version in versions:
        (folder / "definitions" / f"payment.v{version}.yaml").write_text(definition_text(version))
    return folder
