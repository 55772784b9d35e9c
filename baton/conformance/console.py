"""The `baton conformance` command's work: settings in, report out, exit code back.

Exit 0 when every check passed, 1 when one failed, 2 when the kit could not run as asked
(one line on stderr, no traceback).
"""

from __future__ import annotations

import click
from pydantic import ValidationError

from baton.conformance.report import Report
from baton.conformance.runner import Options, run_conformance
from baton.conformance.samples import ConformanceUsageError
from messaging.settings import Settings

USAGE = 2


def with_namespace(settings: Settings, namespace: str | None) -> Settings:
    """``settings`` with ``--namespace`` (checked like BATON_NAMESPACE) when given."""
    if namespace is None:
        return settings
    try:
        checked = Settings.model_validate({"namespace": namespace}).namespace
    except ValidationError as exc:
        raise ConformanceUsageError(f"--namespace: {exc.errors()[0]['msg']}") from None
    return settings.model_copy(update={"namespace": checked})


def show(report: Report, *, as_json: bool) -> None:
    click.echo(report.json_line() if as_json else report.table())


async def conformance_main(
    settings: Settings, options: Options, *, namespace: str | None, as_json: bool
) -> int:
    """Run the kit and print its report; the process's exit code."""
    try:
        report = await run_conformance(with_namespace(settings, namespace), options)
    except ConformanceUsageError as exc:
        click.echo(f"baton conformance: {exc}", err=True)
        return USAGE
    show(report, as_json=as_json)
    return report.exit_code
