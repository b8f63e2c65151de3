"""WSGI middleware: a satchel :class:`~satchel.Session` in ``environ["satchel.session"]``.

::

    from satchel import SessionConfig, SessionManager
    from satchel.wsgi import SessionMiddleware

    manager = SessionManager(SessionConfig(driver="file"))
    application = SessionMiddleware(application, manager)

The session is lazy: a request whose handler never touches it costs no
backend call, creates nothing, sets no cookie and does not even parse the
one it carries. It is saved when the application calls ``start_response``,
so the cookie is part of the headers even when the body is streamed
afterwards. A store that cannot serve the request in time
(:class:`satchel.SessionBusy`: the session's lock or every pooled connection
stayed taken) gets a 503 with ``Retry-After``, as long as the application
has not started its response.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from satchel import context
from satchel.context import BOUND_SESSION
from satchel.errors import SessionBusy
from satchel.manager import SessionManager
from satchel.store import Session
from satchel.web import NO_HEADERS, RequestLock, SessionFlow

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
        flow = self.flow
        session = flow.start(
            environ.get("HTTP_COOKIE"), environ.get("REMOTE_ADDR"), environ.get("HTTP_USER_AGENT")
        )
        request = _Request(self, session, start_response, environ.get("wsgi.url_scheme") == "https")
        if flow.blocking:
            try:
                request.lock = flow.acquire(session.incoming_cookie)
            except SessionBusy:
                return request.answer_busy()
        environ[ENVIRON_KEY] = session
        try:
            # As _bound does, without a frame of its own: every request takes this step.
            token = BOUND_SESSION.set(session)
            try:
                body = self.app(environ, request.start_response)
            finally:
                BOUND_SESSION.reset(token)  # set in this call: the same context
        except SessionBusy:
            # Loading the session (lazily, in the app) found the store busy.
            request.release()
            if request.started:
                raise
            return request.answer_busy()
        except BaseException:
            request.release()
            raise
        if request.lock is None and request.started and not request.busy and type(body) is list:
            # No app code runs while a list is read and no lock is held: only the GC
            # lottery is left, drawn now, so a losing draw leaves nothing to do at close.
            if not (request.saved and flow.garbage_collection_due(session)):
                return body
            request.collect = True
        return _ClosingBody(body, request)


class _Request:
    """One request's state: its session, its lock and how far its response got."""

    __slots__ = (
        "busy",
        "collect",
        "extra",
        "https",
        "lock",
        "middleware",
        "saved",
        "server_start",
        "session",
        "started",
    )

    def __init__(
        self,
        middleware: SessionMiddleware,
        session: Session,
        server_start: StartResponse,
        https: bool,
    ) -> None:
        self.middleware = middleware
        self.session = session
        self.server_start = server_start
        self.https = https
        self.lock: RequestLock | None = None
        self.started = False  # the app started its response (or the 503 replaced it)
        self.saved = False  # the session was used (or locked) and saved: a GC lottery is due
        self.busy = False  # the 503 replaced the app's response
        self.extra = NO_HEADERS  # what the saved session adds to the response
        self.collect = False  # the GC lottery, drawn already, was won: collect at close

    def release(self) -> None:
        """Let the session's lock go (the next request of the session may run)."""
        lock = self.lock
        if lock is not None:
            self.lock = None
            lock.release()

    def answer_busy(self) -> list[bytes]:
        """Start the 503 (the app has not started its response) and give its body."""
        self.started = self.busy = True
        busy = self.middleware.flow.busy
        self.server_start(busy.status_line, list(busy.headers))
        return [busy.body]

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        """The app's ``start_response``: the session is saved first, its headers added."""
        if self.busy:
            return _discard  # the 503 replaced this response
        if not self.started:
            # Set first: should saving fail (SessionTooLarge), an error page started
            # next must not age the flash data a second time.
            self.started = True
            session = self.session
            if self.lock is None and not session.loaded:
                # Never used and no lock held: nothing to write, send or release, and no
                # GC lottery to draw.
                session.save()
            else:
                try:
                    self.extra = self.middleware.flow.finish(session, https=self.https)
                except SessionBusy:
                    # merge_on_save's lock or every connection stayed taken: nothing was
                    # saved and nothing sent yet, so the client can still get the 503
                    # (the body is swapped in _ClosingBody).
                    self.answer_busy()
                    return _discard
                finally:
                    # The lock guards load-modify-save; the next request may go once it is saved.
                    if self.lock is not None:
                        self.release()
                self.saved = True
        extra = self.extra
        if extra is not NO_HEADERS:
            headers = extra.apply(headers)  # a new list: the app's own is left as it was
        if exc_info is not None:
            return self.server_start(status, headers, exc_info)
        return self.server_start(status, headers)

    def finish(self) -> None:
        """After the body: release the lock and, for a saved session, run the GC lottery."""
        self.release()
        if self.collect:
            self.middleware.flow.run_garbage_collection()
        elif self.saved:
            self.middleware.flow.collect_garbage(self.session)


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
    the session bound. When the 503 replaced the response (the request turned
    busy once the app started it, or a generator app's session load found the
    store busy before it started its own), the app's body is dropped and the
    503's body sent instead.
    """

    __slots__ = ("_body", "_request")

    def __init__(self, body: Iterable[bytes], request: _Request) -> None:
        self._body = body
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        request = self._request
        if not request.busy:
            body = self._body
            if isinstance(body, (list, tuple)):
                yield from body  # no application code runs while a list is read
                return
            session = request.session
            chunks = _bound(session, iter, body)
            while True:
                # A generator app calls start_response on its first step: check after each one.
                try:
                    chunk = _bound(session, chunks.__next__)
                except StopIteration:
                    break
                except SessionBusy:
                    if request.started:
                        raise
                    request.answer_busy()
                    break
                if self._request.busy:  # the 503 replaced the response on this step
                    break
                yield chunk
        if request.busy:
            yield request.middleware.flow.busy.body

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                _bound(self._request.session, close)
        finally:
            self._request.finish()
