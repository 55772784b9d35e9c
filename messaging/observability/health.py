"""One small HTTP endpoint per process: ``/metrics`` for Prometheus, ``/healthz`` for probes.

prometheus_client's own server serves only metrics, and a readiness answer needs the
process's live connections, which belong to its event loop. So this is a tiny asyncio HTTP
server on that loop: ``GET /metrics`` (the process's registry), ``GET /healthz`` (200 when
every readiness check passes — connected to RabbitMQ and Redis, every consumer consuming —
else 503, with a JSON body naming each check and, under ``reasons``, why a check failed when it
can say) and ``GET /livez`` (200 while the loop answers and every liveness check
passes — no consumer stuck in a crash loop — else 503). One request per connection; nothing
else is spoken.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from types import TracebackType

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.asyncio import Redis

from messaging.transport.amqp import Broker
from messaging.transport.poison import FailureCounts

log = structlog.get_logger(__name__)

# A check answers True, or False, or why it is not ready (a string, which counts as False).
Check = Callable[[], Awaitable[bool | str]]
CRASH_LOOP_RECONNECTS = 5  # reconnections within the window, with no progress, that ...
CRASH_LOOP_WINDOW_S = 300.0  # ... make a consumer not alive (aio-pika retries every 5 s)
CHECK_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 5.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def broker_ready(broker: Broker) -> Check:
    """Ready while the robust connection is up (it is down between reconnect attempts)."""

    async def check() -> bool:
        return broker.is_connected and broker.connection.connected.is_set()

    return check


def consumers_ready(broker: Broker) -> Check:
    """Ready while every consumer consumes; not while the broker has cancelled one (its queue
    was deleted), until the queue is declared again and the consumer resumes."""

    async def check() -> bool | str:
        gone = broker.not_consuming()
        return "; ".join(gone) if gone else True

    return check


def consumer_alive(
    broker: Broker,
    failures: FailureCounts,
    *,
    reconnects: int = CRASH_LOOP_RECONNECTS,
    window_s: float = CRASH_LOOP_WINDOW_S,
    clock: Callable[[], float] = time.monotonic,
) -> Check:
    """Alive unless the consumer is stuck in a crash loop: a message still failing long after
    it should have been dead-lettered, or a connection re-established ``reconnects`` times in
    ``window_s`` with no message settled since the first of them (a reader that dies on what
    it reads: the broker redelivers the same message to each new connection).

    A broker that is merely down is not a crash loop (no reconnection succeeds); readiness
    says so. ``clock`` must be the one ``failures`` uses.
    """
    times: deque[float] = deque(maxlen=reconnects)
    broker.connection.reconnect_callbacks.add(lambda *_: times.append(clock()))

    async def check() -> bool:
        if failures.stuck():
            return False
        if len(times) < reconnects:
            return True
        first = times[0]
        return first <= clock() - window_s or first <= failures.last_progress

    return check


def redis_ready(client: Redis) -> Check:
    """Ready when Redis answers a PING."""

    async def check() -> bool:
        return bool(await client.ping())

    return check


async def _run_check(check: Check) -> bool | str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            return await check()
    except asyncio.CancelledError:
        raise
    except Exception:  # a failing dependency is an answer ("not ready"), not a crash
        return False


async def _answers(checks: Mapping[str, Check]) -> dict[str, bool | str]:
    names = list(checks)
    results = await asyncio.gather(*(_run_check(checks[n]) for n in names))
    return dict(zip(names, results, strict=True))


def _passed(answers: Mapping[str, bool | str]) -> dict[str, bool]:
    return {name: answer is True for name, answer in answers.items()}


def _reasons(answers: Mapping[str, bool | str]) -> dict[str, str]:
    return {name: answer for name, answer in answers.items() if isinstance(answer, str)}


class ObservabilityServer:
    """Serves one registry and a set of readiness checks on ``host:port`` (0: any free port)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        checks: Mapping[str, Check],
        *,
        port: int,
        host: str = "127.0.0.1",  # BATON_METRICS__HOST; containers set 0.0.0.0
        liveness: Mapping[str, Check] | None = None,
    ) -> None:
        self._registry = registry
        self._checks = dict(checks)
        self._liveness = dict(liveness or {})  # restarting the process is what would help
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (the chosen one when constructed with 0)."""
        if self._server is None:
            return self._port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def address(self) -> str:
        """The bound address (``BATON_METRICS__HOST``)."""
        if self._server is None:
            return self._host
        host: str = self._server.sockets[0].getsockname()[0]
        return host

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        paths = ["/metrics", "/healthz"]
        log.info("observability_endpoint", host=self._host, port=self.port, paths=paths)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ObservabilityServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def readiness(self) -> dict[str, bool]:
        """Every check's answer, run concurrently, each within CHECK_TIMEOUT_S."""
        return _passed(await _answers(self._checks))

    async def liveness(self) -> dict[str, bool]:
        return _passed(await _answers(self._liveness))

    async def _respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"GET only\n"
        path = path.split("?", 1)[0]
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            answers = await _answers(self._checks)
            checks, reasons = _passed(answers), _reasons(answers)
            ready = all(checks.values())
            said = {"ready": ready, "checks": checks} | ({"reasons": reasons} if reasons else {})
            body = json.dumps(said).encode() + b"\n"
            return (200 if ready else 503), "application/json", body
        if path == "/livez":
            checks = await self.liveness()
            if all(checks.values()):
                return 200, "text/plain", b"ok\n"
            body = json.dumps({"alive": False, "checks": checks}).encode() + b"\n"
            return 503, "application/json", body
        return 404, "text/plain", b"try /metrics or /healthz\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                request = await reader.readuntil(b"\r\n\r\n")
            method, path, *_ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            status, content_type, body = await self._respond(method, path)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode("latin-1")
            writer.write(head if method == "HEAD" else head + body)
            await writer.drain()
        except (
            TimeoutError,
            ValueError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
        ):
            pass  # a malformed or abandoned request gets no answer
        finally:
            writer.close()
            with suppress(Exception):
                await writer.wait_closed()


@asynccontextmanager
async def serving(
    registry: CollectorRegistry,
    checks: Mapping[str, Check],
    port: int,
    host: str = "127.0.0.1",
    liveness: Mapping[str, Check] | None = None,
) -> AsyncIterator[ObservabilityServer | None]:
    """The endpoint on ``host`` for the life of the block when ``port`` is set; nothing at 0."""
    if not port:
        yield None
        return
    async with ObservabilityServer(
        registry, checks, port=port, host=host, liveness=liveness
    ) as server:
        yield server
