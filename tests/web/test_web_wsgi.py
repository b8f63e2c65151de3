"""What only the WSGI middleware does: save at start_response, clean up at close."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from web_support import ManagerFactory, SpyHandler
from werkzeug.test import Client

import satchel
from satchel import PoolExhausted, SessionManager, SessionTooLarge
from satchel.ids import generate_id
from satchel.web import BUSY_BODY
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
        # use_cookies=False: werkzeug's cookie jar would drop the Cookie header.
        Client(middleware, use_cookies=False).get(
            "/", headers={"Cookie": f"satchel_session={cookie}"}
        )
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
    close_body(body)
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
    close_body(body)
    assert len(failures) == 1
    assert calls == [("500 Internal Server Error", {})]


def test_a_generator_app_whose_save_times_out_gets_the_503_body(
    make_manager: ManagerFactory, spy: SpyHandler
) -> None:
    closed: list[bool] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        # A generator: start_response runs on the server's first step through the body.
        environ["satchel.session"].put("name", "Grace")
        try:
            write = start_response("200 OK", [("Content-Type", "text/html")])
            write(b"<legacy write>")
            yield b"<the app's page>"
            yield b"<more of it>"
        finally:
            closed.append(True)

    manager = make_manager(merge_on_save=True, block_wait_seconds=0.05, block_lock_seconds=5)
    cookie = _stored_session(manager)
    with spy.lock(manager.storage_key(cookie), lock_seconds=5, wait_seconds=0):
        _assert_the_503_replaced(app, manager, cookie)
    assert closed == [True]


def test_a_generator_app_whose_load_finds_the_pool_exhausted_gets_the_503(
    make_manager: ManagerFactory, spy: SpyHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session loads on the body's first step, before the app starts its response."""
    closed: list[bool] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        try:
            name = environ["satchel.session"].get("name")
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield str(name).encode()
        finally:
            closed.append(True)

    def exhausted(session_id: str) -> str:
        raise PoolExhausted("spy", "spy://pool", "no connection came free within 0.1 seconds")

    manager = make_manager(block_lock_seconds=5)
    cookie = _stored_session(manager)
    monkeypatch.setattr(spy, "read", exhausted)
    _assert_the_503_replaced(app, manager, cookie)
    assert closed == [True]


def test_a_won_gc_draw_prunes_when_the_server_closes_a_list_body(
    make_manager: ManagerFactory, spy: SpyHandler
) -> None:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http"}
    middleware = SessionMiddleware(_put_and_start, make_manager(lottery=(1, 1)))
    body = middleware(environ, lambda *args: lambda data: None)
    assert list(body) == [b"ok"]
    assert "gc" not in spy.methods()
    close_body(body)
    assert spy.methods().count("gc") == 1


def test_a_lost_gc_draw_hands_the_server_the_apps_own_list(
    make_manager: ManagerFactory, spy: SpyHandler
) -> None:
    returned: list[list[bytes]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        returned.append(_put_and_start(environ, start_response))
        return returned[-1]

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http"}
    body = SessionMiddleware(app, make_manager(lottery=(0, 1)))(environ, lambda *a: None)
    assert body is returned[0]
    assert "gc" not in spy.methods()


def close_body(body: object) -> None:
    """Close a response body as a WSGI server does: only when it has ``close`` (PEP 3333)."""
    close = getattr(body, "close", None)
    if close is not None:
        close()


def _stored_session(manager: SessionManager) -> str:
    """The cookie of a session stored through the middleware."""
    with Client(SessionMiddleware(_put_and_start, manager)).get("/") as first:
        return first.headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]


def _assert_the_503_replaced(app: Any, manager: SessionManager, cookie: str) -> None:
    """A request of ``cookie``'s session to ``app`` gets the 503 and its body, no cookie."""
    reply = Client(SessionMiddleware(app, manager), use_cookies=False).get(
        "/", headers={"Cookie": f"satchel_session={cookie}"}
    )
    body = reply.get_data()
    reply.close()
    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == "5"
    assert "Set-Cookie" not in reply.headers
    assert body == BUSY_BODY


def _put_and_start(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    environ["satchel.session"].put("name", "Ada")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
