"""The cart example through Starlette's TestClient, and through uvicorn as its README runs it.

The browser test (``test_web_browser.py``) drives the same app in headless
Chromium; these need no browser, so the example's flow is checked on every
machine. A visitor who has not acted stores nothing (no session per page
view, Django's CVE-2015-5143): checked through the real server too.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from web_support import CART_APP, SECRET, serve_cart_example

from satchel import SessionConfig, SessionManager

COOKIE = "satchel_session"
TOKEN = re.compile(r'name="_token" value="([^"]+)"')
SITE = {"Origin": "http://testserver"}  # what a browser sends with the site's own forms
ANONYMOUS_VIEWS = 50
# The example's first request loads the installed drivers; on a loaded machine that is slow.
FIRST_REQUEST_SECONDS = 60.0


def load_cart_example() -> ModuleType:
    """``examples/cart/app.py`` imported from its path (examples are not a package)."""
    spec = importlib.util.spec_from_file_location("satchel_cart_example", CART_APP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["file", "cookie"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sessions(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def cart(driver: str, sessions: Path) -> TestClient:
    settings: dict[str, Any] = {"driver": driver, "lottery": (0, 1)}
    if driver == "file":
        settings["files"] = str(sessions)
    else:
        settings["secret_key"] = SECRET
    manager = SessionManager(SessionConfig(**settings))
    return TestClient(load_cart_example().create_app(manager))


def stored(sessions: Path) -> list[str]:
    """The files the file driver keeps (none when the folder was never made)."""
    return sorted(path.name for path in sessions.iterdir()) if sessions.exists() else []


def token_of(page: httpx.Response) -> str:
    found = TOKEN.search(page.text)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


def element(page: httpx.Response, element_id: str) -> str | None:
    """The text of the element with ``id`` (the example's markup has no nesting there)."""
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', page.text)
    return found.group(1) if found else None


def test_products_are_listed_and_the_health_check_has_no_session(cart: TestClient) -> None:
    page = cart.get("/")
    assert page.status_code == 200
    for name in ("Apple", "Pear", "Fig"):
        assert name in page.text
    assert 'id="add-apple"' in page.text
    assert element(page, "cart-count") == "0"
    cart.cookies.clear()
    health = cart.get("/health")
    assert health.text == "ok"
    assert "set-cookie" not in health.headers  # skip_paths: never loads a session


def test_the_cart_flow(cart: TestClient) -> None:
    page = cart.get("/")
    assert TOKEN.search(page.text) is None  # no session yet, so no token
    added = cart.post("/cart/add", data={"product": "apple"}, headers=SITE)
    # Redirected to the products page, which shows the flash once.
    assert added.history[0].status_code == 303
    assert element(added, "flash") == "Item added"
    assert element(added, "cart-count") == "1"
    again = cart.get("/")
    assert element(again, "flash") is None
    assert element(again, "cart-count") == "1"

    basket = cart.get("/cart")
    assert '<ul id="cart-items"><li>Apple</li></ul>' in basket.text

    before = cart.cookies[COOKIE]
    form = cart.get("/login")
    welcome = cart.post("/login", data={"_token": token_of(form), "name": "Ada"})
    assert element(welcome, "user") == "Ada"
    assert element(welcome, "flash") == "Welcome, Ada"
    assert element(welcome, "cart-count") == "1"  # the cart came along
    after = cart.cookies[COOKIE]
    assert after != before  # a new id on login

    logged_out = cart.post("/logout", data={"_token": token_of(welcome)})
    assert logged_out.history[0].status_code == 303
    assert element(logged_out, "user") is None
    assert element(logged_out, "cart-count") == "0"
    assert cart.cookies.get(COOKIE) is None  # deleted, and the page after it made none
    assert element(cart.get("/cart"), "empty") == "Your cart is empty."


def test_a_first_login_needs_no_session_beforehand(cart: TestClient) -> None:
    form = cart.get("/login")
    assert TOKEN.search(form.text) is None
    welcome = cart.post("/login", data={"name": "Grace"}, headers=SITE)
    assert element(welcome, "user") == "Grace"
    assert token_of(welcome)  # signed in: the logout form carries the session's token


def test_a_form_without_the_sessions_token_is_refused(cart: TestClient) -> None:
    cart.post("/cart/add", data={"product": "apple"}, headers=SITE)
    assert cart.cookies.get(COOKIE) is not None
    # With a session, only its token will do: coming from the site is not enough.
    for token in ("forged", ""):
        refused = cart.post("/cart/add", data={"_token": token, "product": "fig"}, headers=SITE)
        assert refused.status_code == 400
    assert element(cart.get("/"), "cart-count") == "1"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "https://attacker.example"},
        {"Origin": "null"},
        {"Origin": "http://testserver.attacker.example"},
        {"Referer": "https://attacker.example/form"},
        {"Referer": "http://testserver.attacker.example/"},
    ],
    ids=["no-origin", "other-origin", "null-origin", "lookalike", "other-referer", "lookalike-ref"],
)
def test_a_session_less_post_from_another_site_is_refused_and_stores_nothing(
    cart: TestClient, sessions: Path, headers: dict[str, str]
) -> None:
    # A forged login or add-to-cart from another site, for a visitor without a session.
    for path, data in (("/cart/add", {"product": "apple"}), ("/login", {"name": "Mallory"})):
        refused = cart.post(path, data=data, headers=headers)
        assert refused.status_code == 400
        assert "set-cookie" not in refused.headers
    assert stored(sessions) == []


def test_a_session_less_post_with_the_sites_referer_is_accepted(cart: TestClient) -> None:
    # A browser that sends no Origin still sends the page it came from.
    added = cart.post(
        "/cart/add", data={"product": "pear"}, headers={"Referer": "http://testserver/"}
    )
    assert element(added, "cart-count") == "1"


def look_around(client: httpx.Client) -> None:
    """Every page, ``ANONYMOUS_VIEWS`` times, without acting: none may set a cookie."""
    for _ in range(ANONYMOUS_VIEWS):
        for path in ("/", "/cart", "/login"):
            page = client.get(path)
            assert page.status_code == 200
            assert "set-cookie" not in page.headers


def test_anonymous_page_views_store_nothing_and_set_no_cookie(
    cart: TestClient, sessions: Path
) -> None:
    look_around(cart)
    assert stored(sessions) == []
    assert cart.cookies.get(COOKIE) is None


def test_anonymous_page_views_through_uvicorn_store_nothing(driver: str, sessions: Path) -> None:
    # The example as its README runs it: python examples/cart/app.py, behind uvicorn.
    with (
        serve_cart_example(driver, sessions) as url,
        httpx.Client(base_url=url, timeout=FIRST_REQUEST_SECONDS) as client,
    ):
        look_around(client)
        assert stored(sessions) == []
        # And the first act still works, from the site's own page.
        added = client.post(
            "/cart/add", data={"product": "fig"}, headers={"Origin": url}, follow_redirects=True
        )
        assert element(added, "cart-count") == "1"
        assert COOKIE in client.cookies
    if driver == "file":
        assert len(stored(sessions)) >= 1
