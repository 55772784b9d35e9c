"""``baton bench``: Baton's saga throughput, latency and cost against a raw round trip."""

from baton.bench.memory import run_memory
from baton.bench.run import BenchOptions, run_bench

__all__ = ["BenchOptions", "run_bench", "run_memory"]
