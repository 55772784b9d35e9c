"""Fault injection driven by ParticipantSettings, so tests and demos can break a participant."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from typing import NoReturn

import structlog

from contracts.base import Reply
from messaging.errors import StepRejected, TransientError
from messaging.settings import ParticipantSettings

log = structlog.get_logger(__name__)

CRASH_EXIT_CODE = 137  # what a SIGKILL'd process reports, so supervisors treat it alike


class Chaos:
    """Wraps a handler call with injected latency, crashes, transient errors and refusals.

    Latency (``slow_ms``, for a ``slow_rate`` share of commands) runs inside the claimed lease,
    like a slow handler would: longer than the step timeout, it races the command's own retry
    (same effect id), which must wait for the lease instead of running alongside.

    Refusals and transient errors are raised *before* the handler (a StepFailed must mean
    nothing changed); refusals only hit forward commands (a compensation must succeed). A
    crash happens *after* the handler, before the reply is stored or sent: the harshest
    moment, which exercises the handler's own idempotency.
    """

    def __init__(
        self,
        settings: ParticipantSettings,
        rng: random.Random,
        *,
        exit_process: Callable[[int], NoReturn] = os._exit,
    ) -> None:
        self._settings = settings
        self._rng = rng
        self._exit = exit_process

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    async def call(self, run: Callable[[], Awaitable[Reply]], *, forward: bool) -> Reply:
        """Run the handler through the configured faults."""
        s = self._settings
        if s.slow_ms and self._roll(s.slow_rate):
            if s.slow_rate < 1:  # a share of commands made slow on purpose: counted by fault tests
                log.warning("handler_chaos", action="slowed", slow_ms=s.slow_ms)
            await asyncio.sleep(s.slow_ms / 1000)
        if self._roll(s.error_rate):
            raise TransientError("injected_error")
        if forward and self._roll(s.fail_rate):
            raise StepRejected("injected_failure")
        crash = self._roll(s.crash_rate)
        reply = await run()
        if crash:
            self._exit(CRASH_EXIT_CODE)
        return reply

    def reply_copies(self, command_kind: str, attempt: int) -> list[float]:
        """Delays (seconds) of each copy of a reply to publish: [] drops it, two duplicate it.

        Applied after the reply is stored in the inbox, so a lost reply is recovered by the
        orchestrator's retry (same effect id) and a duplicate is one the inbox would repeat.
        Random delays on each copy also reorder replies against each other.
        """
        s = self._settings
        if attempt == 1 and command_kind in s.drop_first_reply_of:
            log.warning("reply_chaos", action="first_reply_dropped")  # counted by fault tests
            return []
        if self._roll(s.reply_drop_rate):
            log.warning("reply_chaos", action="dropped")
            return []
        copies = 2 if self._roll(s.reply_duplicate_rate) else 1
        if copies > 1:
            log.warning("reply_chaos", action="duplicated")
        return [self._rng.random() * s.reply_delay_ms / 1000 for _ in range(copies)]
