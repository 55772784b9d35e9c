"""Lua script calls made in the same event-loop turn, sent to Redis as one pipelined round trip.

At concurrency every reply the orchestrator handles ends in one transition script, and the
handlers woken by one socket read reach their ``commit`` in the same loop turn. Sent one by
one, each pays redis-py's whole per-command path (pool checkout, retry wrapper, timeout,
socket write, parse) and Redis a read and a write per command; sent together they pay it
once. Each call still gets its own answer (or exception), and nothing about a script's
atomicity changes: a pipeline without MULTI only shares the round trip.

A batch of one call is sent as a plain EVALSHA, so at concurrency 1 nothing is added.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from messaging.durable_writes import Durability, NotDurable, node_name, queue_evalsha

Arg = str | int | float | bytes


class ScriptBatch:
    """Registered scripts, called through ``call``; calls of one loop turn share a pipeline."""

    def __init__(
        self, client: aioredis.Redis, scripts: dict[str, str], *, batched: bool = True
    ) -> None:
        self._client = client
        # the client's WAIT (messaging/durable_writes.py); none on plain and fake clients
        self._durability: Durability = getattr(client, "durability", Durability())
        # off: each call is its own round trip (slower; for tests showing what batching saves)
        self._batched = batched
        self._sources = scripts
        self._shas = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in scripts.items()}
        self._pending: list[tuple[str, Sequence[Arg], Sequence[Arg], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._send_soon = False  # a send is scheduled for the end of this loop turn
        self._send_later: asyncio.TimerHandle | None = None  # only riders are waiting

    async def call(
        self,
        script: str,
        keys: Sequence[Arg],
        args: Sequence[Arg],
        *,
        ride_within_s: float | None = None,
    ) -> Any:
        """Run ``script`` with ``keys`` and ``args``; its result, or its error raised here.

        A call with ``ride_within_s`` is not urgent: it waits for the next batch to go
        (riding along in its round trip) and is sent alone only if none goes that soon.
        """
        if not self._batched:
            (result,) = await self._run([(script, keys, args)])
            if isinstance(result, Exception):
                raise result
            return result
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, future))
        if ride_within_s is None:
            if not self._send_soon:
                # after the handlers already woken this turn have queued their calls too
                self._send_soon = True
                loop.call_soon(self._send_pending)
        elif self._send_later is None and not self._send_soon:
            self._send_later = loop.call_later(ride_within_s, self._send_pending)
        return await future

    def _send_pending(self) -> None:
        self._send_soon = False
        if self._send_later is not None:
            self._send_later.cancel()
            self._send_later = None
        # a caller cancelled meanwhile (its task was stopped) no longer wants its call sent
        batch = [call for call in self._pending if not call[3].done()]
        self._pending = []
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._run_batch(batch))
        self._sending.add(task)  # a strong reference until it is done
        task.add_done_callback(self._sending.discard)

    async def _run_batch(
        self, batch: list[tuple[str, Sequence[Arg], Sequence[Arg], asyncio.Future[Any]]]
    ) -> None:
        try:
            results = await self._run([(name, keys, args) for name, keys, args, _ in batch])
        except asyncio.CancelledError:
            for *_, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the connection failed: every caller hears of it
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _run(self, calls: list[tuple[str, Sequence[Arg], Sequence[Arg]]]) -> list[Any]:
        results = await self._pipeline(calls)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:  # Redis restarted or flushed its script cache: load and run those again
            for name in {calls[i][0] for i in missing}:
                self._shas[name] = await self._client.script_load(self._sources[name])
            again = await self._pipeline([calls[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    async def _pipeline(self, calls: list[tuple[str, Sequence[Arg], Sequence[Arg]]]) -> list[Any]:
        if len(calls) == 1:  # a lone call skips the pipeline's bookkeeping
            name, keys, args = calls[0]
            try:
                return [await self._client.evalsha(self._shas[name], len(keys), *keys, *args)]
            except ResponseError as exc:  # the script's own error (NOSCRIPT is one): its answer
                return [Durability.refused(exc)]
        durability = self._durability
        async with self._client.pipeline(transaction=False) as pipe:
            for name, keys, args in calls:
                queue_evalsha(pipe, self._shas[name], len(keys), *keys, *args)
            waits = self._add_waits(pipe, durability, calls) if durability.required else []
            results = [Durability.refused(r) for r in await pipe.execute(raise_on_error=False)]
        for wait_index, covered in waits:  # each WAIT speaks for the writes of its node
            try:
                durability.check(results[wait_index])
            except NotDurable as exc:
                for i in covered:
                    if not isinstance(results[i], Exception):
                        results[i] = exc
        return results[: len(calls)]

    def _add_waits(
        self,
        pipe: Any,
        durability: Durability,
        calls: list[tuple[str, Sequence[Arg], Sequence[Arg]]],
    ) -> list[tuple[int, list[int]]]:
        """One WAIT per node written (one server: one WAIT), after the scripts; for each,
        its place in the answers and the calls it covers (durable_writes.py)."""
        by_node: dict[str, list[int]] = {}
        for i, (_, keys, _) in enumerate(calls):
            by_node.setdefault(node_name(self._client, keys[0]), []).append(i)
        waits: list[tuple[int, list[int]]] = []
        for covered in by_node.values():
            durability.add_wait(pipe, self._client, calls[covered[0]][1][0])
            waits.append((len(calls) + len(waits), covered))
        return waits
