"""A model that cannot be reached is visible in the console: the live view says so while the call
is up, and the call page leads with it (a wrong key in a real browser against the real server)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import trio
from bridge_harness import running_bridge
from browser import from_trio, in_browser, open_browser, require_browser
from console_data import TOKEN, start_soon

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Silence, Speak

if importlib.util.find_spec("playwright") is None:
    require_browser(module=True)

from playwright.sync_api import expect

pytestmark = pytest.mark.usefixtures("browser_required")


@pytest.fixture
def browser_required() -> None:
    require_browser()


async def test_a_rejected_model_key_shows_on_the_live_view_and_leads_the_call_page(tmp_path: Path) -> None:
    # the simulated model only takes another key: every connection is refused with HTTP 401
    async with running_bridge(tmp_path, fake_options={"api_key": "sk-the-only-good-key"}) as bridge:
        ended = trio.Event()

        async def call() -> None:
            await place_call(bridge.base_url, script=[Speak(600), Silence(4000), HangUp()], from_number="+15550100999")
            ended.set()

        async with trio.open_nursery() as nursery:

            def scenario() -> None:
                with open_browser(bridge.base_url) as browser:
                    page = browser.page
                    browser.sign_in(TOKEN)
                    from_trio(start_soon, nursery, call)
                    notes = page.locator(".transcript .bubble.note.status-error")
                    expect(notes.first).to_contain_text("the realtime model could not be reached")
                    expect(notes.first).to_contain_text("HTTP 401")
                    expect(page.locator(".transcript")).to_contain_text("the realtime model was unavailable")
                    browser.screenshot("live-model-unavailable", full_page=False)
                    page.get_by_role("link", name="call page").click()
                    problems = page.locator("section.problems")
                    expect(problems.get_by_role("heading")).to_have_text("The realtime model was unavailable")
                    expect(problems).to_contain_text("HTTP 401")
                    # the call page leads with what went wrong, then the transcript, then the rest
                    order = page.evaluate(
                        "() => [...document.querySelectorAll('.call-page > section.panel')]"
                        ".map(s => s.querySelector('h2').textContent)"
                    )
                    assert order[:3] == ["The realtime model was unavailable", "Transcript", "Recording"], order
                    assert "sk-the-only-good-key" not in page.content()
                    browser.screenshot("call-page-model-unavailable")

            await in_browser(scenario)
            with trio.fail_after(20):
                await ended.wait()
