"""``baton bench``'s ratios from figures: Baton / baseline, Baton / floor (``floor_*``) and
the SDK participants' CPU over the bare ones' (``sdk_cpu_ratio*``), named after the levels.

Pure arithmetic on figures documents; no broker, no timing.
"""

from __future__ import annotations

from typing import Any

from baton.bench.bare import _context
from baton.bench.figures import Measured, all_ratios, sdk_cpu_ratios
from contracts import envelope as env
from participants.payments.noop import noop_answers


def _figures(sagas: int, elapsed_s: float, latency_s: float, cpu_s: dict[str, float]) -> Any:
    return Measured(sagas, [latency_s] * sagas, elapsed_s, cpu_s, {}).figures()


BATON = {
    "c1": _figures(50, 5.0, 0.1, {"orchestrator": 1.0, "participants": 0.5}),
    "c50": _figures(100, 2.0, 0.4, {"orchestrator": 2.0, "participants": 1.0}),
}
BASELINE = {
    "c1": _figures(50, 1.0, 0.02, {"participants": 0.5}),
    "c50": _figures(100, 1.0, 0.2, {"participants": 1.0}),
}
FLOOR = {
    "c1": _figures(50, 2.5, 0.05, {"orchestrator": 0.25, "participants": 0.5}),
    "c50": _figures(100, 1.0, 0.2, {"orchestrator": 0.5, "participants": 1.0}),
}
BARE = {
    "c1": _figures(50, 1.0, 0.02, {"participants": 0.25}),  # half the SDK's
    "c50": _figures(100, 1.0, 0.2, {"participants": 0.25}),  # a quarter
}


def test_floor_ratios_are_baton_over_floor_per_level_and_overall() -> None:
    found = all_ratios(BATON, BASELINE, FLOOR, {})
    assert found["throughput_c1"] == 0.2  # Baton / baseline, unchanged
    assert found["floor_throughput_c1"] == 0.5  # 10 / 20 sagas/s
    assert found["floor_throughput_c50"] == 0.5  # 50 / 100
    assert found["floor_p50_c1"] == 2.0  # 100 / 50 ms
    assert found["floor_cpu_per_saga_c50"] == 2.0  # 30 / 15 ms
    assert found["floor_cpu_per_saga"] == 2.0  # 4.5 s / 150 over 2.25 s / 150
    assert not any(name.startswith("sdk_cpu_ratio") for name in found)


def test_sdk_cpu_ratio_is_sdk_participants_cpu_over_bare_per_level_and_overall() -> None:
    assert sdk_cpu_ratios(BASELINE, BARE) == {
        "sdk_cpu_ratio_c1": 2.0,
        "sdk_cpu_ratio_c50": 4.0,
        "sdk_cpu_ratio": 3.0,  # 1.5 s / 150 sagas over 0.5 s / 150 sagas
    }
    found = all_ratios(BATON, BASELINE, {}, BARE)
    assert found["sdk_cpu_ratio"] == 3.0
    assert not any(name.startswith("floor_") for name in found)


def test_sdk_cpu_ratio_without_bare_cpu_is_none_not_a_division_error() -> None:
    idle = {"c1": _figures(50, 1.0, 0.02, {"participants": 0.0})}
    assert sdk_cpu_ratios({"c1": BASELINE["c1"]}, idle)["sdk_cpu_ratio_c1"] is None


def test_bare_participants_answer_with_the_noop_sdk_participants_replies() -> None:
    """The bare replies carry what the baseline's next command is built from."""
    headers = {env.H_SAGA_ID: b"s1", env.H_STEP: "authorize_payment", env.H_EFFECT_ID: "e" * 32,
               env.H_ATTEMPT: 1}  # fmt: skip
    ctx = _context(headers, "m1")
    assert (ctx.saga_id, ctx.step, ctx.attempt, ctx.phase) == (
        "s1",
        "authorize_payment",
        1,
        "forward",
    )
    replies = {name: [build(ctx) for _, build in noop_answers(name)] for name in ("payment", "pci")}
    assert replies["payment"][0].model_dump()["hold_id"] == f"hold_{'e' * 16}"
    assert replies["pci"][0].model_dump()["attestation_id"] == f"att_{'e' * 16}"
