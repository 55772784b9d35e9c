"""``baton demo`` as ``make demo`` runs it: real processes, crafted failures, books balanced."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_finishes_every_saga_with_balanced_books(rabbit_url: str, redis_url: str) -> None:
    env = {**os.environ, "BATON_RABBIT__URL": rabbit_url, "BATON_REDIS__URL": redis_url}
    env.pop("BATON_NAMESPACE", None)  # the demo picks a namespace of its own and removes it
    done = subprocess.run(
        [sys.executable, "-m", "baton", "demo", "--sagas", "60", "--fail-rate", "0.3", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["sagas"] == 60
    assert summary["unfinished"] == 0
    assert summary["failed"] == 0
    assert summary["books_balanced"] is True
    assert summary["completed"] + summary["compensated"] == 60
    assert summary["compensated"] > 0
    assert {"sagas_per_s", "p50_ms", "p99_ms"} <= summary.keys()
