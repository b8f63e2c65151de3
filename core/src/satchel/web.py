"""The request flow every piece of web glue shares (Laravel's ``StartSession``, improved).

:mod:`satchel.asgi`, :mod:`satchel.wsgi` and :mod:`satchel.flask` only
translate between their framework and this module:

1. read the session cookie (:func:`satchel.cookies.read_cookie`) and make a
   lazy session (:meth:`SessionFlow.start`) that costs nothing until used;
2. optionally hold the per-session lock across the request
   (:meth:`SessionFlow.acquire` / :meth:`SessionFlow.aacquire`);
3. after the handler: age flash data and save only what changed
   (:meth:`SessionFlow.finish` / :meth:`SessionFlow.afinish`), which also
   decides the ``Set-Cookie``, ``Vary`` and ``Cache-Control`` headers;
4. run the GC lottery, only for a session that was loaded
   (:meth:`SessionFlow.collect_garbage` / :meth:`SessionFlow.acollect_garbage`).
"""

from __future__ import annotations

import contextlib
import logging
import math

import attrs

from satchel.config import SessionConfig
from satchel.cookies import CookiePolicy, merge_cache_control, merge_vary
from satchel.errors import SessionBusy
from satchel.lifecycle import _NOT_LOADED, _REFRESHED, _UNCHANGED, _WRITTEN
from satchel.manager import SessionManager
from satchel.records import client_address, request_metadata
from satchel.store import SaveOutcome, Session

__all__ = [
    "BUSY_BODY",
    "BUSY_STATUS",
    "BusyResponse",
    "SessionFlow",
    "SessionHeaders",
    "client_address",
    "request_metadata",
]

logger = logging.getLogger("satchel")

BUSY_STATUS = 503
LOCK_NOT_RELEASED = (
    "satchel: the store was too busy to release a session lock; it expires by itself "
    "after block_lock_seconds"
)
BUSY_BODY = b"The session store is busy; try again shortly.\n"


@attrs.frozen
class BusyResponse:
    """The 503 for a request the store could not serve in time (:class:`satchel.SessionBusy`:
    the session's lock or every pooled connection stayed taken); each glue sends it as it is.

    Attributes:
        headers: ``Content-Type``, ``Retry-After`` (the lock's own lifetime) and
            ``Cache-Control: no-store``.
        status: 503.
        reason: The status line's reason phrase.
        body: A short plain-text explanation.
    """

    headers: tuple[tuple[str, str], ...]
    status: int = BUSY_STATUS
    reason: str = "Service Unavailable"
    body: bytes = BUSY_BODY

    @property
    def status_line(self) -> str:
        """The WSGI status line."""
        return f"{self.status} {self.reason}"

    @property
    def retry_after(self) -> str:
        """The ``Retry-After`` value."""
        return dict(self.headers)["Retry-After"]

    @classmethod
    def for_config(cls, config: SessionConfig) -> BusyResponse:
        """The 503 a ``config`` answers with: retry once a lock left behind has expired."""
        retry_after = str(max(1, math.ceil(config.block_lock_seconds)))
        return cls(
            headers=(
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Retry-After", retry_after),
                ("Cache-Control", "no-store"),
            )
        )


