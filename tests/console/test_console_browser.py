"""``baton console`` in a real headless Chromium, over sagas run on the real broker and Redis.

One completed saga (its first payment attempt failed and was retried), one compensated saga
and one dead letter are made in this test's namespace; then every page is loaded as an
operator would, and screenshots are kept in ``.baton/artifacts/console/``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page, async_playwright

from baton.console.reading import ConsoleReader
from contracts.base import StepFailed
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.transport.codec import Wire
from messaging.trust.sealing import Sealer, is_sealed
from messaging.trust.signing import KeySet
from orchestrator.runtime.definition_registry import DefinitionRegistry
from orchestrator.runtime.keys import KeySpace
from tests.integration.harness import Baton, ScriptedParticipant, eventually, running_baton
from tests.integration.test_orchestrator import STEPS, SUCCESS, UNDONE, a_payment

pytestmark = pytest.mark.integration

EXPECTED_ERROR = re.compile(
    r"Failed to load resource: the server responded with a status of (400|404) \(.*\)"
)
TOKEN = "tok_abcdef123456"  # a_payment's card token: must never reach a page
ARTIFACTS = Path(__file__).resolve().parents[2] / ".baton" / "artifacts" / "console"


async def run_sagas(baton: Baton, world: dict[str, ScriptedParticipant]) -> tuple[str, str]:
    """A completed saga whose first payment attempt failed, then a compensated one."""
    completed = await baton.start(a_payment("console-ok"))
    first = await world["payment"].next()
    await world["payment"].reply(first, StepFailed(reason="db_down", retriable=True))
    for name in STEPS:
        await world[name].reply(await world[name].next(), SUCCESS[name])
    assert (await baton.final(completed))["event"] == "completed"
    compensated = await baton.start(a_payment("console-undo"))
    for name in STEPS[:2]:
        await world[name].reply(await world[name].next(), SUCCESS[name])
    await world["pci"].reply(await world["pci"].next(), StepFailed(reason="declined"))
    for name in reversed(STEPS[:2]):
        await world[name].reply(await world[name].next(), UNDONE[name])
    assert (await baton.final(compensated))["event"] == "compensated"
    return completed, compensated


async def dead_letter(baton: Baton) -> None:
    """An unsigned reply: the orchestrator refuses it into the replies' dead-letter queue."""
    t = baton.broker.topology
    forged = Wire(b'{"nope": 1}', "payments.payment_authorized.v1", "forged-1", "no-saga")
    await baton.broker.publish(forged, exchange=t.replies_exchange, routing_key=t.replies_queue)

    async def arrived() -> bool:
        return await baton.dead_letters(t.replies_queue) >= 1

    await eventually(arrived, 10, "the forged reply in the dead-letter queue")


async def screenshot(page: Page, selector: str, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    await page.locator(selector).screenshot(path=str(path))
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{name}: not a PNG"
    assert len(data) > 2000, f"{name}: an empty picture"
    return path


async def open_page(page: Page, url: str, status: int = 200) -> str:
    answer = await page.goto(url)
    assert answer is not None
    assert answer.status == status, url
    assert "default-src 'none'" in (await answer.all_headers())["content-security-policy"]
    html = await answer.text()
    assert TOKEN not in html
    assert TOKEN not in await page.content()
    return html


async def test_console_pages_in_a_browser(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet,
    console_url: str, chromium: str,
) -> None:  # fmt: skip
    registry = DefinitionRegistry(redis_client, KeySpace(settings.namespace, 16))
    sealer = Sealer.from_settings(settings.sealing)
    async with running_baton(
        broker, redis_client, settings, keys=keys, sealer=sealer, definitions=registry
    ) as baton:
        world = {name: await ScriptedParticipant(broker, name, keys).start() for name in STEPS}
        completed, compensated = await run_sagas(baton, world)
        await dead_letter(baton)
    reader = ConsoleReader(settings, redis_client, None)  # given only the URLs, as deployed
    state = await reader.store.load(completed)
    assert state is not None
    assert is_sealed(state.input["card_token"])  # read without the key: it stays sealed
    assert "card_token" in ((await reader.sensitive(state)).input or ())  # from the registry
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await check_pages(page, console_url, completed, compensated, settings)
        finally:
            await browser.close()
    # only the two pages this test asked for wrongly (400, 404) made the browser complain
    expected = [e for e in errors if EXPECTED_ERROR.fullmatch(e)]
    assert len(expected) == 2
    assert errors == expected
    # peeking took nothing: the dead letter is still there
    assert (
        await broker.queue_depth(broker.topology.dead_letter_queue(broker.topology.replies_queue))
        == 1
    )


async def check_pages(
    page: Page, url: str, completed: str, compensated: str, settings: Settings
) -> None:
    await open_page(page, url + "/")
    await page.wait_for_selector("#counts[data-updated]")  # the live counts answered
    assert await page.text_content('#counts [data-status="completed"]') == "1"
    assert await page.locator("tr.saga-row").count() == 2  # no query: every saga

    await page.fill("input[name=q]", completed)  # by saga id
    await page.click("button[type=submit]")
    assert await rows(page) == [completed]
    await page.fill("input[name=q]", "console-undo")  # by idempotency key
    await page.click("button[type=submit]")
    assert await rows(page) == [compensated]
    await open_page(page, url + "/?status=completed&idle_s=0&limit=10")
    assert await rows(page) == [completed]
    await open_page(page, url + "/?limit=lots", status=400)
    assert "limit must be a number" in (await page.text_content(".error") or "")

    await open_page(page, f"{url}/sagas/{completed}")
    bars = page.locator("svg.timeline rect.bar")
    assert await bars.count() == 5  # payment twice (a retriable failure), then one per step
    assert await page.locator("rect.bar.forward.failed").count() == 1
    assert await page.locator("rect.bar.compensate").count() == 0
    assert await page.text_content("table.input tr:has(th:text-is('card_token')) td") == "***"
    assert re.fullmatch(r"[0-9a-f]{32}", await page.text_content("#trace-id") or "")
    await screenshot(page, "svg.timeline", "completed-timeline")

    await open_page(page, f"{url}/sagas/{compensated}")
    assert await page.locator("rect.bar.forward").count() == 3
    undone = page.locator("rect.bar.compensate.succeeded")
    assert [await undone.nth(i).get_attribute("data-step") for i in range(2)] == [
        "assess_risk",
        "authorize_payment",
    ]
    assert await page.locator("g.marker.compensating").count() == 1
    assert "declined" in (await page.text_content(".facts .reason") or "")
    await screenshot(page, "svg.timeline", "compensated-timeline")
    await open_page(page, f"{url}/sagas/no-such-saga", status=404)

    await open_page(page, url + "/dead-letters")
    replies = page.locator(
        f'section[data-queue="{settings.topology.dead_letter_queue(settings.topology.replies_queue)}"]'
    )
    assert await replies.locator("tr.dead-letter").count() == 1
    reason = await replies.locator("td.reason").text_content()
    assert reason
    assert "sign" in reason
    await screenshot(page, "main", "dead-letters")


async def rows(page: Page) -> list[Any]:
    return [await r.get_attribute("data-saga-id") for r in await page.locator("tr.saga-row").all()]
