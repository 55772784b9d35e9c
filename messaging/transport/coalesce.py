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
"""

from __future__ import annotations

import asyncio

from aiormq import connection
from aiormq.abc import ChannelFrame


class CoalescingFrameGenerator(connection.FrameGenerator):
    async def __anext__(self) -> ChannelFrame:
        frame: ChannelFrame = await super().__anext__()
        if self.queue.empty() or frame.should_close:
            return frame
        frames = [frame]
        while not self.queue.empty() and not frame.should_close:
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


def coalesce_frame_writes() -> None:
    """Use it for every aiormq connection opened from now on (idempotent)."""
    connection.FrameGenerator = CoalescingFrameGenerator  # type: ignore[misc]
