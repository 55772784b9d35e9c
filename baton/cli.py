"""The ``baton`` command: run the orchestrator or a participant, start and inspect sagas, operate.

This is the composition root: the only code that reads the environment, configures logging
and opens connections.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import click
import structlog
from pydantic import ValidationError

from baton import operate
from baton.check import check_command
from baton.policies import (
    DEAD_MAX_LENGTH,
    START_MAX_LENGTH,
    PolicyError,
    apply_policies,
    management_url_of,
    queue_policies,
    vhost_of,
    with_credentials,
)
from baton.runtime import load_catalog, open_broker, open_runtime, stop_on_signals
from messaging.errors import DefinitionError, SealingKeyError
from messaging.health import broker_ready, consumer_alive, serving
from messaging.logs import configure_logging, masked
from messaging.otel import enable_otlp
from messaging.sealing import ACTIVE_VARIABLE, KEYS_VARIABLE, with_new_key
from messaging.settings import Settings
from messaging.signing import ORCHESTRATOR, Keyring, KeySet, public_keys_of
from orchestrator.effects import OperatorAction


def _run(work: Coroutine[Any, Any, int]) -> None:
    """Run on uvloop where available; exit with the coroutine's code.

    No usable sealing key is one line on stderr naming the variable, exit 2: a process
    that would keep card data in clear refuses to start.
    """
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, absent on some platforms
    except ImportError:  # pragma: no cover
        runner: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run
    else:
        runner = uvloop.run
    try:
        code = runner(work)
    except SealingKeyError as exc:
        click.echo(f"baton: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # one line, passwords masked; the traceback at debug level only
        structlog.get_logger("baton.cli").debug("command_failed", exc_info=True)
        click.echo(f"baton: {masked(str(exc) or type(exc).__name__)}", err=True)
        sys.exit(1)
    sys.exit(code)


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Baton: a saga orchestrator over RabbitMQ and Redis. Settings come from BATON_* variables."""
    try:
        settings = Settings()
    except ValidationError as exc:  # one line per bad variable; never the value (a password)
        for error in exc.errors():
            name = "BATON_" + "__".join(str(part) for part in error["loc"]).upper()
            click.echo(f"baton: {name}: {masked(error['msg'])}", err=True)
        sys.exit(2)
    configure_logging(settings.log.level, settings.log.format)
    ctx.obj = settings


# -- running processes --------------------------------------------------------------------


@main.command()
@click.pass_context
def orchestrator(ctx: click.Context) -> None:
    """Run one orchestrator replica until SIGTERM (run several for availability)."""
    settings = _settings(ctx)
    enable_otlp("baton-orchestrator")  # only when OTEL_EXPORTER_OTLP_ENDPOINT is set

    async def work() -> int:
        async with open_runtime(settings, wait_s=settings.rabbit.connect_wait_s) as rt:
            checks = {"rabbitmq": broker_ready(rt.broker), "redis": rt.store.ping}
            registry = rt.orchestrator.metrics.registry
            stop = stop_on_signals()
            queues, exchanges = rt.broker.topology.orchestrator_needs(rt.catalog.participants)
            alive = {"consumers": consumer_alive(rt.broker, rt.orchestrator.failures)}
            async with serving(registry, checks, settings.metrics.port, settings.metrics.host,
                               liveness=alive):  # fmt: skip
                if not await rt.broker.wait_for(queues, exchanges, stop):  # baton declare's
                    return 0
                try:
                    await rt.orchestrator.run(stop)
                except DefinitionError as exc:  # refused to start: say why in one line
                    click.echo(f"baton orchestrator: {exc}", err=True)
                    return 1
        return 0

    _run(work())


@main.command("bench-floor", hidden=True)
@click.pass_context
def bench_floor(ctx: click.Context) -> None:
    """The stateless relay ``baton bench --floor`` measures (until SIGTERM)."""
    from baton.bench.floor import FloorRelay  # noqa: PLC0415 - bench only

    settings = _settings(ctx)

    async def work() -> int:
        keyring = Keyring.from_settings(settings.signing, role=ORCHESTRATOR)  # signs commands
        relay = FloorRelay(
            str(settings.rabbit.url), settings.topology, keyring, prefetch=settings.rabbit.prefetch
        )
        await relay.run(stop_on_signals())
        return 0

    _run(work())


