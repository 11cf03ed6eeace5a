"""Console views in a real browser: the live view with no live call lists recent calls, history
search says why a call matched and fits a phone screen, and a caller cut off by the hang-up is not
left "streaming"."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import trio
from bridge_harness import running_bridge
from browser import DESKTOP, PHONE, from_trio, in_browser, open_browser, require_browser
from console_data import TOKEN, past_calls, start_soon

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Speak, WaitForAssistant
from callbridge.adapters.sim.fake_openai_script import Script, Turn
from callbridge.engine.store import EventStore

if importlib.util.find_spec("playwright") is None:
    require_browser(module=True)

from playwright.sync_api import expect

pytestmark = pytest.mark.usefixtures("browser_required")


@pytest.fixture
def browser_required() -> None:
    require_browser()


async def test_recent_calls_on_the_live_view_and_search_snippets_that_fit_a_phone(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "callbridge.db"))
    for log in past_calls():
        log.write(store)
    store.close()
    async with running_bridge(tmp_path) as bridge:

        def scenario() -> None:
            with open_browser(bridge.base_url) as browser:
                page = browser.page
                browser.sign_in(TOKEN)
                recent = page.locator(".recent-calls")
                expect(recent).to_contain_text("No live calls now")
                expect(recent.locator("li")).to_have_count(3)
                expect(recent.locator("li").first).to_contain_text("+15550100001")  # newest first
                expect(page.locator("#call-select option")).to_have_text("No live calls")

                page.get_by_role("link", name="History").click()
                page.get_by_label("Words said").fill("plumber")
                page.get_by_label("Words said").press("Enter")
                rows = page.locator(".calls-table tbody tr")
                expect(rows).to_have_count(1)
                why = rows.locator(".why li").first
                expect(why).to_contain_text("Caller: I need a plumber for my kitchen sink")
                expect(why.locator("mark")).to_have_text("plumber")
                page.set_viewport_size(PHONE)
                expect(rows.locator("td.opt").first).to_be_hidden()
                width = page.evaluate("() => document.documentElement.scrollWidth")
                assert width <= PHONE["width"], f"the history page is {width} px wide on a {PHONE['width']} px phone"
                browser.screenshot("history-search-phone")
                page.set_viewport_size(DESKTOP)

        await in_browser(scenario)


async def test_a_caller_cut_off_by_the_hang_up_is_not_left_streaming(tmp_path: Path) -> None:
    script = Script(turns=[Turn(transcript="Hello there", reply="Hi! How can I help?")])
    async with running_bridge(tmp_path, script=script) as bridge:

        async def call() -> None:  # hangs up in the middle of its second sentence
            await place_call(
                bridge.base_url, script=[Speak(700), WaitForAssistant(timeout_s=15), Speak(1500), HangUp()]
            )

        async with trio.open_nursery() as nursery:

            def scenario() -> None:
                with open_browser(bridge.base_url) as browser:
                    page = browser.page
                    browser.sign_in(TOKEN)
                    from_trio(start_soon, nursery, call)
                    expect(page.locator(".bubble.assistant").first).to_contain_text("Hi! How can I help?")
                    expect(page.locator(".bubble.caller")).to_have_count(2)  # the second one started
                    expect(page.locator(".call-meta .pill")).to_have_text("ended", timeout=15_000)
                    expect(page.locator(".bubble.status-streaming")).to_have_count(0)
                    expect(page.locator(".bubble.caller").nth(1)).to_contain_text("(no transcript)")

            await in_browser(scenario)
