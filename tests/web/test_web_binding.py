"""``satchel.session`` is bound while the application handles a request, body included, and
no longer: back in the server, the test code or the next application of the same thread, the
helper is the clear ``RuntimeError``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fixtures.live_servers import serve_wsgi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from web_support import ManagerFactory
from werkzeug.test import Client

import satchel
import satchel.asgi
from satchel import context
from satchel.testing.services import free_port, wait_for_port
from satchel.wsgi import SessionMiddleware

# -- WSGI --------------------------------------------------------------------------------------


def streaming_app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    """Puts a name, then reads it back through the helper while the body streams."""
    environ["satchel.session"].put("name", "Ada")
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"hello "
    yield str(satchel.session.get("name")).encode()


def unrelated_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """An application without satchel, served by the same worker thread."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"bound" if context.has_session() else b"unbound"]


def test_after_a_test_client_request_the_helper_is_unbound_though_the_body_is_not_closed(
    make_manager: ManagerFactory,
) -> None:
    client = Client(SessionMiddleware(streaming_app, make_manager()))
    response = client.get("/")  # werkzeug's test Client never closes the body
    assert response.get_data() == b"hello Ada"
    assert not context.has_session()
    with pytest.raises(RuntimeError, match="outside a request"):
        satchel.session.get("name")
    # The next application this thread runs has no session of anyone's.
    assert Client(unrelated_app).get("/").get_data() == b"unbound"
    response.close()


def test_every_step_of_the_body_has_the_session_and_nothing_between_steps(
    make_manager: ManagerFactory,
) -> None:
    seen: list[object] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        seen.append(satchel.session.get("step", "call"))
        environ["satchel.session"].put("step", "first chunk")
        start_response("200 OK", [])
        try:
            yield b"1"
            seen.append(satchel.session.get("step"))
            yield b"2"
        finally:
            seen.append(satchel.session.get("step"))  # run when the server closes the body

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http"}
    body = SessionMiddleware(app, make_manager())(environ, lambda *args: lambda data: None)
    between: list[bool] = [context.has_session()]
    for _chunk in body:
        between.append(context.has_session())
    body.close()  # type: ignore[attr-defined]
    between.append(context.has_session())
    assert seen == ["call", "first chunk", "first chunk"]
    assert between == [False, False, False, False]


def test_through_werkzeugs_server_one_worker_thread_serves_both_apps_apart(
    make_manager: ManagerFactory,
) -> None:
    satchel_app = SessionMiddleware(streaming_app, make_manager())

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        app = unrelated_app if environ["PATH_INFO"] == "/other" else satchel_app
        return app(environ, start_response)

    with serve_wsgi(dispatch, threaded=False) as url, httpx.Client(base_url=url) as http:
        for _ in range(3):
            assert http.get("/").text == "hello Ada"
            assert http.get("/other").text == "unbound"


# -- ASGI ----------------------------------------------------------------------------------------


def asgi_app(manager: Any) -> Any:
    async def stream(request: Request) -> StreamingResponse:
        request.session.put("name", "Ada")

        async def body() -> Any:
            yield "hello "
            await asyncio.sleep(0)
            yield str(satchel.session.get("name"))

        return StreamingResponse(body())

    async def other(request: Request) -> PlainTextResponse:
        return PlainTextResponse("bound" if context.has_session() else "unbound")

    session_app = satchel.asgi.SessionMiddleware(Starlette(routes=[Route("/", stream)]), manager)
    plain_app = Starlette(routes=[Route("/other", other)])

    async def dispatch(scope: Any, receive: Any, send: Any) -> None:
        app = plain_app if scope.get("path") == "/other" else session_app
        await app(scope, receive, send)

    return dispatch


def test_asgi_in_the_callers_own_task_the_helper_is_unbound_after_the_request(
    make_manager: ManagerFactory,
) -> None:
    app = asgi_app(make_manager())

    async def main() -> tuple[str, bool, str]:
        # httpx's ASGI transport runs the app in the calling task, not a task of its own.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            streamed = (await http.get("/")).text
            after = context.has_session()
            other = (await http.get("/other")).text
        return streamed, after, other

    assert asyncio.run(main()) == ("hello Ada", False, "unbound")


def test_through_uvicorn_each_request_has_its_own_binding(make_manager: ManagerFactory) -> None:
    port = free_port()
    config = uvicorn.Config(
        asgi_app(make_manager()), host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_for_port(port, timeout=20)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(3):
                assert http.get("/").text == "hello Ada"
                assert http.get("/other").text == "unbound"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
