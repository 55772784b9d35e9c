"""One socket write for the AMQP frames that are already waiting, instead of one each.

aiormq's connection writer takes frames off its queue and writes each with its own
``write``: a publish, an ack, the next publish. On loopback a write also runs the
receiver's side of TCP and wakes it (another process, often on the other vCPU), which
made the orchestrator's socket writes its most expensive calls. Handlers resumed in the
same loop turn (a batch of Redis commits answered together, confirms that arrive
together) queue their frames together; this hands the writer all of them at once.

It replaces aiormq's ``FrameGenerator`` (the writer looks it up when a connection opens)
and keeps its contract: frames go out in order, a sender that waits for its frame to be
drained is released only after the write that carried it was drained, and a frame that
closes the connection is the last one written.

It is a speed-up only: a process works unpatched, just with more writes. So on an aiormq
this was not checked against (a version outside ``KNOWN_AIORMQ``, or a ``FrameGenerator``,
``ChannelFrame`` or connection writer that does not look as read in aiormq 7.2.4),
``coalesce_frame_writes`` logs one warning and leaves aiormq alone rather than raise (unlike
``decoding.py``, whose patch is needed for correctness). ``coalescing_active()`` tells
whether the patch is in place, for a health check or the bench JSON.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Iterator
from typing import Any

from aiormq import connection
from aiormq.abc import ChannelFrame

# aiormq versions whose connection.py (FrameGenerator, Connection.__writer and its close
# path) and abc.ChannelFrame were read for this patch; pinned in pyproject.toml.
KNOWN_AIORMQ = frozenset({"7.2.4"})

log = logging.getLogger(__name__)
_refused: list[str] = []  # why the patch was refused, once it was: the warning is logged once


class CoalescingFrameGenerator(connection.FrameGenerator):
    async def __anext__(self) -> ChannelFrame:
        frame: ChannelFrame = await super().__anext__()
        if self.queue.empty() or frame.should_close:
            return frame
        frames = [frame]
        # aiormq's own generator stops taking frames once the connection closes; so does this
        while not self.queue.empty() and not frame.should_close and not self.close_event.is_set():
            frame = self.queue.get_nowait()
            self.queue.task_done()
            frames.append(frame)
        waiting = [f.drain_future for f in frames if f.drain_future is not None]
        return ChannelFrame(b"".join(f.payload for f in frames), frame.should_close, _all(waiting))


def _all(futures: list[asyncio.Future[None]]) -> asyncio.Future[None] | None:
    """One drain future standing for several: the writer drains once, each sender is freed."""
    if len(futures) < 2:
        return futures[0] if futures else None
    combined: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def release(_: asyncio.Future[None]) -> None:
        for future in futures:
            if not future.done():
                future.set_result(None)

    combined.add_done_callback(release)
    return combined


def coalesce_frame_writes() -> bool:
    """Use it for every aiormq connection opened from now on (idempotent); True if active.

    Refuses (one warning, aiormq left as it is, False) an aiormq it was not checked against:
    writing frames out of order or dropping a drain would be worse than the extra writes.
    """
    if coalescing_active():
        return True
    reason = next(_mismatches(), None)
    if reason is not None:
        if not _refused:
            log.warning("aiormq frame coalescing disabled (one socket write per frame): %s", reason)
        _refused[:] = [reason]
        return False
    connection.FrameGenerator = CoalescingFrameGenerator  # type: ignore[misc]
    return True


def coalescing_active() -> bool:
    """Whether connections opened from now on coalesce their frame writes."""
    return connection.FrameGenerator is CoalescingFrameGenerator


def _aiormq_version() -> str:
    """The installed aiormq's version, as aiormq itself reads it (its package metadata)."""
    return str(getattr(connection, "__version__", "unknown"))


_WRITER_NEEDS = (
    "FrameGenerator(self.write_queue)",  # looked up by name at each connection: patchable
    "writer.write(channel_frame.payload)",
    "if channel_frame.should_close:",
    "if channel_frame.should_drain:",
    "channel_frame.drain()",
)


def _mismatches() -> Iterator[str]:
    """What differs from the aiormq the patch was written against; nothing if it is the same."""
    found = _aiormq_version()
    if found not in KNOWN_AIORMQ:
        yield f"aiormq {found} is not one of the checked versions {sorted(KNOWN_AIORMQ)}"
    original: Any = CoalescingFrameGenerator.__bases__[0]
    if connection.FrameGenerator is not original:
        yield "aiormq.connection.FrameGenerator was replaced by something else"
    try:
        params = list(inspect.signature(original.__init__).parameters)
        anext_source = inspect.getsource(original.__anext__)
        writer_source = inspect.getsource(connection.Connection._Connection__writer)  # type: ignore[attr-defined]
        fields = [field.name for field in dataclasses.fields(ChannelFrame)]
    except (AttributeError, OSError, TypeError, ValueError) as err:
        yield f"cannot inspect aiormq's frame writer ({err!r})"
        return
    if params != ["self", "queue"]:
        yield f"FrameGenerator.__init__ takes {params}, expected ['self', 'queue']"
    if not inspect.iscoroutinefunction(original.__anext__) or "self.queue.get()" not in (
        anext_source
    ):
        yield "FrameGenerator.__anext__ no longer awaits self.queue.get()"
    if fields != ["payload", "should_close", "drain_future"]:
        yield f"ChannelFrame has fields {fields}, expected payload, should_close, drain_future"
    missing = [line for line in _WRITER_NEEDS if line not in writer_source]
    if missing:
        yield f"Connection.__writer no longer has {missing}"
