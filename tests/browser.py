"""A real browser for the console tests: Playwright's sync API driving Debian's Chromium, headless.

Why the sync API in a worker thread: Playwright's async API needs asyncio, and our server runs in
the test's trio loop. A browser scenario is a plain function run with ``trio.to_thread.run_sync``
while the server keeps serving; when it needs the trio side (place a call, read the store) it calls
``trio.from_thread.run``. Every Playwright object stays in the one thread that made it.

Why not ``playwright install``: the machine has no internet for browser downloads, and CI installs
Debian's ``chromium`` package (``.ci/run``); we launch that executable. Without it (or without the
``playwright`` package) the tests skip with the reason, except under ``CI=true``, where a skipped
browser test is a failure.

Waits are Playwright's own (``expect``, ``wait_for_function``): they poll the page for a condition
with a deadline, never sleep for a fixed time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import trio

if TYPE_CHECKING:
    from playwright.sync_api import Page, ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
"""Screenshots of the run (git-ignored)."""
TIMEOUT_MS = 10_000
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}

T = TypeVar("T")


def require_browser(*, module: bool = False) -> None:
    """Skip (or, under ``CI=true``, fail) when Playwright or Chromium is missing. ``module``: called
    at a test module's top, before it imports Playwright (skips the whole module)."""
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "the 'playwright' package is not installed (pip install -e '.[dev]')"
    if problem is None and not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run: {problem} (CI=true: they must run)", pytrace=False)
    pytest.skip(f"browser tests skipped: {problem}", allow_module_level=module)


@dataclass
class Browser:
    page: Page
    base_url: str
    errors: list[str] = field(default_factory=list)
    """Uncaught page errors and console errors: a test ends by asserting there are none."""

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        if full_page:
            self.page.evaluate("() => window.scrollTo(0, 0)")  # else the sticky header lands mid-page
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def sign_in(self, token: str) -> None:
        """Sign in through the form, as a person does."""
        self.page.goto("/")
        self.page.get_by_label("API token").fill(token)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(re.compile(r"/#?(/live)?$"))
        self.wait_feed_live()

    def wait_feed_live(self) -> None:
        self.page.wait_for_function("() => document.getElementById('feed-status')?.dataset.state === 'open'")

    def open(self, route: str) -> None:
        """Go to a console route (``#/history``) without reloading the page."""
        self.page.evaluate("route => { window.location.hash = route }", route)


@contextmanager
def open_browser(
    base_url: str, *, viewport: ViewportSize | None = None, color_scheme: str = "light"
) -> Iterator[Browser]:
    """A fresh headless Chromium page on ``base_url`` (call from a worker thread)."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context(
                base_url=base_url,
                viewport=viewport or DESKTOP,
                color_scheme=color_scheme,  # type: ignore[arg-type]
            )
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            browser = Browser(page, base_url)
            page.on("pageerror", lambda error: browser.errors.append(f"page error: {error}"))
            page.on(
                "console",
                lambda message: (
                    browser.errors.append(f"console {message.type}: {message.text}")
                    if message.type == "error" and not _expected_console_error(message.text)
                    else None
                ),
            )
            yield browser
        finally:
            chromium.close()


def _expected_console_error(text: str) -> bool:
    """Errors the browser logs for things a test does on purpose (a wrong sign-in is a 401)."""
    return "status of 401" in text


async def in_browser(scenario: Callable[[], T]) -> T:
    """Run a sync browser scenario in a worker thread while the trio loop serves the server."""
    return await trio.to_thread.run_sync(scenario)


def from_trio(fn: Callable[..., Any], *args: Any) -> Any:
    """From a browser scenario: run an async function on the test's trio loop and return its result."""
    return trio.from_thread.run(fn, *args)
