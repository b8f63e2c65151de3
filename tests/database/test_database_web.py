"""Request metadata (user id, client address, user agent) stored through the web glue."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from fixtures.database_support import async_url, fetch_row

from satchel import SessionConfig, SessionManager
from satchel.asgi import SessionMiddleware as AsgiSessionMiddleware
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WsgiSessionMiddleware

COOKIE = "satchel_session"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"


def storage_id(cookie_value: str) -> str:
    """The id the driver stores for a cookie's session id (core's SHA-256 digest)."""
    return hashlib.sha256(cookie_value.encode("ascii")).hexdigest()


def cookie_from(headers: Iterable[tuple[str, str]]) -> str:
    for name, value in headers:
        if name.lower() == "set-cookie" and value.startswith(f"{COOKIE}="):
            return value.split(";", 1)[0].split("=", 1)[1]
    raise AssertionError(f"no session cookie in {list(headers)}")


def login_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    session = environ[ENVIRON_KEY]
    if environ["PATH_INFO"] == "/login":
        session["user_id"] = 42
    else:
        session["visits"] = session.get("visits", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def call_wsgi(app: Any, path: str, *, remote: str, agent: str, cookie: str | None) -> list[Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "REMOTE_ADDR": remote,
        "HTTP_USER_AGENT": agent,
    }
    if cookie is not None:
        environ["HTTP_COOKIE"] = f"{COOKIE}={cookie}"
    captured: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured.extend(headers)
        return lambda data: None

    body = app(environ, start_response)
    b"".join(body)
    close = getattr(body, "close", None)
    if close is not None:
        close()
    return captured


def test_wsgi_middleware_stores_user_ip_and_agent(
    database_url: str, make_table: Callable[[str], str]
) -> None:
    table = make_table(database_url)
    manager = SessionManager(
        SessionConfig(
            driver="database", connection=database_url, table=table, cookie=COOKIE, lottery=(0, 1)
        )
    )
    app = WsgiSessionMiddleware(login_app, manager)

    headers = call_wsgi(app, "/login", remote="198.51.100.7", agent=FIREFOX, cookie=None)
    cookie = cookie_from(headers)
    row = fetch_row(database_url, table, storage_id(cookie))
    assert row is not None
    assert (row["user_id"], row["ip_address"], row["user_agent"]) == ("42", "198.51.100.7", FIREFOX)
    assert cookie not in str(row)  # the cookie's id itself is never stored

    # The next request from another address and browser updates the metadata.
    call_wsgi(app, "/", remote="2001:db8::5", agent="curl/8.0", cookie=cookie)
    row = fetch_row(database_url, table, storage_id(cookie))
    assert row is not None
    assert (row["user_id"], row["ip_address"], row["user_agent"]) == (
        "42",
        "2001:db8::5",
        "curl/8.0",
    )

    handler: Any = manager.handler()
    assert [session.id for session in handler.sessions_of_user("42")] == [storage_id(cookie)]
    handler.close()


def test_asgi_middleware_stores_metadata_through_the_async_engine(
    database_url: str, make_table: Callable[[str], str]
) -> None:
    table = make_table(database_url)
    manager = SessionManager(
        SessionConfig(
            driver="database",
            connection=async_url(database_url),
            table=table,
            cookie=COOKIE,
            lottery=(0, 1),
        )
    )

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        session = scope["session"]
        session["user_id"] = "user-9"
        session["visits"] = session.get("visits", 0) + 1  # changed data: every request saves
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = AsgiSessionMiddleware(app, manager)

    async def request(agent: str, cookie: str | None) -> list[tuple[str, str]]:
        headers = [(b"user-agent", agent.encode())]
        if cookie is not None:
            headers.append((b"cookie", f"{COOKIE}={cookie}".encode()))
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "scheme": "http",
            "headers": headers,
            "client": ("203.0.113.20", 50000),
            "server": ("testserver", 80),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await middleware(scope, receive, send)
        start = next(message for message in sent if message["type"] == "http.response.start")
        return [(name.decode(), value.decode()) for name, value in start["headers"]]

    async def main() -> str:
        try:
            cookie = cookie_from(await request("Agent/1", None))
            await request("Agent/2", cookie)
            return cookie
        finally:
            await manager.async_handler().close()

    handler = manager.async_handler()
    assert type(handler).__name__ == "AsyncDatabaseSessionHandler"
    cookie = asyncio.run(main())
    row = fetch_row(database_url, table, storage_id(cookie))
    assert row is not None
    assert (row["user_id"], row["ip_address"], row["user_agent"]) == (
        "user-9",
        "203.0.113.20",
        "Agent/2",
    )