@main.command()
@click.argument("name")
@click.option(
    "--app", default=None, metavar="MODULE:FACTORY",
    help="Run this handlers factory, factory(redis, namespace) -> Handlers, as NAME.",
)  # fmt: skip
@click.option(
    "--package", type=click.Path(path_type=Path), default=None,
    help="Take NAME from this saga package's participants [default: the configured and "
    "bundled packages].",
)  # fmt: skip
@click.option("--noop", is_flag=True, help="Answer every command at once (for `baton bench`).")
@click.pass_context
def participant(
    ctx: click.Context, name: str, app: str | None, package: Path | None, noop: bool
) -> None:
    """Run the participant NAME until SIGTERM: a package's (payment, risk, pci, transaction,
    inventory ...) or, with --app, any written with the worker SDK.

    Exit 2 when NAME, --app or --package names nothing runnable.
    """
    from baton.participants import ParticipantNotFound, locate  # noqa: PLC0415 - composition root
    from participants.sdk.run import run_worker  # noqa: PLC0415

    settings = _settings(ctx)
    try:
        found = locate(
            name, app=app, package=package, configured=settings.orchestrator.packages, noop=noop
        )
    except ParticipantNotFound as exc:
        click.echo(f"baton participant: {exc}", err=True)
        sys.exit(2)
    enable_otlp(f"baton-{name}")  # only when OTEL_EXPORTER_OTLP_ENDPOINT is set

    async def work() -> int:
        await run_worker(name, found.factory, settings, stop_on_signals())
        return 0

    _run(work())


@main.command()
@click.option(
    "--policies", is_flag=True,
    help="Also set the queue limits as policies, through the management API.",
)  # fmt: skip
@click.option(
    "--management-url", default=None,
    help="Management API base URL [default: the broker's host, port 15672, same user].",
)  # fmt: skip
@click.option(
    "--start-max-length",
    default=START_MAX_LENGTH,
    show_default=True,
    type=click.IntRange(1),
    help="Starts the start queue holds; more are refused.",
)
@click.option(
    "--dead-max-length",
    default=DEAD_MAX_LENGTH,
    show_default=True,
    type=click.IntRange(1),
    help="Messages each dead-letter queue holds.",
)
@click.pass_context
def declare(
    ctx: click.Context,
    policies: bool,
    management_url: str | None,
    start_max_length: int,
    dead_max_length: int,
) -> None:
    """Declare the RabbitMQ topology (exchanges, queues, dead-letter queues) and its limits.

    The only command that creates the topology: run it with the administrative broker user
    before the services start (they only check that it exists, and wait for it).
    """
    settings = _settings(ctx)
    participants = load_catalog(settings).participants
    limits = queue_policies(
        settings.topology, start_max_length=start_max_length, dead_max_length=dead_max_length
    )
    url = str(settings.rabbit.url)

    async def work() -> int:
        async with open_broker(settings) as broker:
            await broker.declare(participants)
        click.echo(f"declared topology for {', '.join(participants)}")
        if not policies:
            click.echo("queue limits: set by deploy/rabbitmq/definitions.json, or add --policies")
            return 0
        try:
            base = with_credentials(management_url or management_url_of(url), url)
            await apply_policies(base, vhost_of(url), limits)
        except PolicyError as exc:
            click.echo(f"baton declare: {exc}", err=True)
            return 1
        click.echo(f"policies set: {', '.join(p.name for p in limits)}")
        return 0

    _run(work())


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--render", "secrets", default=None, type=click.Path(file_okay=False, exists=True),
    help="Write --definitions and --acl from the credentials in this directory's *.env files.",
)  # fmt: skip
@click.option("--definitions", default="deploy/rabbitmq/definitions.json", show_default=True)
@click.option("--acl", default="deploy/redis/users.acl", show_default=True)
@click.pass_context
def access(
    ctx: click.Context, as_json: bool, secrets: str | None, definitions: str, acl: str
) -> None:
    """Each service's broker permissions and Redis ACL rules (least privilege)."""
    from baton.access import matrix  # noqa: PLC0415 - keeps other commands light
    from baton.definitions import render  # noqa: PLC0415

    settings = _settings(ctx)
    participants = list(load_catalog(settings).participants)
    if secrets is not None:
        render(Path(secrets), Path(definitions), Path(acl), participants)
        click.echo(f"wrote {definitions} and {acl}")
        return
    table = matrix(settings.topology, participants)
    if as_json:
        click.echo(json.dumps(table, indent=2))
        return
    for user in table["rabbitmq"]:
        click.echo(f"{user['user']}: configure {user['configure']}  write {user['write']}"
                   f"  read {user['read']}")  # fmt: skip
    for user in table["redis"]:
        click.echo(f"{user['user']} (redis): {' '.join(user['rules'])}")


@main.command()
@click.pass_context
def health(ctx: click.Context) -> None:
    """Exit 0 when RabbitMQ and Redis answer, 1 otherwise (for probes and scripts)."""
    settings = _settings(ctx)
    _run(operate.health(settings))


