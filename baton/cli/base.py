"""The ``baton`` group and what its commands share: settings, running a coroutine, and the
one place an expected failure becomes one line on stderr with a documented exit status.

This is the composition root: the only code that reads the environment, configures logging
and opens connections.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import aiormq
import click
from pydantic import ValidationError
from redis.exceptions import RedisError

from contracts.pan import contains_pan, mask_pans
from messaging.errors import BatonError, DefinitionError, SealingKeyError, SigningKeyError
from messaging.observability.logs import configure_logging, masked
from messaging.settings import Settings

DEBUG = "baton.debug"  # ctx.meta key: --debug was given
# Commands that log as they run (JSON lines on stderr); the others keep libraries' connection
# chatter out of an operator's terminal: their failure is said in their one error line.
DAEMONS = frozenset({"orchestrator", "participant", "bench-floor"})
QUIET_LIBRARIES = ("aiormq", "aio_pika")
PAN_REFUSED = (
    "baton: refused: an argument holds a card number (12-19 digits passing Luhn); never type"
    " one: pass the vault token (tok_...) instead"
)


EXIT_STATUSES = (
    (0, "success"),
    (1, "refused or failed: an operator action refused, a server unreachable, a check failed"),
    (2, "bad usage or input: an unknown option, a bad value, a card number, a missing key"),
)
# What each expected failure is (first match wins), its exit status and its line's shape.
TIMED_OUT = "timed out waiting for RabbitMQ or Redis (BATON_RABBIT__URL, BATON_REDIS__URL)"
KNOWN: tuple[tuple[tuple[type[BaseException], ...], int, str], ...] = (
    ((SealingKeyError, SigningKeyError, DefinitionError), 2, "{}"),  # fixed by the input
    ((RedisError,), 1, "cannot reach Redis (BATON_REDIS__URL): {}"),
    ((ConnectionError,), 1, "cannot reach RabbitMQ (BATON_RABBIT__URL): {}"),  # aiormq's too
    ((aiormq.exceptions.AMQPError,), 1, "rabbitmq: {}"),
    ((TimeoutError,), 1, TIMED_OUT),
    ((BatonError, OSError), 1, "{}"),
)
UNEXPECTED = "unexpected {}: {} (run with --debug for the traceback)"


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside task groups' exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


MAX_LINE = 400  # characters of an error's text an operator sees (--debug shows all)


def _text(exc: BaseException) -> str:
    """The exception's text on one line (a pydantic error spans several: the field is on the
    second), passwords and card numbers masked."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    text = text or type(exc).__name__
    if len(text) > MAX_LINE:
        text = text[: MAX_LINE - 1] + "…"
    return mask_pans(masked(text))


def error_line(raised: Exception) -> tuple[int, str]:
    """The exit status and the one line (without ``baton:``) an operator sees for ``raised``.

    The one function that formats errors, so masking secrets is never forgotten.
    """
    exc = _leaf(raised)
    for types, code, shape in KNOWN:
        if isinstance(exc, types):
            return code, shape.format(_text(exc))
    return 1, UNEXPECTED.format(type(exc).__name__, _text(exc))


def _run(work: Coroutine[Any, Any, int]) -> None:
    """Run on uvloop where available; exit with the coroutine's code. What it raises is
    turned into one line by ``BatonGroup.invoke``."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, absent on some platforms
    except ImportError:  # pragma: no cover
        runner: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run
    else:
        runner = uvloop.run
    sys.exit(runner(work))


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


class BatonGroup(click.Group):
    """The root group: refuses card numbers in any argument before any command parses it,
    and turns what a command raises into one line and an exit status (``error_line``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # every token of the command line, options and arguments of every subcommand alike
        if any(contains_pan(arg) for arg in args):
            click.echo(PAN_REFUSED, err=True)
            ctx.exit(2)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click says these itself, with status 2 (usage) or 1
        except Exception as exc:  # the boundary: one line, secrets masked
            if ctx.meta.get(DEBUG):
                raise
            code, line = error_line(exc)
            click.echo(f"baton: {line}", err=True)
            ctx.exit(code)


def _log_level(settings: Settings, command: str | None, debug: bool) -> str:
    """A daemon logs at ``BATON_LOG__LEVEL`` (default info): its log is read by machines. A
    one-shot command talks to a person, so unless the variable is set it logs only warnings:
    its own lines (an operator action's ``operator_action``) stay in the audit trail, the
    event and the metric, and an error stays one line."""
    if debug:
        return "debug"
    if command in DAEMONS or "level" in settings.log.model_fields_set:
        return settings.log.level
    return "warning"


EPILOG = '\b\nExit statuses (docs/operations.md, "Exit statuses and errors"):\n' + "\n".join(
    f"  {code}  {meaning}" for code, meaning in EXIT_STATUSES
)


@click.group(cls=BatonGroup, epilog=EPILOG)
@click.option("--debug", is_flag=True, help="On an error, show the traceback and debug logs.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Baton: a saga orchestrator over RabbitMQ and Redis. Settings come from BATON_* variables.

    Every expected failure is one line on stderr starting with ``baton``; --debug shows the
    traceback.
    """
    ctx.meta[DEBUG] = debug
    try:
        settings = Settings()
    except ValidationError as exc:  # one line per bad variable; never the value (a password)
        for error in exc.errors():
            name = "BATON_" + "__".join(str(part) for part in error["loc"]).upper()
            click.echo(f"baton: {name}: {masked(error['msg'])}", err=True)
        sys.exit(2)
    configure_logging(_log_level(settings, ctx.invoked_subcommand, debug), settings.log.format)
    if not debug and ctx.invoked_subcommand not in DAEMONS:
        for library in QUIET_LIBRARIES:
            logging.getLogger(library).setLevel(logging.CRITICAL)
    ctx.obj = settings
