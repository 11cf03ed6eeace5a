"""The console's "Call a number" with an agent, in a real browser: the operator picks a saved agent
profile in the form; the call is placed (fake Twilio) and answered by that agent, over the routing
rule that would have chosen another."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import trio
from browser import Browser, in_browser, open_browser, require_browser
from console_data import TOKEN
from phone_harness import of_type, phone_bridge
from test_phone_outbound_agent import PERSON, sales_and_support

from callbridge.adapters.sim.caller import WaitForHangUp
from callbridge.adapters.sim.fake_twilio_calls import Answer
from callbridge.engine.agent import Agent
from callbridge.engine.events import AgentRouted, CallStarted, OutboundCallPlaced

if importlib.util.find_spec("playwright") is None:
    require_browser(module=True)

from playwright.sync_api import expect

pytestmark = pytest.mark.usefixtures("browser_required")


@pytest.fixture
def browser_required() -> None:
    require_browser()


async def test_an_operator_calls_a_number_with_a_chosen_agent_from_the_console(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=Agent(greeting="Hello from default.")) as phone:
        await sales_and_support(phone)
        phone.twilio.calls.script_number(PERSON, Answer(script=[WaitForHangUp(timeout_s=30)]))

        def scenario() -> Browser:
            with open_browser(phone.base_url) as browser:
                page = browser.page
                browser.sign_in(TOKEN)
                agents = page.get_by_label("Agent", exact=True)
                expect(agents.locator("option")).to_have_text(["by the routing rules", "default", "sales", "support"])
                agents.select_option("sales")
                page.get_by_label("To", exact=True).fill(PERSON)
                page.get_by_role("button", name="Call", exact=True).click()
                expect(page.locator("#place-call-status")).to_contain_text(f"Calling {PERSON}")
                expect(page.locator(".transcript")).to_contain_text("Boat sales!")
                browser.screenshot("phone-console-call-with-agent")
                page.get_by_role("button", name="Hang up").click()
                expect(page.locator("#call-control-status")).to_contain_text("Hang-up sent")
                call_id = page.locator("#call-select").input_value()
                browser.open(f"#/calls/{call_id}")  # the call page's timeline says which agent it was placed for
                expect(page.locator("main")).to_contain_text(f"outbound call placed to {PERSON}")
                expect(page.locator("main")).to_contain_text("for agent sales")
                return browser

        browser = await in_browser(scenario)
        (call,) = phone.twilio.calls.calls.values()
        with trio.fail_after(20):
            await call.done.wait()
        await phone.bridge.wait_call_ended(call.sid)
        events = await phone.events(call.sid)

    assert browser.errors == []
    assert [p.agent for p in of_type(events, OutboundCallPlaced)] == ["sales"]
    assert [(r.agent, r.source) for r in of_type(events, AgentRouted)] == [("sales", "placed")]
    [started] = of_type(events, CallStarted)  # the greeting may be cut by the hang-up: the agent is what counts
    assert (started.agent_name, started.session_config["instructions"]) == ("sales", "You sell boats.")
