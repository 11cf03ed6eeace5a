"""The agent form's model options and server tools in a real browser (headless Chromium via
Playwright) against a real server: shown from the saved profile, a bad value named at its field by the
server, saved as a new version that the API answers with exactly those values."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from agents_support import agents_bridge
from browser import in_browser, open_browser, require_browser
from console_data import TOKEN

if importlib.util.find_spec("playwright") is None:
    require_browser(module=True)

from playwright.sync_api import expect

pytestmark = pytest.mark.usefixtures("browser_required")


@pytest.fixture
def browser_required() -> None:
    require_browser()


async def test_the_agent_form_shows_and_saves_model_options_and_server_tools(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path) as agents:
        await agents.ok("POST", "/api/agents", {"name": "sales", "speed": 1.1, "noise_reduction": "far_field"}, 201)

        def scenario() -> None:
            with open_browser(agents.bridge.base_url) as browser:
                page = browser.page
                browser.sign_in(TOKEN)
                page.goto("/#/agents/sales")
                expect(page.get_by_role("heading", name="Version 1")).to_be_visible()
                # what was saved is shown; what was not says the default session's applies
                expect(page.get_by_label("Speed")).to_have_value("1.1")
                expect(page.get_by_label("Noise reduction")).to_have_value("far_field")
                expect(page.get_by_label("Realtime model")).to_have_value("")
                expect(page.get_by_label("Turn detection (JSON)")).to_have_value("")

                page.get_by_label("Speed").fill("2")
                page.get_by_role("button", name="Save as a new version").click()
                expect(page.locator("#agent-speed-error")).to_contain_text("speed: between 0.25 and 1.5")
                expect(page.get_by_label("Speed")).to_have_attribute("aria-invalid", "true")

                page.get_by_label("Speed").fill("0.9")
                page.get_by_label("Realtime model").fill("gpt-realtime-mini")
                page.get_by_label("Max output tokens").fill("600")
                page.get_by_label("Noise reduction").select_option("none")
                page.get_by_label("Turn detection (JSON)").fill('{"type": "semantic_vad", "eagerness": "high"}')
                page.get_by_label("Server tools offered (JSON)").fill("[]")
                page.get_by_role("button", name="Save as a new version").click()
                expect(page.locator("#agent-save-status")).to_contain_text("Saved: version 2 answers new calls.")

                page.reload()
                expect(page.get_by_role("heading", name="Version 2")).to_be_visible()
                expect(page.get_by_label("Realtime model")).to_have_value("gpt-realtime-mini")
                expect(page.get_by_label("Max output tokens")).to_have_value("600")
                expect(page.get_by_label("Noise reduction")).to_have_value("none")
                expect(page.get_by_label("Server tools offered (JSON)")).to_have_value("[]")
                browser.screenshot("agents-model-options")
                unexpected = [e for e in browser.errors if "status of 400" not in e]
                assert unexpected == [], unexpected

        await in_browser(scenario)
        saved = await agents.ok("GET", "/api/agents/sales")

    assert saved["version"] == 2
    assert {key: saved[key] for key in ("model", "max_output_tokens", "noise_reduction", "speed")} == {
        "model": "gpt-realtime-mini",
        "max_output_tokens": 600,
        "noise_reduction": "none",
        "speed": 0.9,
    }
    assert saved["turn_detection"] == {"type": "semantic_vad", "eagerness": "high"}
    assert saved["server_tools"] == []
