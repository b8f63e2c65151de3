"""What only the ASGI middleware does: async I/O, eager load, skip_paths, streaming, websockets."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket
from web_support import (
    SECRET,
    AsyncSpyHandler,
    FakeClock,
    ManagerFactory,
    RefusingSyncHandler,
    SpyHandler,
)

import satchel
from satchel import SessionConfig, SessionManager
from satchel.asgi import SessionMiddleware
from satchel.drivers.array import ArraySessionHandler
from satchel.drivers.cookie import CookieSessionHandler


def cookie_of(response: httpx.Response, name: str = "satchel_session") -> str:
    header = next(
        value for value in response.headers.get_list("set-cookie") if value.startswith(name + "=")
    )
    return header.split(";", 1)[0].split("=", 1)[1]


def counter_app(manager: SessionManager, **options: Any) -> SessionMiddleware:
    async def count(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(request.session.increment("count")))

    async def untouched(request: Request) -> PlainTextResponse:
        return PlainTextResponse("has session" if "session" in request.scope else "no session")

    routes = [Route("/count", count), Route("/static/{path:path}", untouched)]
    routes.append(Route("/statics", untouched))
    return SessionMiddleware(Starlette(routes=routes), manager, **options)


def test_an_async_driver_is_awaited_and_its_sync_side_never_called(clock: FakeClock) -> None:
    twin = AsyncSpyHandler()
    manager = SessionManager(SessionConfig(driver="aspy", lottery=(1, 1)), clock=clock)
    manager.extend("aspy", lambda _config: RefusingSyncHandler(), lambda _config: twin)
    client = TestClient(counter_app(manager))
    first = client.get("/count")
    second = client.get("/count", headers={"Cookie": f"satchel_session={cookie_of(first)}"})
    assert second.text == "2"
    # The second save re-reads first: the spy has no write_existing, and core
    # never writes over a record another request may have ended meanwhile.
    assert twin.calls == ["write", "gc", "read", "read", "write", "gc"]


def test_a_sync_driver_runs_off_the_event_loop(
    make_manager: ManagerFactory, spy: SpyHandler
) -> None:
    loop_threads: list[int] = []

    async def count(request: Request) -> PlainTextResponse:
        loop_threads.append(threading.get_ident())  # an async endpoint runs on the loop
        return PlainTextResponse(str(request.session.increment("count")))

    app = SessionMiddleware(Starlette(routes=[Route("/count", count)]), make_manager())
    # One portal thread runs the loop for the whole test, so no thread id is reused.
    with TestClient(app) as client:
        first = client.get("/count")
        client.cookies.clear()
        client.get("/count", headers={"Cookie": f"satchel_session={cookie_of(first)}"})
    assert spy.methods() == ["write", "read", "write"]
    assert all(call.thread not in loop_threads for call in spy.calls)


def test_the_session_is_read_before_the_handler_only_with_a_cookie(
    make_manager: ManagerFactory, spy: SpyHandler
) -> None:
    client = TestClient(counter_app(make_manager()))
    first = client.get("/count")
    assert spy.methods() == ["write"]  # no cookie: nothing read
    client.cookies.clear()
    spy.calls.clear()
    client.get("/count", headers={"Cookie": f"satchel_session={cookie_of(first)}"})
    assert spy.methods() == ["read", "write"]


@pytest.mark.parametrize(
    ("driver", "block"),
    [("async twin", False), ("worker thread", False), ("worker thread", True)],
    ids=["async-twin", "worker-thread", "worker-thread-block"],
)
def test_a_session_read_before_the_handler_changes_nothing_unless_the_handler_uses_it(
    make_manager: ManagerFactory, spy: SpyHandler, clock: FakeClock, driver: str, block: bool
) -> None:
    """A driver that may wait is read before the handler runs, and the record decoded on
    the handler's first use: a request that never uses its session ages no flash data,
    refreshes nothing, sends no cookie and draws no garbage collection, as under WSGI."""
    twin = AsyncSpyHandler()
    manager = make_manager(driver="aspy" if driver == "async twin" else "spy", lottery=(1, 1))
    manager.extend("aspy", lambda _config: RefusingSyncHandler(), lambda _config: twin)
    if driver == "async twin":

        def calls() -> list[str]:
            return twin.calls
    else:

        def calls() -> list[str]:
            return [method for method in spy.methods() if method != "lock"]

    async def flash(request: Request) -> PlainTextResponse:
        request.session.flash("status", "saved")
        return PlainTextResponse("ok")

    async def status(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(request.session.get("status")))

    async def untouched(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    routes = [Route("/flash", flash), Route("/status", status), Route("/untouched", untouched)]
    app = SessionMiddleware(Starlette(routes=routes), manager, block=block)
    client = TestClient(app)
    sent = {"Cookie": f"satchel_session={cookie_of(client.get('/flash'))}"}
    client.cookies.clear()
    for _ in range(2):
        twin.calls.clear()
        spy.calls.clear()
        reply = client.get("/untouched", headers=sent)
        assert "set-cookie" not in reply.headers
        assert "vary" not in reply.headers
        assert calls() == ["read"]
        clock.advance(manager.config.touch_interval + 1)  # a refresh is due from now on
    twin.calls.clear()
    spy.calls.clear()
    # The flash data outlived the requests that never looked at it. The record read
    # before the handler is the one it uses (no second read); once shown, the flash
    # data is aged out, and the session, empty now, removed.
    assert client.get("/status", headers=sent).text == "saved"
    assert calls() == ["read", "destroy", "gc"]


def test_skip_paths_never_load_a_session(make_manager: ManagerFactory, spy: SpyHandler) -> None:
    client = TestClient(counter_app(make_manager(), skip_paths=["/static/"]))
    cookie = cookie_of(client.get("/count"))
    client.cookies.clear()
    spy.calls.clear()
    reply = client.get("/static/app.css", headers={"Cookie": f"satchel_session={cookie}"})
    assert reply.text == "no session"
    assert "set-cookie" not in reply.headers
    assert spy.calls == []
    # A prefix matches whole segments only.
    reply = client.get("/statics", headers={"Cookie": f"satchel_session={cookie}"})
    assert reply.text == "has session"
    assert spy.methods() == ["read"]


class LocalSpyHandler(SpyHandler):
    """The spy as a driver whose calls never wait (a dict, a local file): no worker thread."""

    runs_on_event_loop = True


def local_spy_manager(clock: FakeClock, spy: LocalSpyHandler, **config: Any) -> SessionManager:
    settings: dict[str, Any] = {"driver": "localspy", "lottery": (0, 1), "secret_key": SECRET}
    manager = SessionManager(SessionConfig(**{**settings, **config}), clock=clock)
    manager.extend("localspy", lambda _config: spy)
    return manager


@pytest.mark.parametrize("block", [False, True], ids=["unlocked", "block"])
def test_a_driver_whose_calls_never_wait_loads_on_first_use(clock: FakeClock, block: bool) -> None:
    spy = LocalSpyHandler(7200)
    client = TestClient(counter_app(local_spy_manager(clock, spy, block=block)))
    cookie = cookie_of(client.get("/count"))
    client.cookies.clear()
    spy.calls.clear()
    sent = {"Cookie": f"satchel_session={cookie}"}
    # A request that never uses its session reads nothing and sends no session header.
    reply = client.get("/statics", headers=sent)
    assert reply.text == "has session"
    assert "set-cookie" not in reply.headers
    assert "vary" not in reply.headers
    assert spy.calls == []
    # One that does reads it as the handler first uses it.
    assert client.get("/count", headers=sent).text == "2"
    assert spy.methods() == ["read", "write"]


def test_a_websocket_reads_its_session_as_it_connects_on_any_driver(clock: FakeClock) -> None:
    spy = LocalSpyHandler(7200)
    calls_at_accept: list[list[str]] = []

    async def set_name(request: Request) -> PlainTextResponse:
        request.session.put("name", "Ada")
        return PlainTextResponse("ok")

    async def socket(websocket: WebSocket) -> None:
        calls_at_accept.append(spy.methods())
        await websocket.accept()
        await websocket.send_text(str(websocket.session.get("name")))
        await websocket.close()

    app = Starlette(routes=[Route("/", set_name), WebSocketRoute("/ws", socket)])
    client = TestClient(SessionMiddleware(app, local_spy_manager(clock, spy)))
    cookie = cookie_of(client.get("/"))
    spy.calls.clear()
    with client.websocket_connect("/ws", headers={"Cookie": f"satchel_session={cookie}"}) as ws:
        assert ws.receive_text() == "Ada"
    assert calls_at_accept == [["read"]]


def test_session_headers_join_the_apps_own_in_lowercase(make_manager: ManagerFactory) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["session"].put("seen", True)
        headers = [(b"Content-Type", b"text/plain"), (b"x-trace", b"1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    sent = asyncio.run(call_asgi(SessionMiddleware(app, make_manager()), "/", None))
    names = [name for name, _ in sent[0]["headers"]]
    assert names == [b"content-type", b"x-trace", b"vary", b"cache-control", b"set-cookie"]
    assert sent[0]["headers"][2:4] == [(b"vary", b"Cookie"), (b"cache-control", b"private")]


def test_streaming_response_gets_the_cookie_in_its_first_message(
    make_manager: ManagerFactory, spy: SpyHandler
) -> None:
    manager = make_manager()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["session"].put("cart", ["apple"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in (b"one", b"two"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []
    writes_at_start: list[int] = []

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            writes_at_start.append(spy.methods().count("write"))
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "scheme": "http"}
    asyncio.run(SessionMiddleware(app, manager)(scope, receive, send))
    assert [message["type"] for message in sent] == ["http.response.start"] + [
        "http.response.body"
    ] * 3
    headers = dict(sent[0]["headers"])
    assert headers[b"set-cookie"].startswith(b"satchel_session=")
    assert headers[b"vary"] == b"Cookie"
    assert headers[b"cache-control"] == b"private"
    assert writes_at_start == [1]  # saved before the first byte of the body went out


def test_existing_cache_control_and_vary_are_merged(make_manager: ManagerFactory) -> None:
    async def page(request: Request) -> PlainTextResponse:
        request.session.put("seen", True)
        return PlainTextResponse(
            "ok", headers={"Cache-Control": "public, max-age=60", "Vary": "Accept-Encoding"}
        )

    client = TestClient(SessionMiddleware(Starlette(routes=[Route("/", page)]), make_manager()))
    reply = client.get("/")
    assert reply.headers.get_list("cache-control") == ["private, max-age=60"]
    assert reply.headers.get_list("vary") == ["Accept-Encoding, Cookie"]


def test_the_helper_reaches_tasks_and_threadpool_endpoints(make_manager: ManagerFactory) -> None:
    async def in_task(request: Request) -> PlainTextResponse:
        request.session.put("name", "Ada")

        async def read_later() -> str:
            await asyncio.sleep(0)
            return str(satchel.session.get("name"))

        return PlainTextResponse(await asyncio.create_task(read_later()))

    def in_thread(request: Request) -> PlainTextResponse:  # Starlette runs it in a worker thread
        return PlainTextResponse(str(satchel.session.get("name")))

    app = Starlette(routes=[Route("/task", in_task), Route("/thread", in_thread)])
    client = TestClient(SessionMiddleware(app, make_manager()))
    first = client.get("/task")
    assert first.text == "Ada"
    cookie = cookie_of(first)
    client.cookies.clear()
    assert client.get("/thread", headers={"Cookie": f"satchel_session={cookie}"}).text == "Ada"


def test_the_helper_outside_a_request_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="outside a request"):
        satchel.session.get("anything")


def test_concurrent_requests_never_share_a_session(make_manager: ManagerFactory) -> None:
    async def echo(request: Request) -> PlainTextResponse:
        request.session.put("who", request.query_params["who"])
        await asyncio.sleep(0.01)  # interleave with the other requests
        return PlainTextResponse(str(satchel.session.get("who")))

    app = SessionMiddleware(Starlette(routes=[Route("/", echo)]), make_manager())

    async def main() -> list[tuple[str, str, str]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            replies = await asyncio.gather(
                *(client.get("/", params={"who": str(n)}) for n in range(25))
            )
        return [(str(n), reply.text, cookie_of(reply)) for n, reply in enumerate(replies)]

    results = asyncio.run(main())
    assert all(sent == echoed for sent, echoed, _ in results)
    assert len({cookie for _, _, cookie in results}) == 25


def test_a_websocket_reads_the_session(make_manager: ManagerFactory) -> None:
    async def set_name(request: Request) -> PlainTextResponse:
        request.session.put("name", "Ada")
        return PlainTextResponse("ok")

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(str(websocket.session.get("name")))
        await websocket.close()

    app = Starlette(routes=[Route("/", set_name), WebSocketRoute("/ws", socket)])
    client = TestClient(SessionMiddleware(app, make_manager()))
    cookie = cookie_of(client.get("/"))
    with client.websocket_connect("/ws", headers={"Cookie": f"satchel_session={cookie}"}) as ws:
        assert ws.receive_text() == "Ada"


def test_lifespan_passes_through(make_manager: ManagerFactory) -> None:
    started: list[bool] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started.append(True)
        yield

    app = Starlette(routes=[], lifespan=lifespan)
    with TestClient(SessionMiddleware(app, make_manager())):
        pass
    assert started == [True]


def test_the_cookie_driver_through_asgi_round_trips(clock: FakeClock) -> None:
    manager = SessionManager(SessionConfig(driver="cookie", secret_key=SECRET), clock=clock)
    client = TestClient(counter_app(manager))
    first = client.get("/count")
    value = cookie_of(first)
    client.cookies.clear()
    second = client.get("/count", headers={"Cookie": f"satchel_session={value}"})
    assert second.text == "2"
    assert cookie_of(second) != value  # re-sealed with the new count


# -- block: the lock guards load-modify-save, never a stream or a socket's life -----------


async def call_asgi(app: Any, path: str, cookie: str | None) -> list[Any]:
    """One GET straight through the ASGI app: the messages it sent."""
    headers = [(b"cookie", f"satchel_session={cookie}".encode())] if cookie else []
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "headers": headers,
        "scheme": "http",
        "asgi": {"version": "3.0"},
    }
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def cookie_from(sent: list[Any]) -> str:
    header = dict(sent[0]["headers"])[b"set-cookie"]
    return header.split(b";", 1)[0].split(b"=", 1)[1].decode()


def test_a_same_session_request_while_a_websocket_is_open_is_not_refused(
    make_manager: ManagerFactory,
) -> None:
    async def count(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(request.session.increment("count")))

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(str(websocket.session.get("count")))
        await websocket.receive_text()  # open until the test says goodbye
        await websocket.close()

    app = Starlette(routes=[Route("/count", count), WebSocketRoute("/ws", socket)])
    manager = make_manager(block=True, block_wait_seconds=0)
    client = TestClient(SessionMiddleware(app, manager))
    cookie = cookie_of(client.get("/count"))
    client.cookies.clear()
    sent = {"Cookie": f"satchel_session={cookie}"}
    with client.websocket_connect("/ws", headers=sent) as ws:
        assert ws.receive_text() == "1"
        reply = client.get("/count", headers=sent)
        assert reply.status_code == 200
        assert reply.text == "2"
        ws.send_text("bye")


def test_a_same_session_request_while_a_response_streams_is_not_refused(
    make_manager: ManagerFactory, spy: SpyHandler
) -> None:
    manager = make_manager(block=True, block_wait_seconds=0)
    first_chunk_sent = asyncio.Event()
    finish_stream = asyncio.Event()

    async def events() -> AsyncIterator[bytes]:
        yield b"data: one\n\n"
        await finish_stream.wait()  # a server-sent event stream that stays open
        yield b"data: two\n\n"

    async def stream(request: Request) -> StreamingResponse:
        request.session.put("streaming", True)
        return StreamingResponse(events(), media_type="text/event-stream")

    async def count(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(request.session.increment("count")))

    app = SessionMiddleware(
        Starlette(routes=[Route("/count", count), Route("/stream", stream)]), manager
    )

    async def main() -> tuple[int, list[bytes], bool]:
        cookie = cookie_from(await call_asgi(app, "/count", None))
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/stream",
            "query_string": b"",
            "headers": [(b"cookie", f"satchel_session={cookie}".encode())],
            "scheme": "http",
            "asgi": {"version": "3.0"},
        }
        chunks: list[bytes] = []
        disconnect = asyncio.Event()

        async def receive() -> Any:
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                chunks.append(message["body"])
                first_chunk_sent.set()

        streaming = asyncio.create_task(app(scope, receive, send))
        await first_chunk_sent.wait()
        status = (await call_asgi(app, "/count", cookie))[0]["status"]  # mid-stream, same session
        still_streaming = not streaming.done()
        finish_stream.set()
        await streaming
        disconnect.set()
        return status, chunks, still_streaming

    status, chunks, still_streaming = asyncio.run(main())
    assert still_streaming
    assert status == 200
    assert chunks == [b"data: one\n\n", b"data: two\n\n"]


async def _raises_before_responding(scope: Any, receive: Any, send: Any) -> None:
    scope["session"].put("a", 2)
    raise RuntimeError("the app failed")


async def _client_went_away(scope: Any, receive: Any, send: Any) -> None:
    scope["session"].put("a", 2)
    await receive()  # the server would say http.disconnect: the app stops without a response


async def _cannot_be_saved(scope: Any, receive: Any, send: Any) -> None:
    scope["session"].put("a", object())  # not storable: the save at response start raises
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(
    ("failing_app", "error"),
    [
        (_raises_before_responding, RuntimeError),
        (_client_went_away, None),
        (_cannot_be_saved, TypeError),
    ],
    ids=["app-raises", "client-disconnects", "save-raises"],
)
def test_the_lock_is_released_on_every_path(
    clock: FakeClock, failing_app: Any, error: type[Exception] | None, spy: SpyHandler
) -> None:
    manager = SessionManager(
        SessionConfig(driver="spy", lottery=(0, 1), block=True, block_wait_seconds=0), clock=clock
    )
    manager.extend("spy", lambda _config: spy)

    async def put_first(scope: Any, receive: Any, send: Any) -> None:
        scope["session"].put("a", 1)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> int:
        cookie = cookie_from(await call_asgi(SessionMiddleware(put_first, manager), "/", None))
        failing = SessionMiddleware(failing_app, manager)
        if error is None:
            assert await call_asgi(failing, "/", cookie) == []  # no response at all
        else:
            with pytest.raises(error):
                await call_asgi(failing, "/", cookie)
        return int(
            (await call_asgi(SessionMiddleware(put_first, manager), "/", cookie))[0]["status"]
        )

    assert asyncio.run(main()) == 200


@pytest.mark.parametrize("driver", ["array", "cookie"])
def test_a_memory_or_cookie_store_collects_garbage_on_the_event_loop(
    driver: str, clock: FakeClock
) -> None:
    """A worker thread would cost more than collecting from a dict, or from nothing."""
    base = ArraySessionHandler if driver == "array" else CookieSessionHandler
    collected_on: list[int] = []

    class Watched(base):  # type: ignore[misc, valid-type]
        def gc(self, lifetime: int) -> int:
            collected_on.append(threading.get_ident())
            return int(super().gc(lifetime))

    manager = SessionManager(
        SessionConfig(driver="watched", lottery=(1, 1), secret_key=SECRET), clock=clock
    )
    manager.extend(
        "watched",
        lambda config: Watched() if driver == "cookie" else Watched(config.lifetime_seconds, clock),
    )
    loop_threads: list[int] = []

    async def count(request: Request) -> PlainTextResponse:
        loop_threads.append(threading.get_ident())
        return PlainTextResponse(str(request.session.increment("count")))

    app = SessionMiddleware(Starlette(routes=[Route("/count", count)]), manager)
    with TestClient(app) as client:
        first = client.get("/count")
        client.get("/count", headers={"Cookie": f"satchel_session={cookie_of(first)}"})
    assert len(collected_on) == 2
    assert set(collected_on) == set(loop_threads)
