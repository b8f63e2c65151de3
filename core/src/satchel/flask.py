"""Flask: ``flask.session`` as a satchel :class:`~satchel.Session`.

::

    from flask import Flask
    from satchel import SessionConfig, SessionManager
    from satchel.flask import SessionInterface

    app = Flask(__name__)
    app.session_interface = SessionInterface(SessionManager(SessionConfig(driver="file")))

The cookie follows Flask's own settings (``SESSION_COOKIE_NAME``,
``_DOMAIN``, ``_PATH``, ``_HTTPONLY``, ``_SECURE``, ``_SAMESITE``,
``_PARTITIONED``, ``APPLICATION_ROOT``, ``PERMANENT_SESSION_LIFETIME``,
``SESSION_REFRESH_EACH_REQUEST``) and ``session.permanent``, as Flask's
built-in session does; ``SESSION_COOKIE_SAMESITE = None`` sends no SameSite,
and a bad setting is a ``ValueError`` naming it. Most settings the app leaves
at Flask's default defer to the :class:`satchel.SessionConfig` instead, so the
safer satchel defaults apply (``Secure`` on https, ``Max-Age`` of the idle
lifetime). The session is lazy: a view that never touches it creates nothing
and costs no backend call, except the one read ``SESSION_REFRESH_EACH_REQUEST``
needs to re-send a live permanent session's cookie, as Flask does. With
``block``, the per-session lock is taken when the request context opens the
session and released as soon as the session is saved, so a streamed body does
not hold it. ``satchel.session`` follows Flask's request context.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import attrs
import flask
from flask.sessions import SessionInterface as FlaskSessionInterface
from flask.sessions import SessionMixin
from werkzeug.exceptions import ServiceUnavailable

from satchel import context
from satchel.config import SessionConfig
from satchel.cookies import CookiePolicy, merge_cache_control, read_cookie
from satchel.errors import ConfigError, SessionBusy
from satchel.manager import SessionManager
from satchel.store import Session
from satchel.web import CookieChange, RequestLock, SessionFlow

if TYPE_CHECKING:
    from flask.wrappers import Request, Response

STATE_KEY = "satchel.flask"
# Flask's defaults: a setting still equal to one of these was not chosen by the app.
FLASK_COOKIE_NAME = "session"
FLASK_LIFETIME = timedelta(days=31)
SATCHEL_SAME_SITE = attrs.fields(SessionConfig).same_site.default
# The Flask setting behind each cookie attribute, for errors that name it.
FLASK_SETTINGS = {
    "cookie": "SESSION_COOKIE_NAME",
    "path": "SESSION_COOKIE_PATH",
    "domain": "SESSION_COOKIE_DOMAIN",
    "secure": "SESSION_COOKIE_SECURE",
    "http_only": "SESSION_COOKIE_HTTPONLY",
    "same_site": "SESSION_COOKIE_SAMESITE",
    "partitioned": "SESSION_COOKIE_PARTITIONED",
}


class FlaskSession(Session, SessionMixin):  # type: ignore[override]  # Session defines them as properties
    """A satchel session with the attributes Flask sets and reads.

    Flask's request context sets ``accessed`` whenever ``flask.session`` is
    looked up, and apps set ``modified = True`` after changing a nested value;
    both are honoured (a nested change is also noticed without it).
    """

    store_busy = False  # loading found the store busy: the response is the 503

    @property
    def accessed(self) -> bool:
        """Whether the app looked at the session during this request."""
        return self._life.accessed

    @accessed.setter
    def accessed(self, value: bool) -> None:
        self._life.accessed = bool(value)

    @property
    def modified(self) -> bool:
        """Whether the request changed the data (still true after the save).

        ``session.modified = True`` forces a save.
        """
        return super().modified

    @modified.setter
    def modified(self, value: bool) -> None:
        if value:
            self._touch()
            self._life.force_write = True

    def load(self) -> None:
        """Read the session now; a store too busy to answer in time stops the request with 503."""
        try:
            super().load()
        except SessionBusy as exc:
            # Flask turns an exception from a view into a 500, but answers an HTTP
            # exception as it is; save_session then makes it the same 503 a lock
            # timeout gets.
            self.store_busy = True
            raise ServiceUnavailable() from exc


class _RequestState:
    """What one request holds: its session, and the session's lock until it is saved.

    It lives in the request's environ as long as the request does, so the
    session stays reachable wherever Flask pushes the request context again
    (``stream_with_context``, ``session_transaction``).
    """

    __slots__ = ("busy", "collected", "finishing", "lock", "owner", "policy", "saved", "session")

    def __init__(
        self,
        owner: SessionInterface,
        session: FlaskSession,
        lock: RequestLock | None,
        policy: CookiePolicy,
    ) -> None:
        self.owner = owner
        self.session = session
        self.lock = lock
        self.policy = policy  # the cookie the app's settings describe
        self.busy = False
        self.finishing = False
        self.saved = False
        self.collected = False

    def release(self) -> None:
        """Let the session's lock go (again: nothing happens)."""
        lock = self.lock
        if lock is not None:
            self.lock = None
            lock.release()


