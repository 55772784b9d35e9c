"""``baton demo`` as ``make demo`` runs it: real processes, crafted failures, books balanced,
and nothing left behind but what was there before."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis
import redis.asyncio as aioredis

from baton.demo import demo_namespace
from baton.runtime import PARTICIPANTS, open_broker, remove_namespace
from messaging.settings import Settings

pytestmark = pytest.mark.integration


def neighbours(namespace: str) -> list[str]:
    """Keys of other deployments near ``namespace``: its own, a sibling sharing its prefix
    up to the separator, and another demo's under it."""
    return [
        f"{namespace}baton:keep",
        f"{namespace.rstrip('.')}-sibling.baton:keep",
        f"{namespace}demo-0.baton:keep",
    ]


def test_demo_finishes_every_saga_with_balanced_books(
    rabbit_url: str, redis_url: str, namespace: str
) -> None:
    """Run under a configured namespace: the demo makes its own below it and removes only that."""
    env = {
        **os.environ,
        "BATON_RABBIT__URL": rabbit_url,
        "BATON_REDIS__URL": redis_url,
        "BATON_NAMESPACE": namespace,
    }
    client = redis.Redis.from_url(redis_url)
    kept = neighbours(namespace)
    try:
        for key in kept:
            client.set(key, 1)
        done = subprocess.run(
            [sys.executable, "-m", "baton", "demo", "--sagas", "60", "--fail-rate", "0.3",
             "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["sagas"] == 60
        assert summary["unfinished"] == 0
        assert summary["failed"] == 0
        assert summary["books_balanced"] is True
        assert summary["completed"] + summary["compensated"] == 60
        assert summary["compensated"] > 0
        assert {"sagas_per_s", "p50_ms", "p99_ms"} <= summary.keys()
        assert all(client.exists(key) for key in kept), "another deployment's keys survive"
        left = {k.decode() for k in client.scan_iter(match=f"{namespace}*")}
        assert left == {kept[0], kept[2]}, "the demo removed what it made, nothing else"
    finally:
        for key in kept:
            client.delete(key)
        client.close()


async def test_clean_up_removes_its_namespace_and_nothing_else(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    own = settings.model_copy(update={"namespace": demo_namespace(settings.namespace)})
    made = [f"{own.namespace}baton:x", f"{own.namespace}ledger:{{books}}:totals"]
    kept = [*neighbours(settings.namespace), f"{own.namespace.rstrip('.')}0.baton:x"]
    try:
        for key in made + kept:
            await redis_client.set(key, 1)
        async with open_broker(own) as broker:
            await broker.declare(PARTICIPANTS)
            await remove_namespace(own, broker)
        assert not any([await redis_client.exists(key) for key in made])
        assert all([await redis_client.exists(key) for key in kept])
    finally:
        await redis_client.delete(*kept)


async def test_clean_up_refuses_the_empty_namespace(settings: Settings) -> None:
    everything = settings.model_copy(update={"namespace": ""})
    async with open_broker(settings) as broker:
        with pytest.raises(ValueError, match="empty namespace"):
            await remove_namespace(everything, broker)


def test_the_demo_namespace_is_fresh_and_under_the_configured_one() -> None:
    first, second = demo_namespace("prod."), demo_namespace("prod.")
    assert first != second
    assert first.startswith("prod.demo-")
    assert Settings(namespace=first).namespace == first
    assert demo_namespace("").startswith("demo-")
