"""Scale-out figures (issue 12): ``baton bench`` on one node and on the clusters, back to back.

Usage: ``python -m tests.bench.scale_out`` (``make bench-cluster``). It starts a three-node
RabbitMQ cluster and a Redis Cluster of three primaries with a replica each on spare ports
(tests/support/), then runs ``baton bench --json`` on:

* the single RabbitMQ node and Redis server (``BATON_*__URL`` or the local ones): the
  reference, with classic queues and no WAIT, as `make bench` measures;
* the clusters with quorum queues and durable writes (WAIT 1), with 1, 2 and 3
  orchestrator replicas;
* the clusters with quorum queues and no WAIT, one replica: what WAIT costs.

Prints a table and, last, one JSON line: each run's throughput, p50 and CPU per saga at each
concurrency, and their ratios to the single node measured in the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.support.rabbit_cluster import RabbitCluster
from tests.support.redis_cluster import RedisClusterServers

LEVELS = os.environ.get("BATON_SCALE_LEVELS", "1,50,200")
SAGAS = os.environ.get("BATON_SCALE_SAGAS", "1500")


def bench(env: dict[str, str], replicas: int) -> dict[str, Any]:
    """One ``baton bench --json`` run; its JSON line."""
    args = [sys.executable, "-m", "baton", "bench", "--json", "--rounds", "1", "--no-floor",
            "--concurrency", LEVELS, "--sagas", SAGAS, "--replicas", str(replicas)]  # fmt: skip
    done = subprocess.run(
        args, env={**os.environ, "BATON_BENCH_QUIET_LOGS": "1", **env},
        capture_output=True, text=True, check=True, timeout=1800,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def figures(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {
        level: {
            "sagas_per_s": run["sagas_per_s"],
            "p50_ms": run["p50_ms"],
            "cpu_ms_per_saga": run["cpu_ms_per_saga"]["total"],
        }
        for level, run in result["baton"].items()
    }


def main() -> int:
    rabbit, redis = RabbitCluster("baton-scale"), RedisClusterServers("baton-scale")
    try:
        redis.start()
        rabbit.start()
        cluster = {"BATON_RABBIT__URL": rabbit.url, "BATON_REDIS__URL": redis.url,
                   "BATON_RABBIT__QUEUE_TYPE": "quorum"}  # fmt: skip
        runs = {"single node": figures(bench({}, 1))}
        for replicas in (1, 2, 3):
            durable = {**cluster, "BATON_REDIS__DURABLE_REPLICAS": "1"}
            runs[f"cluster, WAIT 1, {replicas} replica(s)"] = figures(bench(durable, replicas))
        runs["cluster, no WAIT, 1 replica"] = figures(bench(cluster, 1))
    finally:
        rabbit.close()
        redis.close()
    reference = runs["single node"]
    for name, levels in runs.items():
        for level, row in levels.items():
            base = reference[level]
            row["throughput_vs_single"] = round(row["sagas_per_s"] / base["sagas_per_s"], 3)
            row["cpu_vs_single"] = round(row["cpu_ms_per_saga"] / base["cpu_ms_per_saga"], 3)
            print(
                f"{name:32} {level:>5} {row['sagas_per_s']:8.1f}/s"
                f" p50 {row['p50_ms']:7.1f} ms cpu {row['cpu_ms_per_saga']:6.1f} ms/saga"
                f"  x{row['throughput_vs_single']:.2f} throughput,"
                f" x{row['cpu_vs_single']:.2f} cpu"
            )
    print(json.dumps({"cores": os.cpu_count(), "levels": LEVELS, "sagas": SAGAS, "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
