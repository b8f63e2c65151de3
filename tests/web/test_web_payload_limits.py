"""Size and depth limits through real servers: werkzeug's threaded server (plain WSGI and
Flask) and uvicorn (Starlette), on Redis and on the cookie driver.

An oversized save is the application's error (a 500 that the server logs, naming the
limit) and keeps the session the store held; a value nested past ``MAX_DEPTH`` is the
``TypeError`` at ``put`` under a real server's stack, while one at the limit round-trips;
a stored payload nested too deep is a fresh session and a warning.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest
from fixtures.live_servers import serve_asgi, serve_wsgi
from web_support import SECRET, build_flask, build_starlette, build_wsgi

from satchel import SessionConfig, SessionManager
from satchel.config import DEFAULT_MAX_PAYLOAD_BYTES
from satchel.ids import generate_id
from satchel.payload import MAX_DEPTH
from satchel.testing.conformance import nested_payload

COOKIE = "satchel_session"
TEN_MEGABYTES = 10 * 1024 * 1024
LOG_WAIT_SECONDS = 10.0
SERVERS: dict[
    str, tuple[Callable[[SessionManager], Any], Callable[..., AbstractContextManager[str]]]
] = {
    "wsgi": (build_wsgi, serve_wsgi),
    "flask": (build_flask, serve_wsgi),
    "starlette": (build_starlette, serve_asgi),
}


class Visitor:
    """A client over HTTP that keeps the session cookie itself, so a test can set it."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=60)
        self.cookie: str | None = None

    def get(self, path: str, **params: str) -> httpx.Response:
        headers = {"Cookie": f"{COOKIE}={self.cookie}"} if self.cookie else {}
        response = self.http.get(path, params=params, headers=headers)
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            if name == COOKIE:
                self.cookie = rest.split(";", 1)[0] or None
        return response


def logged_error(caplog: pytest.LogCaptureFixture, marker: str) -> str:
    """The captured log once it holds ``marker``: a server logs an app's error after
    sending the 500, from its own thread, so the client may see the 500 first."""
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while marker not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker in caplog.text, "the server logged no error naming the exception"
    return caplog.text


@pytest.fixture(params=["redis", "cookie"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def manager(request: pytest.FixtureRequest, driver: str, unique_prefix: str) -> SessionManager:
    if driver == "cookie":
        return SessionManager(SessionConfig(driver="cookie", secret_key=SECRET))
    url = request.getfixturevalue("redis_url")
    return SessionManager(
        SessionConfig(driver="redis", connection=url, prefix=unique_prefix, lottery=(0, 1))
    )


@pytest.fixture(params=list(SERVERS))
def visitor(request: pytest.FixtureRequest, manager: SessionManager) -> Iterator[Visitor]:
    build, serve = SERVERS[request.param]
    with serve(build(manager)) as base_url:
        client = Visitor(base_url)
        yield client
        client.http.close()


def test_an_oversized_save_is_a_logged_server_error_that_keeps_the_session(
    visitor: Visitor, manager: SessionManager, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert visitor.get("/put", key="cart", value="apple").status_code == 200
    before = visitor.cookie
    assert before is not None
    # The cookie driver's own 4096 bytes bind first; a server-side driver takes the
    # 10 MB it once stored, until max_payload_bytes.
    size, limit_name = (
        (5000, "cookie") if driver == "cookie" else (TEN_MEGABYTES, "max_payload_bytes")
    )
    with caplog.at_level(logging.ERROR):
        response = visitor.get("/big", size=str(size))
    assert response.status_code == 500
    assert "set-cookie" not in response.headers
    logged = logged_error(caplog, "SessionTooLarge")
    assert limit_name in logged
    if driver != "cookie":
        assert str(DEFAULT_MAX_PAYLOAD_BYTES) in logged
        assert len(manager.handler().read(manager.storage_key(before))) < 1000  # the old record
    assert visitor.cookie == before
    assert json.loads(visitor.get("/get", key="cart").text) == "apple"
    assert json.loads(visitor.get("/get", key="blob").text) is None


def test_a_value_past_the_depth_limit_is_refused_at_put_and_one_at_it_round_trips(
    visitor: Visitor,
) -> None:
    # 480 levels: what took a server down with a RecursionError at save.
    for levels in (MAX_DEPTH + 1, 480):
        refused = visitor.get("/deep", levels=str(levels))
        assert refused.status_code == 200
        assert refused.text.startswith("TypeError: session value 'deep")
        assert f"more than {MAX_DEPTH} levels deep" in refused.text
    assert visitor.cookie is None  # nothing was stored
    assert visitor.get("/deep", levels=str(MAX_DEPTH)).text == "ok"
    assert visitor.cookie is not None
    assert visitor.get("/depth").text == str(MAX_DEPTH)


@pytest.mark.parametrize("driver", ["redis"])
@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 100_000])
def test_a_stored_payload_nested_too_deep_is_a_fresh_session_and_a_warning(
    visitor: Visitor, manager: SessionManager, levels: int, caplog: pytest.LogCaptureFixture
) -> None:
    cookie = generate_id()
    manager.handler().write(manager.storage_key(cookie), nested_payload(levels, time.time()))
    visitor.cookie = cookie
    with caplog.at_level(logging.WARNING, logger="satchel"):
        response = visitor.get("/all")
    assert (response.status_code, json.loads(response.text)) == (200, {})
    assert "corrupt" in caplog.text
    assert cookie not in caplog.text
