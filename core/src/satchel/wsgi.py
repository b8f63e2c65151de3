"""WSGI middleware: a satchel :class:`~satchel.Session` in ``environ["satchel.session"]``.

::

    from satchel import SessionConfig, SessionManager
    from satchel.wsgi import SessionMiddleware

    manager = SessionManager(SessionConfig(driver="file"))
    application = SessionMiddleware(application, manager)

The session is lazy: a request whose handler never touches it costs no
backend call, creates nothing and sets no cookie. It is saved when the
application calls ``start_response``, so the cookie is part of the headers
even when the body is streamed afterwards. A store that cannot serve the
request in time (:class:`satchel.SessionBusy`: the session's lock or every
pooled connection stayed taken) gets a 503 with ``Retry-After``, as long as
the application has not started its response.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from satchel import context
from satchel.cookies import read_cookie
from satchel.errors import SessionBusy
from satchel.manager import SessionManager
from satchel.store import Session
from satchel.web import BUSY_BODY, SessionFlow, SessionHeaders, request_metadata

ENVIRON_KEY = "satchel.session"
T = TypeVar("T")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIEnviron = dict[str, Any]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]


class SessionMiddleware:
    """Gives each request a lazy session and saves it when the response starts.

    Args:
        app: The WSGI application to wrap.
        manager: The :class:`satchel.SessionManager` that makes the sessions.
        block: Hold the per-session lock across each request of this app
            (``None`` follows the config's ``block``). A driver that cannot lock
            is refused here with a ``ConfigError`` naming it.
    """

    def __init__(self, app: WSGIApp, manager: SessionManager, *, block: bool | None = None) -> None:
        self.app = app
        self.flow = SessionFlow(manager, block=block)

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        cookie = read_cookie(environ.get("HTTP_COOKIE"), self.flow.cookie_policy.name)
        https = environ.get("wsgi.url_scheme") == "https"
        session = self.flow.start(
            cookie, request_metadata(environ.get("REMOTE_ADDR"), environ.get("HTTP_USER_AGENT"))
        )
        lock = contextlib.ExitStack()
        try:
            lock.enter_context(self.flow.lock(cookie))
        except SessionBusy:
            start_response("503 Service Unavailable", self.flow.busy_headers())
            return [BUSY_BODY]
        environ[ENVIRON_KEY] = session
        saved: list[SessionHeaders] = []
        busy: list[bool] = []

        def answer_busy() -> bool:
            """Start the 503 instead of the app's response, unless the app started one."""
            if saved or busy:
                return False
            busy.append(True)
            start_response("503 Service Unavailable", self.flow.busy_headers())
            return True

        def start_with_session(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            if busy:
                return _discard  # the 503 replaced this response
            if not saved:
                # A placeholder first: should saving fail (SessionTooLarge), an error page
                # started next must not age the flash data a second time.
                saved.append(SessionHeaders())
                try:
                    saved[0] = self.flow.finish(session, https=https)
                except SessionBusy:
                    # merge_on_save's lock or every connection stayed taken: nothing was
                    # saved and nothing sent yet, so the client can still get the 503
                    # (the body is swapped in _ClosingBody).
                    busy.append(True)
                    start_response("503 Service Unavailable", self.flow.busy_headers())
                    return _discard
                finally:
                    # The lock guards load-modify-save; the next request may go once this is saved.
                    lock.close()
            headers = saved[0].apply(list(headers))
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        try:
            body = _bound(session, self.app, environ, start_with_session)
        except SessionBusy:
            # Loading the session (lazily, in the app) found the store busy.
            lock.close()
            if not answer_busy():
                raise
            return [BUSY_BODY]
        except BaseException:
            lock.close()  # closing twice is harmless
            raise
        return _ClosingBody(
            body,
            session=session,
            lock=lock,
            after=lambda: self._after(session, saved),
            busy=busy,
            answer_busy=answer_busy,
        )

    def _after(self, session: Session, saved: list[SessionHeaders]) -> None:
        if saved:
            self.flow.collect_garbage(session)


def _discard(data: bytes) -> None:
    """The ``write`` callable of a response the 503 replaced."""


def _bound(session: Session, step: Callable[..., T], *args: Any) -> T:
    """Run one step of the application with ``session`` bound to ``satchel.session``.

    The binding lasts for the step only: between steps the server (or a test
    client that never closes the body) runs with nothing bound, so neither
    its own code nor the next application in the same thread reaches this
    request's session.
    """
    token = context.bind(session)
    try:
        return step(*args)
    finally:
        context.unbind(token)


class _ClosingBody:
    """The application's body, with the request's cleanup run when the server closes it.

    Each step the application takes (producing a chunk, closing) runs with
    the session bound. When the 503 replaced the response (``busy`` became
    true once the app started it, or ``answer_busy`` started the 503 for a
    generator app whose session load found the store busy before it started
    its own), the app's body is dropped and the 503's body sent instead.
    """

    def __init__(
        self,
        body: Iterable[bytes],
        *,
        session: Session,
        lock: contextlib.ExitStack,
        after: Callable[[], None],
        busy: list[bool],
        answer_busy: Callable[[], bool],
    ) -> None:
        self._body = body
        self._session = session
        self._lock = lock
        self._after = after
        self._busy = busy
        self._answer_busy = answer_busy

    def __iter__(self) -> Iterator[bytes]:
        if not self._busy:
            body = self._body
            if isinstance(body, (list, tuple)):
                yield from body  # no application code runs while a list is read
                return
            chunks = _bound(self._session, iter, body)
            while True:
                # A generator app calls start_response on its first step: check after each one.
                try:
                    chunk = _bound(self._session, chunks.__next__)
                except StopIteration:
                    break
                except SessionBusy:
                    if not self._answer_busy():
                        raise
                    break
                if self._busy:
                    break
                yield chunk
        if self._busy:
            yield BUSY_BODY

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                _bound(self._session, close)
        finally:
            self._lock.close()
            self._after()
