"""A measured run turned into figures, ratios (Baton / baseline, Baton / floor, SDK / bare
participants' CPU), and the printed table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.table import Table

from baton.load import percentile

GROUPS = ("orchestrator", "participants", "rabbitmq", "redis", "driver")
MB = 1024 * 1024


@dataclass(frozen=True)
class Measured:
    """One side (Baton or baseline) at one concurrency."""

    sagas: int
    latencies_s: list[float]
    elapsed_s: float
    cpu_s: dict[str, float]
    peak_rss: dict[str, int]

    def __add__(self, other: Measured) -> Measured:
        """Two rounds of the same side and concurrency as one measurement."""
        groups = self.cpu_s.keys() | other.cpu_s.keys()
        return Measured(
            self.sagas + other.sagas,
            self.latencies_s + other.latencies_s,
            self.elapsed_s + other.elapsed_s,
            {g: self.cpu_s.get(g, 0.0) + other.cpu_s.get(g, 0.0) for g in groups},
            {g: max(self.peak_rss.get(g, 0), other.peak_rss.get(g, 0)) for g in groups},
        )

    def figures(self) -> dict[str, Any]:
        done = len(self.latencies_s)
        ms = [s * 1000 for s in self.latencies_s]
        cpu = {g: round(self.cpu_s.get(g, 0.0) / max(done, 1) * 1000, 3) for g in GROUPS}
        cpu["total"] = round(sum(self.cpu_s.values()) / max(done, 1) * 1000, 3)
        return {
            "sagas": self.sagas,
            "finished": done,
            "elapsed_s": round(self.elapsed_s, 3),
            "sagas_per_s": round(done / self.elapsed_s, 2) if self.elapsed_s else 0.0,
            "p50_ms": round(percentile(ms, 50), 3),
            "p99_ms": round(percentile(ms, 99), 3),
            "max_ms": round(max(ms, default=0.0), 3),
            "cpu_ms_per_saga": cpu,
            "cpu_s": {g: round(self.cpu_s.get(g, 0.0), 3) for g in GROUPS},
            "peak_rss_mb": {g: round(self.peak_rss.get(g, 0) / MB, 1) for g in GROUPS},
        }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def ratios(baton: dict[str, dict[str, Any]], baseline: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Baton / baseline per concurrency, and CPU per saga over the whole run."""
    found: dict[str, Any] = {}
    for level, ours in baton.items():
        theirs = baseline[level]
        found[f"throughput_{level}"] = _ratio(ours["sagas_per_s"], theirs["sagas_per_s"])
        found[f"p50_{level}"] = _ratio(ours["p50_ms"], theirs["p50_ms"])
        found[f"cpu_per_saga_{level}"] = _ratio(
            ours["cpu_ms_per_saga"]["total"], theirs["cpu_ms_per_saga"]["total"]
        )

    found["cpu_per_saga"] = _ratio(_per_saga(baton), _per_saga(baseline))
    return found


Sides = dict[str, dict[str, Any]]  # one side's figures per level ("c50": figures)


def all_ratios(baton: Sides, baseline: Sides, floor: Sides, bare: Sides) -> dict[str, Any]:
    """``baton bench``'s ``ratios``: Baton / baseline; with the floor measured, Baton / floor
    as ``floor_*`` (what Baton's guarantees cost); with the bare participants measured,
    ``sdk_cpu_ratio*`` (what the SDK costs a participant)."""
    found = ratios(baton, baseline)
    if floor:
        found |= {f"floor_{name}": r for name, r in ratios(baton, floor).items()}
    if bare:
        found |= sdk_cpu_ratios(baseline, bare)
    return found


def sdk_cpu_ratios(sdk: Sides, bare: Sides) -> dict[str, float | None]:
    """The participants' CPU per saga with the SDK (the baseline run) / without it (the bare
    baseline run), per concurrency measured in both and over the whole run."""
    found = {
        f"sdk_cpu_ratio_{level}": _ratio(
            ours["cpu_ms_per_saga"]["participants"], bare[level]["cpu_ms_per_saga"]["participants"]
        )
        for level, ours in sdk.items()
        if level in bare
    }
    found["sdk_cpu_ratio"] = _ratio(_per_saga(sdk, "participants"), _per_saga(bare, "participants"))
    return found


def _per_saga(side: dict[str, dict[str, Any]], group: str | None = None) -> float:
    """CPU seconds per finished saga over every level of ``side``: all groups', or one's."""
    cpu = sum(
        sum(f["cpu_s"].values()) if group is None else f["cpu_s"][group] for f in side.values()
    )
    return float(cpu) / max(int(sum(f["finished"] for f in side.values())), 1)


def table(result: dict[str, Any]) -> Table:
    """One row per side and concurrency: throughput, latency, CPU per saga by group, peak RSS."""
    out = Table(
        "run", "done", "sagas/s", "p50 ms", "p99 ms", "max ms",
        "CPU ms/saga orch+part+rmq+redis+drv = total", "RSS MB orch/part",
        title=f"baton bench: {result['replicas']} orchestrator(s), {result['cores']} cores",
        caption="bare: the baseline against participants without the SDK",
    )  # fmt: skip
    for side in ("baseline", "baton", "floor", "bare_baseline"):
        label = "bare" if side == "bare_baseline" else side
        for level, f in result.get(side, {}).items():
            cpu = f["cpu_ms_per_saga"]
            rss = f["peak_rss_mb"]
            out.add_row(
                f"{label} {level}", f"{f['finished']}/{f['sagas']}", f"{f['sagas_per_s']:.1f}",
                f"{f['p50_ms']:.2f}", f"{f['p99_ms']:.2f}", f"{f['max_ms']:.2f}",
                "+".join(f"{cpu[g]:.1f}" for g in GROUPS) + f" = {cpu['total']:.1f}",
                f"{rss['orchestrator']:.0f}/{rss['participants']:.0f}",
            )  # fmt: skip
    return out
