"""``baton`` tools: schema, demo, bench, sim, keys."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import click
from click.core import ParameterSource

from baton.cli.base import _run, _settings, main
from baton.runtime import wait_for_redis
from baton.signing_files import write_signing_files
from messaging.errors import SealingKeyError
from messaging.settings import Settings
from messaging.trust.sealing import ACTIVE_VARIABLE, KEYS_VARIABLE, with_new_key
from messaging.trust.signing import KeySet, public_keys_of


async def _redis_first(settings: Settings, work: Callable[[], Awaitable[int]]) -> int:
    """Ping Redis before ``work``: a run that spawns processes needing it fails in one line
    at once, instead of waiting for processes that cannot start."""
    await wait_for_redis(settings)
    return await work()


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Write asyncapi.json and schemas/<name>.json (self-contained) here instead of printing.",
)
@click.pass_context
def schema(ctx: click.Context, out: str | None) -> None:
    """The AsyncAPI 3.0 document of the topology, and every contract's JSON Schema."""
    from baton.asyncapi import (  # noqa: PLC0415 - keeps other commands light
        BrokerInfo,
        asyncapi_document,
        schema_files,
    )
    from baton.runtime import load_catalog  # noqa: PLC0415

    settings = _settings(ctx)
    catalog = load_catalog(settings)
    broker = BrokerInfo.from_url(str(settings.rabbit.url), settings.rabbit.queue_type)
    document = asyncapi_document(catalog.contracts, catalog.all(), settings.topology, broker)
    if out is None:
        click.echo(json.dumps(document, indent=2))
        return
    target = Path(out)
    (target / "schemas").mkdir(parents=True, exist_ok=True)
    (target / "asyncapi.json").write_text(json.dumps(document, indent=2) + "\n")
    files = schema_files(document)
    for name, body in files.items():
        (target / "schemas" / name).write_text(json.dumps(body, indent=2) + "\n")
    click.echo(f"wrote {target / 'asyncapi.json'} and {len(files)} schemas")


@main.command()
@click.option(
    "--saga", default="payment", show_default=True, type=click.Choice(["payment", "checkout"]),
    help="Which saga: the card payment, or the checkout example (Python and Node.js).",
)  # fmt: skip
@click.option("--sagas", default=200, show_default=True, help="How many sagas to start.")
@click.option(
    "--fail-rate", default=0.2, show_default=True, type=click.FloatRange(0, 1),
    help="Share crafted to fail, spread over the steps that can refuse.",
)  # fmt: skip
@click.option("--concurrency", default=50, show_default=True, help="Sagas in flight at once.")
@click.option("--json", "as_json", is_flag=True, help="End with one JSON summary line.")
@click.option("--keep", is_flag=True, help="Keep the demo's queues and keys afterwards.")
@click.pass_context
def demo(
    ctx: click.Context, saga: str, sagas: int, fail_rate: float, concurrency: int,
    as_json: bool, keep: bool,
) -> None:  # fmt: skip
    """Run a saga end to end: orchestrator, its participants, a stream of starts, the
    package's invariants. Exit 1 when a saga did not finish cleanly or the invariants
    broke, 2 when the demo cannot run here (e.g. no Node.js for the checkout)."""
    from baton.demo import DemoOptions, run_demo  # noqa: PLC0415 - keeps other commands light

    options = DemoOptions(
        sagas=sagas, fail_rate=fail_rate, concurrency=concurrency, as_json=as_json, keep=keep,
        saga=saga,
    )  # fmt: skip
    settings = _settings(ctx)
    _run(_redis_first(settings, lambda: run_demo(settings, options)))


