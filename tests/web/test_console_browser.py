"""The web console in a real browser (headless Chromium via Playwright) against a real server.

Each test starts the whole bridge on 127.0.0.1 (simulated model, SQLite store, views) in its trio
loop and drives the console from a worker thread (``tests/browser.py``). What is checked is what a
person sees: text in the page, the state of the audio player, and what reached the server or the
fake Twilio API because of a click. Screenshots land in ``tests/artifacts/``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from functools import partial
from pathlib import Path

import pytest
import trio
from bridge_harness import running_bridge
from browser import DESKTOP, PHONE, Browser, from_trio, in_browser, open_browser, require_browser
from console_data import TOKEN, free_port, operator_registry, past_calls, start_soon

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Silence, Speak, Step, WaitForAssistant
from callbridge.adapters.sim.fake_openai import serve_fake_openai
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.adapters.sim.fake_twilio_rest import FakeTwilioRest, serve_fake_twilio_rest
from callbridge.engine.store import EventStore
from callbridge.server import Server
from callbridge.web.auth import SESSION_COOKIE
from callbridge.web.settings import load_settings

if importlib.util.find_spec("playwright") is None:
    require_browser(module=True)  # skip with the reason (under CI=true: fail) rather than an ImportError

from playwright.sync_api import Dialog, expect

pytestmark = pytest.mark.usefixtures("browser_required")


@pytest.fixture
def browser_required() -> None:
    """Each test skips without Chromium, or fails under CI=true (the rest of the suite still runs)."""
    require_browser()


def no_page_errors(browser: Browser, *, expected: tuple[str, ...] = ()) -> None:
    """No script error and no failed request, except those the test caused on purpose."""
    unexpected = [error for error in browser.errors if not any(part in error for part in expected)]
    assert unexpected == [], unexpected


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
                # a link with ?token= signs in too, and the token leaves the address bar at once
                console = page.goto(f"/?token={TOKEN}")
                assert console is not None and console.status == 200 and page.url == f"{bridge.base_url}/"
                assert "script-src 'self'" in console.headers["content-security-policy"]
                browser.wait_feed_live()
                no_page_errors(browser)

        await in_browser(scenario)


# --- live calls --------------------------------------------------------------------------------


async def test_a_test_call_placed_from_the_console_streams_into_the_live_transcript(tmp_path: Path) -> None:
    script = Script(
        turns=[
            Turn(transcript="Hi there, is anyone listening?", reply="Hello! I am listening, how can I help?"),
            Turn(transcript="Just testing the line.", reply="It works. Goodbye!"),
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
                        }).observe(document.getElementById('main'),
                                   {subtree: true, childList: true, characterData: true});
                    }"""
                )
                page.get_by_role("button", name="Place a test call").click()
                expect(page.locator(".toolbar .notice")).to_contain_text("placed")
                transcript = page.locator(".transcript")
                expect(transcript.locator(".bubble.caller").first).to_contain_text("Hi there, is anyone listening?")
                expect(transcript.locator(".bubble.assistant").first).to_contain_text(
                    "Hello! I am listening, how can I help?"
                )
                expect(page.locator(".call-meta .pill")).to_have_text("live")
                option = page.locator("#call-select option:checked")
                expect(option).to_contain_text("+15005550006")
                browser.screenshot("live-desktop")
                expect(transcript.locator(".bubble.assistant").nth(1)).to_contain_text("It works. Goodbye!")
                expect(page.locator(".call-meta .pill")).to_have_text("ended", timeout=15_000)
                partials = page.evaluate("window.assistantTexts.size")
                assert partials > 2, f"the reply appeared at once, not as deltas ({partials} states)"
                no_page_errors(browser)

        await in_browser(scenario)


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
    async with running_bridge(tmp_path, script=script, registry=operator_registry()) as bridge:
        call_done = trio.Event()

        async def call() -> None:
            steps: list[Step] = [Speak(900), WaitForAssistant(timeout_s=20), Silence(300), HangUp()]
            await place_call(bridge.base_url, script=steps, from_number="+15550100777")
            call_done.set()

        async with trio.open_nursery() as nursery:

            def scenario() -> None:
                with open_browser(bridge.base_url, viewport=PHONE, color_scheme="dark") as browser:
                    page = browser.page
                    browser.sign_in(TOKEN)
                    from_trio(start_soon, nursery, call)
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


# --- history and the call page -----------------------------------------------------------------


