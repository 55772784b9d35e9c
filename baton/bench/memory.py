"""``baton bench --memory``: Redis bytes per finished saga, written through the real store.

Each saga is started and driven to ``completed`` by the engine, every transition written
by ``RedisSagaStore`` (the same Lua script, history stream, indexes and outbox the
orchestrator uses, the outbox marked done as after a publish), under a namespace of its
own. The figure is the growth of Redis's ``used_memory`` divided by the number of sagas,
next to ``MEMORY USAGE`` of one saga's own keys; the keys are deleted afterwards. Other
users of a shared Redis add noise to the first figure, so the run is large (100,000 sagas
by default) and both figures are reported.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from uuid import uuid4

import redis.asyncio as aioredis
from rich.console import Console

from baton.bench.baseline import ACCOUNT, AMOUNT, MERCHANT, TOKEN
from baton.runtime import load_catalog
from messaging.redis_client import redis_for
from messaging.settings import Settings
from orchestrator.core.catalog import saga_id_for
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.effects import ReplyReceived
from orchestrator.core.engine import decide, start
from orchestrator.core.state import SagaState, SagaStatus
from orchestrator.runtime.redis_store import RedisSagaStore
from participants.payments.contracts import StartTransaction

console = Console(stderr=True)
WRITERS = 32

# The success reply body of each step, as a no-op participant answers it.
OUTPUTS: dict[str, tuple[str, dict[str, Any]]] = {
    "authorize_payment": ("payments.payment_authorized.v1", {"hold_id": "hold_0123456789abcdef"}),
    "assess_risk": ("payments.risk_assessed.v1", {"score": 1}),
    "check_compliance": ("payments.compliance_approved.v1", {"attestation_id": "att_0123456789ab"}),
    "capture_transaction": ("payments.transaction_captured.v1", {"capture_id": "cap_0123456789ab"}),
}


async def _one_saga(store: RedisSagaStore, definition: SagaDefinition) -> None:
    """Start one saga and complete it, writing every transition as the orchestrator does."""
    body = StartTransaction(
        idempotency_key=uuid4().hex, account_id=ACCOUNT, merchant_id=MERCHANT,
        amount=AMOUNT, card_token=TOKEN,
    )  # fmt: skip
    saga_id = saga_id_for(definition.name, body.idempotency_key)
    now = time.time()
    decision = start(definition, saga_id, body, now, reply_to="amq.gen-bench")
    state: SagaState = decision.state.model_copy(update={"version": 1})
    await store.create(decision.state, decision.history, [])
    while state.waiting:
        waiting = state.waiting[0]
        kind, output = OUTPUTS[waiting.step]
        reply = ReplyReceived(waiting.step, "forward", waiting.attempt, kind, output,
                              sender=definition.step(waiting.step).participant)  # fmt: skip
        decision = decide(definition, state, reply, now)
        state = await store.commit(state.version, decision.state, decision.history, [])


async def run_memory(settings: Settings, sagas: int, as_json: bool) -> int:
    namespace = f"bench-mem-{uuid4().hex[:8]}."
    definition = load_catalog(settings).get("payment", 1)
    assert definition is not None
    client = redis_for(settings.redis)
    store = RedisSagaStore(
        client, namespace=namespace, shards=settings.orchestrator.shards,
        retention_s=settings.orchestrator.retention_s,
    )  # fmt: skip
    try:
        result = await _measure(client, store, definition, sagas)
    finally:
        async for key in client.scan_iter(match=f"{namespace}*", count=1000):
            await client.delete(key)
        await client.aclose()
    console.print(f"Redis memory per finished saga: {json.dumps(result)}")
    if as_json:
        print(json.dumps(result))
    return 0


async def _measure(
    client: aioredis.Redis, store: RedisSagaStore, definition: SagaDefinition, sagas: int
) -> dict[str, Any]:
    before = int((await client.info("memory"))["used_memory"])
    remaining = [sagas]

    async def writer() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await _one_saga(store, definition)

    began = time.perf_counter()
    progress = asyncio.create_task(_progress(remaining, sagas))
    try:
        await asyncio.gather(*(writer() for _ in range(WRITERS)))
    finally:
        progress.cancel()
    after = int((await client.info("memory"))["used_memory"])
    sample = await store.by_status(SagaStatus.COMPLETED, 1)
    saga_id = sample[0][0]
    own = 0
    for key in (store.keys.saga(saga_id), store.keys.history(saga_id)):
        own += int(await client.memory_usage(key) or 0)
    return {
        "sagas": sagas,
        "seconds": round(time.perf_counter() - began, 1),
        "used_memory_delta_bytes": after - before,
        "bytes_per_saga": round((after - before) / sagas),
        "saga_keys_bytes": own,  # MEMORY USAGE of one saga's state hash and history stream
        "history_entries": len(await store.history(saga_id)),
        "state_json_bytes": len(await client.hget(store.keys.saga(saga_id), "state") or b""),
    }


async def _progress(remaining: list[int], total: int) -> None:
    while True:
        await asyncio.sleep(2)
        console.print(f"  memory: {total - remaining[0]}/{total} sagas written")
