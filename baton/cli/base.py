"""The ``baton`` group and what its commands share: settings, running a coroutine.

This is the composition root: the only code that reads the environment, configures logging
and opens connections.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import click
import structlog
from pydantic import ValidationError

from messaging.errors import SealingKeyError
from messaging.observability.logs import configure_logging, masked
from messaging.settings import Settings


def _run(work: Coroutine[Any, Any, int]) -> None:
    """Run on uvloop where available; exit with the coroutine's code.

    No usable sealing key is one line on stderr naming the variable, exit 2: a process
    that would keep card data in clear refuses to start.
    """
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, absent on some platforms
    except ImportError:  # pragma: no cover
        runner: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run
    else:
        runner = uvloop.run
    try:
        code = runner(work)
    except SealingKeyError as exc:
        click.echo(f"baton: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # one line, passwords masked; the traceback at debug level only
        structlog.get_logger("baton.cli").debug("command_failed", exc_info=True)
        click.echo(f"baton: {masked(str(exc) or type(exc).__name__)}", err=True)
        sys.exit(1)
    sys.exit(code)


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Baton: a saga orchestrator over RabbitMQ and Redis. Settings come from BATON_* variables."""
    try:
        settings = Settings()
    except ValidationError as exc:  # one line per bad variable; never the value (a password)
        for error in exc.errors():
            name = "BATON_" + "__".join(str(part) for part in error["loc"]).upper()
            click.echo(f"baton: {name}: {masked(error['msg'])}", err=True)
        sys.exit(2)
    configure_logging(settings.log.level, settings.log.format)
    ctx.obj = settings