def _levels(_: click.Context, __: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError as exc:
        raise click.BadParameter("a comma-separated list of integers, e.g. 1,50,200") from exc
    if not levels or min(levels) < 1:
        raise click.BadParameter("at least one concurrency, each at least 1")
    return levels


@main.command()
@click.option(
    "--concurrency", "levels", default="1,50,200", show_default=True, callback=_levels,
    help="Sagas in flight, comma-separated; one measurement per value.",
)  # fmt: skip
@click.option("--sagas", default=2000, show_default=True, help="Sagas per concurrency (c1: 1/5).")
@click.option("--replicas", default=1, show_default=True, help="Orchestrator processes.")
@click.option(
    "--rounds", default=3, show_default=True, type=click.IntRange(1),
    help="Times baseline and Baton alternate per concurrency (spreads the machine's drift).",
)  # fmt: skip
@click.option(
    "--floor/--no-floor", default=True, show_default=True,
    help="Also run a stateless relay with Baton's message flow: the least any orchestrator costs.",
)  # fmt: skip
@click.option(
    "--parallel",
    is_flag=True,
    help="Also run the payment saga with its independent steps in a parallel group.",
)
@click.option("--warmup", default=50, show_default=True, help="Unmeasured sagas before each run.")
@click.option("--memory", is_flag=True, help="Measure Redis bytes per finished saga instead.")
@click.option("--memory-sagas", default=100_000, show_default=True, help="Sagas for --memory.")
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
@click.pass_context
def bench(
    ctx: click.Context,
    levels: tuple[int, ...],
    sagas: int,
    replicas: int,
    rounds: int,
    floor: bool,
    parallel: bool,
    warmup: int,
    memory: bool,
    memory_sagas: int,
    as_json: bool,
) -> None:
    """Benchmark Baton against a raw aio-pika command/reply baseline on this machine."""
    from baton.bench import BenchOptions, run_bench, run_memory  # noqa: PLC0415 - heavy, rare

    settings = _settings(ctx)
    if memory:
        _run(_redis_first(settings, lambda: run_memory(settings, memory_sagas, as_json)))
    options = BenchOptions(
        levels=levels, sagas=sagas, replicas=replicas, rounds=rounds, floor=floor,
        parallel=parallel, warmup=warmup, as_json=as_json,
    )  # fmt: skip
    _run(_redis_first(settings, lambda: run_bench(settings, options)))


@main.command()
@click.option("--seeds", default=200, show_default=True, help="How many seeded worlds to run.")
@click.option("--first", default=0, show_default=True, help="The first seed.")
@click.option("--seed", "only", type=int, default=None, help="Replay this one seed alone.")
@click.option("--trace", is_flag=True, help="With --seed: print its whole event trace.")
@click.option("--sagas", default=5, show_default=True, help="Payments per world.")
@click.option("--jobs", type=int, default=None, help="Worker processes (default: one per core).")
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line of totals.")
def sim(
    seeds: int, first: int, only: int | None, trace: bool, sagas: int, jobs: int | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Deterministic simulation: the real engine, SDK and payment handlers in memory, under
    seeded faults; exit 1 when an invariant broke (each failing seed says how to replay it)."""
    from baton.sim.console import simulate  # noqa: PLC0415 - keeps other commands light

    code = simulate(seeds=seeds, first=first, only=only, trace=trace, as_json=as_json,
                    jobs=jobs, sagas=sagas)  # fmt: skip
    sys.exit(code)


@main.group()
def keys() -> None:
    """Create keys: for signing messages, and for sealing sensitive fields at rest."""


@keys.command("sealing")
@click.option("--id", "key_id", default=None, help="Key id (default: s<today>, e.g. s20250131).")
@click.pass_context
def keys_sealing(ctx: click.Context, key_id: str | None) -> None:
    """Add a new AES-256 sealing key to BATON_SEALING__KEYS and make it the active one.

    Prints the two variables to set on every orchestrator and participant. The older keys
    stay listed, so what they sealed still opens (rotation); drop one only once nothing
    sealed with it is left (docs/operations.md).
    """
    settings = _settings(ctx)
    new_id = key_id or f"s{datetime.now(UTC):%Y%m%d}"
    try:
        updated = with_new_key(settings.sealing.keys.get_secret_value(), new_id)
    except SealingKeyError as exc:
        click.echo(f"baton keys sealing: {exc}", err=True)
        sys.exit(2)
    click.echo(f"{KEYS_VARIABLE}='{updated}'")
    click.echo(f"{ACTIVE_VARIABLE}={new_id}")


@keys.command("generate")
@click.argument("signers", nargs=-1, required=True)
@click.option("--json", "form", flag_value="json", default=True, help="One JSON document.")
@click.option("--env", "form", flag_value="env", help="BATON_SIGNING__* lines per signer.")
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, metavar="DIR",
    help="Write DIR/<signer>.json (mode 0600) instead of printing; never overwrites.",
)  # fmt: skip
@click.pass_context
def keys_generate(
    ctx: click.Context, signers: tuple[str, ...], form: str, out: Path | None
) -> None:
    """A fresh Ed25519 signing key for each of SIGNERS (orchestrator, payment, cli, ...).

    --json prints, per signer, a complete signing file (its private key, everyone's public
    keys) to mount as BATON_SIGNING__FILE; --env the same as variables; --out DIR writes each
    signing file as DIR/<signer>.json, readable by its owner only, and prints only the paths.
    The private keys are secrets: this is the only command that prints one. Rotation:
    docs/operations.md.
    """
    generated = KeySet.generate(dict.fromkeys(signers))
    if out is not None:
        if ctx.get_parameter_source("form") is not ParameterSource.DEFAULT:
            click.echo("baton keys generate: --out writes files: drop --json/--env", err=True)
            sys.exit(2)
        sys.exit(write_signing_files(generated, out))
    if form == "json":
        click.echo(json.dumps({s: generated.settings(s) for s in generated.keys}, indent=2))
        return
    for signer in generated.keys:
        click.echo(f"# {signer}")
        for name, value in generated.env(signer).items():
            if not name.endswith("__FILE"):
                click.echo(f"{name}={shlex.quote(value)}")


@keys.command("public")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def keys_public(file: Path) -> None:
    """The public key of the signing file FILE, as JSON to merge into BATON_SIGNING__PUBLIC_KEYS."""
    try:
        public = public_keys_of(file)
    except (OSError, ValueError, KeyError, TypeError):  # never echo the content: a secret
        click.echo(f"baton keys public: {file} is not a signing file (signer, key_id, "
                   "private_key)", err=True)  # fmt: skip
        sys.exit(2)
    click.echo(json.dumps(public))