async def test_history_search_finds_a_past_call_whose_page_plays_the_recording_and_replays_it(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "callbridge.db"))
    for log in past_calls():
        log.write(store)
    store.close()
    async with running_bridge(tmp_path) as bridge:

        def scenario() -> None:
            with open_browser(bridge.base_url) as browser:
                page = browser.page
                browser.sign_in(TOKEN)
                page.get_by_role("link", name="History").click()
                rows = page.locator(".calls-table tbody tr")
                expect(rows).to_have_count(3)
                page.get_by_label("Words said").fill("paris")
                page.get_by_label("Words said").press("Enter")
                expect(rows).to_have_count(1)
                expect(rows).to_contain_text("+15550100001")
                assert "q=paris" in page.url  # the search is in the address: Back and bookmarks work
                rows.get_by_role("link").click()
                expect(page.get_by_role("heading", level=1)).to_have_text("Call from +15550100001 to +15550109999")

                # the recording loads and plays
                audio = page.locator("audio#recording")
                page.wait_for_function(
                    "() => { const a = document.querySelector('#recording');"
                    " return a.readyState >= 1 && a.duration > 0 }"
                )
                assert audio.evaluate("a => a.error") is None
                assert audio.evaluate("a => a.duration") > 5
                audio.evaluate("a => a.play()")
                page.wait_for_function("() => document.querySelector('#recording').currentTime > 0")
                audio.evaluate("a => a.pause()")

                # one time axis: both voices, the tool call and what went wrong
                timeline = page.locator("svg.timeline")
                for selector in ("rect.span.caller", "rect.span.assistant", "rect.span.tool"):
                    expect(timeline.locator(selector).first).to_be_attached()
                expect(timeline.locator("rect.span.assistant.status-interrupted")).to_have_count(1)
                for kind in ("truncation", "reconnect", "error"):
                    expect(timeline.locator(f"g.mark.{kind}").first).to_be_attached()
                expect(page.locator(".timeline-list")).to_contain_text("rate_limit_exceeded", use_inner_text=False)
                expect(page.locator("svg.bars")).to_have_count(2)  # latency and tokens per turn
                expect(page.locator(".figures")).to_contain_text("Cost")
                expect(page.locator(".transcript.static")).to_contain_text("get_weather")
                browser.screenshot("call-page-desktop")
                page.set_viewport_size(PHONE)
                page.emulate_media(color_scheme="dark")
                browser.screenshot("call-page-phone-dark")
                page.set_viewport_size(DESKTOP)

                # replay through the live view
                page.get_by_label("Replay speed").select_option("16")
                page.get_by_role("button", name="Replay in the live view").click()
                expect(page.locator(".bubble.caller").first).to_contain_text("What's the weather in Paris?")
                expect(page.locator(".bubble.assistant").last).to_contain_text("No rain is expected tomorrow.")
                expect(page.locator(".tool-list.finished .tool-card")).to_contain_text("get_weather")
                expect(page.locator(".toolbar .notice")).to_have_text("replay finished")
                expect(page.locator(".bubble.assistant.status-interrupted")).to_have_count(1)
                expect(page.locator(".answer")).to_have_count(0)  # a replay answers nothing
                no_page_errors(browser)

        await in_browser(scenario)


# --- setup and session -------------------------------------------------------------------------


async def test_the_setup_checklist_points_a_numbers_webhook_at_this_server(tmp_path: Path) -> None:
    fake = FakeTwilioRest()
    ours = fake.add_number("+15005550001", friendly_name="Support line", voice_url="https://demo.twilio.com/voice")
    other = fake.add_number("+15005550002", friendly_name="Sales line")
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_fake_twilio_rest, fake=fake))
        env = {
            "TWILIO_ACCOUNT_SID": fake.account_sid,
            "TWILIO_AUTH_TOKEN": fake.auth_token,
            "TWILIO_API_BASE_URL": fake.url,
        }
        async with running_bridge(tmp_path, env=env) as bridge:
            twiml = f"{bridge.server.settings.public_url}/twiml"

            def scenario() -> None:
                with open_browser(bridge.base_url) as browser:
                    page = browser.page
                    browser.sign_in(TOKEN)
                    page.get_by_role("link", name="Setup").click()
                    checks = page.locator(".checklist .check")
                    expect(checks.first).to_be_visible()
                    assert checks.count() >= 4
                    expect(page.locator(".check[data-check] strong").first).not_to_be_empty()
                    row = page.locator(f"tr[data-sid='{ours['sid']}']")
                    expect(row.locator(".webhook")).to_contain_text("not")
                    expect(page.locator(".public-url-problem")).to_contain_text("local or private address")
                    browser.screenshot("setup-before")
                    dialogs: list[str] = []
                    answers = [False]  # decline replacing the number's webhook first

                    def answer(dialog: Dialog) -> None:
                        dialogs.append(dialog.message)
                        (dialog.accept if (answers.pop(0) if answers else True) else dialog.dismiss)()

                    page.on("dialog", answer)
                    row.get_by_role("button", name="Point the webhook here").click()
                    expect(page.locator(".setup .notice")).to_contain_text("left as it is")
                    assert fake.updates == [] and "https://demo.twilio.com/voice" in dialogs[0]
                    row.get_by_role("button", name="Point the webhook here").click()
                    expect(page.locator(".setup .notice")).to_contain_text(f"now sends its calls to {twiml}")
                    expect(page.locator(".setup .notice")).to_contain_text("it was https://demo.twilio.com/voice")
                    assert "Replace it with" in dialogs[1] and "Twilio cannot reach" in dialogs[2]
                    expect(row.locator(".webhook")).to_have_text("✓ points here")
                    expect(row.locator(".url")).to_have_text(twiml)
                    other_row = page.locator(f"tr[data-sid='{other['sid']}']")
                    expect(other_row.locator(".webhook")).to_contain_text("not")
                    assert fake.auth_token not in page.content()
                    browser.screenshot("setup-after")
                    no_page_errors(browser)

            await in_browser(scenario)
        nursery.cancel_scope.cancel()
    assert fake.numbers[ours["sid"]]["voice_url"] == twiml
    assert [sid for sid, _ in fake.updates] == [ours["sid"]]
    assert fake.numbers[other["sid"]]["voice_url"] == ""


