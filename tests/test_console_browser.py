"""The web console in a real browser (headless Chromium via Playwright) against a real server.

Each test starts the whole bridge on 127.0.0.1 (simulated model, SQLite store, views) in its trio
loop and drives the console from a worker thread (``tests/browser.py``). What is checked is what a
person sees: text in the page, the state of the audio player, and what reached the server or the
fake Twilio API because of a click. Screenshots land in ``tests/artifacts/``.
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

import pytest
import trio
from bridge_harness import Bridge, running_bridge
from browser import DESKTOP, PHONE, Browser, from_trio, in_browser, open_browser, require_browser
from playwright.sync_api import expect

from adapters.sim.caller import place_call
from adapters.sim.caller_script import HangUp, Silence, Speak, WaitForAssistant
from adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from adapters.sim.fake_twilio_rest import FakeTwilioRest, serve_fake_twilio_rest
from engine.store import EventStore
from engine.synthetic import CallLog
from engine.tools import Tool, default_registry
from web.auth import SESSION_COOKIE

TOKEN = "test-token"  # what running_bridge configures
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0

pytestmark = pytest.mark.usefixtures("browser_required")


@pytest.fixture
def browser_required() -> None:
    require_browser()


def no_page_errors(browser: Browser) -> None:
    assert browser.errors == [], browser.errors


# --- sign-in -----------------------------------------------------------------------------------


async def test_the_token_signs_in_a_wrong_one_does_not_and_sign_out_ends_the_session(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as bridge:

        def scenario() -> None:
            with open_browser(bridge.base_url) as browser:
                page = browser.page
                response = page.goto("/")
                assert response is not None and response.status == 401
                expect(page.get_by_role("button", name="Sign in")).to_be_visible()
                page.get_by_label("API token").fill("not-the-token")
                page.get_by_role("button", name="Sign in").click()
                expect(page.get_by_role("alert")).to_contain_text("not the API token")
                assert not page.context.cookies()
                browser.sign_in(TOKEN)
                (cookie,) = page.context.cookies()
                assert cookie["name"] == SESSION_COOKIE and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
                assert TOKEN not in cookie["value"]
                expect(page.locator("#feed-status")).to_have_text("live")
                assert TOKEN not in page.content()
                page.get_by_role("button", name="Sign out").click()
                expect(page.get_by_role("button", name="Sign in")).to_be_visible()
                assert page.goto("/api/conversations").status == 401  # type: ignore[union-attr]
                no_page_errors(browser)

        await in_browser(scenario)


# --- live calls --------------------------------------------------------------------------------


async def test_a_test_call_placed_from_the_console_streams_into_the_live_transcript(tmp_path: Path) -> None:
    script = Script(
        turns=[
            Turn(transcript="Hi there, is anyone listening?", reply="Hello! I am listening, how can I help you today?"),
            Turn(transcript="Just testing the line.", reply="The line works perfectly. Goodbye!"),
        ]
    )
    async with running_bridge(tmp_path, script=script) as bridge:

        def scenario() -> None:
            with open_browser(bridge.base_url) as browser:
                page = browser.page
                browser.sign_in(TOKEN)
                # count how many different texts the assistant's first bubble shows while it streams
                page.evaluate(
                    """() => {
                        window.assistantTexts = new Set();
                        new MutationObserver(() => {
                            const bubble = document.querySelector('.bubble.assistant .body');
                            if (bubble) window.assistantTexts.add(bubble.textContent);
                        }).observe(document.getElementById('main'), {subtree: true, childList: true, characterData: true});
                    }"""
                )
                page.get_by_role("button", name="Place a test call").click()
                expect(page.locator(".toolbar .notice")).to_contain_text("placed")
                transcript = page.locator(".transcript")
                expect(transcript.locator(".bubble.caller").first).to_contain_text("Hi there, is anyone listening?")
                expect(transcript.locator(".bubble.assistant").first).to_contain_text(
                    "Hello! I am listening, how can I help you today?"
                )
                expect(page.locator(".call-meta .pill")).to_have_text("live")
                option = page.locator("#call-select option:checked")
                expect(option).to_contain_text("+15005550006")
                browser.screenshot("live-desktop")
                expect(transcript.locator(".bubble.assistant").nth(1)).to_contain_text("The line works perfectly")
                expect(page.locator(".call-meta .pill")).to_have_text("ended", timeout=15_000)
                partials = page.evaluate("window.assistantTexts.size")
                assert partials > 2, f"the reply appeared at once, not as deltas ({partials} states)"
                no_page_errors(browser)

        await in_browser(scenario)


def operator_registry() -> object:
    registry = default_registry()
    registry.register(
        Tool(
            name="ask_operator",
            description="Ask the shop's operator a question.",
            parameters={"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]},
        )
    )
    return registry


async def test_a_function_call_answered_by_hand_reaches_the_model_and_the_reply_appears(tmp_path: Path) -> None:
    script = Script(
        turns=[
            Turn(
                transcript="Is the shop open on Sunday?",
                function_call=FunctionCall(name="ask_operator", arguments={"question": "Open on Sunday?"}),
                after_tool="The operator says: {output}",
            )
        ]
    )
    async with running_bridge(tmp_path, script=script, registry=operator_registry()) as bridge:  # type: ignore[arg-type]
        call_done = trio.Event()

        async def call() -> None:
            steps = [Speak(900), WaitForAssistant(timeout_s=20), Silence(300), HangUp()]
            await place_call(bridge.base_url, script=steps, from_number="+15550100777")
            call_done.set()

        async with trio.open_nursery() as nursery:

            def scenario() -> None:
                with open_browser(bridge.base_url, viewport=PHONE, color_scheme="dark") as browser:
                    page = browser.page
                    browser.sign_in(TOKEN)
                    from_trio(lambda: _start(nursery, call))
                    pending = page.locator(".tool-list.pending .tool-card")
                    expect(pending).to_have_count(1)
                    expect(pending).to_contain_text("ask_operator")
                    expect(pending).to_contain_text("Open on Sunday?")
                    expect(page.locator(".bubble.caller").first).to_contain_text("Is the shop open on Sunday?")
                    browser.screenshot("live-phone-dark-pending-tool")
                    pending.get_by_label(re.compile("Your answer")).fill("Yes, from ten to four.")
                    pending.get_by_role("button", name="Send answer").click()
                    expect(page.locator(".bubble.assistant").last).to_contain_text(
                        "The operator says: Yes, from ten to four."
                    )
                    finished = page.locator(".tool-list.finished .tool-card")
                    expect(finished).to_contain_text("Yes, from ten to four.")
                    expect(page.locator(".tool-list.pending .tool-card")).to_have_count(0)
                    no_page_errors(browser)

            await in_browser(scenario)
            with trio.fail_after(20):
                await call_done.wait()

    outputs = [
        json.loads(event.raw)["item"]
        for session in bridge.fake.sessions
        for event in session.client_events
        if event.type == "conversation.item.create"
    ]
    assert [item["output"] for item in outputs if item["type"] == "function_call_output"] == ["Yes, from ten to four."]


async def _start(nursery: trio.Nursery, fn: object) -> None:
    nursery.start_soon(fn)  # type: ignore[arg-type]
