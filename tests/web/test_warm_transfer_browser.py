"""A warm transfer from the console, in a real browser: the operator transfers a live call to a warm
target; the live view says the caller is on hold while the person is called, then that the call
was transferred; the call page's timeline and outcome say the same."""

from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path

import pytest
import trio
from browser import Browser, from_trio, in_browser, open_browser, require_browser
from console_data import TOKEN, start_soon
from phone_harness import phone_bridge
from test_warm_transfer import AGENT, GUARD_S, PERSON, WORDS

from callbridge.adapters.sim.caller import WaitForAssistant, WaitForHangUp
from callbridge.adapters.sim.fake_openai_script import Script, Turn
from callbridge.adapters.sim.fake_twilio_calls import Answer, FakeCall

if importlib.util.find_spec("playwright") is None:
    require_browser(module=True)

from playwright.sync_api import expect

pytestmark = pytest.mark.usefixtures("browser_required")


@pytest.fixture
def browser_required() -> None:
    require_browser()


async def test_the_console_shows_a_warm_transfer_on_hold_then_transferred(tmp_path: Path) -> None:
    script = Script(turns=[Turn(transcript=WORDS, reply="Let me look into that.")])
    async with phone_bridge(tmp_path, agent=AGENT, script=script) as phone:
        phone.twilio.calls.script_number(PERSON, Answer(kind="human", ring_s=2.0, talk_s=3.0))
        calls: list[FakeCall] = []
        phone.twilio.calls.on_call = calls.append
        place = partial(
            phone.twilio.calls.place_inbound,
            phone.base_url,
            script=[WaitForAssistant(timeout_s=10), WaitForHangUp(timeout_s=60)],
            on_hold_s=60,
        )
        async with trio.open_nursery() as nursery:

            def scenario() -> Browser:
                with open_browser(phone.base_url) as browser:
                    page = browser.page
                    browser.sign_in(TOKEN)
                    from_trio(start_soon, nursery, place)  # the caller rings in
                    expect(page.locator(".transcript")).to_contain_text("greeting starts playing")
                    page.locator("#transfer-target").select_option("support")
                    page.get_by_role("button", name="Transfer").click()
                    expect(page.locator(".call-meta")).to_contain_text("on hold — transferring to support")
                    expect(page.locator(".transcript")).to_contain_text("caller on hold: transferring to support")
                    browser.screenshot("warm-transfer-on-hold")
                    expect(page.locator(".call-meta")).to_contain_text("transferred to support")
                    call_id = page.locator("#call-select").input_value()
                    browser.open(f"#/calls/{call_id}")
                    main = page.locator("main")
                    expect(main).to_contain_text("caller on hold: transferring to support")
                    expect(main).to_contain_text("call ended: transferred")
                    expect(main).to_contain_text("transferred to support")
                    browser.open("#/history")
                    expect(main).to_contain_text("transferred to support")
                    return browser

            browser = await in_browser(scenario)
            with trio.fail_after(GUARD_S):
                for call in calls:
                    await call.done.wait()
    caller, person = calls
    assert person.heard_say and "Reason: transferred from the console" in person.heard_say[0]
    assert caller.hung_up_by == "conference" and browser.errors == []
