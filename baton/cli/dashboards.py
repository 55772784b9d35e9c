"""``baton dashboards``: write the Grafana dashboard and the SLO alert rules from code.

Both are generated (``baton.dashboards``) from Baton's panels and the ``slos:`` of the
deployment's saga definitions; ``--check`` says whether the files on disk are current.
"""

from __future__ import annotations

from pathlib import Path

import click

from baton.cli.base import _settings, main


@main.command()
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("deploy"),
    show_default=True, help="The deploy folder: writes grafana/dashboards/baton.json and "
    "prometheus/rules/slo.yml under it.",
)  # fmt: skip
@click.option(
    "--check", is_flag=True,
    help="Write nothing; exit 1 when a generated file is missing or differs from the code.",
)  # fmt: skip
@click.pass_context
def dashboards(ctx: click.Context, out: Path, check: bool) -> None:
    """Generate the Grafana dashboard and the SLO burn-rate alerts (do not edit them by hand)."""
    from baton.dashboards import render, stale  # noqa: PLC0415 - keeps other commands light
    from baton.runtime import load_catalog  # noqa: PLC0415

    files = render(load_catalog(_settings(ctx)).all())
    if check:
        differ = stale(out, files)
        for path in differ:
            click.echo(f"baton: {out / path} is not what `baton dashboards` generates", err=True)
        ctx.exit(1 if differ else 0)
    for path, text in files.items():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_text(text)
        click.echo(f"wrote {out / path}")
