"""Simulated OS processes: each owns its tasks, its Redis client and its broker connection.

A crash must look like ``kill -9``: the process stops between two awaits, its broker
connection dies (unacked deliveries go back to their queues), and whatever cleanup code its
cancelled tasks still run can no longer reach Redis or the broker. So every task is tagged
with the process that created it (a task factory reading a context variable, which new
tasks inherit), and each process talks to Redis through a connection class of its own that
it can shut, with a round-trip latency so a crash or an outage can fall between a write
being applied and its answer being read.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Callable, Coroutine, Generator
from typing import Any, ClassVar

from fakeredis import FakeServer
from fakeredis.aioredis import FakeAsyncRedisConnection, FakeRedis
from redis.exceptions import ConnectionError as RedisConnectionError

from messaging.transport.stub_broker import StubBroker

CURRENT: contextvars.ContextVar[Host | None] = contextvars.ContextVar("sim_host", default=None)


class Gate:
    """A process's way to Redis: a latency per round trip, shut when the process dies."""

    def __init__(self, rng: random.Random, max_latency_s: float) -> None:
        self.open = True
        self._rng = rng
        self._max = max_latency_s

    async def round_trip(self) -> None:
        if not self.open:
            raise RedisConnectionError("the process is dead")
        if self._max > 0:
            await asyncio.sleep(self._rng.random() * self._max)
        if not self.open:
            raise RedisConnectionError("the process is dead")


class _GatedConnection(FakeAsyncRedisConnection):
    """Pays the gate's latency once per command or pipeline sent."""

    gate: ClassVar[Gate]
    _sent = False

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self.gate.open:
            raise RedisConnectionError("the process is dead")
        await super().send_packed_command(command, check_health)
        self._sent = True

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        if self._sent:
            self._sent = False
            try:
                await self.gate.round_trip()
            except BaseException:
                # as redis-py does when a read is interrupted (a cancelled task, a timeout):
                # drop the connection, or its unread answer would be the next caller's
                await self.disconnect(nowait=True)
                raise
        return await super().read_response(*args, **kwargs)


def redis_client(server: FakeServer, gate: Gate) -> FakeRedis:
    """A client of the in-memory Redis whose round trips go through ``gate``."""
    connection = type("SimConnection", (_GatedConnection,), {"gate": gate})
    return FakeRedis(server=server, connection_class=connection)


Main = Callable[["Host"], Coroutine[Any, Any, None]]


class Host:
    """One incarnation of a process; a restart is a new ``Host`` with the same name."""

    def __init__(
        self,
        name: str,
        redis_server: FakeServer,
        gate: Gate,
        connect: Callable[[FakeRedis], StubBroker],
    ) -> None:
        self.name = name
        self.gate = gate
        self.redis = redis_client(redis_server, gate)
        self.broker = connect(self.redis)  # its own connection; may use its Redis (marks)
        self.stop = asyncio.Event()
        self.tasks: dict[asyncio.Task[Any], None] = {}  # an ordered set: cancelled in order
        self.alive = True
        self.main: asyncio.Task[None] | None = None

    def start(self, main: Main) -> None:
        """Run ``main(self)`` as this process; every task it spawns belongs to it."""
        self.main = self.run(main(self))

    def run(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` as a task of this process."""
        token = CURRENT.set(self)
        try:
            return asyncio.get_running_loop().create_task(work, name=self.name)
        finally:
            CURRENT.reset(token)

    def adopt(self, task: asyncio.Task[Any]) -> None:
        self.tasks[task] = None
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self.tasks.pop(task, None)

    def kill(self) -> None:
        """Stop dead: no more I/O, every task cancelled where it stands."""
        self.alive = False
        self.gate.open = False
        self.broker.drop(None)
        for task in list(self.tasks):
            task.cancel()

    async def shutdown(self, timeout_s: float) -> None:
        """Stop gracefully (``stop`` set); kill whatever is still running after ``timeout_s``."""
        self.stop.set()
        if self.main is not None:
            await asyncio.wait([self.main], timeout=timeout_s)
        self.kill()
        await self.close()

    async def close(self) -> None:
        """Release the client (after a kill, its connections are already useless)."""
        pool = self.redis.connection_pool
        await pool.disconnect(inuse_connections=True)
        await self.redis.aclose()


def task_factory(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
    **kwargs: Any,
) -> asyncio.Task[Any]:
    """asyncio's task factory that also records which simulated process a task belongs to."""
    task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, **kwargs)
    context: contextvars.Context | None = kwargs.get("context")
    host = context.get(CURRENT) if context is not None else CURRENT.get()
    if host is not None:
        host.adopt(task)
    return task