@attrs.frozen
class SessionHeaders:
    """What the session adds to one response.

    Attributes:
        set_cookie: A ``Set-Cookie`` value (setting or deleting the cookie), or ``None``.
        vary_cookie: Whether the response depends on the cookie (``Vary: Cookie``).
    """

    set_cookie: str | None = None
    vary_cookie: bool = False

    def apply(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The response's headers with the session's added (names compared case-insensitively).

        A response that sets the cookie also gets ``Cache-Control: private``,
        so no shared cache hands it to someone else.
        """
        set_cookie = self.set_cookie
        if set_cookie is None and not self.vary_cookie:
            return headers
        for name, _ in headers:
            lowered = name.lower()
            if lowered == "vary" or (lowered == "cache-control" and set_cookie is not None):
                break
        else:
            # The common case: no Vary (nor, when setting the cookie, Cache-Control) to merge.
            if set_cookie is None:
                return [*headers, ("Vary", "Cookie")]
            return [
                *headers,
                ("Vary", "Cookie"),
                ("Cache-Control", "private"),
                ("Set-Cookie", set_cookie),
            ]
        result: list[tuple[str, str]] = []
        vary: list[str] = []
        cache_control: list[str] = []
        for name, value in headers:
            lowered = name.lower()
            if lowered == "vary":
                vary.append(value)
            elif lowered == "cache-control" and self.set_cookie is not None:
                cache_control.append(value)
            else:
                result.append((name, value))
        if self.vary_cookie or self.set_cookie is not None:
            result.append(("Vary", merge_vary(", ".join(vary) or None)))
        elif vary:
            result.append(("Vary", ", ".join(vary)))
        if self.set_cookie is not None:
            result.append(("Cache-Control", merge_cache_control(", ".join(cache_control) or None)))
            result.append(("Set-Cookie", self.set_cookie))
        return result


NO_HEADERS = SessionHeaders()
VARY_COOKIE = SessionHeaders(vary_cookie=True)


@attrs.frozen
class CookieChange:
    """What a response does to the session cookie.

    Attributes:
        value: The value to set, or ``None`` to delete the cookie.
        max_age: ``Max-Age`` of a cookie set (``None``: a browser-session cookie).
        now: The clock's time, from which ``Expires`` counts.
    """

    value: str | None
    max_age: int | None = None
    now: float = 0.0


class RequestLock:
    """The per-session lock one request holds (``block``), released once.

    A release that the busy store cannot make in time is logged, not raised:
    the request has been served, and the lock expires by itself after
    ``block_lock_seconds``.
    """

    __slots__ = ("_held",)

    def __init__(self, held: contextlib.AbstractContextManager[None]) -> None:
        self._held: contextlib.AbstractContextManager[None] | None = held

    def release(self) -> None:
        """Let the lock go (again: nothing happens)."""
        held, self._held = self._held, None
        if held is None:
            return
        try:
            held.__exit__(None, None, None)
        except SessionBusy:
            logger.warning(LOCK_NOT_RELEASED, exc_info=True)


class AsyncRequestLock:
    """The async form of :class:`RequestLock`."""

    __slots__ = ("_held",)

    def __init__(self, held: contextlib.AbstractAsyncContextManager[None]) -> None:
        self._held: contextlib.AbstractAsyncContextManager[None] | None = held

    async def release(self) -> None:
        """Let the lock go (again: nothing happens)."""
        held, self._held = self._held, None
        if held is None:
            return
        try:
            await held.__aexit__(None, None, None)
        except SessionBusy:
            logger.warning(LOCK_NOT_RELEASED, exc_info=True)


class SessionFlow:
    """One application's session handling, shared by the ASGI, WSGI and Flask glue.

    ``block`` overrides the config's ``block`` for this application only
    (``None`` keeps the config's); a driver that cannot lock is refused here,
    when the middleware is built, not on the first request.
    """

    def __init__(self, manager: SessionManager, *, block: bool | None = None) -> None:
        self.manager = manager
        self.block = block
        manager.check_blocking(block)
        self.cookie_policy = CookiePolicy.from_config(manager.config)
        self.busy = BusyResponse.for_config(manager.config)
        #: Whether requests hold the per-session lock.
        self.blocking = manager.config.block if block is None else block

    def start(
        self, cookie_header: str | None, host: object = None, user_agent: str | None = None
    ) -> Session:
        """A lazy session for the request's ``Cookie`` header: no backend call until it is
        used, and its cookie read from the header only then.

        ``host`` (the client's address as the server reported it) and
        ``user_agent`` become request metadata only for a driver that stores it.
        """
        return Session(self.manager, None, client=(host, user_agent), cookie_header=cookie_header)

    def acquire(self, cookie: str | None) -> RequestLock | None:
        """Take the session's lock for the request when blocking (``None`` when not).

        ``SessionBusy`` when the store cannot give it in time.
        """
        if not self.blocking:
            return None
        held = self.manager.lock(cookie, block=self.block)
        held.__enter__()
        return RequestLock(held)

    async def aacquire(self, cookie: str | None) -> AsyncRequestLock | None:
        """The async form of :meth:`acquire`."""
        if not self.blocking:
            return None
        held = self.manager.alock(cookie, block=self.block)
        await held.__aenter__()
        return AsyncRequestLock(held)

    def save(
        self, session: Session, *, refresh_each_request: bool | None = None
    ) -> SaveOutcome | None:
        """Save through the sync driver; ``None`` when there is nothing to send at all.

        ``refresh_each_request`` is Flask's ``SESSION_REFRESH_EACH_REQUEST``
        (see :meth:`cookie_change`). When true, a session the request never
        used is read now, to learn whether the cookie names a live permanent
        session whose cookie is to be re-sent: one backend call for a request
        carrying a well-formed session id, none otherwise; its flash data is
        left for a request that uses the session. No live session
        behind the cookie, and the request never used one: nothing to re-send,
        create or delete (as Flask sends nothing), which is the ``None``.
        """
        if refresh_each_request and not session.loaded and session.incoming_cookie is not None:
            session.load()
            if session.new:
                return None
            # Read for the cookie's sake only: the flash data waits for a request that uses it.
            return session.save(age_flash=False)
        return session.save()

    def finish(
        self, session: Session, *, https: bool, policy: CookiePolicy | None = None
    ) -> SessionHeaders:
        """Save through the sync driver and say what the response must carry."""
        outcome = session.save()
        if outcome is _NOT_LOADED:
            return NO_HEADERS  # never used: nothing saved, nothing to send
        if outcome is _UNCHANGED:
            # Saved as it was: the cookie is neither re-sent nor deleted (see cookie_change).
            return VARY_COOKIE if session.accessed else NO_HEADERS
        return self.headers(session, outcome, https=https, policy=policy)

    async def afinish(
        self, session: Session, *, https: bool, policy: CookiePolicy | None = None
    ) -> SessionHeaders:
        """Save through the async driver (or the sync one in a worker thread) and say what to send."""
        outcome = await session.asave()
        if outcome is _NOT_LOADED:
            return NO_HEADERS
        if outcome is _UNCHANGED:
            return VARY_COOKIE if session.accessed else NO_HEADERS
        return self.headers(session, outcome, https=https, policy=policy)

    def headers(
        self,
        session: Session,
        outcome: SaveOutcome,
        *,
        https: bool,
        policy: CookiePolicy | None = None,
    ) -> SessionHeaders:
        """The headers a saved session needs (see :meth:`cookie_change`)."""
        policy = policy or self.cookie_policy
        # As cookie_change decides, without building its answer: every changed save comes here.
        if self._resends(session, outcome, None):
            header = policy.set_header(
                session.cookie_value(),
                https=https,
                max_age=self.max_age(session, policy),
                now=self.manager.clock(),
            )
        elif session.cookie_action() == "delete":
            header = policy.delete_header(https=https)
        else:
            return VARY_COOKIE if session.accessed else NO_HEADERS
        return SessionHeaders(header, True)  # positional: cheaper for a frozen class

    def cookie_change(
        self,
        session: Session,
        outcome: SaveOutcome,
        *,
        policy: CookiePolicy | None = None,
        refresh_each_request: bool | None = None,
    ) -> CookieChange | None:
        """What a saved session does to its cookie: set it, delete it, or leave it (``None``).

        The cookie is set when the data or the id changed, and deleted when
        the session ended empty. When only the idle expiry slid it is
        re-sent, so that its ``Max-Age`` slides too — unless
        ``refresh_each_request`` (Flask's ``SESSION_REFRESH_EACH_REQUEST``)
        decides instead, as in Flask: ``True`` re-sends a permanent
        session's cookie on every request that reached a live session,
        ``False`` never re-sends an unchanged session's.
        """
        if self._resends(session, outcome, refresh_each_request):
            return CookieChange(
                value=session.cookie_value(),
                max_age=self.max_age(session, policy or self.cookie_policy),
                now=self.manager.clock(),
            )
        if session.cookie_action() == "delete":
            return CookieChange(value=None)
        return None

    def _resends(
        self, session: Session, outcome: SaveOutcome, refresh_each_request: bool | None
    ) -> bool:
        """Whether the saved session's cookie is (re-)sent (see :meth:`cookie_change`)."""
        if outcome is _WRITTEN:
            return True
        if outcome is _REFRESHED or outcome is _UNCHANGED:
            if refresh_each_request is None:
                return outcome is _REFRESHED
            return refresh_each_request and session.permanent
        return False

    def max_age(self, session: Session, policy: CookiePolicy) -> int | None:
        """``Max-Age`` for the cookie: ``None`` (a browser-session cookie) unless permanent.

        It never outlasts the absolute lifetime, when there is one.
        """
        if not session.permanent:
            return None
        max_age = policy.max_age
        absolute = self.manager.expiry.absolute  # the config's, worked out once
        if absolute is not None:
            remaining = session.created_at + absolute - self.manager.clock()
            max_age = min(max_age, max(1, math.ceil(remaining)))
        return max_age

    def collect_garbage(self, session: Session) -> None:
        """The GC lottery, for a request that loaded its session (never an extra backend call otherwise)."""
        if self.garbage_collection_due(session):
            self.run_garbage_collection()

    def garbage_collection_due(self, session: Session) -> bool:
        """Draw the GC lottery for a request that loaded its session (``False`` otherwise)."""
        return session.loaded and self.manager.lottery_wins()

    def run_garbage_collection(self) -> None:
        """Collect expired sessions now, logging (never raising) a failure."""
        try:
            removed = self.manager.collect_garbage()
        except Exception:
            # Housekeeping must not turn a served request into an error; the next draw retries.
            logger.exception("satchel: session garbage collection failed")
        else:
            logger.debug("satchel: garbage collection removed %d sessions", removed)

    async def acollect_garbage(self, session: Session) -> None:
        """The async form of :meth:`collect_garbage`."""
        if self.garbage_collection_due(session):
            await self.arun_garbage_collection()

    async def arun_garbage_collection(self) -> None:
        """The async form of :meth:`run_garbage_collection`."""
        try:
            removed = await self.manager.acollect_garbage()
        except Exception:
            logger.exception("satchel: session garbage collection failed")
        else:
            logger.debug("satchel: garbage collection removed %d sessions", removed)