class SessionInterface(FlaskSessionInterface):
    """Flask's session interface backed by a :class:`satchel.SessionManager`.

    Args:
        manager: The manager that makes the sessions.
        block: Hold the per-session lock across each request of this app
            (``None`` follows the config's ``block``). A driver that cannot lock
            is refused here with a ``ConfigError`` naming it. A request that
            waits too long is answered 503 with ``Retry-After``.
    """

    def __init__(self, manager: SessionManager, *, block: bool | None = None) -> None:
        self.flow = SessionFlow(manager, block=block)
        self.manager = manager
        self._policies: dict[tuple[Any, ...], CookiePolicy] = {}

    # -- cookie settings: Flask's when the app set them, satchel's otherwise ----------

    def cookie_policy(self, app: flask.Flask) -> CookiePolicy:
        """The cookie the app's Flask settings (or satchel's config, for defaults) describe.

        Built once per distinct set of settings (it is asked for on every
        request, and building one validates every attribute).
        """
        settings = app.config
        flask_settings: dict[str, Any] = {
            "name": settings["SESSION_COOKIE_NAME"],
            "path": settings["SESSION_COOKIE_PATH"] or settings["APPLICATION_ROOT"] or "/",
            "domain": settings["SESSION_COOKIE_DOMAIN"],
            "secure": bool(settings["SESSION_COOKIE_SECURE"]),
            "http_only": bool(settings["SESSION_COOKIE_HTTPONLY"]),
            "same_site": settings["SESSION_COOKIE_SAMESITE"],
            "partitioned": bool(settings.get("SESSION_COOKIE_PARTITIONED")),
            "lifetime": app.permanent_session_lifetime,
        }
        key = tuple(flask_settings.values())
        policy = self._policies.get(key)
        if policy is None:
            try:
                policy = self._build_cookie_policy(**flask_settings)
            except ConfigError as exc:
                # A ValueError, as Flask's own is, naming the Flask setting at fault.
                setting = FLASK_SETTINGS.get(exc.key, exc.key)
                if exc.key == "path" and not settings["SESSION_COOKIE_PATH"]:
                    setting = "APPLICATION_ROOT"
                raise ConfigError(setting, exc.reason) from exc
            self._policies[key] = policy
        return policy

    def _build_cookie_policy(
        self,
        *,
        name: str,
        path: str,
        domain: str | None,
        secure: bool,
        http_only: bool,
        same_site: str | None,
        partitioned: bool,
        lifetime: timedelta,
    ) -> CookiePolicy:
        config = self.manager.config
        if same_site is None:
            # Flask's default, which sends no SameSite (as Flask does), unless the
            # satchel config chose a SameSite of its own.
            same_site = None if config.same_site == SATCHEL_SAME_SITE else config.same_site
        elif not isinstance(same_site, str):
            raise ConfigError(
                "same_site", f"must be 'Strict', 'Lax', 'None' or None, got {same_site!r}"
            )
        return CookiePolicy(
            name=config.cookie if name == FLASK_COOKIE_NAME else name,
            path=config.path if path == "/" else path,
            domain=domain or config.domain,
            secure=True if secure else config.secure,
            http_only=http_only and config.http_only,
            same_site=same_site,
            partitioned=partitioned or config.partitioned,
            max_age=(
                config.lifetime_seconds
                if lifetime == FLASK_LIFETIME
                else int(lifetime.total_seconds())
            ),
        )

    def get_cookie_name(self, app: flask.Flask) -> str:
        return self.cookie_policy(app).name

    # -- the request flow ----------------------------------------------------------------

    def open_session(self, app: flask.Flask, request: Request) -> FlaskSession:
        opened = self._state_of(request.environ)
        if opened is not None:
            # Opened once more for the same request (Flask's session_transaction does so
            # inside a context that already opened it): the same session, the same lock.
            return opened.session
        policy = self.cookie_policy(app)
        cookie = read_cookie(request.headers.get("Cookie"), policy.name)
        lock = None
        busy = False
        if self.flow.blocking:
            try:
                lock = self.flow.acquire(cookie)
            except SessionBusy:
                # Another request holds this session: hooks that run anyway (before_request,
                # error handlers) get an empty session instead of reading it unlocked.
                busy = True
                cookie = None
        session = FlaskSession(
            self.manager,
            cookie,
            client=(request.remote_addr, request.headers.get("User-Agent")),
        )
        state = _RequestState(self, session, lock, policy)
        state.busy = busy
        if busy:
            # Flask turns an exception raised here into a 500; a routing exception
            # stops the view instead, and save_session turns whatever response the
            # request ends with (a before_request hook's included) into the 503.
            request.routing_exception = ServiceUnavailable()
        request.environ[STATE_KEY] = state
        return session

    def save_session(self, app: flask.Flask, session: SessionMixin, response: Response) -> None:
        state = self._state_of(flask.request.environ)
        if state is None or state.session is not session:
            return  # not ours
        if state.busy or state.session.store_busy:
            self._answer_busy(response)
            return
        if state.finishing:
            # Saving failed (SessionTooLarge) and Flask is now saving its error page:
            # trying again would age the flash data a second time.
            return
        state.finishing = True
        policy = state.policy
        refresh = bool(app.config["SESSION_REFRESH_EACH_REQUEST"])
        try:
            outcome = self.flow.save(state.session, refresh_each_request=refresh)
        except SessionBusy:
            # merge_on_save's lock or every connection stayed taken: nothing was
            # saved, nothing sent yet.
            state.busy = True
            self._answer_busy(response)
            return
        finally:
            # The lock guards load-modify-save, not a streamed body: the next request
            # of this session may go now, before teardown.
            state.release()
        state.saved = True
        if outcome is None:
            return
        change = self.flow.cookie_change(
            state.session, outcome, policy=policy, refresh_each_request=refresh
        )
        if change is not None:
            _write_cookie(response, policy, change, https=flask.request.is_secure)
        if change is not None or session.accessed:
            response.vary.add("Cookie")

    def _answer_busy(self, response: Response) -> None:
        """Make ``response`` the 503 for a request the store could not serve in time."""
        body = response.response
        close = getattr(body, "close", None)
        if close is not None:
            close()  # a streamed body (stream_with_context) must not outlive its request
        busy = self.flow.busy
        response.headers.clear()
        response.direct_passthrough = False
        response.status_code = busy.status
        response.set_data(busy.body)
        response.headers.extend(busy.headers)

    def _state_of(self, environ: dict[str, Any]) -> _RequestState | None:
        state = environ.get(STATE_KEY)
        return state if isinstance(state, _RequestState) and state.owner is self else None

    def _teardown(self, state: _RequestState) -> None:
        state.release()
        if state.saved and not state.collected:
            state.collected = True
            self.flow.collect_garbage(state.session)


