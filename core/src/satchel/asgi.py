"""ASGI middleware: a satchel :class:`~satchel.Session` in ``scope["session"]``.

Pure ASGI, so it serves Starlette, FastAPI, Litestar or a bare ASGI app. In
Starlette and FastAPI, ``request.session`` is then the satchel session::

    from starlette.applications import Starlette
    from satchel import SessionConfig, SessionManager
    from satchel.asgi import SessionMiddleware

    manager = SessionManager(SessionConfig(driver="file"))
    app = SessionMiddleware(Starlette(routes=...), manager)

Driver I/O never blocks the event loop. A driver whose calls never wait
(``runs_on_event_loop``: cookie, array, file, null) loads lazily, as under
WSGI, on the application's first use, so a request that never touches its
session costs nothing (its cookie is not even parsed). Any other driver's
session is read before the handler runs, through the driver's async twin
(or the sync driver in a worker thread), and only when the request carries
a session cookie, because a synchronous ``request.session.get`` inside a
coroutine cannot wait for I/O; a request without the cookie gets a fresh
session that costs nothing. What was read is decoded on the handler's first
use (:meth:`~satchel.Session.aprefetch`), so a handler that never uses the
session leaves it as under WSGI: no flash data aged, no refresh, no cookie.
A websocket's session is always read as it connects. The session is saved
when the response starts, so ``Set-Cookie``, ``Vary: Cookie`` and
``Cache-Control: private`` go out before any streamed body. With ``block``,
the per-session lock is released right after that save (and a websocket's
right after its session is read), never held through a streamed body or a
socket's whole life.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from satchel.context import BOUND_SESSION
from satchel.errors import SessionBusy
from satchel.manager import SessionManager
from satchel.store import Session
from satchel.web import NO_HEADERS, VARY_COOKIE, AsyncRequestLock, SessionFlow, SessionHeaders

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
        kind = scope["type"]
        if kind not in ("http", "websocket") or (
            self.skip_paths and self.skipped(scope.get("path", ""))
        ):
            await self.app(scope, receive, send)
            return
        flow = self.flow
        cookie_header, user_agent = _headers(scope)
        client = scope.get("client")
        session = flow.start(cookie_header, client[0] if client else None, user_agent)
        request = _Request(self, scope, send, session)
        if flow.blocking:
            try:
                request.lock = await flow.aacquire(session.incoming_cookie)
            except SessionBusy:
                await request.answer_busy()
                return
        # The lock guards load-modify-save only: it is released once the session is
        # saved (or, for a websocket, loaded), never held through a long stream or a
        # socket's life; the finally below releases it on every other path.
        try:
            if (
                kind == "websocket" or flow.manager.async_driver_calls().local is None
            ) and session.incoming_cookie is not None:
                # The driver may wait for I/O, which a synchronous read in the app cannot:
                # the record is read now, and for a request decoded on first use, so one
                # that never uses its session changes nothing (a websocket's, never saved,
                # is taken as it stood when it connected). A driver whose reads never wait
                # loads on first use: the cookie of a request that never uses its session
                # is not even read.
                try:
                    await (session.aload() if kind == "websocket" else session.aprefetch())
                except SessionBusy:
                    # The store had no connection free in time: the app has not run yet.
                    await request.release()
                    await request.answer_busy()
                    return
            if kind == "websocket":
                # A websocket has no response to carry a cookie: its session is read-only.
                await request.release()
                app_send = send
            else:
                app_send = request.send
            scope["session"] = session
            token = BOUND_SESSION.set(session)  # this coroutine's own context: reset below
            try:
                await self.app(scope, receive, app_send)
            finally:
                BOUND_SESSION.reset(token)
        finally:
            if request.lock is not None:
                await request.release()
        if flow.garbage_collection_due(session):  # drawn only for a session that was read
            await flow.arun_garbage_collection()


class _Request:
    """One request's state: its session, its lock and how far its response got."""

    __slots__ = ("busy", "lock", "middleware", "scope", "server_send", "session", "started")

    def __init__(
        self, middleware: SessionMiddleware, scope: Scope, server_send: Send, session: Session
    ) -> None:
        self.middleware = middleware
        self.scope = scope
        self.server_send = server_send
        self.session = session
        self.lock: AsyncRequestLock | None = None
        self.started = False  # the app started its response
        self.busy = False  # the 503 replaced the app's response

    async def release(self) -> None:
        """Let the session's lock go (the next request of the session may run)."""
        lock = self.lock
        if lock is not None:
            self.lock = None
            await lock.release()

    async def answer_busy(self) -> None:
        """Answer a request whose session the store could not serve in time (lock or pool)."""
        self.busy = True
        if self.scope["type"] == "websocket":
            await self.server_send({"type": "websocket.close", "code": 1013})  # "try again later"
            return
        busy = self.middleware.flow.busy
        await self.server_send(
            {
                "type": "http.response.start",
                "status": busy.status,
                "headers": _encoded(busy.headers),
            }
        )
        await self.server_send({"type": "http.response.body", "body": busy.body})

    async def send(self, message: Message) -> None:
        """The app's ``send``: the session is saved as the response starts, its headers added."""
        if self.busy:
            return  # the 503 replaced the app's response: the rest of it goes nowhere
        if message["type"] == "http.response.start" and not self.started:
            # Set first: should saving fail (SessionTooLarge), an error response
            # sent next must not age the flash data a second time.
            self.started = True
            session = self.session
            if self.lock is None and not session.loaded:
                session.save()  # never used and no lock held: nothing to write, send or release
            else:
                try:
                    extra = await self.middleware.flow.afinish(
                        session, https=self.scope.get("scheme") == "https"
                    )
                except SessionBusy:
                    # merge_on_save's lock stayed taken, or no connection came free:
                    # nothing was saved, and no byte of the app's response has gone
                    # out, so it can still be a 503.
                    await self.release()
                    await self.answer_busy()
                    return
                finally:
                    # Saved (or failed to): the next request of this session may go now.
                    if self.lock is not None:
                        await self.release()
                if extra is not NO_HEADERS:
                    message = _with_headers(message, extra)
        await self.server_send(message)


