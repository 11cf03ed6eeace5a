"""Call control in the console, in a real browser: "Call a number" places an outbound call through
the fake Twilio; the live call shows Hang up and Transfer (with the agent's targets); what happened
comes back as notes in the transcript. The ``make run`` demo's test call, chosen to end in the
agent's goodbye, shows the agent hanging up."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import trio
from bridge_harness import running_bridge
from browser import Browser, in_browser, open_browser, require_browser
from console_data import TOKEN
from phone_harness import OUR_NUMBER, phone_bridge

from callbridge.adapters.sim.caller import WaitForHangUp
from callbridge.adapters.sim.fake_twilio_calls import Answer
from callbridge.engine.agent import Agent, TransferTarget, load_agent

if importlib.util.find_spec("playwright") is None:
    require_browser(module=True)

from playwright.sync_api import expect

pytestmark = pytest.mark.usefixtures("browser_required")

DEMO_AGENT = Path(__file__).resolve().parents[2] / "agents" / "demo.toml"
AGENT = Agent(greeting="Hello, Acme here.", transfer_targets=[TransferTarget(label="sales", to="+15557654321")])


@pytest.fixture
def browser_required() -> None:
    require_browser()


async def test_an_operator_calls_a_number_from_the_console_and_hangs_it_up(tmp_path: Path) -> None:
    person = "+15551230099"
    async with phone_bridge(tmp_path, agent=AGENT) as phone:
        phone.twilio.calls.script_number(person, Answer(script=[WaitForHangUp(timeout_s=30)]))

        def scenario() -> Browser:
            with open_browser(phone.base_url) as browser:
                page = browser.page
                browser.sign_in(TOKEN)
                page.get_by_label("To", exact=True).fill("12345")
                page.get_by_role("button", name="Call", exact=True).click()
                assert page.locator("#place-call-to").evaluate("el => !el.validity.valid")  # the form refuses it
                page.get_by_label("To", exact=True).fill(person)
                page.get_by_label("Greeting (optional)").fill("Hi, this is Acme about your boiler.")
                page.get_by_role("button", name="Call", exact=True).click()
                expect(page.locator("#place-call-status")).to_contain_text(f"Calling {person} from {OUR_NUMBER}")
                expect(page.get_by_role("button", name="Hang up")).to_be_visible()
                expect(page.locator("#transfer-target")).to_contain_text("sales")
                expect(page.locator(".transcript")).to_contain_text("greeting starts playing")
                browser.screenshot("phone-console-live-call")
                page.get_by_role("button", name="Hang up").click()
                expect(page.locator("#call-control-status")).to_contain_text("Hang-up sent")
                expect(page.locator(".transcript")).to_contain_text("phone hung up through Twilio's REST API")
                expect(page.locator(".call-meta")).to_contain_text("hung up by an operator")
                expect(page.get_by_role("button", name="Hang up")).to_be_hidden()
                call_id = page.locator("#call-select").input_value()
                browser.open(f"#/calls/{call_id}")  # the call page's timeline has the call-control marks
                expect(page.locator("main")).to_contain_text("hang-up requested by an operator")
                expect(page.locator("main")).to_contain_text("answered by human")
                expect(page.locator("main")).to_contain_text("hung_up_by_operator")
                return browser

        browser = await in_browser(scenario)
        (call,) = phone.twilio.calls.calls.values()
        with trio.fail_after(20):
            await call.done.wait()
    assert call.hung_up_by == "rest" and call.to == person
    assert browser.errors == []


async def test_the_make_run_demos_test_call_ends_in_the_agents_goodbye_when_chosen(tmp_path: Path) -> None:
    agent = load_agent(DEMO_AGENT)  # what `make run` serves
    async with running_bridge(tmp_path, agent=agent) as bridge:

        def scenario() -> Browser:
            with open_browser(bridge.base_url) as browser:
                page = browser.page
                browser.sign_in(TOKEN)
                ending = page.get_by_label("The test call ends with")
                expect(ending).to_have_value("transfer")  # the default: a transfer to sales
                ending.select_option("goodbye")
                page.get_by_role("button", name="Place a test call").click()
                expect(page.locator(".toolbar .notice")).to_contain_text("placed")
                transcript = page.locator(".transcript")
                expect(transcript).to_contain_text("greeting starts playing", timeout=20_000)
                expect(transcript).to_contain_text("hang-up requested by the agent", timeout=120_000)
                expect(transcript).to_contain_text("the goodbye was heard")
                expect(transcript).to_contain_text("phone hung up through the stream's <Connect action>")
                expect(page.locator(".call-meta")).to_contain_text("hung up by the agent")
                expect(page.locator(".call-meta .pill")).to_have_text("ended", timeout=15_000)
                return browser

        browser = await in_browser(scenario)
    assert browser.errors == []
