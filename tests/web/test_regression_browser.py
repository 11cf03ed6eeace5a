"""The console's regression-test pages in a real browser (headless Chromium via Playwright) against a
real server: "Save as test" on a recorded call's page, then a ``callbridge test`` run against a
changed agent shown on the Tests page with its failing checks, the changed turns and the stubbed tools
marked."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import trio
from bridge_harness import running_bridge
from browser import in_browser, open_browser, require_browser
from console_data import TOKEN
from regression_support import AGENT_TOML, CALLER, SCRIPT, write

from callbridge.adapters.sim.caller import place_call
from callbridge.cli import main
from callbridge.engine.agent import load_agent

if importlib.util.find_spec("playwright") is None:
    require_browser(module=True)

from playwright.sync_api import expect

pytestmark = pytest.mark.usefixtures("browser_required")


@pytest.fixture
def browser_required() -> None:
    require_browser()


async def test_save_as_test_then_the_tests_page_shows_the_failing_run_and_its_diff(tmp_path: Path) -> None:
    agent = load_agent(write(tmp_path / "agent.toml", AGENT_TOML))
    changed = write(tmp_path / "changed.toml", 'greeting = "Welcome to Acme, what do you need?"\n')
    async with running_bridge(tmp_path, script=SCRIPT, agent=agent) as bridge:
        with trio.fail_after(40):
            report = await place_call(bridge.base_url, script=CALLER)
            await bridge.wait_call_ended(report.call_sid)
        call_id = report.call_sid

        def save_as_test() -> list[str]:
            with open_browser(bridge.base_url) as browser:
                page = browser.page
                browser.sign_in(TOKEN)
                browser.open(f"#/calls/{call_id}")
                page.get_by_role("button", name="Save as test").click()
                expect(page.locator(".saved-test .notice")).to_contain_text(f"Saved tests/{call_id}.toml")
                expect(page.locator(".saved-test pre")).to_contain_text(f'call = "{call_id}"')
                expect(page.locator(".saved-test pre")).to_contain_text('ended_by = "transfer"')
                return browser.errors

        assert await in_browser(save_as_test) == []
        saved = tmp_path / "tests" / f"{call_id}.toml"
        argv = ["test", str(saved), "--store", str(tmp_path / "callbridge.db"), "--agent", str(changed)]
        assert await trio.to_thread.run_sync(main, argv) == 1  # a run of its own, beside the server

        def tests_page() -> list[str]:
            with open_browser(bridge.base_url) as browser:
                page = browser.page
                browser.sign_in(TOKEN)
                page.get_by_role("link", name="Tests").click()
                runs = page.locator(".test-runs tbody tr")
                expect(runs).to_have_count(1)
                expect(runs.nth(0)).to_contain_text(f"call {call_id}")
                result = page.locator(".test-result")
                expect(result).to_have_attribute("data-passed", "false")
                expect(result.locator(".check.bad")).to_contain_text(["tool called: transfer_call"])
                greeting = result.locator("tr[data-turn='0']")
                expect(greeting).to_have_class("changed")
                expect(greeting).to_contain_text("Acme Plumbing, how can I help?")
                expect(greeting).to_contain_text("Welcome to Acme, what do you need?")
                expect(result.locator("tr[data-turn='1']")).not_to_have_class("changed")
                # the weather tool answered from the recording, not run: marked stubbed on the now side
                expect(result.locator("tr[data-turn='1'] li.tool.stubbed .pill")).to_have_text("stubbed")
                expect(result.locator("tr[data-turn='end']")).to_contain_text("transferred to sales")
                browser.screenshot("regression-tests-page")
                return browser.errors

        assert await in_browser(tests_page) == []
