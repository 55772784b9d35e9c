"""Deployment settings, read from ``BATON_*`` environment variables by composition roots only."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, UrlConstraints, field_validator
from pydantic_core import MultiHostUrl
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topology import Topology
from messaging.errors import SigningKeyError

NAMESPACE = re.compile(r"[A-Za-z0-9_.:-]*")  # the characters Settings.namespace may use

# ``amqp://user:pass@node1:5672,node2:5672,node3:5672/vhost``: any live node of a cluster.
AmqpUrl = Annotated[
    MultiHostUrl,
    UrlConstraints(allowed_schemes=["amqp", "amqps"], host_required=True, default_port=5672),
]
# One server (``redis://``), a Redis Cluster (``redis+cluster://h1:p1,h2:p2``) or the
# primary a Sentinel set names (``redis+sentinel://s1:p1,s2:p2/<service>``): redis_client.py
RedisUrl = Annotated[
    MultiHostUrl,
    UrlConstraints(
        allowed_schemes=[
            "redis", "rediss", "redis+cluster", "rediss+cluster", "redis+sentinel",
            "rediss+sentinel",
        ],
        host_required=True,
        default_port=6379,
    ),
]  # fmt: skip


class RabbitSettings(BaseModel):
    url: AmqpUrl = MultiHostUrl("amqp://guest:guest@127.0.0.1:5672/")
    prefetch: int = Field(default=64, ge=1, le=10_000)
    queue_type: Literal["classic", "quorum"] = "classic"
    # Quorum queues only: deliveries of one message before the broker dead-letters it. A
    # backstop far above Baton's own poison count; RabbitMQ 4's default of 20 would dead-letter
    # a good message after a short store outage (the runner requeues it, backing off).
    delivery_limit: int = Field(default=1000, ge=0, le=1_000_000)  # 0: the broker's default
    # How long the orchestrator and participants wait for RabbitMQ when they start.
    connect_wait_s: float = Field(default=300.0, ge=0)
    # Failures of one message (a handler raising, not a dependency's outage) before it is
    # dead-lettered as poison instead of requeued again.
    poison_after: int = Field(default=5, ge=1, le=1000)


class RedisSettings(BaseModel):
    url: RedisUrl = MultiHostUrl("redis://127.0.0.1:6379/0")
    # Replicas that must hold a write (Redis WAIT) before the message that caused it is
    # acked: 1 with a replicated Redis, so a failover never loses an acknowledged transition.
    durable_replicas: int = Field(default=0, ge=0, le=16)
    durable_timeout_ms: int = Field(default=1000, ge=1, le=60_000)  # then: a transient error


class LogSettings(BaseModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class MetricsSettings(BaseModel):
    port: int = Field(default=0, ge=0, le=65535)  # 0: no metrics endpoint
    # Loopback unless told: /metrics and /healthz are for this host's scraper. Containers set
    # 0.0.0.0 (docker-compose, deploy/k8s), where the network policy decides who may scrape.
    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)


class OrchestratorSettings(BaseModel):
    shards: int = Field(default=16, ge=1, le=16384)
    retention_s: int = Field(default=7 * 24 * 3600, ge=1)
    # saga package folders (orchestrator/runtime/packages.py); empty: the bundled ones (sagas/)
    packages: list[str] = []
    definitions: list[str] = []  # extra definition files, checked against the packages' contracts
    tick_interval_s: float = Field(default=0.05, gt=0)  # least time between deadline polls
    deadline_poll_s: float = Field(default=1.0, gt=0)  # most; finds other replicas' deadlines
    # starts taken at once per replica: admission control, replies of running sagas first
    start_prefetch: int = Field(default=4, ge=1, le=10_000)
    outbox_grace_s: float = Field(default=2.0, gt=0)  # an entry older than this is swept
    stuck_after_s: float = Field(default=300.0, gt=0)
    state_interval_s: float = Field(default=5.0, gt=0)  # refresh of the shared-state gauges
    # A start sent (x-baton-sent-at) longer ago than this is refused: rejected, dead-lettered.
    start_ttl_s: float = Field(default=300.0, gt=0)


class ParticipantSettings(BaseModel):
    """A participant worker's protocol timings and its fault injection (off by default)."""

    fail_rate: float = Field(default=0.0, ge=0, le=1)  # injected business refusals
    error_rate: float = Field(default=0.0, ge=0, le=1)  # injected transient errors
    crash_rate: float = Field(default=0.0, ge=0, le=1)  # injected hard exits mid-handling
    slow_ms: int = Field(default=0, ge=0)  # injected latency per command ...
    slow_rate: float = Field(default=1.0, ge=0, le=1)  # ... for this share of commands
    inbox_ttl_s: int = Field(default=30 * 24 * 3600, ge=1)  # outcomes and tombstones
    # One delivery at a time per effect: its lease, renewed every lease_s/3 while it runs.
    lease_s: float = Field(default=10.0, gt=0)
    # An infrastructure error holds the delivery this long (uniform jitter), then requeues it.
    redeliver_min_s: float = Field(default=0.5, ge=0)
    redeliver_max_s: float = Field(default=2.0, ge=0)
    # Reply chaos (fault tests): lost, repeated and late replies, after the inbox stored them.
    reply_drop_rate: float = Field(default=0.0, ge=0, le=1)
    reply_duplicate_rate: float = Field(default=0.0, ge=0, le=1)
    reply_delay_ms: int = Field(default=0, ge=0)  # each reply copy waits up to this long
    drop_first_reply_of: list[str] = []  # command kinds whose attempt-1 reply is always lost


