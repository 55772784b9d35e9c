"""The process-wide sources of time and chance, pinned for one simulated run.

The code under test reads the wall clock (``time.time``: saga timestamps, deadlines, Redis
key expiry inside fakeredis) and draws ids (``uuid4`` for message ids, ``secrets`` for span
ids, ``random`` for redis-py's retry jitter). A run replays only if all of them come from the
seed and the virtual clock, so ``pinned`` swaps them for the duration of the run and puts the
originals back afterwards. Modules that imported a name directly (``from uuid import uuid4``)
hold their own reference: those references are swapped too, in the packages Baton ships.
"""

from __future__ import annotations

import random
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

PACKAGES = ("contracts", "messaging", "orchestrator", "participants", "baton", "fakeredis")


def _modules() -> list[Any]:
    return [
        module
        for name, module in list(sys.modules.items())
        if module is not None and name.split(".")[0] in PACKAGES
    ]


@contextmanager
def _swapped(owner: Any, name: str, replacement: Any) -> Iterator[None]:
    """Replace ``owner.name`` and every module's direct reference to the same object."""
    original = getattr(owner, name)
    holders = [m for m in _modules() if getattr(m, name, None) is original]
    setattr(owner, name, replacement)
    for module in holders:
        setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)
        for module in holders:
            setattr(module, name, original)


@contextmanager
def pinned(seed: int, wall: Callable[[], float]) -> Iterator[random.Random]:
    """Time from ``wall``, ids and jitter from ``seed``; yields the RNG that draws the ids."""
    ids = random.Random(f"ids-{seed}")
    saved = random.getstate()
    random.seed(f"global-{seed}")  # redis-py's retry jitter and any other module-level use

    def uuid4() -> uuid.UUID:
        return uuid.UUID(int=ids.getrandbits(128), version=4)

    def token_bytes(n: int | None = None) -> bytes:
        return ids.randbytes(32 if n is None else n)

    try:
        with (
            _swapped(time, "time", wall),
            _swapped(uuid, "uuid4", uuid4),
            _swapped(secrets, "token_bytes", token_bytes),
        ):
            yield ids
    finally:
        random.setstate(saved)
