"""The audit chain's verification, the operator's input checks and the bulk ramp, pure."""

from __future__ import annotations

import pytest

from baton.acting import check_actor, check_reason
from baton.bulk import Pacer, Ramp, Where, batches, parse_where
from orchestrator.core.audit import Head, dumps, next_entry, verify
from orchestrator.core.state import SagaStatus


def chain(saga_id: str, n: int) -> list[str]:
    head, raws = Head(), []
    for i in range(n):
        entry = next_entry(head, at=float(i), saga_id=saga_id, action="retry", actor="a",
                           reason="r", result="applied", detail="", batch_id="")  # fmt: skip
        head = Head(entry.seq, entry.hash)
        raws.append(dumps(entry))
    return raws


def test_an_intact_chain_and_each_kind_of_tampering() -> None:
    raws = chain("s", 4)
    assert verify("s", raws, None).intact
    assert verify("s", [], None).intact
    assert verify("s", raws[:3], None).intact, "without the head a cut tail is not seen"
    head = Head.loads(f"4:{verify.__name__}")  # any head other than the last entry's
    assert verify("s", raws[:3], head).problem == "deleted"
    forged = chain("s", 2)[1].replace('"reason":"r"', '"reason":"x"')
    assert (
        verify("s", [raws[0], forged], None).problem,
        verify("s", [raws[0], forged], None).position,
    ) == ("edited", 2)
    assert verify("s", [raws[0], raws[2], raws[1]], None).problem == "reordered"
    assert verify("s", [raws[0], raws[2]], None).problem == "deleted"
    assert verify("s", [raws[0], raws[1], raws[1]], None).problem == "inserted"
    other = chain("t", 2)
    assert verify("s", [raws[0], other[1]], None).problem == "foreign"
    assert verify("s", [raws[0], "{not json"], None).problem == "unreadable"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [("color=red", "unknown key 'color'"), ("status=lost", "status 'lost'"),
     ("status", "not KEY=VALUE"), ("step=", "not KEY=VALUE"),
     ("older-than=soon", "not a number"), ("older-than=-1", "0 or more"),
     ("saga=a,saga=b", "given twice")],
)  # fmt: skip
def test_where_is_parsed_strictly(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_where(text)


def test_a_good_where() -> None:
    assert parse_where("status=failed, step=check_compliance,older-than=600") == Where(
        (SagaStatus.FAILED,), "check_compliance", "", 600.0
    )


@pytest.mark.parametrize("reason", ["", "   ", "a\nb", "x" * 501, "card 4111111111111111"])
def test_a_reason_is_required_and_sane(reason: str) -> None:
    with pytest.raises(ValueError, match="--reason"):
        check_reason(reason)


@pytest.mark.parametrize("actor", ["", " alice", "a" * 65, "tab\there", "4111111111111111"])
def test_an_actor_is_short_and_printable(actor: str) -> None:
    with pytest.raises(ValueError, match="--actor"):
        check_actor(actor)


def test_batches_double_from_the_canary_up_to_a_cap() -> None:
    assert batches(25, Ramp(canary=5)) == [5, 10, 10]
    assert batches(3, Ramp(canary=5)) == [3]
    assert batches(100, Ramp(canary=5, max_batch=20)) == [5, 10, 20, 20, 20, 20, 5]


async def test_the_pacer_spaces_starts_by_the_rate() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    pacer = Pacer(10.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(25):
        await pacer.wait()
    assert now[0] == pytest.approx(2.4), "25 starts at 10/s take 2.4 s after the first"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [(["retry", "s-1"], "--reason is required"),
     (["retry", "s-1", "--reason", "   "], "--reason is required"),
     (["resume", "--reason", "x"], "exactly one of SAGA_ID or --where"),
     (["abort", "s-1", "--where", "status=failed", "--reason", "x"], "exactly one"),
     (["retry", "--where", "colour=red", "--reason", "x"], "unknown key 'colour'"),
     (["retry", "s-1", "--reason", "x", "--actor", ""], "--actor must be"),
     (["retry", "s-1", "--reason", "x", "--note", "y"], "give --reason only"),
     (["retry", "s-1", "--dry-run"], "go with --where")],
)  # fmt: skip
def test_operator_commands_refuse_bad_input_before_connecting(
    args: list[str], complaint: str
) -> None:
    from click.testing import CliRunner

    from baton.cli import main

    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert complaint in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


async def test_a_head_written_over_breaks_the_trail_instead_of_crashing_the_reader() -> None:
    from fakeredis import FakeAsyncRedis

    from orchestrator.runtime.audit_store import AuditStore
    from orchestrator.runtime.keys import KeySpace

    client = FakeAsyncRedis()
    store = AuditStore(client, KeySpace("unit.", 16))
    await store.append("s-1", at=1.0, action="retry", actor="a", reason="r",
                       result="applied", detail="", batch_id="")  # fmt: skip
    assert (await store.trail("s-1")).verdict.intact
    await client.set(store.keys.audit_head("s-1"), "not a head")
    verdict = (await store.trail("s-1")).verdict
    assert (verdict.intact, verdict.problem) == (False, "edited")
    await client.aclose()


async def test_a_bulk_run_stops_when_a_ramp_batch_fails_past_the_error_ratio() -> None:
    """The canary passes, the next batch (4) has 2 refusals: 0.5 > 0.25, so the run stops
    there and the rest is skipped, never acted on."""
    from baton import bulk
    from baton.acting import Outcome
    from orchestrator.core.audit import AuditEntry

    refused = {"s-3", "s-4"}
    acted: list[str] = []

    async def act(saga_id: str) -> Outcome:
        acted.append(saga_id)
        result = "refused" if saga_id in refused else "applied"
        entry = AuditEntry(1, 0.0, saga_id, "retry", "a", "r", result, "", "", "")
        return Outcome(saga_id, result, "", "", entry)

    async def no_wait(_: float) -> None:
        return None

    ids = [f"s-{i}" for i in range(10)]
    ramp = bulk.Ramp(canary=2, rate_per_s=1000, max_error_ratio=0.25)
    summary = await bulk.run(ids, act, ramp, lambda _: None, bulk.Pacer(1000, sleep=no_wait))
    assert summary.batch_sizes == [2, 4]
    assert (summary.acted, summary.failed, summary.skipped) == (4, 2, 4)
    assert "error ratio 0.50" in summary.stopped
    assert sorted(acted) == ids[:6], "nothing after the stopping batch was acted on"
