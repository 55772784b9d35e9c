"""``baton start``: build any saga's start message from JSON, check it, publish it, wait.

The start is validated against the trigger contract of the newest loaded version of the
saga (what the orchestrator would start it with), before anything is published. What the
operator typed may hold a card token or an account id, so a refusal names the field and
the rule, never the value (``StartInputError``: one line, the CLI exits 2 with it).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiormq
import click
from pydantic import ValidationError

from baton import operate
from baton.runtime import load_catalog, open_broker
from contracts.base import Start
from contracts.envelope import Envelope
from contracts.money import CURRENCY_EXPONENTS
from messaging.observability.tracing import new_traceparent
from messaging.settings import Settings
from messaging.transport.codec import encode
from messaging.trust.signing import ORCHESTRATOR, Keyring
from orchestrator.core.catalog import Catalog
from orchestrator.core.definition import SagaDefinition


class StartInputError(ValueError):
    """The start cannot be built: one line, naming the field but never its value."""


def read_input(value: str) -> dict[str, Any]:
    """``--input``: a JSON object, given inline or as the path of a file holding one."""
    text = value
    if not value.lstrip().startswith(("{", "[")):  # else inline JSON
        path = Path(value)
        if not path.is_file():
            raise StartInputError("--input: neither a JSON object nor a readable file")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise StartInputError(f"--input: cannot read {path}: {type(exc).__name__}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:  # its message has a position, not the text
        raise StartInputError(f"--input: not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise StartInputError("--input: must be a JSON object (the start's fields)")
    return data


def newest(catalog: Catalog, saga: str) -> SagaDefinition:
    """The newest loaded version of the saga named ``saga``: new sagas start on it."""
    versions = [d for d in catalog.all() if d.name == saga]
    if not versions:
        loaded = ", ".join(sorted({d.name for d in catalog.all()})) or "none"
        raise StartInputError(
            f"no saga {saga!r} is loaded (loaded: {loaded}); BATON_ORCHESTRATOR__PACKAGES"
            " names the saga packages"
        )
    return max(versions, key=lambda d: d.version)


def _scrubbed(message: str, value: object) -> str:
    """A validation message with the offending value taken out (a custom validator may
    quote it)."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        for shown in {repr(value), str(value)}:
            if len(shown) >= 3:
                message = message.replace(shown, "***")
    return message


def first_error(exc: ValidationError) -> str:
    """``field: rule`` of the first problem, and how many more there are: one line."""
    errors = exc.errors(include_url=False, include_context=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "input"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {_scrubbed(first['msg'], first.get('input'))}{more}"


def build_start(catalog: Catalog, saga: str, data: dict[str, Any], key: str | None) -> Start:
    """The start of ``saga`` from ``data``, validated by its trigger contract. The
    idempotency key is ``key``, else the input's own, else a random one."""
    definition = newest(catalog, saga)
    model = catalog.contracts.require(definition.trigger, Start)
    body = {**data, "idempotency_key": key or data.get("idempotency_key") or uuid4().hex}
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise StartInputError(first_error(exc)) from None


@dataclass(frozen=True)
class PaymentOptions:
    """The payment shortcut's options (``--account --merchant --amount --card-token``)."""

    account: str | None = None
    merchant: str | None = None
    amount: str | None = None
    currency: str = "EUR"
    card_token: str | None = None

    def given(self) -> bool:
        return any((self.account, self.merchant, self.amount, self.card_token))

    def fields(self) -> dict[str, Any]:
        """The payment saga's start fields; all four options are required."""
        named = {"--account": self.account, "--merchant": self.merchant,
                 "--amount": self.amount, "--card-token": self.card_token}  # fmt: skip
        missing = [name for name, value in named.items() if not value]
        if missing:
            raise StartInputError(
                f"give --saga NAME --input FILE|JSON, or a payment's {', '.join(missing)}"
            )
        minor = minor_units(str(self.amount), self.currency)
        return {
            "account_id": self.account, "merchant_id": self.merchant, "card_token": self.card_token,
            "amount": {"minor": minor, "currency": self.currency},
        }  # fmt: skip


def minor_units(amount: str, currency: str) -> int:
    """``12.50`` EUR as 1250: refused when the currency is unknown or has fewer decimals."""
    exponent = CURRENCY_EXPONENTS.get(currency)
    if exponent is None:
        raise StartInputError("--currency: not a known ISO-4217 currency")
    try:
        minor = Decimal(amount) * 10**exponent
    except InvalidOperation:
        raise StartInputError("--amount: not a decimal number") from None
    if minor != minor.to_integral_value():
        raise StartInputError(f"--amount: more decimals than {currency} allows")
    return int(minor)


def start_body(
    settings: Settings, saga: str | None, input_: str | None, payment: PaymentOptions,
    key: str | None,
) -> Start:  # fmt: skip
    """The start ``baton start`` publishes: ``--saga``/``--input``, or the payment shortcut
    (short for ``--saga payment``); StartInputError (one line) when it cannot be built."""
    if saga is None and input_ is None:
        saga, data = "payment", payment.fields()
    elif payment.given():
        raise StartInputError("--account/--merchant/--amount/--card-token go without --saga")
    elif saga is None or input_ is None:
        raise StartInputError("--saga and --input go together")
    else:
        data = read_input(input_)
    return build_start(load_catalog(settings), saga, data, key)


def _final_code(event: dict[str, Any]) -> int:
    """0 completed (or, for a repeated key, still running), 1 otherwise."""
    running = event.get("event") == "duplicate" and event.get("status") == "running"
    return 0 if event.get("status") == "completed" or running else 1


async def publish_start(settings: Settings, body: Start, *, wait: bool, timeout_s: float) -> int:
    """Publish ``body`` signed as the upstream ``cli``; with ``wait``, print the saga's final
    event. Exit status: 0 completed (or published, without ``wait``), 1 otherwise."""
    keyring = Keyring.from_settings(settings.signing, role="cli")  # signs the start
    keyring.require_trust([ORCHESTRATOR])  # and checks who answered it
    async with open_broker(settings) as broker:
        t = broker.topology
        if await broker.missing([t.start_queue], [t.start_exchange]):
            click.echo("baton start: no start queue: run `baton declare` first", err=True)
            return 1
        envelope = Envelope(
            kind=body.KIND, saga_id="-", traceparent=new_traceparent(), sent_at=int(time.time())
        )
        try:
            if not wait:
                await broker.publish(
                    keyring.sign(encode(envelope, body)), exchange=t.start_exchange,
                    routing_key=t.start_queue,
                )  # fmt: skip
                click.echo(f"published {body.idempotency_key}")
                return 0
            event = await operate.start_and_wait(broker, envelope, body, timeout_s, keyring)
        except aiormq.exceptions.DeliveryError:  # the start queue's reject-publish limit
            click.echo("baton start: the broker refused the start (the start queue is full):"
                       " try again later", err=True)  # fmt: skip
            return 1
        except TimeoutError:
            click.echo(
                f"baton start: no answer within {timeout_s:g} s; the saga may still be running:"
                f" baton start again with --key {body.idempotency_key} tells its state",
                err=True,
            )
            return 1
    click.echo(json.dumps(event))
    return _final_code(event)
