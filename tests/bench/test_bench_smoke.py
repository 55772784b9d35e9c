"""A small ``baton bench`` run in every ``make test``: it keeps the benchmark working.

Nothing here asserts on a timing or a ratio's value (this machine is shared and noisy);
only that the run finishes every saga of every side and reports what it promises.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.integration

GROUPS = {"orchestrator", "participants", "rabbitmq", "redis", "driver"}


def _bench(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "baton", "bench", *args, "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.timeout(600)
def test_bench_runs_both_sides_and_reports_ratios() -> None:
    result = _bench(
        "--concurrency", "1,20", "--sagas", "150", "--warmup", "5", "--rounds", "2", "--no-floor"
    )  # fmt: skip
    assert result["all_finished"] is True
    assert result["rounds"] == 2
    assert "floor" not in result  # --no-floor
    assert "floor_ratios" not in result
    for side in ("baton", "baseline", "bare_baseline"):
        assert set(result[side]) == {"c1", "c20"}
        for figures in result[side].values():
            assert figures["finished"] == figures["sagas"] > 0  # both rounds counted
            assert figures["sagas"] in (150, 50)  # c1 runs a fifth, at least 50
            assert figures["sagas_per_s"] > 0
            assert figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
            assert set(figures["cpu_ms_per_saga"]) == GROUPS | {"total"}
            assert set(figures["peak_rss_mb"]) == GROUPS
    ratios = result["ratios"]
    for name in ("throughput_c1", "throughput_c20", "p50_c1", "cpu_per_saga"):
        assert isinstance(ratios[name], float)
    _positive(ratios, "sdk_cpu_ratio_c1", "sdk_cpu_ratio_c20", "sdk_cpu_ratio")
    assert not any(name.startswith("floor_") for name in ratios)
    for figures in result["bare_baseline"].values():  # the bare processes, counted as such
        assert figures["cpu_ms_per_saga"]["participants"] > 0


def _positive(found: dict[str, Any], *names: str) -> None:
    for name in names:
        assert isinstance(found[name], float), (name, found.get(name))
        assert found[name] > 0, (name, found[name])


@pytest.mark.timeout(300)
def test_bench_floor_runs_the_stateless_relay_in_the_orchestrators_place() -> None:
    result = _bench("--concurrency", "1,10", "--sagas", "60", "--warmup", "5", "--rounds", "1")
    assert result["all_finished"] is True  # the floor without --floor: it is on by default
    floor = result["floor"]["c10"]
    assert floor["finished"] == floor["sagas"] == 60
    assert floor["cpu_ms_per_saga"]["orchestrator"] > 0  # the relay's CPU, counted in its place
    assert isinstance(result["floor_ratios"]["throughput_c10"], float)  # floor / baseline
    _positive(  # Baton / floor, named after the levels
        result["ratios"], "floor_throughput_c1", "floor_throughput_c10", "floor_p50_c1",
        "floor_p50_c10", "floor_cpu_per_saga_c10", "floor_cpu_per_saga",
        "sdk_cpu_ratio_c1", "sdk_cpu_ratio_c10", "sdk_cpu_ratio",
    )  # fmt: skip


@pytest.mark.timeout(300)
def test_bench_memory_reports_bytes_per_finished_saga() -> None:
    result = _bench("--memory", "--memory-sagas", "200")
    assert result["sagas"] == 200
    assert result["saga_keys_bytes"] > 0
    assert result["history_entries"] > 0
