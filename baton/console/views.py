"""The console's pages: each handler validates its query, reads, masks, and renders.

Every handler is a GET: the console only reads. Every value reaches a page through a
Jinja2 template with autoescape on, and every saga field through ``masking``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.templating import Jinja2Templates

from baton.console import timeline
from baton.console.audit import audit_entries
from baton.console.masking import clear_secrets, masked_fields, masked_text
from baton.console.reading import MAX_LIMIT, ConsoleReader, SagaRow
from messaging.observability.tracing import trace_id
from orchestrator.core.state import SagaState, SagaStatus

MAX_QUERY = 200  # an id is 36 characters; a key is the caller's, but not a page long
STATUSES = [s.value for s in SagaStatus]


class BadQuery(ValueError):
    """A search the console refuses: the page says why, status 400."""


def _reader(request: Request) -> ConsoleReader:
    reader: ConsoleReader = request.app.state.reader
    return reader


async def _render(
    request: Request, name: str, context: dict[str, Any], status: int = 200
) -> Response:
    """A page, with the live counts every page shows in its header."""
    templates: Jinja2Templates = request.app.state.templates
    counts = await _reader(request).counts()
    return templates.TemplateResponse(
        request, name, {"counts": counts, **context}, status_code=status
    )


def _number(params: Mapping[str, str], name: str, default: float, top: float) -> float:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadQuery(f"{name} must be a number") from None
    if not math.isfinite(value) or value < 0 or value > top:
        raise BadQuery(f"{name} must be between 0 and {top:g}")
    return value


def parse_search(params: Mapping[str, str]) -> dict[str, Any]:
    """The search form's fields, checked: a query (saga id or idempotency key), a status
    ("" for any), a minimum idle time in seconds and a result limit."""
    query = params.get("q", "").strip()
    if len(query) > MAX_QUERY:
        raise BadQuery(f"q is longer than {MAX_QUERY} characters")
    status = params.get("status", "")
    if status and status not in STATUSES:
        raise BadQuery(f"status must be one of {', '.join(STATUSES)}")
    idle_s = _number(params, "idle_s", 0.0, 10 * 365 * 86400)
    limit = _number(params, "limit", 50, MAX_LIMIT)
    if limit != int(limit) or limit < 1:
        raise BadQuery(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return {"q": query, "status": status, "idle_s": idle_s, "limit": int(limit)}


async def _search(reader: ConsoleReader, form: dict[str, Any]) -> list[SagaRow]:
    if form["q"]:
        rows = await reader.find(form["q"])
        return [r for r in rows if not form["status"] or r.status == form["status"]]
    statuses = [SagaStatus(form["status"])] if form["status"] else list(SagaStatus)
    return await reader.by_status(statuses, form["idle_s"], form["limit"])


async def index(request: Request) -> Response:
    """The search page; with no query it lists the sagas least recently updated."""
    context: dict[str, Any] = {"statuses": STATUSES, "rows": [], "searched": False}
    try:
        form = parse_search(request.query_params)
    except BadQuery as exc:
        context |= {"form": dict(request.query_params), "error": str(exc)}
        return await _render(request, "index.html", context, 400)
    rows = await _search(_reader(request), form)
    context |= {"form": form, "rows": rows, "searched": bool(form["q"])}
    return await _render(request, "index.html", context)


def _steps(
    state: SagaState, output_hidden: frozenset[str] | None, secrets: list[str]
) -> list[dict[str, Any]]:
    return [
        {
            "name": name, "status": step.status.value, "attempts": step.attempts,
            "compensation_attempts": step.compensation_attempts,
            "error": masked_text(step.error or "", secrets),
            "output": json.dumps(masked_fields(step.output, output_hidden), sort_keys=True)
            if step.output else "",
        }
        for name, step in state.steps.items()
    ]  # fmt: skip


async def saga(request: Request) -> Response:
    """One saga: its state, masked input and outputs, timeline chart, history and audit."""
    reader = _reader(request)
    saga_id = request.path_params["saga_id"]
    found = await reader.saga(saga_id) if len(saga_id) <= MAX_QUERY else None
    if found is None:
        return await _render(request, "missing.html", {"saga_id": saga_id}, 404)
    state, history = found
    sensitive = await reader.sensitive(state)
    secrets = clear_secrets(state.input, sensitive.input)
    history = [{**e, "detail": masked_text(e["detail"], secrets)} for e in history]
    settings = request.app.state.settings
    context = {
        "state": state,
        "reason": masked_text(state.reason or "", secrets),
        "input": masked_fields(state.input, sensitive.input),
        "steps": _steps(state, sensitive.output, secrets),
        "trace_id": trace_id(state.traceparent),
        "history": history,
        "chart": timeline.chart(timeline.layout(state, history, time.time())),
        "audit": await audit_entries(
            reader.client, settings.namespace, saga_id, shards=settings.orchestrator.shards
        ),
    }
    return await _render(request, "saga.html", context)


async def dead_letters(request: Request) -> Response:
    """Every dead-letter queue, peeked: nothing is removed, no body is shown."""
    reader = _reader(request)
    queues = await reader.dead_letters()
    return await _render(request, "dead_letters.html", {"queues": queues})


async def counts(request: Request) -> Response:
    """The live counts the pages refresh themselves with."""
    found = await _reader(request).counts()
    return JSONResponse({"counts": found, "at": time.time()}, headers={"Cache-Control": "no-store"})