async def test_session_settings_are_validated_then_saved_for_new_calls(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as bridge:

        def scenario() -> None:
            with open_browser(bridge.base_url) as browser:
                page = browser.page
                browser.sign_in(TOKEN)
                page.get_by_role("link", name="Session").click()
                voice = page.get_by_label("Voice")
                expect(voice.locator("option[value='marin']")).to_be_attached()
                voice.select_option("cedar")
                page.get_by_label("Instructions").fill("You are the front desk of a bakery.")
                tools = page.get_by_label("Tools (JSON)")
                tools.fill('[{"type": "function", "name": ')
                expect(page.locator("#tools-status")).to_contain_text("not valid JSON")
                page.get_by_role("button", name="Save").click()
                expect(page.locator("#save-status")).to_contain_text("Tools: not valid JSON")
                tools.fill("[]")
                offered = page.locator(".offered-tools li")
                # the server's tool and the call-control built-ins are offered even with no session tools
                expect(offered).to_have_count(3)
                expect(offered.first).to_contain_text("server tool")
                expect(page.locator(".unsaved")).to_be_visible()  # typing marked the form unsaved
                page.get_by_role("button", name="+ get_weather_from_coords").click()
                expect(page.locator("#tools-status")).to_have_text("1 tool: get_weather_from_coords")
                page.get_by_role("button", name="+ ask_a_person (answered by hand)").click()
                expect(page.locator(".offered-tools li[data-kind='session']")).to_contain_text("ask_a_person")
                expect(page.locator(".offered-tools li[data-kind='session']")).to_contain_text("answered by hand")
                expect(offered).to_have_count(4)
                tools.fill('[{"type": "function", "name": "get_weather_from_coords"}]')
                # the server's own check: a threshold outside 0-1 is refused with its reason
                page.get_by_label(re.compile("^Threshold")).fill("5")
                page.get_by_role("button", name="Save").click()
                expect(page.locator("#save-status")).to_contain_text("Not saved")
                expect(page.locator("#save-status")).to_contain_text("threshold")
                page.get_by_label("Turn detection").select_option("semantic_vad")
                page.get_by_label("Eagerness").select_option("high")
                page.get_by_role("button", name="Save").click()
                expect(page.locator("#save-status")).to_contain_text("Saved")
                expect(page.locator(".unsaved")).to_be_hidden()
                save_box = page.get_by_role("button", name="Save").bounding_box()
                status_box = page.locator("#save-status").bounding_box()
                assert save_box and status_box and abs(save_box["y"] - status_box["y"]) < 40  # said where the button is
                browser.screenshot("session")
                no_page_errors(browser, expected=("status of 400",))

        before = dict(bridge.server.default_session)
        await in_browser(scenario)
        saved = bridge.server.default_session
        assert saved != before
        assert saved["voice"] == "cedar" and saved["instructions"] == "You are the front desk of a bakery."
        assert saved["turn_detection"] == {
            "type": "semantic_vad",
            "eagerness": "high",
            "create_response": True,
            "interrupt_response": True,
        }
        assert [tool["name"] for tool in saved["tools"]] == ["get_weather_from_coords"]


# --- a server restart --------------------------------------------------------------------------


async def test_the_console_says_it_is_reconnecting_while_the_server_restarts_then_goes_live_again(
    tmp_path: Path,
) -> None:
    port = free_port()  # the restarted server must come back where the page is
    settings = load_settings(
        {"CALLBRIDGE_STORE": str(tmp_path / "callbridge.db"), "CALLBRIDGE_API_TOKEN": TOKEN}, port=port, model="sim"
    )
    async with trio.open_nursery() as nursery:
        fake = await nursery.start(partial(serve_fake_openai, "127.0.0.1", 0))
        servers: list[Server] = []

        async def start() -> None:
            server = Server(settings, model_url=fake.url)
            await nursery.start(server.run)
            servers.append(server)

        async def stop() -> None:
            servers[-1].shutdown.set()
            await servers[-1].stopped.wait()

        await start()

        def scenario() -> None:
            with open_browser(f"http://127.0.0.1:{port}") as browser:
                status = browser.page.locator("#feed-status")
                browser.sign_in(TOKEN)
                from_trio(stop)
                expect(status).to_contain_text("reconnecting…")
                browser.screenshot("reconnecting", full_page=False)
                from_trio(start)
                expect(status).to_have_text("live")  # the same session cookie opens the new server's feed
                no_page_errors(browser, expected=("WebSocket", "ERR_CONNECTION_REFUSED"))

        await in_browser(scenario)
        await stop()
        nursery.cancel_scope.cancel()
    assert len(servers) == 2
