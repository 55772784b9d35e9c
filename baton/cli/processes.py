"""``baton`` commands that run processes or prepare for them: orchestrator, participant,
declare, access, health, conformance."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from baton import operate
from baton.cli.base import _run, _settings, main
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
from baton.runtime import (
    PARTICIPANTS,
    load_catalog,
    open_broker,
    open_runtime,
    stop_on_signals,
    wait_for_redis,
)
from messaging.errors import DefinitionError
from messaging.observability.health import broker_ready, consumer_alive, consumers_ready, serving
from messaging.observability.otel import enable_otlp
from messaging.transport.failover import node_urls
from messaging.trust.signing import ORCHESTRATOR, Keyring


@main.command()
@click.pass_context
def orchestrator(ctx: click.Context) -> None:
    """Run one orchestrator replica until SIGTERM (run several for availability)."""
    settings = _settings(ctx)
    enable_otlp("baton-orchestrator")  # only when OTEL_EXPORTER_OTLP_ENDPOINT is set

    async def work() -> int:
        await wait_for_redis(settings, settings.rabbit.connect_wait_s)  # or wait for queues
        async with open_runtime(settings, wait_s=settings.rabbit.connect_wait_s) as rt:
            checks = {"rabbitmq": broker_ready(rt.broker), "redis": rt.store.ping,
                      "consumers": consumers_ready(rt.broker)}  # fmt: skip
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
@click.option("--bare", type=click.Choice(PARTICIPANTS), default=None, hidden=True)
@click.pass_context
def bench_floor(ctx: click.Context, bare: str | None) -> None:
    """The stateless relay ``baton bench`` measures as the floor (until SIGTERM); with
    ``--bare NAME``, the bench's bare no-op participant NAME instead (``baton/bench/bare.py``:
    the participant without the SDK)."""
    from baton.bench.bare import BareParticipant  # noqa: PLC0415 - bench only
    from baton.bench.floor import FloorRelay  # noqa: PLC0415

    settings = _settings(ctx)
    url, topology, prefetch = str(settings.rabbit.url), settings.topology, settings.rabbit.prefetch

    async def work() -> int:
        if bare is not None:
            await BareParticipant(url, topology, bare, prefetch=prefetch).run(stop_on_signals())
            return 0
        keyring = Keyring.from_settings(settings.signing, role=ORCHESTRATOR)  # signs commands
        relay = FloorRelay(url, topology, keyring, prefetch=prefetch)
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
    from baton_sdk.run import run_worker  # noqa: PLC0415

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
        # its Redis is only used per message: without this check it would wait for its
        # queues forever with no Redis behind it
        await wait_for_redis(settings, settings.rabbit.connect_wait_s)
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
    url = node_urls(str(settings.rabbit.url))[0]  # policies are the cluster's: any node

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
@click.option("--queue-type", type=click.Choice(["classic", "quorum"]), default="classic",
              show_default=True, help="The queues' x-queue-type in --definitions.")  # fmt: skip
@click.option("--delivery-limit", type=click.IntRange(min=0), default=0, show_default=True,
              help="x-delivery-limit of work queues (quorum; 0: the broker's).")  # fmt: skip
@click.option("--redis-cluster", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Env file of a Redis Cluster's own users: write a cluster's --acl.")  # fmt: skip
@click.pass_context
def access(
    ctx: click.Context,
    as_json: bool,
    secrets: str | None,
    definitions: str,
    acl: str,
    queue_type: str,
    delivery_limit: int,
    redis_cluster: str | None,
) -> None:
    """Each service's broker permissions and Redis ACL rules (least privilege)."""
    from baton.access import matrix  # noqa: PLC0415 - keeps other commands light
    from baton.definitions import render  # noqa: PLC0415

    settings = _settings(ctx)
    participants = list(load_catalog(settings).participants)
    if secrets is not None:
        render(Path(secrets), Path(definitions), Path(acl), participants,
               queue_type=queue_type, delivery_limit=delivery_limit,
               redis_cluster=Path(redis_cluster) if redis_cluster else None)  # fmt: skip
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
