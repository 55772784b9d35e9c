"""``baton check DEFINITION``: the load-time checks and the money-safety proof of one file.

Exit status: 0 safe, 1 unsafe (the counter-example is printed), 2 not a loadable definition
(one line on stderr). The contracts come from the saga package the file sits in
(``<package>/definitions/<file>``) and from ``--package`` folders, so a definition can be
checked before any orchestrator loads it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from contracts.errors import ContractDefinitionError
from messaging.errors import DefinitionError
from orchestrator.core.definition import SagaDefinition, load_definition
from orchestrator.core.engine.explore import Proof, explore
from orchestrator.runtime.packages import MANIFEST, default_package_paths, load_packages


def _packages_for(definition: Path, extra: tuple[Path, ...]) -> list[Path]:
    """The file's own package (when it sits in one), the bundled ones, and ``--package``."""
    folders = [*default_package_paths(), *extra]
    home = definition.resolve().parent.parent
    if (home / MANIFEST).is_file():
        folders.append(home)
    unique: dict[Path, None] = {}
    for folder in folders:
        unique.setdefault(folder.resolve(), None)
    return list(unique)


def _load(path: Path, extra: tuple[Path, ...]) -> SagaDefinition:
    packages = load_packages(_packages_for(path, extra), prove=False)
    return load_definition(path, packages.registry)


def _report(proof: Proof) -> dict[str, object]:
    violation = proof.violation
    return {
        "saga": proof.saga,
        "version": proof.version,
        "safe": proof.safe,
        "states": proof.states,
        "variants": proof.variants,
        "terminals": proof.terminals,
        "violation": None if violation is None else {
            "rule": violation.rule, "detail": violation.detail, "path": list(violation.path),
        },
    }  # fmt: skip


@click.command("check")
@click.argument("definition", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--package",
    "extra",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="A saga package whose contracts the definition names (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def check_command(definition: Path, extra: tuple[Path, ...], as_json: bool) -> None:
    """Check DEFINITION and prove it money-safe over every outcome of every step."""
    try:
        loaded = _load(definition, extra)
        proof = explore(loaded)
    except (DefinitionError, ContractDefinitionError, ValueError) as exc:
        line = str(exc).splitlines()[0]
        where = "" if line.startswith(str(definition)) else f"{definition}: "
        click.echo(f"baton check: {where}{line}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(_report(proof)))
    elif proof.violation is None:
        ends = ", ".join(f"{n} {status}" for status, n in sorted(proof.terminals.items()))
        click.echo(f"{proof.saga} v{proof.version}: safe ({proof.states} states over "
                   f"{proof.variants} condition outcome(s); ends: {ends})")  # fmt: skip
    else:
        click.echo(f"{proof.saga} v{proof.version}: UNSAFE\n{proof.violation}")
    sys.exit(0 if proof.safe else 1)
