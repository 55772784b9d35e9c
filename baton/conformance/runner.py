"""`baton conformance PARTICIPANT`: reach (or start) the participant and run every check.

The participant runs against the same broker, Redis and namespace as the kit, already (the
kit waits for a consumer on its command queue) or started by the kit (``--run``). The kit
signs its commands as the orchestrator: with ``--run`` it makes a fresh key pair for both
sides; otherwise it takes the orchestrator's key from the environment, like every Baton
process, and must trust the participant's public key. Run it in a namespace of its own: the
malformed commands it sends end up in the participant's dead-letter queue, as they must,
and the replies in the replies queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from baton.conformance import checks, hostile
from baton.conformance.driver import Driver
from baton.conformance.kit import Kit, Prepare
from baton.conformance.process import await_consumer, child_env, started
from baton.conformance.report import CheckFailed, CheckResult, CheckSkipped, Report
from baton.conformance.samples import (
    ConformanceUsageError,
    Sample,
    Samples,
    find_package,
    hook,
    load_samples,
)
from baton.conformance.schemas import check_body, package_registry
from contracts.registry import ContractRegistry
from messaging.errors import SigningKeyError
from messaging.redis_client import redis_for
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.trust.signing import ORCHESTRATOR, Keyring, KeySet

Check = Callable[[Kit], Awaitable[None]]
CHECKS: tuple[tuple[str, Check], ...] = (
    ("reply_schema", checks.reply_schema),
    ("duplicate", checks.duplicate),
    ("concurrent_duplicates", checks.concurrent_duplicates),
    ("stale_attempt", checks.stale_attempt),
    ("tombstone", checks.tombstone),
    ("malformed_json", hostile.malformed_json),
    ("missing_effect_id", hostile.missing_effect_id),
    ("invalid_body", hostile.invalid_body),
    ("unsigned", hostile.unsigned),
    ("unknown_key", hostile.unknown_key),
    ("bad_signature", hostile.bad_signature),
    ("expired", hostile.expired),
)
CHECK_ROUND_TRIPS = 8  # a check's whole budget, in reply timeouts


@dataclass(frozen=True, slots=True)
class Options:
    participant: str
    package: Path | None = None
    run: str = ""  # start the participant with this shell command, stop it at the end
    declare: bool = False  # declare the topology first (needs configure rights)
    timeout_s: float = 10.0  # per awaited reply or dead letter
    start_timeout_s: float = 60.0  # for the participant to consume its queue
    copies: int = 5  # concurrent duplicates


def samples_of(settings: Settings, options: Options) -> tuple[Samples, ContractRegistry]:
    """The participant's samples and its package's contracts, checked against each other."""
    configured = getattr(settings.orchestrator, "packages", None) or []
    package = options.package or find_package(options.participant, configured)
    samples = load_samples(options.participant, package)
    registry = package_registry(samples)
    for sample in (samples.subject.command, samples.subject.compensation):
        if sample is not None and not sample.prepare:
            check_body(registry, sample, sample.body)
    return samples, registry


def configured_keyring(settings: Settings, participant: str) -> Keyring:
    """The orchestrator's key from the environment, trusting ``participant``'s."""
    try:
        keyring = Keyring.from_settings(settings.signing, role=ORCHESTRATOR)
        keyring.require_trust([participant])
    except SigningKeyError as exc:
        raise ConformanceUsageError(str(exc)) from None
    if keyring.signer != ORCHESTRATOR:
        raise ConformanceUsageError(
            f"the kit signs commands as {ORCHESTRATOR}, not {keyring.signer}: "
            "use the orchestrator's signing key (or --run, which makes its own)"
        )
    return keyring


@asynccontextmanager
async def _redis(settings: Settings, samples: Samples) -> AsyncIterator[aioredis.Redis | None]:
    """Redis for the hooks; none when the samples have none (any store, any language)."""
    subject = samples.subject
    hooks = [samples.setup, subject.command.prepare]
    hooks += [subject.compensation.prepare] if subject.compensation else []
    if not any(hooks):
        yield None
        return
    client = redis_for(settings.redis)
    try:
        yield client
    finally:
        await client.aclose()


def _preparer(
    samples: Samples, registry: ContractRegistry, redis: aioredis.Redis | None, namespace: str
) -> Prepare:
    async def prepare(sample: Sample, saga_id: str) -> dict[str, Any]:
        body = dict(sample.body)
        if sample.prepare:
            body = await hook(sample.prepare, samples.package)(redis, namespace, saga_id, body)
            check_body(registry, sample, body)
        return body

    return prepare


async def _topology(broker: Broker, options: Options) -> None:
    if options.declare:
        await broker.declare([options.participant])
    t = broker.topology
    queues, exchanges = t.participant_needs(options.participant)
    missing = await broker.missing(queues, [*exchanges, t.commands_exchange])
    if missing:
        raise ConformanceUsageError(
            f"missing {', '.join(missing)}: run `baton declare` or pass --declare"
        )


async def _one(name: str, check: Check, kit: Kit, budget_s: float) -> CheckResult:
    try:
        async with asyncio.timeout(budget_s):
            await check(kit)
    except CheckFailed as exc:
        return CheckResult(name, "failed", str(exc))
    except CheckSkipped as exc:
        return CheckResult(name, "skipped", str(exc))
    except TimeoutError:
        return CheckResult(name, "failed", f"not finished within {budget_s:g}s")
    except ConformanceUsageError:
        raise
    except Exception as exc:  # the kit's own trouble (the broker went away): this check fails
        return CheckResult(name, "failed", f"{type(exc).__name__}: {exc}")
    return CheckResult(name, "passed")


async def run_checks(kit: Kit, timeout_s: float) -> Report:
    budget = timeout_s * CHECK_ROUND_TRIPS
    return Report(kit.participant, [await _one(n, c, kit, budget) for n, c in CHECKS])


async def run_conformance(
    settings: Settings, options: Options, *, keyring: Keyring | None = None
) -> Report:
    """Every check against ``options.participant``; ConformanceUsageError when the kit
    cannot run (samples, keys, topology, no participant). ``keyring`` signs the commands
    (default: ``--run``'s fresh one, else the configured orchestrator key)."""
    samples, registry = samples_of(settings, options)
    name = options.participant
    keys = KeySet.generate((ORCHESTRATOR, name)) if options.run else None
    if keyring is None:
        keyring = keys.keyring(ORCHESTRATOR) if keys else configured_keyring(settings, name)
    broker = await Broker.connect(str(settings.rabbit.url), settings.topology)
    try:
        await _topology(broker, options)
        async with (
            _redis(settings, samples) as redis,
            started(options.run, child_env(settings, name, keys)) as process,
        ):
            queue = settings.topology.command_queue(name)
            await await_consumer(broker, queue, options.start_timeout_s, process)
            if samples.setup:
                await hook(samples.setup, samples.package)(redis, settings.namespace)
            prepare = _preparer(samples, registry, redis, settings.namespace)
            async with Driver.listening(broker, name, keyring, options.timeout_s) as driver:
                kit = Kit(driver, samples, registry, keyring, prepare, copies=options.copies)
                return await run_checks(kit, options.timeout_s)
    finally:
        await broker.close()
