"""Fault injection driven by ParticipantSettings, so tests and demos can break a participant."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from typing import NoReturn

from contracts.base import Reply
from messaging.errors import StepRejected, TransientError
from messaging.settings import ParticipantSettings

CRASH_EXIT_CODE = 137  # what a SIGKILL'd process reports, so supervisors treat it alike


class Chaos:
    """Wraps a handler call with injected latency, crashes, transient errors and refusals.

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
        if s.slow_ms:
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