def _write_cookie(
    response: Response, policy: CookiePolicy, change: CookieChange, *, https: bool
) -> None:
    """Set or delete the session cookie through werkzeug, as Flask's own sessions do.

    A response that sets the cookie (or deletes it) gets ``Cache-Control: private``
    too, so no shared cache hands it to someone else.
    """
    attributes: dict[str, Any] = {
        "path": policy.path,
        "domain": policy.domain,
        "secure": policy.is_secure(https=https),
        "httponly": policy.http_only,
        "samesite": policy.same_site,
        "partitioned": policy.partitioned,
    }
    max_age = change.max_age
    if change.value is None:
        response.delete_cookie(policy.name, **attributes)
    elif max_age is None:
        response.set_cookie(policy.name, change.value, **attributes)
    else:
        expires = change.now + max(0, max_age)
        response.set_cookie(
            policy.name, change.value, max_age=max_age, expires=expires, **attributes
        )
    cache_control = ", ".join(response.headers.getlist("Cache-Control")) or None
    response.headers["Cache-Control"] = merge_cache_control(cache_control)


def _on_request_tearing_down(sender: Any, **extra: Any) -> None:
    """Release the lock of the request being torn down and run the GC lottery once.

    Teardown runs even when the view or the response processing failed, and
    once more after a ``stream_with_context`` body, which pushes the request
    context again. One module-level receiver serves every interface: the
    request's state names its owner.
    """
    state = flask.request.environ.get(STATE_KEY)
    if isinstance(state, _RequestState):
        state.owner._teardown(state)


def _request_session() -> Session | None:
    """The satchel session of Flask's current request context, for ``satchel.session``."""
    if not flask.has_request_context():
        return None
    state = flask.request.environ.get(STATE_KEY)
    return state.session if isinstance(state, _RequestState) else None


flask.request_tearing_down.connect(_on_request_tearing_down, weak=False)
context.add_lookup(_request_session)
