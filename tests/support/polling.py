"""Waiting for a condition in the test suites' launchers: poll, never sleep and hope."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    check: Callable[[], bool],
    what: str,
    timeout_s: float,
    *,
    tolerate: tuple[type[Exception], ...] = (),
) -> None:
    """Poll ``check()`` every 0.1 s until true (an exception in ``tolerate`` counts as not
    yet); raise ``TimeoutError`` naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except tolerate:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout_s}s")
        time.sleep(0.1)
