"""What only the WSGI middleware does: save at start_response, clean up at close."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from web_support import ManagerFactory, SpyHandler
from werkzeug.test import Client

import satchel
from satchel import SessionTooLarge
from satchel.ids import generate_id
from satchel.wsgi import SessionMiddleware


def test_a_streamed_body_reaches_the_session_until_the_server_closes_it(
    make_manager: ManagerFactory,
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        environ["satchel.session"].put("name", "Ada")
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"hello "
        yield str(satchel.session.get("name")).encode()  # the helper, mid-stream

    client = Client(SessionMiddleware(app, make_manager()))
    with client.get("/") as response:
        assert response.get_data() == b"hello Ada"
        assert response.headers["Set-Cookie"].startswith("satchel_session=")
    with pytest.raises(RuntimeError, match="outside a request"):
        satchel.session.get("name")


def test_an_app_that_raises_releases_the_lock_and_the_binding(
    make_manager: ManagerFactory, spy: SpyHandler
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["satchel.session"].get("anything")
        raise ValueError("boom")

    cookie = generate_id()
    middleware = SessionMiddleware(app, make_manager(block_wait_seconds=0), block=True)
    with pytest.raises(ValueError, match="boom"):
        Client(middleware).get("/", headers={"Cookie": f"satchel_session={cookie}"})
    with pytest.raises(RuntimeError, match="outside a request"):
        satchel.session.get("x")
    # The lock is free again: taking it does not time out.
    with middleware.flow.manager.lock(cookie, block=True):
        pass
    assert "write" not in spy.methods()  # a failed request saves nothing


def test_an_error_page_started_with_exc_info_still_gets_the_session_headers(
    make_manager: ManagerFactory,
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["satchel.session"].put("seen", True)
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise RuntimeError("late failure")
        except RuntimeError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b"sorry"]

    calls: list[tuple[str, dict[str, str], object]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        # Headers not sent yet, so a server accepts the replacement (PEP 3333).
        calls.append((status, dict(headers), exc_info))
        return lambda data: None

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http"}
    body = SessionMiddleware(app, make_manager())(environ, start_response)
    assert list(body) == [b"sorry"]
    body.close()  # type: ignore[attr-defined]
    assert [status for status, _, _ in calls] == ["200 OK", "500 Internal Server Error"]
    for _, headers, _ in calls:
        assert headers["Set-Cookie"].startswith("satchel_session=")
        assert headers["Cache-Control"] == "private"
    assert calls[1][2] is not None  # exc_info passed on


def test_a_failed_save_is_not_retried_by_the_error_page(make_manager: ManagerFactory) -> None:
    failures: list[SessionTooLarge] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["satchel.session"].put("blob", "x" * 5000)
        try:
            start_response("200 OK", [])
        except SessionTooLarge as exc:
            failures.append(exc)
            start_response("500 Internal Server Error", [], sys.exc_info())
            return [b"too large"]
        return [b"ok"]

    calls: list[tuple[str, dict[str, str]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        calls.append((status, dict(headers)))
        return lambda data: None

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http"}
    body = SessionMiddleware(app, make_manager(driver="cookie"))(environ, start_response)
    assert list(body) == [b"too large"]
    body.close()  # type: ignore[attr-defined]
    assert len(failures) == 1
    assert calls == [("500 Internal Server Error", {})]
