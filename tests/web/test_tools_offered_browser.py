"""The Session page's "What the model gets" in a real browser (headless Chromium via Playwright) against
a real server: it lists the built-ins and the agent's own tools beside the server's, follows the tools
typed in the editor, and after saving, a real call sends the model exactly the tools it listed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import trio
from agents_support import SALES_LINE, SUPPORT_LINE, agents_bridge, session_updates
from browser import in_browser, open_browser, require_browser
from console_data import TOKEN

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Silence
from callbridge.engine.agent import Agent, AgentTool, TransferTarget

if importlib.util.find_spec("playwright") is None:
    require_browser(module=True)

from playwright.sync_api import expect

pytestmark = pytest.mark.usefixtures("browser_required")


@pytest.fixture
def browser_required() -> None:
    require_browser()


DEFAULT_AGENT = Agent(
    transfer_targets=[TransferTarget(label="sales", to="+15551234567")],
    tools=[AgentTool(name="lookup_order", description="Look up an order.")],
)


async def test_the_tools_editor_lists_what_the_model_really_gets(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path, agent=DEFAULT_AGENT) as agents:

        def scenario() -> list[str]:
            with open_browser(agents.bridge.base_url) as browser:
                page = browser.page
                browser.sign_in(TOKEN)
                page.get_by_role("link", name="Session").click()
                offered = page.locator(".offered-tools li")
                expect(page.locator(".offered-for")).to_have_text("A call answered by agent default v1 gets:")
                expect(offered).to_have_count(5)
                names = ["get_weather_from_coords", "lookup_order", "end_call", "transfer_call", "send_dtmf"]
                expect(offered.locator("code")).to_have_text(names)
                expect(page.locator("li[data-tool='get_weather_from_coords']")).to_contain_text("server tool")
                expect(page.locator("li[data-tool='lookup_order']")).to_contain_text(
                    "agent's tool: answered by hand in the live view"
                )
                for builtin in ("end_call", "transfer_call", "send_dtmf"):
                    expect(page.locator(f"li[data-tool='{builtin}']")).to_contain_text("built-in")

                page.get_by_role("button", name="+ ask_a_person (answered by hand)").click()
                expect(offered).to_have_count(6)
                expect(page.locator("li[data-tool='ask_a_person']")).to_contain_text("session tool")
                page.get_by_role("button", name="Save").click()
                expect(page.locator("#save-status")).to_contain_text("Saved")
                browser.screenshot("tools-offered")
                shown = offered.locator("code").all_inner_texts()
                unexpected = list(browser.errors)
                assert unexpected == [], unexpected
                return shown

        shown = await in_browser(scenario)
        await agents.call(SUPPORT_LINE)
        (session,) = agents.bridge.fake.sessions
        sent = [tool["name"] for tool in session_updates(session)[0]["tools"]]

    assert (
        shown
        == sent
        == [
            "get_weather_from_coords",
            "lookup_order",
            "end_call",
            "transfer_call",
            "send_dtmf",
            "ask_a_person",
        ]
    )


async def test_a_live_calls_editor_lists_the_tools_of_the_agent_that_answers_it(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path) as agents, trio.open_nursery() as nursery:
        profile = {"name": "desk", "server_tools": [], "end_call": False, "tools": [{"name": "quote"}]}
        await agents.ok("POST", "/api/agents", profile, 201)
        await agents.ok("PUT", "/api/routing", {"rules": [{"to": SALES_LINE, "agent": "desk"}]})
        live = agents.bridge.server.live
        calls: list[str] = []

        async def caller() -> None:  # on the line until the test hangs up
            report = await place_call(agents.bridge.base_url, script=[Silence(60_000), HangUp()], to_number=SALES_LINE)
            calls.append(report.call_sid)

        nursery.start_soon(caller)
        with trio.fail_after(20):
            await live.wait_added()
        (call_id,) = live.calls

        def scenario() -> None:
            with open_browser(agents.bridge.base_url) as browser:
                page = browser.page
                browser.sign_in(TOKEN)
                page.goto(f"/#/session?call_id={call_id}")
                expect(page.get_by_role("button", name="Apply to this call")).to_be_visible()
                expect(page.locator(".offered-for")).to_have_text("A call answered by agent desk v1 gets:")
                expect(page.locator(".offered-tools li code")).to_have_text(["quote", "send_dtmf"])
                expect(page.locator("li[data-tool='quote']")).to_contain_text("agent's tool: answered by hand")
                assert list(browser.errors) == []

        await in_browser(scenario)
        await agents.ok("POST", f"/api/calls/{call_id}/hangup", {}, 202)
        with trio.fail_after(20):
            await agents.bridge.wait_call_ended(call_id)
    assert calls == [call_id]
