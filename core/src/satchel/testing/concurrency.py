"""Many requests of one session at once, through the real middlewares.

For proving that a driver's lock (``block = true``) or ``merge_on_save`` keeps
every write when one user's requests overlap — Laravel's most reported
session bug. Each request reads, waits ``hold_seconds`` (widening the
read-modify-write window, as a slow handler would), then writes::

    from satchel.testing.concurrency import concurrent_increments
    assert concurrent_increments(manager, via="wsgi", block=True) == 40
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from satchel.asgi import Message, Receive, Scope, Send
from satchel.asgi import SessionMiddleware as AsgiSessionMiddleware
from satchel.manager import SessionManager
from satchel.store import Session
from satchel.wsgi import SessionMiddleware as WsgiSessionMiddleware

Via = Literal["wsgi", "asgi"]
REQUESTS = 40


def seed_session(manager: SessionManager, values: Mapping[str, Any]) -> str:
    """Store a session holding ``values``; return its cookie value."""
    session = manager.start(None)
    session.put(dict(values))
    session.save()
    return session.cookie_value()


def wsgi_environ(cookie_header: str | None = None) -> dict[str, Any]:
    """The WSGI environ of a ``GET /`` carrying ``cookie_header`` (no ``Cookie`` when None)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookie_header is not None:
        environ["HTTP_COOKIE"] = cookie_header
    return environ


def call_wsgi(
    app: Callable[..., Iterable[bytes]], environ: dict[str, Any]
) -> tuple[str, list[tuple[str, str]], bytes]:
    """Call a WSGI app as a server would: its status line, headers and whole body."""
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append((line, headers))
        return lambda data: None

    body = app(environ, start_response)
    try:
        content = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return seen[0][0], seen[0][1], content


async def call_asgi(
    app: Callable[[Scope, Receive, Send], Awaitable[None]],
    headers: list[tuple[bytes, bytes]],
    *,
    client: tuple[str, int] = ("127.0.0.1", 40000),
    extra: Mapping[str, Any] | None = None,
) -> int:
    """Call an ASGI app with one ``GET /`` carrying ``headers``, as a server would; its status."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": client,
        "server": ("testserver", 80),
        **(extra or {}),
    }
    statuses: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


def run_wsgi(
    manager: SessionManager,
    work: Callable[[Session, int], None],
    *,
    cookie: str,
    requests: int = REQUESTS,
    block: bool | None = None,
) -> list[int]:
    """``requests`` concurrent WSGI requests carrying ``cookie``; returns their status codes."""
    return _wsgi_statuses(manager, work, [cookie] * requests, workers=requests, block=block)


def _wsgi_statuses(
    manager: SessionManager,
    work: Callable[[Session, int], None],
    cookies: Sequence[str],
    *,
    workers: int,
    block: bool | None,
) -> list[int]:
    """One WSGI request per cookie value, from ``workers`` threads; their status codes."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        work(environ["satchel.session"], environ["satchel.test.index"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = WsgiSessionMiddleware(app, manager, block=block)

    def one(index: int) -> int:
        environ = wsgi_environ(f"{manager.config.cookie}={cookies[index]}")
        environ["satchel.test.index"] = index
        status, _, _ = call_wsgi(middleware, environ)
        return int(status.split()[0])

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(len(cookies))))


def run_asgi(
    manager: SessionManager,
    work: Callable[[Session, int], Any],
    *,
    cookie: str,
    requests: int = REQUESTS,
    block: bool | None = None,
) -> list[int]:
    """``requests`` concurrent ASGI requests carrying ``cookie``; returns their status codes.

    ``work(session, index)`` may return an awaitable, awaited inside the request.
    """
    return _asgi_statuses(manager, work, [cookie] * requests, workers=requests, block=block)


def _asgi_statuses(
    manager: SessionManager,
    work: Callable[[Session, int], Any],
    cookies: Sequence[str],
    *,
    workers: int,
    block: bool | None,
) -> list[int]:
    """One ASGI request per cookie value, ``workers`` at a time; their status codes."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        result = work(scope["session"], scope["satchel.test.index"])
        if asyncio.iscoroutine(result):
            await result
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = AsgiSessionMiddleware(app, manager, block=block)

    async def one(index: int, slots: asyncio.Semaphore) -> int:
        cookie_header = f"{manager.config.cookie}={cookies[index]}".encode("latin-1")
        async with slots:
            return await call_asgi(
                middleware,
                [(b"host", b"testserver"), (b"cookie", cookie_header)],
                client=("127.0.0.1", 40000 + index),
                extra={"satchel.test.index": index},
            )

    async def everything() -> list[int]:
        slots = asyncio.Semaphore(workers)
        return list(await asyncio.gather(*(one(index, slots) for index in range(len(cookies)))))

    return asyncio.run(everything())


def untouched_requests(
    manager: SessionManager,
    cookies: Sequence[str],
    *,
    via: Via,
    block: bool | None = None,
    workers: int = 16,
) -> list[int]:
    """One request per cookie value to a page that never touches the session, ``workers``
    at a time; their statuses."""

    def leave_alone(session: Session, index: int) -> None:
        pass

    statuses = _wsgi_statuses if via == "wsgi" else _asgi_statuses
    return statuses(manager, leave_alone, cookies, workers=workers, block=block)


def concurrent_increments(
    manager: SessionManager,
    *,
    via: Via,
    requests: int = REQUESTS,
    block: bool | None = True,
    hold_seconds: float = 0.01,
) -> int:
    """Every request increments one counter at once; returns the final count.

    With a working lock it equals ``requests``; without one, overlapping
    requests overwrite each other and it comes out lower.
    """
    cookie = seed_session(manager, {"counter": 0})

    def increment(session: Session, index: int) -> None:
        value = session.get("counter")
        time.sleep(hold_seconds)
        session.put("counter", value + 1)

    async def aincrement(session: Session, index: int) -> None:
        value = session.get("counter")
        await asyncio.sleep(hold_seconds)
        session.put("counter", value + 1)

    if via == "wsgi":
        statuses = run_wsgi(manager, increment, cookie=cookie, requests=requests, block=block)
    else:
        statuses = run_asgi(manager, aincrement, cookie=cookie, requests=requests, block=block)
    if set(statuses) != {200}:
        raise AssertionError(f"not every request succeeded: {sorted(statuses)}")
    counter = manager.start(cookie).get("counter")
    assert isinstance(counter, int)
    return counter


def concurrent_distinct_keys(
    manager: SessionManager,
    *,
    via: Via,
    requests: int = REQUESTS,
    hold_seconds: float = 0.01,
) -> set[str]:
    """Every request sets its own key at once (no blocking); returns the keys stored after.

    With ``merge_on_save`` all ``requests`` keys survive; without it, the last
    writer's session replaces the others'.
    """
    cookie = seed_session(manager, {"seed": True})

    def set_key(session: Session, index: int) -> None:
        session.get("seed")
        time.sleep(hold_seconds)
        session.put(f"key{index}", index)

    async def aset_key(session: Session, index: int) -> None:
        session.get("seed")
        await asyncio.sleep(hold_seconds)
        session.put(f"key{index}", index)

    if via == "wsgi":
        statuses = run_wsgi(manager, set_key, cookie=cookie, requests=requests, block=False)
    else:
        statuses = run_asgi(manager, aset_key, cookie=cookie, requests=requests, block=False)
    if set(statuses) != {200}:
        raise AssertionError(f"not every request succeeded: {sorted(statuses)}")
    return {name for name in manager.start(cookie).all() if name.startswith("key")}
