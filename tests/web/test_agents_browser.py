"""The console's agent pages in a real browser (headless Chromium via Playwright) against a real
server: list the profiles, edit one (a bad value is shown at its field), see what changed between two
versions, roll back, route a number to it, and follow a call to the exact version that answered."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from agents_support import SALES_LINE, agents_bridge
from bridge_harness import of_type
from browser import from_trio, in_browser, open_browser, require_browser
from console_data import TOKEN

from callbridge.engine.events import AgentSaved, RoutingRulesSaved

if importlib.util.find_spec("playwright") is None:
    require_browser(module=True)

from playwright.sync_api import Dialog, expect

pytestmark = pytest.mark.usefixtures("browser_required")


@pytest.fixture
def browser_required() -> None:
    require_browser()


async def test_the_console_lists_edits_diffs_and_rolls_back_a_profile(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path) as agents:
        await agents.ok("POST", "/api/agents", {"name": "sales", "instructions": "Sell boats.\nBe brief."}, 201)

        def scenario() -> list[str]:
            dialogs: list[str] = []
            with open_browser(agents.bridge.base_url) as browser:
                page = browser.page

                def accept(dialog: Dialog) -> None:
                    dialogs.append(dialog.message)
                    dialog.accept()

                page.on("dialog", accept)
                browser.sign_in(TOKEN)
                page.get_by_role("link", name="Agents").click()
                rows = page.locator(".agents-table tbody tr")
                expect(rows).to_have_count(2)
                expect(rows.nth(0)).to_contain_text("default")
                expect(rows.nth(1)).to_contain_text("sales")
                expect(rows.nth(1)).to_contain_text("Sell boats.")
                page.get_by_role("link", name="sales", exact=True).click()
                expect(page.get_by_role("heading", name="Version 1")).to_be_visible()

                # a bad transfer target is refused by the server and shown at its field
                page.get_by_label("Transfer targets (JSON)").fill('[{"label": "desk", "to": "555"}]')
                page.get_by_role("button", name="Save as a new version").click()
                error = page.locator("#agent-transfer_targets-error")
                expect(error).to_contain_text("transfer_targets[0]: to: '555' is neither an E.164 number")
                expect(page.get_by_label("Transfer targets (JSON)")).to_have_attribute("aria-invalid", "true")
                expect(page.locator("#agent-save-status")).to_contain_text("Not saved")

                page.get_by_label("Transfer targets (JSON)").fill("[]")
                page.get_by_label("Instructions").fill("Sell boats.\nBe warm and brief.")
                page.get_by_label("Voice", exact=True).fill("cedar")
                page.get_by_role("button", name="Save as a new version").click()
                expect(page.locator("#agent-save-status")).to_contain_text("Saved: version 2 answers new calls.")
                expect(page.locator(".versions li")).to_have_count(2)
                expect(page.locator('.versions li[data-version="2"]')).to_contain_text("current")

                # what changed from version 1 to 2: the prompt's changed line, and the voice
                page.locator('.versions li[data-version="2"]').get_by_role("button", name="Changes").click()
                diff = page.locator(".agent-diff")
                expect(diff.get_by_role("heading", name="Changes from version 1 to 2")).to_be_visible()
                expect(diff.locator('.diff-key[data-key="instructions"] .del')).to_have_text(["-Be brief."])
                expect(diff.locator('.diff-key[data-key="instructions"] .add')).to_have_text(["+Be warm and brief."])
                expect(diff.locator('.diff-key[data-key="voice"] .add')).to_have_text(["+cedar"])
                browser.screenshot("agents-diff")

                # roll back to version 1: a new version with its content
                page.locator('.versions li[data-version="1"]').get_by_role("button", name="Roll back to this").click()
                expect(page.locator(".agent-page > .notice")).to_contain_text(
                    "Rolled back: version 3 has version 1's content."
                )
                expect(page.get_by_role("heading", name="Version 3")).to_be_visible()
                expect(page.get_by_label("Instructions")).to_have_value("Sell boats.\nBe brief.")
                expect(page.locator('.versions li[data-version="3"]')).to_contain_text("rolled back from v1")

                # an old version opens read-only, with the way back to it
                page.locator('.versions li[data-version="2"] a').click()
                expect(page.get_by_role("heading", name="Version 2 (read-only)")).to_be_visible()
                expect(page.get_by_label("Voice", exact=True)).to_have_value("cedar")
                expect(page.get_by_role("button", name="Roll back to version 2")).to_be_visible()

                # route the sales line to it, and ask which agent a call would reach
                page.goto("/#/routing")
                page.get_by_role("button", name="Add a rule").click()
                page.get_by_label("Rule 1 Called number").fill(SALES_LINE)
                page.get_by_label("Rule 1 agent").select_option("sales")
                page.get_by_label("Rule 1 Hours").fill("9 to 5")
                page.get_by_role("button", name="Save the routing").click()
                expect(page.locator("#routing-status")).to_contain_text(
                    "Not saved: rules[0]: hours: '9 to 5' is not HH:MM"
                )
                expect(page.get_by_label("Rule 1 Hours")).to_have_attribute("aria-invalid", "true")
                page.get_by_label("Rule 1 Hours").fill("")
                page.get_by_role("button", name="Save the routing").click()
                expect(page.locator("#routing-status")).to_contain_text("Saved: version 1 routes new calls.")
                page.get_by_label("Called number", exact=True).fill(SALES_LINE)
                page.get_by_role("button", name="Which agent answers?").click()
                expect(page.locator("#try-result")).to_contain_text(f"sales v3: rule #1 'to={SALES_LINE}'")
                browser.screenshot("agents-routing")

                # a call's page names the version that answered, and links to exactly it
                call = from_trio(agents.call, SALES_LINE)
                page.goto(f"/#/calls/{call.report.call_sid}")
                link = page.locator("#call-agent")
                expect(link).to_have_text("sales v3")
                expect(page.locator(".facts")).to_contain_text(f"rule #1 'to={SALES_LINE}'")
                link.click()
                expect(page).to_have_url(re.compile(r"#/agents/sales\?version=3$"))
                expect(page.get_by_role("heading", name="Version 3")).to_be_visible()
                browser.screenshot("agents-profile")
                unexpected = [e for e in browser.errors if "status of 400" not in e]
                assert unexpected == [], unexpected
            return dialogs

        dialogs = await in_browser(scenario)
        log = await agents.agents_log()

    assert dialogs == ["Save version 1's content as the new version of sales? New calls use it at once."]
    saved = [(e.name, e.version, e.by, e.rolled_back_from) for e in of_type(log, AgentSaved)]
    assert saved[1:] == [("sales", 1, "api", None), ("sales", 2, "console", None), ("sales", 3, "console", 1)]
    (routing,) = of_type(log, RoutingRulesSaved)
    assert routing.rules == [{"agent": "sales", "to": SALES_LINE}] and routing.by == "console"
