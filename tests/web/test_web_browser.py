"""The cart example end to end in headless Chromium (Debian's ``chromium``, driven by Playwright).

The app runs as ``python examples/cart/app.py`` would, on a free loopback
port. Without ``/usr/bin/chromium`` or Playwright the test is skipped with
the reason, unless ``SATCHEL_REQUIRE_SERVICES`` names ``chromium``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_support import serve_cart_example

from satchel.testing.services import service_missing

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
COOKIE = "satchel_session"

pytestmark = pytest.mark.slow


@pytest.fixture(params=["file", "cookie"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cart_url(driver: str, tmp_path: Path) -> Iterator[str]:
    """The cart example served by uvicorn in a subprocess, on the given driver."""
    with serve_cart_example(driver, tmp_path / "sessions") as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        service_missing("chromium", f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 - optional; skip without it
    except ImportError:
        service_missing("chromium", "the playwright package is not installed")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


def session_cookie(context: Any) -> dict[str, Any] | None:
    found = [cookie for cookie in context.cookies() if cookie["name"] == COOKIE]
    return found[0] if found else None


def test_cart_in_a_real_browser(browser: Any, cart_url: str, driver: str) -> None:
    # Importable here: the browser fixture has skipped (or failed) without Playwright.
    from playwright.sync_api import expect  # noqa: PLC0415

    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    expect.set_options(timeout=15_000)

    page.goto(cart_url + "/")
    assert session_cookie(context) is None  # looking stores nothing
    # Adding redirects back to the page already shown: wait for that navigation,
    # not for a URL the page is already on.
    with page.expect_navigation(url=cart_url + "/"):
        page.click("#add-apple")
    expect(page.locator("#flash")).to_have_text("Item added")
    expect(page.locator("#cart-count")).to_have_text("1")

    # The flash message is shown once: a reload no longer has it.
    page.reload()
    expect(page.locator("#cart-count")).to_have_text("1")
    expect(page.locator("#flash")).to_have_count(0)

    page.goto(cart_url + "/cart")
    expect(page.locator("#cart-items")).to_have_text("Apple")

    before = session_cookie(context)
    assert before is not None
    assert before["httpOnly"] is True
    assert before["sameSite"] == "Lax"
    assert before["path"] == "/"

    with page.expect_navigation(url=cart_url + "/login"):
        page.click("#login-link")
    page.fill("#name", "Ada")
    with page.expect_navigation(url=cart_url + "/"):
        page.click("#login")
    expect(page.locator("#user")).to_have_text("Ada")
    expect(page.locator("#flash")).to_have_text("Welcome, Ada")
    expect(page.locator("#cart-count")).to_have_text("1")  # the cart came along
    after = session_cookie(context)
    assert after is not None
    assert after["value"] != before["value"]  # a new id on login

    with page.expect_navigation(url=cart_url + "/"):
        page.click("#logout")
    expect(page.locator("#cart-count")).to_have_text("0")
    expect(page.locator("#user")).to_have_count(0)
    # The logout response deleted the cookie, and the page after it, shown to a
    # visitor without a session, makes none.
    assert session_cookie(context) is None
    context.close()

    replay = browser.new_context()
    replay.add_cookies([{"name": COOKIE, "value": after["value"], "url": cart_url}])
    replay_page = replay.new_page()
    replay_page.goto(cart_url + "/")
    if driver == "cookie":
        # The documented limit of the cookie driver: nothing server-side to revoke, so
        # a copied cookie lives until it expires.
        expect(replay_page.locator("#user")).to_have_text("Ada")
    else:
        # Server-side: the logged-out session is destroyed; its cookie reaches nothing.
        expect(replay_page.locator("#cart-count")).to_have_text("0")
        expect(replay_page.locator("#user")).to_have_count(0)
    replay.close()
