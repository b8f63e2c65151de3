"""The Django app through real servers: werkzeug's threaded WSGI server and uvicorn (ASGI).

Each server runs the test app in a thread of this process, on a free loopback
port, and an HTTP client talks to it as a browser would: cookies over the
wire, login and logout, sync and async views, many clients at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from django.conf import settings

from satchel.django import SessionStore
from satchel.testing.services import free_port, wait_for_port

pytestmark = pytest.mark.slow


def serve_wsgi(port: int) -> Iterator[None]:
    from django.core.wsgi import get_wsgi_application  # noqa: PLC0415 - after setup
    from werkzeug.serving import make_server  # noqa: PLC0415

    server = make_server("127.0.0.1", port, get_wsgi_application(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        thread.join(timeout=10)


def serve_asgi(port: int) -> Iterator[None]:
    import uvicorn  # noqa: PLC0415
    from django.core.asgi import get_asgi_application  # noqa: PLC0415 - after setup

    config = uvicorn.Config(
        get_asgi_application(), host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("uvicorn did not start")
            time.sleep(0.02)
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(params=["wsgi", "asgi"])
def base_url(request: pytest.FixtureRequest, engine: dict[str, Any]) -> Iterator[str]:
    """The test app served by werkzeug (WSGI) or uvicorn (ASGI), on the driver of ``engine``."""
    port = free_port()
    serve = serve_wsgi if request.param == "wsgi" else serve_asgi
    for _ in serve(port):
        wait_for_port(port, timeout=15)
        yield f"http://127.0.0.1:{port}"


def test_a_shopper_signs_in_and_out(base_url: str, user: Any) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as browser:
        assert browser.get("/untouched").headers.get("set-cookie") is None
        reply = browser.get("/add/apple")
        cookie = reply.headers["set-cookie"]
        assert cookie.startswith(f"{settings.SESSION_COOKIE_NAME}=")
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert f"Max-Age={settings.SESSION_COOKIE_AGE}" in cookie
        browser.get("/async/add/pear")
        assert browser.get("/show").json() == {"cart": ["apple", "pear"], "user": None}
        before = browser.cookies[settings.SESSION_COOKIE_NAME]

        reply = browser.post("/login", data={"username": user.username, "password": "secret"})
        assert reply.json() == {"cart": ["apple", "pear"], "user": user.username}
        after = browser.cookies[settings.SESSION_COOKIE_NAME]
        assert after != before
        assert SessionStore().exists(before) is False
        assert browser.get("/async/show").json() == {"cart": ["apple", "pear"]}

        assert browser.get("/logout").json() == {"cart": [], "user": None}
        assert SessionStore().exists(after) is False
        assert browser.get("/show").json() == {"cart": [], "user": None}


def test_async_login_and_logout(base_url: str, user: Any) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as browser:
        browser.get("/async/add/apple")
        before = browser.cookies[settings.SESSION_COOKIE_NAME]
        reply = browser.post("/async/login", data={"username": user.username, "password": "secret"})
        assert reply.json() == {"cart": ["apple"], "user": user.username}
        assert browser.cookies[settings.SESSION_COOKIE_NAME] != before
        assert browser.get("/show").json()["user"] == user.username
        assert browser.get("/async/logout").json() == {"cart": []}
        assert browser.get("/show").json() == {"cart": [], "user": None}


def test_a_session_ended_meanwhile_is_refused_with_400(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as browser:
        browser.get("/add/apple")
        key = browser.cookies[settings.SESSION_COOKIE_NAME]
        assert browser.get("/ended-elsewhere").status_code == 400
        assert SessionStore().exists(key) is False


def test_a_forged_cookie_gets_a_fresh_session(base_url: str) -> None:
    forged = {"Cookie": f"{settings.SESSION_COOKIE_NAME}=../../etc/passwd"}
    with httpx.Client(base_url=base_url, timeout=30) as browser:
        assert browser.get("/show", headers=forged).json() == {"cart": [], "user": None}
        reply = browser.get("/add/apple", headers=forged)
    assert reply.status_code == 200
    issued = reply.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    assert issued != "../../etc/passwd"
    assert SessionStore(issued)["cart"] == ["apple"]


def test_many_shoppers_at_once_keep_their_own_carts(base_url: str) -> None:
    def shop(index: int) -> list[str]:
        with httpx.Client(base_url=base_url, timeout=30) as browser:
            for step in range(3):
                browser.get(f"/add/item{index}-{step}")
            result: list[str] = browser.get("/show").json()["cart"]
            return result

    with ThreadPoolExecutor(max_workers=8) as pool:
        carts = list(pool.map(shop, range(8)))
    assert carts == [[f"item{index}-{step}" for step in range(3)] for index in range(8)]