def _with_headers(message: Message, extra: SessionHeaders) -> Message:
    """``message`` (a response start) with the session's headers added, names in lowercase."""
    headers: list[tuple[bytes, bytes]] = []
    merge = False
    for name, value in message.get("headers", ()):
        lowered = name.lower()
        merge = merge or lowered in (b"vary", b"cache-control")
        headers.append((lowered, value))
    if merge:
        # A value to merge with: the general path, through text.
        text = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]
        headers = _encoded(extra.apply(text))
    elif extra.set_cookie is None:
        # Headers with neither Vary nor Cache-Control only gain what apply() adds to none.
        headers += _VARY_COOKIE if extra is VARY_COOKIE else _encoded(extra.apply([]))
    else:
        headers += _SETTING_COOKIE
        headers.append((b"set-cookie", extra.set_cookie.encode("latin-1")))
    message = dict(message)
    message["headers"] = headers
    return message


def _encoded(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Text headers as ASGI sends them: latin-1 bytes, names in lowercase."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


_VARY_COOKIE = _encoded(VARY_COOKIE.apply([]))
# What apply() adds to headers with neither Vary nor Cache-Control before its Set-Cookie.
_SETTING_COOKIE = _encoded(SessionHeaders(set_cookie="", vary_cookie=True).apply([])[:-1])


def _headers(scope: Scope) -> tuple[str | None, str | None]:
    """The request's ``Cookie`` (repeated headers joined: HTTP/2 splits them) and
    ``User-Agent`` headers."""
    cookie: str | None = None
    user_agent: str | None = None
    for raw_name, raw_value in scope.get("headers", ()):
        if len(raw_name) == 6 and raw_name.lower() == b"cookie":
            value = raw_value.decode("latin-1")
            cookie = value if cookie is None else f"{cookie}; {value}"
        elif len(raw_name) == 10 and raw_name.lower() == b"user-agent":
            user_agent = raw_value.decode("latin-1")
    return cookie, user_agent