class ChaosSettings(BaseModel):
    """Orchestrator crash points (fault tests): exit hard at a named moment. Off by default."""

    crash_points: list[str] = []  # e.g. after_commit, after_publish, compensating
    crash_rate: float = Field(default=0.0, ge=0, le=1)


class SealingSettings(BaseModel):
    """Keys that encrypt sensitive fields at rest (saga state, outbox, dead letters).

    ``keys`` is JSON ``{key_id: base64 of 32 random bytes}``; ``active`` names the one new
    values are sealed with (optional with a single key). Older keys stay listed until no
    stored value uses them: that is the rotation. Secret: never logged or echoed.
    """

    keys: SecretStr = SecretStr("")
    active: str = ""


class SigningSettings(BaseModel):
    """This process's message-signing key and the public keys it trusts (docs/operations.md).

    ``private_key`` is base64 of a raw 32-byte Ed25519 seed; ``public_keys`` is JSON
    ``{signer: {key_id: base64 of the raw 32-byte public key}}``, two key ids for one signer
    during a rotation. ``file`` names a JSON file holding any of these fields (one mounted
    secret); a field set in the environment wins over the file. Secret: never logged or echoed.
    """

    signer: str = Field(default="", max_length=64)  # "": the role (orchestrator, participant, cli)
    key_id: str = Field(default="", max_length=64)
    private_key: SecretStr | None = None
    public_keys: dict[str, dict[str, str]] = {}
    upstreams: list[str] = ["cli"]  # the signers whose starts the orchestrator accepts
    file: str = ""

    def resolved(self) -> SigningSettings:
        """These settings, with what the environment left unset taken from ``file``."""
        if not self.file:
            return self
        try:
            data = dict(json.loads(Path(self.file).read_text()))
            merged = {**data, **self.model_dump(exclude_unset=True, exclude={"file"})}
            return SigningSettings.model_validate(merged)
        except (OSError, ValueError, TypeError) as exc:  # never the content: it holds a secret
            raise SigningKeyError(
                f"BATON_SIGNING__FILE {self.file}: not a readable signing file "
                f"({type(exc).__name__})"
            ) from None


class Settings(BaseSettings):
    """Deployment topology only. Saga behaviour lives in saga definitions."""

    model_config = SettingsConfigDict(env_prefix="BATON_", env_nested_delimiter="__", frozen=True)

    namespace: str = Field(default="", max_length=100)
    """Prefixes every queue, exchange and Redis key of the deployment: empty, or ending in ``.``.

    The separator is required so that a namespace is never the prefix of another one's
    names (``prod`` would own ``production…``): clean-ups delete by prefix. Only letters,
    digits and ``- _ . :`` are allowed, so a prefix is never a glob pattern or a hash tag.
    """
    rabbit: RabbitSettings = RabbitSettings()
    redis: RedisSettings = RedisSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    orchestrator: OrchestratorSettings = OrchestratorSettings()
    participant: ParticipantSettings = ParticipantSettings()
    chaos: ChaosSettings = ChaosSettings()
    signing: SigningSettings = SigningSettings()
    sealing: SealingSettings = SealingSettings()

    @field_validator("namespace")
    @classmethod
    def _separated(cls, value: str) -> str:
        if not NAMESPACE.fullmatch(value):
            raise ValueError(
                f"namespace {value!r} may use only letters, digits and - _ . :"
                " (so that it is never a glob pattern or a Redis hash tag)"
            )
        if value and not value.endswith("."):
            raise ValueError(
                f"namespace {value!r} must be empty or end in '.': set {value.rstrip(':') + '.'!r}"
                " (without a separator it would be the prefix of other namespaces' names)"
            )
        return value

    @property
    def topology(self) -> Topology:
        return Topology(namespace=self.namespace)
