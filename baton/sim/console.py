"""What ``baton sim`` prints: the seeds first, each failing seed with how to replay it, the
trace of a single seed on request, and one JSON object (or a short summary) last."""

from __future__ import annotations

import json
from dataclasses import replace

import click

from baton.sim.plan import PlanConfig
from baton.sim.report import Report, run_seeds
from baton.sim.run import SeedResult, SimConfig, run_seed

TRACE_TAIL = 60  # lines of a failing seed's trace shown in a many-seed run


def simulate(
    *, seeds: int, first: int, only: int | None, trace: bool, as_json: bool, jobs: int | None,
    sagas: int,
) -> int:  # fmt: skip
    """Run the seeds (or replay ``only``); exit status 1 when any invariant broke."""
    config = SimConfig(plan=replace(PlanConfig(), sagas=sagas))
    if only is not None:
        click.echo(f"baton sim: seed {only}")
        result = run_seed(only, config)
        if trace:
            for line in result.trace:
                click.echo(line)
        report = Report()
        report.add(result)
        report.elapsed_s = result.real_s
        _verdict(result, tail=0 if trace else TRACE_TAIL)
    else:
        click.echo(f"baton sim: seeds {first}..{first + seeds - 1}")
        report = run_seeds(range(first, first + seeds), config, jobs=jobs,
                           on_result=lambda r: _verdict(r, tail=TRACE_TAIL))  # fmt: skip
    summary = report.summary()
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"{summary['seeds']} seeds, {summary['sagas']} sagas, {summary['violations']} "
            f"violations in {len(summary['failing_seeds'])} seeds; outcomes "
            f"{summary['outcomes']}; {summary['seeds_per_s']} seeds/s"
        )
    return 1 if report.violations else 0


def _verdict(result: SeedResult, *, tail: int) -> None:
    """A failing seed: its violations, the end of its trace, and the replay command."""
    if result.ok:
        return
    click.echo(f"seed {result.seed} FAILED ({len(result.violations)} violations):", err=True)
    for line in result.violations:
        click.echo(f"  {line}", err=True)
    if tail:
        click.echo(f"  last {tail} lines of its trace:", err=True)
        for line in result.trace[-tail:]:
            click.echo(f"    {line}", err=True)
    click.echo(f"  replay: baton sim --seed {result.seed} --trace", err=True)
