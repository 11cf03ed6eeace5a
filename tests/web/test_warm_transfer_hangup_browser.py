"""Hanging up a held call from the console, in a real browser: the operator transfers a live call
warm; while the caller hears hold music and the person's phone rings, the live view's Hang up ends
the call — the caller's call and the person's, through the fake Twilio — and the console says so."""

from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path

import pytest
import trio
from browser import Browser, from_trio, in_browser, open_browser, require_browser
from console_data import TOKEN, start_soon
from phone_harness import of_type, phone_bridge
from test_warm_transfer import AGENT, GUARD_S, PERSON, WORDS
from test_warm_transfer_hangups import status_url

from callbridge.adapters.sim.caller import WaitForAssistant, WaitForHangUp
from callbridge.adapters.sim.fake_openai_script import Script, Turn
from callbridge.adapters.sim.fake_twilio_calls import Answer, FakeCall
from callbridge.engine.events import CallEnded

if importlib.util.find_spec("playwright") is None:
    require_browser(module=True)

from playwright.sync_api import expect

pytestmark = pytest.mark.usefixtures("browser_required")


@pytest.fixture
def browser_required() -> None:
    require_browser()


async def test_the_console_hangs_up_a_call_on_hold(tmp_path: Path) -> None:
    script = Script(turns=[Turn(transcript=WORDS, reply="Let me look into that.")])
    async with phone_bridge(tmp_path, agent=AGENT, script=script) as phone:
        phone.twilio.calls.script_number(PERSON, Answer(kind="human", ring_s=3600))
        calls: list[FakeCall] = []
        phone.twilio.calls.on_call = calls.append
        place = partial(
            phone.twilio.calls.place_inbound,
            phone.base_url,
            script=[WaitForAssistant(timeout_s=10), WaitForHangUp(timeout_s=60)],
            on_hold_s=3600,
            status_callback=status_url(phone),
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
                    page.get_by_role("button", name="Hang up").click()
                    expect(page.locator("#call-control-status")).to_contain_text("Hang-up sent")
                    expect(page.locator(".call-meta")).to_contain_text("hung up by an operator")
                    expect(page.get_by_role("button", name="Hang up")).to_be_hidden()
                    call_id = page.locator("#call-select").input_value()
                    browser.open(f"#/calls/{call_id}")
                    main = page.locator("main")
                    expect(main).to_contain_text("call ended: operator_hangup")
                    return browser

            browser = await in_browser(scenario)
            with trio.fail_after(GUARD_S):
                for call in calls:
                    await call.done.wait()
        events = await phone.events(calls[0].sid)
    caller, person = calls
    assert browser.errors == []
    assert caller.hung_up_by == "rest" and caller.updates[-1] == {"Status": "completed"}
    assert person.hung_up_by == "rest" and person.statuses_posted == ["canceled"]
    [ended] = of_type(events, CallEnded)
    assert (ended.reason, ended.detail) == ("operator_hangup", "while on hold")
