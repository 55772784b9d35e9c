"""``baton demo --saga checkout``: the checkout package end to end as real processes (five
Python participants from the package's manifest, the Node.js shipping participant, the
orchestrator), failures injected at every step that can refuse, the package's invariants
checked, and nothing left behind in the namespace it ran under."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from contracts.topology import Topology
from messaging.transport.amqp import Broker
from tests.support.node import npm_installed

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SHIPPING = ROOT / "examples" / "checkout" / "node" / "shipping"
SAGAS = 30
PARTICIPANTS = ("inventory", "fraud", "review", "wallet", "shipping", "notification")


def demo(
    namespace: str, rabbit_url: str, redis_url: str, *args: str, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``baton demo --saga checkout ARGS`` under ``namespace`` (``path``: another PATH)."""
    env = {
        **os.environ,
        "BATON_RABBIT__URL": rabbit_url,
        "BATON_REDIS__URL": redis_url,
        "BATON_NAMESPACE": namespace,
        **({"PATH": path} if path is not None else {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "baton", "demo", "--saga", "checkout", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


async def queues_left(rabbit_url: str, namespace: str) -> list[str]:
    """The checkout participants' queues and the exchanges still there under ``namespace``."""
    topology = Topology(namespace=namespace)
    every = [*(f"queue {q}" for q in topology.all_queues(PARTICIPANTS)),
             *(f"exchange {e}" for e in topology.exchanges)]  # fmt: skip
    broker = await Broker.connect(rabbit_url, topology)
    try:
        absent = await broker.missing(topology.all_queues(PARTICIPANTS), topology.exchanges)
    finally:
        await broker.close()
    return [name for name in every if name not in absent]


async def test_the_checkout_demo_finishes_every_order_with_its_invariants_holding(
    rabbit_url: str, redis_url: str, namespace: str
) -> None:
    npm_installed(SHIPPING)  # skipped without node; `npm ci` first when node_modules is missing
    client = redis.Redis.from_url(redis_url)
    try:
        done = await asyncio.to_thread(
            demo, namespace, rabbit_url, redis_url, "--sagas", str(SAGAS), "--fail-rate", "0.2",
            "--json",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["sagas"] == SAGAS
        assert summary["unfinished"] == 0
        assert summary["failed"] == 0
        assert summary["completed"] + summary["compensated"] == SAGAS
        assert summary["completed"] > 0
        assert summary["compensated"] == sum(summary["compensated_by_step"].values()) > 0
        assert set(summary["compensated_by_step"]) <= {
            "reserve_inventory", "screen_fraud", "manual_review", "authorize_payment",
        }  # fmt: skip
        assert summary["invariants"] == {
            "package": "checkout", "balanced": True, "problems": [], "checked": True,
        }  # fmt: skip
        assert summary["books_balanced"] is True
        assert summary["participants"] == {
            "inventory": "python", "fraud": "python", "review": "python", "wallet": "python",
            "shipping": "node", "notification": "python",
        }  # fmt: skip
        assert {"sagas_per_s", "p50_ms", "p99_ms", "elapsed_s"} <= summary.keys()
        left = [k.decode() for k in client.scan_iter(match=f"{namespace}*")]
        assert left == [], "the demo removed its keys: the sagas and its world"
        own = re.search(r"namespace (\S+)", done.stderr)
        assert own is not None
        assert own.group(1).startswith(f"{namespace}demo-")
        assert await queues_left(rabbit_url, own.group(1)) == [], "and its queues, exchanges"
    finally:
        for key in client.scan_iter(match=f"{namespace}*"):
            client.delete(key)
        client.close()


def test_the_checkout_demo_without_node_says_so_in_one_line(
    rabbit_url: str, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """No ``node`` on the PATH: exit 2 and one line saying what is missing, before anything
    is declared or started."""
    folders = os.environ.get("PATH", "").split(os.pathsep)
    without_node = [p for p in folders if p and shutil.which("node", path=p) is None]
    done = demo(namespace, rabbit_url, redis_url, "--sagas", "3",
                path=os.pathsep.join([str(tmp_path), *without_node]))  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "node is not installed" in lines[0]
    assert "Traceback" not in done.stderr
