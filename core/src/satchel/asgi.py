"""ASGI middleware: a satchel :class:`~satchel.Session` in ``scope["session"]``.

Pure ASGI, so it serves Starlette, FastAPI, Litestar or a bare ASGI app. In
Starlette and FastAPI, ``request.session`` is then the satchel session::

    from starlette.applications import Starlette
    from satchel import SessionConfig, SessionManager
    from satchel.asgi import SessionMiddleware

    manager = SessionManager(SessionConfig(driver="file"))
    app = SessionMiddleware(Starlette(routes=...), manager)

Driver I/O never blocks the event loop: the session is read before the
handler runs through the driver's async twin (or the sync driver in a worker
thread), and only when the request carries a session cookie, because a
synchronous ``request.session.get`` inside a coroutine cannot wait for I/O.
A request without the cookie gets a fresh session that costs nothing. The
session is saved when the response starts, so ``Set-Cookie``, ``Vary:
Cookie`` and ``Cache-Control: private`` go out before any streamed body.
With ``block``, the per-session lock is released right after that save (and
a websocket's right after its session is read), never held through a
streamed body or a socket's whole life.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from satchel import context
from satchel.cookies import read_cookie
from satchel.errors import SessionBusy
from satchel.manager import SessionManager
from satchel.store import Session
from satchel.web import BUSY_BODY, BUSY_STATUS, SessionFlow, request_metadata

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SessionMiddleware:
    """Loads, saves and sends the session around an ASGI application.

    Args:
        app: The ASGI application to wrap.
        manager: The :class:`satchel.SessionManager` that makes the sessions.
        skip_paths: Path prefixes (``"/static"``, ``"/health"``) whose requests
            never load a session: no cookie is read, no backend is called and
            ``scope["session"]`` is not set. A prefix matches whole path
            segments (``"/static"`` matches ``/static/app.css``, not ``/statics``).
        block: Hold the per-session lock across each request of this app
            (``None`` follows the config's ``block``). A driver that cannot lock
            is refused here with a ``ConfigError`` naming it.
    """

    def __init__(
        self,
        app: ASGIApp,
        manager: SessionManager,
        *,
        skip_paths: Iterable[str] = (),
        block: bool | None = None,
    ) -> None:
        self.app = app
        self.flow = SessionFlow(manager, block=block)
        self.skip_paths = tuple(path.rstrip("/") for path in skip_paths)

    def skipped(self, path: str) -> bool:
        """Whether requests for ``path`` never touch the session."""
        return any(
            prefix in ("", path) or path.startswith(prefix + "/") for prefix in self.skip_paths
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.skipped(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        cookie = read_cookie(headers.get("cookie"), self.flow.cookie_policy.name)
        client = scope.get("client")
        session = self.flow.start(
            cookie, request_metadata(client[0] if client else None, headers.get("user-agent"))
        )
        lock = contextlib.AsyncExitStack()
        try:
            await lock.enter_async_context(self.flow.alock(cookie))
        except SessionBusy:
            await self._busy(scope, send)
            return
        # The lock guards load-modify-save only: it is released once the session is
        # saved (or, for a websocket, loaded), never held through a long stream or a
        # socket's life. Leaving this block releases it on every other path.
        async with lock:
            if cookie is not None:
                try:
                    await session.aload()
                except SessionBusy:
                    # The store had no connection free in time: the app has not run yet.
                    await lock.aclose()
                    await self._busy(scope, send)
                    return
            if scope["type"] == "websocket":
                # A websocket has no response to carry a cookie: its session is read-only.
                await lock.aclose()
                await self._run(scope, receive, send, session)
                return
            await self._run_http(scope, receive, send, session, lock)
        await self.flow.acollect_garbage(session)

    async def _busy(self, scope: Scope, send: Send) -> None:
        """Answer a request whose session the store could not serve in time (lock or pool)."""
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013})  # "try again later"
            return
        await send(
            {
                "type": "http.response.start",
                "status": BUSY_STATUS,
                "headers": [
                    (name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in self.flow.busy_headers()
                ],
            }
        )
        await send({"type": "http.response.body", "body": BUSY_BODY})

    async def _run(self, scope: Scope, receive: Receive, send: Send, session: Session) -> None:
        scope["session"] = session
        token = context.bind(session)
        try:
            await self.app(scope, receive, send)
        finally:
            context.unbind(token)

    async def _run_http(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        session: Session,
        lock: contextlib.AsyncExitStack,
    ) -> None:
        https = scope.get("scheme") == "https"
        started = False
        busy = False

        async def send_with_session(message: Message) -> None:
            nonlocal started, busy
            if busy:
                return  # the 503 replaced the app's response: the rest of it goes nowhere
            if message["type"] == "http.response.start" and not started:
                # Set first: should saving fail (SessionTooLarge), an error response
                # sent next must not age the flash data a second time.
                started = True
                try:
                    extra = await self.flow.afinish(session, https=https)
                except SessionBusy:
                    # merge_on_save's lock stayed taken, or no connection came free:
                    # nothing was saved, and no byte of the app's response has gone
                    # out, so it can still be a 503.
                    busy = True
                finally:
                    # Saved (or failed to): the next request of this session may go now.
                    await lock.aclose()
                if busy:
                    await self._busy(scope, send)
                    return
                headers = [
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in message.get("headers", ())
                ]
                merged = extra.apply(headers)
                if merged is not headers:
                    message = dict(message)
                    message["headers"] = [
                        (name.lower().encode("latin-1"), value.encode("latin-1"))
                        for name, value in merged
                    ]
            await send(message)

        await self._run(scope, receive, send_with_session, session)


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers the session needs, repeated ``Cookie`` headers joined (HTTP/2 splits them)."""
    found: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").lower()
        if name not in ("cookie", "user-agent"):
            continue
        value = raw_value.decode("latin-1")
        found[name] = f"{found[name]}; {value}" if name in found else value
    return found
