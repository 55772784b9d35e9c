"""``baton`` run in the test's own process with click's ``CliRunner``: ~100x cheaper than a new
interpreter per call, for tests that run many commands (tests/integration/test_cli_errors.py).

Running in-process shares what a process holds once: the root logger's handlers and structlog's
configuration (``baton`` configures both on every call), and the loggers structlog caches on
first use, each bound to the ``sys.stderr`` of the call that first logged. A cached logger would
write a later call's lines into an earlier call's captured stream, where no check sees them: so
the calls here run with caching off and every module's cached logger dropped, and whatever they
changed is put back afterwards.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click
import pytest
import structlog
from click.testing import CliRunner
from structlog._config import BoundLoggerLazyProxy

import baton.cli.base
from messaging.observability.logs import configure_logging


@dataclass(frozen=True)
class Invoked:
    code: int
    out: str
    err: str
    raised: str | None  # an exception that escaped the command (not SystemExit): a traceback


def _uncache_loggers() -> None:
    """Forget every module-level structlog logger's cached binding (``log = get_logger()``):
    the next line it logs is bound again, to the configuration (and stderr) of that moment."""
    for module in list(sys.modules.values()):
        for value in list(getattr(module, "__dict__", {}).values()):
            if isinstance(value, BoundLoggerLazyProxy):
                value.__dict__.pop("bind", None)


def _uncached_configure(level: str = "info", fmt: str = "auto") -> None:
    """``configure_logging`` as ``baton`` calls it, without structlog's per-logger cache."""
    configure_logging(level, fmt)
    structlog.configure(cache_logger_on_first_use=False)


@contextmanager
def in_process_cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """A ``CliRunner`` for ``invoke``; logging as it was before, once the block ends."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = structlog.get_config()
    monkeypatch.setattr(baton.cli.base, "configure_logging", _uncached_configure)
    _uncache_loggers()
    try:
        yield CliRunner()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**saved)
        _uncache_loggers()


def invoke(
    runner: CliRunner, group: click.Command, args: Sequence[str], env: Mapping[str, str]
) -> Invoked:
    """``baton ARGS`` with exactly ``env``'s ``BATON_*`` variables (the test process's own are
    hidden), errors handled by the command itself as in a terminal (``catch_exceptions``: an
    escaped exception is reported, not raised)."""
    hidden: dict[str, str | None] = {k: None for k in os.environ if k.startswith("BATON_")}
    result = runner.invoke(group, list(args), env={**hidden, **env})
    raised: str | None = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        info: Any = result.exc_info
        raised = "".join(traceback.format_exception(*info)) if info else repr(result.exception)
    return Invoked(result.exit_code, result.stdout, result.stderr, raised)