@main.command()
@click.argument("participant")
@click.option(
    "--package", type=click.Path(path_type=Path), default=None,
    help="Saga package with its conformance.yaml [default: the one listing it].",
)  # fmt: skip
@click.option("--namespace", default=None, help="Namespace to run in [default: BATON_NAMESPACE].")
@click.option(
    "--run", "command", default="",
    help="Start the participant with this shell command (env passed through, fresh keys) "
    "and stop it at the end.",
)  # fmt: skip
@click.option("--declare", is_flag=True, help="Declare the topology first (configure rights).")
@click.option(
    "--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
    help="Seconds to wait for each reply or dead letter.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
@click.pass_context
def conformance(
    ctx: click.Context, participant: str, package: Path | None, namespace: str | None,
    command: str, declare: bool, timeout: float, as_json: bool,
) -> None:  # fmt: skip
    """Check PARTICIPANT (any language) against docs/protocol.md over the real broker.

    Exit 0 when every check passed, 1 when one failed, 2 when the checks could not run.
    Use a namespace of its own: the malformed commands it sends are dead-lettered there.
    """
    from baton.conformance.console import conformance_main  # noqa: PLC0415 - light others
    from baton.conformance.runner import Options  # noqa: PLC0415

    options = Options(participant, package, command, declare, timeout)
    _run(conformance_main(_settings(ctx), options, namespace=namespace, as_json=as_json))


# -- starting and inspecting sagas ------------------------------------------------------------


@main.command("start")
@click.option("--saga", default=None, help="Start this saga (the newest loaded version of it).")
@click.option(
    "--input", "input_", default=None, metavar="FILE|JSON",
    help="The start's fields: a JSON object, or a file holding one.",
)  # fmt: skip
@click.option("--account", default=None, help="Payment shortcut: customer account id.")
@click.option("--merchant", default=None, help="Payment shortcut: merchant id.")
@click.option("--amount", default=None, help="Payment shortcut: amount in major units, e.g. 12.50.")
@click.option("--currency", default="EUR", show_default=True, help="Payment shortcut: currency.")
@click.option(
    "--card-token", default=None, help="Payment shortcut: vault token, tok_... (never a card)."
)
@click.option("--key", "idempotency_key", default=None, help="Idempotency key (default: random).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the outcome.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait.")
@click.pass_context
def start(
    ctx: click.Context, saga: str | None, input_: str | None, account: str | None,
    merchant: str | None, amount: str | None, currency: str, card_token: str | None,
    idempotency_key: str | None, wait: bool, timeout: float,
) -> None:  # fmt: skip
    """Publish a saga's start: --saga NAME --input FILE|JSON, or a payment with --account
    --merchant --amount --card-token (short for --saga payment); with --wait, print the
    saga's final event.

    Exit status: 0 completed (or, for a repeated key, still running), 1 otherwise
    (compensated, failed, rejected, or no answer within --timeout), 2 for input that is
    refused before anything is sent (one line naming the field, never its value).
    """
    from baton.starting import (  # noqa: PLC0415 - keeps other commands light
        PaymentOptions,
        StartInputError,
        publish_start,
        start_body,
    )

    settings = _settings(ctx)
    payment = PaymentOptions(account, merchant, amount, currency, card_token)
    try:
        body = start_body(settings, saga, input_, payment, idempotency_key)
    except (StartInputError, DefinitionError) as exc:
        click.echo(f"baton start: {masked(str(exc).splitlines()[0])}", err=True)
        sys.exit(2)
    _run(publish_start(settings, body, wait=wait, timeout_s=timeout))


@main.command()
@click.argument("saga_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, saga_id: str, as_json: bool) -> None:
    """Show a saga's state and its timeline."""
    _run(operate.show_status(_settings(ctx), saga_id, as_json))


@main.command("list")
@click.option(
    "--status",
    "status_name",
    default="running",
    show_default=True,
    type=click.Choice(["running", "compensating", "completed", "compensated", "failed"]),
)
@click.option("--older-than", default=0.0, help="Only sagas idle for at least this many seconds.")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_sagas(
    ctx: click.Context, status_name: str, older_than: float, limit: int, as_json: bool
) -> None:
    """List sagas by status, least recently updated first."""
    _run(operate.list_sagas(_settings(ctx), status_name, older_than, limit, as_json))


@main.command()
@click.option(
    "--older-than",
    default=None,
    type=float,
    help="Idle seconds (default: BATON_ORCHESTRATOR__STUCK_AFTER_S).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def stuck(ctx: click.Context, older_than: float | None, as_json: bool) -> None:
    """Unfinished sagas with no transition for too long, and failed ones; exit 1 if any."""
    settings = _settings(ctx)
    _run(operate.stuck(settings, older_than or settings.orchestrator.stuck_after_s, as_json))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def definitions(ctx: click.Context, as_json: bool) -> None:
    """Every definition version registered in Redis or loaded here, with its sagas in flight.

    A version may be removed from the deployment once it has no saga running, compensating
    or failed (docs/extending.md, "Versions side by side").
    """
    from baton.versions import show_definitions  # noqa: PLC0415 - keeps other commands light

    _run(show_definitions(_settings(ctx), as_json))


def _operator(action: Literal["retry", "resume", "abort"], compensate: bool = True) -> Any:
    @click.argument("saga_id")
    @click.option("--note", default="", help="Recorded in the saga's history.")
    @click.pass_context
    def command(ctx: click.Context, /, saga_id: str, note: str, **flags: bool) -> None:
        settings = _settings(ctx)
        act = OperatorAction(
            action, compensate=flags.get("compensate", compensate), actor=operate.actor(), note=note
        )
        _run(operate.act(settings, saga_id, act))

    return command


main.command("retry", help="Retry a failed saga's compensation with a fresh budget.")(
    _operator("retry")
)
main.command("resume", help="Send the step a saga waits on again, now.")(_operator("resume"))
main.command("abort", help="Stop a saga before its pivot: compensate (default) or just stop.")(
    click.option("--compensate/--no-compensate", default=True, show_default=True)(
        _operator("abort")
    )
)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def books(ctx: click.Context, as_json: bool) -> None:
    """Run each loaded saga package's invariant check (package.yaml ``invariants:``) over its
    own sagas; exit 1 when any is broken."""
    from baton.invariants import books as check_books  # noqa: PLC0415 - composition root

    _run(check_books(_settings(ctx), as_json))


@main.command()
@click.option("--once", is_flag=True, help="Print one frame and exit (two readings apart).")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between readings.")
@click.pass_context
def top(ctx: click.Context, once: bool, interval: float) -> None:
    """A live view: throughput, outcomes, in flight, stuck sagas and queue depths."""
    from baton.top import top as run_top  # noqa: PLC0415 - keeps other commands light

    _run(run_top(_settings(ctx), once=once, interval_s=interval))


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


@main.group()
def dlq() -> None:
    """Inspect and replay dead letters."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dlq_list(ctx: click.Context, as_json: bool) -> None:
    """Count the messages in every dead-letter queue."""
    _run(operate.dead_letters(_settings(ctx), as_json))


@dlq.command("show")
@click.argument("queue")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dlq_show(ctx: click.Context, queue: str, limit: int, as_json: bool) -> None:
    """Show why messages of QUEUE (start, replies, cmd.payment, ...) were dead-lettered."""
    _run(operate.show_dead_letters(_settings(ctx), queue, limit, as_json))


@dlq.command("replay")
@click.argument("queue")
@click.option("--limit", default=1000, show_default=True, help="At most this many messages.")
@click.pass_context
def dlq_replay(ctx: click.Context, queue: str, limit: int) -> None:
    """Send QUEUE's dead letters back to QUEUE, once their cause is fixed."""
    _run(operate.replay_dead_letters(_settings(ctx), queue, limit))


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
    _run(run_demo(_settings(ctx), options))


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
    "--floor", is_flag=True,
    help="Also run a stateless relay with Baton's message flow: the least any orchestrator costs.",
)  # fmt: skip
@click.option("--parallel", is_flag=True,
              help="Also run the payment saga with its independent steps in a parallel group.")
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
        _run(run_memory(settings, memory_sagas, as_json))
    options = BenchOptions(
        levels=levels, sagas=sagas, replicas=replicas, rounds=rounds, floor=floor,
        parallel=parallel, warmup=warmup, as_json=as_json,
    )  # fmt: skip
    _run(run_bench(settings, options))



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
def keys_generate(signers: tuple[str, ...], form: str) -> None:
    """A fresh Ed25519 signing key for each of SIGNERS (orchestrator, payment, cli, ...).

    --json prints, per signer, a complete signing file (its private key, everyone's public
    keys) to mount as BATON_SIGNING__FILE; --env the same as variables. The private keys are
    secrets: this is the only command that prints one. Rotation: docs/operations.md.
    """
    generated = KeySet.generate(dict.fromkeys(signers))
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


main.add_command(check_command)  # baton/check.py: the load-time checks and the safety proof


if __name__ == "__main__":  # pragma: no cover
    main()
