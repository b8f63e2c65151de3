"""The cart example through Starlette's TestClient: covered even where Chromium is absent.

The browser test (``test_web_browser.py``) drives the same app in headless
Chromium; this one needs no browser, so the example's flow is checked on
every machine.
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
from web_support import SECRET

from satchel import SessionConfig, SessionManager

CART_APP = Path(__file__).resolve().parents[2] / "examples" / "cart" / "app.py"
COOKIE = "satchel_session"
TOKEN = re.compile(r'name="_token" value="([^"]+)"')


def load_cart_example() -> ModuleType:
    """``examples/cart/app.py`` imported from its path (examples are not a package)."""
    spec = importlib.util.spec_from_file_location("satchel_cart_example", CART_APP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["file", "cookie"])
def cart(request: pytest.FixtureRequest, tmp_path: Path) -> TestClient:
    settings: dict[str, Any] = {"driver": request.param, "lottery": (0, 1)}
    if request.param == "file":
        settings["files"] = str(tmp_path / "sessions")
    else:
        settings["secret_key"] = SECRET
    manager = SessionManager(SessionConfig(**settings))
    return TestClient(load_cart_example().create_app(manager))


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
    added = cart.post("/cart/add", data={"_token": token_of(page), "product": "apple"})
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
    assert cart.cookies.get(COOKIE) != after
    assert element(cart.get("/cart"), "empty") == "Your cart is empty."


def test_a_form_without_the_sessions_token_is_refused(cart: TestClient) -> None:
    cart.get("/")
    refused = cart.post("/cart/add", data={"_token": "forged", "product": "apple"})
    assert refused.status_code == 400
    assert element(cart.get("/"), "cart-count") == "0"
