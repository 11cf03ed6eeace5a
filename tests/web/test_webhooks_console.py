"""The console's Webhooks page and an erased call's page, in a real browser (headless Chromium) against
a real server and a real webhook endpoint."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx2
import pytest
from bridge_harness import running_bridge
from browser import Browser, from_trio, in_browser, open_browser, require_browser
from console_data import TOKEN
from webhook_endpoint import webhook_endpoint

from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog

if importlib.util.find_spec("playwright") is None:
    require_browser(module=True)

from playwright.sync_api import expect

pytestmark = pytest.mark.usefixtures("browser_required")


@pytest.fixture
def browser_required() -> None:
    require_browser()


def no_page_errors(browser: Browser) -> None:
    assert browser.errors == [], browser.errors


async def test_a_webhook_added_in_the_console_shows_its_secret_once_its_deliveries_and_redelivers(
    tmp_path: Path,
) -> None:
    async with webhook_endpoint() as endpoint, running_bridge(tmp_path) as bridge:

        def record_a_call() -> None:
            for event in CallLog("CAconsole").start().caller_says("Hello").end().events:
                bridge.server.writer.record(event)

        async def received(count: int) -> None:
            await endpoint.wait_for(lambda e: len(e.received) >= count)
            (webhook_id,) = bridge.server.webhooks.senders
            await bridge.server.webhooks.senders[webhook_id].settled.wait_for(count)  # the answers are recorded

        def scenario() -> None:
            with open_browser(bridge.base_url) as browser:
                page = browser.page
                browser.sign_in(TOKEN)
                page.get_by_role("link", name="Webhooks").click()
                expect(page.get_by_role("heading", level=1)).to_have_text("Webhooks")
                page.get_by_label("Endpoint URL").fill(endpoint.url)
                page.get_by_label("call.started").check()
                page.get_by_role("button", name="Add webhook").click()
                secret = page.locator("code.secret")
                expect(secret).to_contain_text("whsec_")
                rows = page.locator(".webhooks-table tbody tr")
                expect(rows).to_have_count(1)
                expect(rows).to_contain_text(endpoint.url)
                expect(rows).to_contain_text("call.started, call.ended")
                shown_secret = secret.inner_text()

                record_a_call()  # the writer takes events from any thread
                from_trio(received, 2)
                rows.get_by_role("button", name="Deliveries").click()
                deliveries = page.locator(".deliveries-table tbody tr")
                expect(deliveries).to_have_count(2)
                expect(deliveries.first).to_contain_text("delivered")
                expect(deliveries.first).to_contain_text("HTTP 200")
                browser.screenshot("webhooks-page")
                deliveries.first.get_by_role("button", name="Redeliver").click()
                expect(page.locator(".notice.ok")).to_contain_text("queued again")
                from_trio(received, 3)

                page.reload()  # the secret was shown once: never again
                page.get_by_role("link", name="Webhooks").click()
                expect(page.locator(".webhooks-table tbody tr")).to_have_count(1)
                assert shown_secret not in page.content()
                page.once("dialog", lambda dialog: dialog.accept())
                page.locator(".webhooks-table").get_by_role("button", name="Remove").click()
                expect(page.locator(".webhooks")).to_contain_text("No webhooks yet.")
                no_page_errors(browser)
                return shown_secret

        secret = await in_browser(scenario)
    assert [r.message["type"] for r in endpoint.received] == ["call.started", "call.ended", "call.ended"]
    assert endpoint.received[1].webhook_id == endpoint.received[2].webhook_id  # redelivered: the same message
    endpoint.verified(secret)


async def test_an_erased_call_page_says_so_and_offers_no_recording(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "callbridge.db"))
    CallLog("CAerasedpage", from_number="+15550004444").start().caller_says("my secret plan").end().write(store)
    store.close()
    async with running_bridge(tmp_path) as bridge:
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            assert (await http.post("/api/calls/CAerasedpage/erase")).status_code == 200

        def scenario() -> None:
            with open_browser(bridge.base_url) as browser:
                page = browser.page
                browser.sign_in(TOKEN)
                browser.open("#/calls/CAerasedpage")
                expect(page.locator(".call-page .notice")).to_contain_text("This call was erased")
                expect(page.get_by_role("heading", level=1)).to_have_text("Call from [erased] to [erased]")
                expect(page.locator(".transcript.static")).to_contain_text("[erased]")
                expect(page.locator(".recording")).to_contain_text("Erased.")
                assert "my secret plan" not in page.content()
                no_page_errors(browser)

        await in_browser(scenario)
