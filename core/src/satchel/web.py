"""The request flow every piece of web glue shares (Laravel's ``StartSession``, improved).

:mod:`satchel.asgi`, :mod:`satchel.wsgi` and :mod:`satchel.flask` only
translate between their framework and this module:

1. read the session cookie (:func:`satchel.cookies.read_cookie`) and make a
   lazy session (:meth:`SessionFlow.start`) that costs nothing until used;
2. optionally hold the per-session lock across the request
   (:meth:`SessionFlow.lock` / :meth:`SessionFlow.alock`);
3. after the handler: age flash data and save only what changed
   (:meth:`SessionFlow.finish` / :meth:`SessionFlow.afinish`), which also
   decides the ``Set-Cookie``, ``Vary`` and ``Cache-Control`` headers;
4. run the GC lottery, only for a session that was loaded
   (:meth:`SessionFlow.collect_garbage` / :meth:`SessionFlow.acollect_garbage`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
from collections.abc import AsyncIterator, Iterator

import attrs

from satchel.cookies import CookiePolicy, merge_cache_control, merge_vary
from satchel.errors import SessionBusy
from satchel.handler import RequestMetadata
from satchel.manager import SessionManager
from satchel.store import SaveOutcome, Session

logger = logging.getLogger("satchel")

BUSY_STATUS = 503
LOCK_NOT_RELEASED = (
    "satchel: the store was too busy to release a session lock; it expires by itself "
    "after block_lock_seconds"
)
BUSY_BODY = b"The session store is busy; try again shortly.\n"


def client_address(host: object) -> str | None:
    """The client's IP address as the server reported it, or ``None`` when it is not one.

    Forwarding headers (``X-Forwarded-For``, ``Forwarded``) are never read
    here: the server (uvicorn's ``--proxy-headers``, werkzeug's ``ProxyFix``)
    is the one to decide which proxies to trust.
    """
    if not isinstance(host, str):
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def request_metadata(host: object, user_agent: str | None) -> RequestMetadata:
    """What a driver that wants it (the database driver) is told about the request."""
    return RequestMetadata(ip_address=client_address(host), user_agent=user_agent or None)


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
        if self.set_cookie is None and not self.vary_cookie:
            return headers
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

    @property
    def blocking(self) -> bool:
        """Whether requests hold the per-session lock."""
        return self.manager.config.block if self.block is None else self.block

    def retry_after(self) -> str:
        """``Retry-After`` for a request that timed out waiting for the lock: the lock's own lifetime."""
        return str(max(1, math.ceil(self.manager.config.block_lock_seconds)))

    def busy_headers(self) -> list[tuple[str, str]]:
        """The headers of the 503 (body :data:`BUSY_BODY`) for a request the store could not
        serve in time (:class:`satchel.SessionBusy`: a lock or a connection that stayed taken)."""
        return [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Retry-After", self.retry_after()),
            ("Cache-Control", "no-store"),
        ]

    def start(self, cookie: str | None, metadata: RequestMetadata | None = None) -> Session:
        """A lazy session for the request's cookie value: no backend call until it is used."""
        return self.manager.lazy(cookie, metadata=metadata)

    @contextlib.contextmanager
    def lock(self, cookie: str | None) -> Iterator[None]:
        """Hold the session's lock across the request when blocking (``SessionBusy`` when the
        store cannot give it in time).

        A release that the busy store cannot make in time is logged, not raised:
        the request has been served, and the lock expires by itself after
        ``block_lock_seconds``.
        """
        held = self.manager.lock(cookie, block=self.block)
        held.__enter__()
        try:
            yield
        finally:
            try:
                held.__exit__(None, None, None)
            except SessionBusy:
                logger.warning(LOCK_NOT_RELEASED, exc_info=True)

    @contextlib.asynccontextmanager
    async def alock(self, cookie: str | None) -> AsyncIterator[None]:
        """The async form of :meth:`lock`."""
        held = self.manager.alock(cookie, block=self.block)
        await held.__aenter__()
        try:
            yield
        finally:
            try:
                await held.__aexit__(None, None, None)
            except SessionBusy:
                logger.warning(LOCK_NOT_RELEASED, exc_info=True)

    def finish(
        self,
        session: Session,
        *,
        https: bool,
        policy: CookiePolicy | None = None,
        refresh_each_request: bool | None = None,
    ) -> SessionHeaders:
        """Save through the sync driver and say what the response must carry.

        ``refresh_each_request`` is Flask's ``SESSION_REFRESH_EACH_REQUEST``
        (``None`` for the other glue; see :meth:`headers`). When true, a
        session the request never used is read now, to learn whether the
        cookie names a live permanent session whose cookie is to be re-sent:
        one backend call for a request carrying a well-formed session id,
        none otherwise.
        """
        if refresh_each_request and not session.loaded and session.incoming_cookie is not None:
            session.load()
            if session.new:
                # No live session behind the cookie, and the request never used one:
                # nothing to re-send, create or delete (as Flask sends nothing).
                return SessionHeaders()
        outcome = session.save()
        return self.headers(
            session, outcome, https=https, policy=policy, refresh_each_request=refresh_each_request
        )

    async def afinish(
        self, session: Session, *, https: bool, policy: CookiePolicy | None = None
    ) -> SessionHeaders:
        """Save through the async driver (or the sync one in a worker thread) and say what to send."""
        outcome = await session.asave()
        return self.headers(session, outcome, https=https, policy=policy)

    def headers(
        self,
        session: Session,
        outcome: SaveOutcome,
        *,
        https: bool,
        policy: CookiePolicy | None = None,
        refresh_each_request: bool | None = None,
    ) -> SessionHeaders:
        """The headers a saved session needs.

        The cookie is set when the data or the id changed, and deleted when
        the session ended empty. When only the idle expiry slid it is
        re-sent, so that its ``Max-Age`` slides too — unless
        ``refresh_each_request`` (Flask's ``SESSION_REFRESH_EACH_REQUEST``)
        decides instead, as in Flask: ``True`` re-sends a permanent
        session's cookie on every request that reached a live session,
        ``False`` never re-sends an unchanged session's.
        """
        policy = policy or self.cookie_policy
        if outcome is SaveOutcome.WRITTEN:
            resend = True
        elif outcome is SaveOutcome.REFRESHED or outcome is SaveOutcome.UNCHANGED:
            if refresh_each_request is None:
                resend = outcome is SaveOutcome.REFRESHED
            else:
                resend = refresh_each_request and session.permanent
        else:
            resend = False
        if resend:
            header: str | None = policy.set_header(
                session.cookie_value(),
                https=https,
                max_age=self.max_age(session, policy),
                now=self.manager.clock(),
            )
        elif session.cookie_action() == "delete":
            header = policy.delete_header(https=https)
        else:
            header = None
        return SessionHeaders(set_cookie=header, vary_cookie=session.accessed or header is not None)

    def max_age(self, session: Session, policy: CookiePolicy) -> int | None:
        """``Max-Age`` for the cookie: ``None`` (a browser-session cookie) unless permanent.

        It never outlasts the absolute lifetime, when there is one.
        """
        if not session.permanent:
            return None
        max_age = policy.max_age
        absolute = self.manager.config.absolute_lifetime_seconds
        if absolute is not None:
            remaining = session.created_at + absolute - self.manager.clock()
            max_age = min(max_age, max(1, math.ceil(remaining)))
        return max_age

    def collect_garbage(self, session: Session) -> None:
        """The GC lottery, for a request that loaded its session (never an extra backend call otherwise)."""
        if not session.loaded or not self.manager.lottery_wins():
            return
        try:
            removed = self.manager.collect_garbage()
        except Exception:
            # Housekeeping must not turn a served request into an error; the next draw retries.
            logger.exception("satchel: session garbage collection failed")
        else:
            logger.debug("satchel: garbage collection removed %d sessions", removed)

    async def acollect_garbage(self, session: Session) -> None:
        """The async form of :meth:`collect_garbage`."""
        if not session.loaded or not self.manager.lottery_wins():
            return
        try:
            removed = await self.manager.acollect_garbage()
        except Exception:
            logger.exception("satchel: session garbage collection failed")
        else:
            logger.debug("satchel: garbage collection removed %d sessions", removed)
