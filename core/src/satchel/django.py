"""Django session engine: ``SESSION_ENGINE = "satchel.django"``.

Django's own ``request.session`` (its ``SessionMiddleware``, ``login()``,
``logout()``, ``manage.py clearsessions``, the test ``Client``), stored
through any satchel driver. The config is the Django setting
``SATCHEL_SESSION``, a dict as :meth:`satchel.SessionConfig.from_dict` takes.

Django's session contract wins inside Django: its ``SESSION_COOKIE_*``
settings shape the cookie (its middleware writes it), ``SESSION_COOKIE_AGE``
and ``set_expiry()`` decide when each session expires, and keys are Django's
(32 characters of ``a-z0-9``, generated from ``secrets``). What satchel adds
stays: the drivers, the SHA-256 digest of the key in the store, encryption,
and a payload in satchel's tagged JSON (never pickle).

Blocking (``"block": True``): put :class:`SessionMiddleware` in
``MIDDLEWARE`` in place of Django's; it holds the session's lock across the
request, and answers 503 with ``Retry-After`` when the wait runs out.

Expiry and the store: a driver keeps a record for ``lifetime`` minutes after
its last write (Redis's TTL, the file and database drivers' ``gc``). Unless
``SATCHEL_SESSION`` sets it, ``lifetime`` is ``SESSION_COOKIE_AGE``; a
``lifetime`` shorter than that, or a ``set_expiry()`` that asks for longer,
is refused rather than having the store drop sessions Django still counts as
live.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Generator, Mapping
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import (
    VALID_KEY_CHARS,
    CreateError,
    SessionBase,
    UpdateError,
)
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.crypto import get_random_string

from satchel import payload
from satchel.config import SessionConfig
from satchel.crypto import DecryptError
from satchel.errors import ConfigError, LockTimeout
from satchel.handler import RequestMetadata
from satchel.ids import log_digest
from satchel.manager import SessionManager
from satchel.records import Step, record_metadata
from satchel.web import BusyResponse

__all__ = ["SETTING", "SessionMiddleware", "SessionStore", "record_key", "session_manager"]

SETTING = "SATCHEL_SESSION"
MIDDLEWARE = "satchel.django.SessionMiddleware"
KEY_LENGTH = 32  # what Django's own backends issue
MIN_KEY_LENGTH = 8  # Django's SessionBase refuses shorter keys
MAX_KEY_LENGTH = 40  # the longest key Django's own session table holds
COOKIE_DRIVER = "cookie"  # satchel's driver that keeps the payload in the cookie itself
EXPIRY_KEY = "_session_expiry"  # where Django's set_expiry() keeps a session's own expiry
_KEY_CHARS = frozenset(VALID_KEY_CHARS)

# Config keys whose job a Django setting (or Django itself) does inside Django.
DJANGO_DECIDES = {
    "cookie": "SESSION_COOKIE_NAME",
    "path": "SESSION_COOKIE_PATH",
    "domain": "SESSION_COOKIE_DOMAIN",
    "secure": "SESSION_COOKIE_SECURE",
    "http_only": "SESSION_COOKIE_HTTPONLY",
    "same_site": "SESSION_COOKIE_SAMESITE",
    "partitioned": "Django's SessionMiddleware (it writes the cookie)",
    "expire_on_close": "SESSION_EXPIRE_AT_BROWSER_CLOSE",
    "absolute_lifetime": "request.session.set_expiry() with a datetime",
    "touch_interval": "SESSION_SAVE_EVERY_REQUEST",
    "lottery": "manage.py clearsessions (run it from cron)",
    "merge_on_save": "nothing yet: the Django engine does not merge concurrent saves",
}
# Settings the manager is built from: a change (override_settings) builds a new one.
WATCHED_SETTINGS = frozenset(
    {SETTING, "SESSION_COOKIE_AGE", "SECRET_KEY", "SECRET_KEY_FALLBACKS", "MIDDLEWARE"}
)

logger = logging.getLogger("satchel")
# Where Django's own backends report a session that does not decode.
security_logger = logging.getLogger("django.security.SuspiciousSession")

_manager: SessionManager | None = None
_manager_lock = threading.Lock()


def session_manager() -> SessionManager:
    """The :class:`satchel.SessionManager` built from ``SATCHEL_SESSION`` (once, then shared).

    Call ``session_manager().extend(name, factory)`` (in an ``AppConfig.ready``,
    say) to register a driver at run time.
    """
    global _manager  # noqa: PLW0603 - one manager per settings, shared by every request
    manager = _manager
    if manager is None:
        with _manager_lock:
            if _manager is None:
                _manager = build_manager()
            manager = _manager
    return manager


def build_manager() -> SessionManager:
    """A manager for the current Django settings (``ImproperlyConfigured`` names a bad key)."""
    raw = getattr(settings, SETTING, None)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(f"{SETTING} must be a dict, got {type(raw).__name__}")
    for key in raw:
        if key in DJANGO_DECIDES:
            raise ImproperlyConfigured(
                f"{SETTING}[{key!r}]: inside Django this is decided by {DJANGO_DECIDES[key]}; "
                "remove the key"
            )
    values = dict(raw)
    cookie_age = int(settings.SESSION_COOKIE_AGE)
    values.setdefault("lifetime", max(cookie_age, 1) / 60)
    if values.get("encrypt") and not values.get("secret_key"):
        values["secret_key"] = settings.SECRET_KEY
        values.setdefault("secret_key_fallbacks", list(settings.SECRET_KEY_FALLBACKS))
    try:
        config = SessionConfig.from_dict(values)
    except ConfigError as exc:
        raise ImproperlyConfigured(f"{SETTING}: {exc}") from exc
    if config.lifetime_seconds < cookie_age:
        raise ImproperlyConfigured(
            f"{SETTING}['lifetime'] is {config.lifetime:g} minutes, shorter than "
            f"SESSION_COOKIE_AGE ({cookie_age} seconds): the store would drop sessions "
            "that Django still counts as live; raise lifetime or leave it out"
        )
    if config.block and MIDDLEWARE not in settings.MIDDLEWARE:
        raise ImproperlyConfigured(
            f"{SETTING}['block']: put {MIDDLEWARE!r} in MIDDLEWARE in place of Django's "
            "SessionMiddleware; it holds the session's lock across each request"
        )
    if config.driver == COOKIE_DRIVER:
        # Decided by name: resolving the driver here would refuse one that the app
        # registers later with session_manager().extend().
        raise ImproperlyConfigured(
            f"{SETTING}: the {COOKIE_DRIVER!r} driver keeps the session in the cookie, which "
            "Django's SessionMiddleware fills with the session key; use "
            "django.contrib.sessions.backends.signed_cookies for cookie sessions"
        )
    return SessionManager(config)


def _forget_manager(*, setting: str, **kwargs: Any) -> None:
    global _manager  # noqa: PLW0603 - see session_manager
    if setting in WATCHED_SETTINGS:
        with _manager_lock:
            _manager = None


setting_changed.connect(_forget_manager)


def record_key(manager: SessionManager, session_key: str) -> str:
    """The key a driver stores a Django session under (never the session key itself)."""
    return manager.storage_key(session_key)


def valid_key(session_key: object) -> bool:
    """A key Django could have issued: 8 to 40 characters of ``a-z0-9``.

    Anything else (a cookie an attacker made up, an overlong value) is never
    looked up: the request gets a fresh session.
    """
    return (
        isinstance(session_key, str)
        and MIN_KEY_LENGTH <= len(session_key) <= MAX_KEY_LENGTH
        and _KEY_CHARS.issuperset(session_key)
    )


def _timestamp(moment: dt.datetime) -> float:
    """Unix time of a datetime; a naive one is the process's local time, as Django's
    ``timezone.now()`` makes it under ``USE_TZ = False``."""
    return moment.timestamp()


class SessionStore(SessionBase):
    """Django's ``SessionBase`` over a satchel driver (``SESSION_ENGINE = "satchel.django"``)."""

    def __init__(self, session_key: str | None = None) -> None:
        self._manager = session_manager()
        # When the stored session was first written (Unix time), once loaded or created.
        self._created: float | None = None
        # A key this store issued and has not written yet: no record can hold it.
        self._unwritten_key: str | None = None
        # The record under a ``secret_key_fallbacks`` key this session was loaded from: the
        # next save moves it under the current key.
        self._moved_from: str | None = None
        super().__init__(session_key)

    # -- keys ------------------------------------------------------------------------

    def _validate_session_key(self, key: Any) -> bool:
        return valid_key(key)

    def _get_new_session_key(self) -> str:
        # 32 characters of 36 from ``secrets`` (about 165 bits) cannot meet a stored
        # key, so no lookup is spent on checking; save(must_create=True) skips its own
        # check for this key for the same reason.
        key = get_random_string(KEY_LENGTH, VALID_KEY_CHARS)
        self._unwritten_key = key
        return key

    async def _aget_new_session_key(self) -> str:
        return self._get_new_session_key()

    def _record_key(self, session_key: str) -> str:
        return record_key(self._manager, session_key)

    # -- the stored form -----------------------------------------------------------------

    def encode(self, session_dict: dict[str, Any]) -> str:
        """The payload text stored for ``session_dict`` (satchel's tagged JSON).

        A value satchel cannot store is a ``TypeError`` naming its key.
        """
        now = self._manager.clock()
        created = self._created if self._created is not None else now
        envelope = payload.Envelope(values=session_dict, created=created, last_activity=now)
        return payload.dumps(envelope)

    def decode(self, session_data: bytes | str) -> dict[str, Any]:
        """The data of a payload text; ``{}`` (and a warning) for one that does not decode."""
        if isinstance(session_data, bytes):
            session_data = session_data.decode("utf-8", "replace")
        envelope = self._parse(session_data)
        return envelope.values if envelope is not None else {}

    def _parse(self, text: str) -> payload.Envelope | None:
        try:
            return payload.loads(text)
        except payload.PayloadError as exc:
            self._report_corrupt(str(exc))
            return None

    def _report_corrupt(self, reason: str) -> None:
        key = self.session_key
        where = f" {log_digest(key)}" if key else ""
        security_logger.warning("Session data corrupted (satchel session%s: %s)", where, reason)

    def _sealed(
        self, data: dict[str, Any], metadata_wanted: bool
    ) -> tuple[str, str, RequestMetadata | None]:
        """The storage key, the record and (when the driver keeps it) the metadata for ``data``."""
        assert self.session_key is not None
        key = self._record_key(self.session_key)
        if self._created is None:
            self._created = self._manager.clock()
        text = self._manager.codec.seal(self.encode(data), key)
        metadata = record_metadata(self._manager.config, data) if metadata_wanted else None
        return key, text, metadata

    def _opened(self, raw: str, where: str) -> tuple[dict[str, Any] | None, bool]:
        """The data of the record read from ``where``, or ``None`` (and whether it expired)."""
        self._moved_from = None
        if raw == "":
            return None, False
        assert self.session_key is not None
        try:
            text, stale_key = self._manager.codec.open(raw, where)
        except DecryptError as exc:
            self._report_corrupt(f"it failed to decrypt: {exc}")
            return None, False
        envelope = self._parse(text)
        if envelope is None:
            return None, False
        expires_at = self._expires_at(envelope)
        if expires_at is None or expires_at <= self._manager.clock():
            return None, expires_at is not None
        self._created = envelope.created
        if where != self._record_key(self.session_key):
            self._moved_from = where
        if stale_key or self._moved_from is not None:
            self.modified = True  # the middleware's save re-encrypts it under the current key
        return envelope.values, False

    def _expires_at(self, envelope: payload.Envelope) -> float | None:
        """Unix time the session expires, by Django's rules, counted from its last write.

        ``None`` for an expiry that is not one Django writes (corrupt data).
        """
        expiry = envelope.values.get(EXPIRY_KEY)
        written = dt.datetime.fromtimestamp(envelope.last_activity, tz=dt.timezone.utc)
        try:
            if isinstance(expiry, str):
                expiry = dt.datetime.fromisoformat(expiry)
            if isinstance(expiry, dt.datetime):
                expiry = dt.datetime.fromtimestamp(_timestamp(expiry), tz=dt.timezone.utc)
            age = self.get_expiry_age(modification=written, expiry=expiry)
            return envelope.last_activity + float(age)
        except (TypeError, ValueError, OverflowError) as exc:
            self._report_corrupt(f"its expiry {expiry!r} is not one Django writes: {exc}")
            return None

    def _loaded_nothing(self) -> bool:
        """Whether loading (just now, to save) found no record and dropped the key."""
        return self.session_key is None

    def _loaded(self, data: dict[str, Any] | None) -> dict[str, Any]:
        if data is None:
            # Unknown, expired or unreadable: a fresh session under a new key, and no record
            # is made for the key the request brought.
            self._session_key = None
            self._created = None
            return {}
        return data

    # -- expiry ---------------------------------------------------------------------------

    def _check_retention(self, value: Any) -> None:
        """Refuse an expiry longer than the store keeps a session (it would end early)."""
        if isinstance(value, dt.timedelta):
            seconds = value.total_seconds()
        elif isinstance(value, dt.datetime):
            seconds = _timestamp(value) - self._manager.clock()
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = value
        else:
            return  # None: the default expiry (SESSION_COOKIE_AGE), checked with the config
        config = self._manager.config
        if seconds > config.lifetime_seconds:
            raise ValueError(
                f"set_expiry({value!r}) asks for {seconds:g} seconds, longer than the session "
                f"store keeps a session ({SETTING}['lifetime'] = {config.lifetime:g} minutes); "
                "raise lifetime to allow it"
            )

    def set_expiry(self, value: Any) -> None:
        """Django's ``set_expiry``; an expiry longer than ``lifetime`` is a ``ValueError``."""
        self._check_retention(value)
        super().set_expiry(value)

    async def aset_expiry(self, value: Any) -> None:
        """The async form of :meth:`set_expiry`."""
        self._check_retention(value)
        await super().aset_expiry(value)

    # -- the store -------------------------------------------------------------------------

    def exists(self, session_key: str | None) -> bool:
        if not valid_key(session_key):
            return False
        assert session_key is not None
        return self._manager.handler().read(self._record_key(session_key)) != ""

    async def aexists(self, session_key: str | None) -> bool:
        if not valid_key(session_key):
            return False
        assert session_key is not None
        return await self._manager.async_handler().read(self._record_key(session_key)) != ""

    def load(self) -> dict[str, Any]:
        key = self.session_key
        if key is None:
            return self._loaded(None)
        handler = self._manager.handler()
        where = self._record_key(key)
        raw = handler.read(where)
        if raw == "":
            # Rotation: the session may still be stored under a fallback secret's key.
            for where in self._manager.fallback_storage_keys(key):
                raw = handler.read(where)
                if raw:
                    break
        data, expired = self._opened(raw, where)
        if expired:
            handler.destroy(where)
        return self._loaded(data)

    async def aload(self) -> dict[str, Any]:
        key = self.session_key
        if key is None:
            return self._loaded(None)
        handler = self._manager.async_handler()
        where = self._record_key(key)
        raw = await handler.read(where)
        if raw == "":
            for where in self._manager.fallback_storage_keys(key):
                raw = await handler.read(where)
                if raw:
                    break
        data, expired = self._opened(raw, where)
        if expired:
            await handler.destroy(where)
        return self._loaded(data)

    def create(self) -> None:
        self._session_key = self._get_new_session_key()
        self.save(must_create=True)
        self.modified = True

    async def acreate(self) -> None:
        self._session_key = await self._aget_new_session_key()
        await self.asave(must_create=True)
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        """Write the session: a new record (``must_create``) or only over the existing one.

        ``CreateError`` when ``must_create`` meets a record; ``UpdateError`` when the
        record is gone (another request logged the session out): it is not written back.
        """
        if self.session_key is None:
            return self.create()
        data: dict[str, Any] = self._get_session(no_load=must_create)  # type: ignore[attr-defined]
        if self._loaded_nothing():
            return self.create()
        calls = self._manager.driver_calls()
        calls.run(self._write_steps(must_create, *self._sealed(data, calls.keeps_metadata)))
        return None

    async def asave(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return await self.acreate()
        data: dict[str, Any] = await self._aget_session(no_load=must_create)  # type: ignore[attr-defined]
        if self._loaded_nothing():
            return await self.acreate()
        calls = self._manager.async_driver_calls()
        await calls.run(self._write_steps(must_create, *self._sealed(data, calls.keeps_metadata)))
        return None

    def _write_steps(
        self, must_create: bool, key: str, text: str, metadata: RequestMetadata | None
    ) -> Generator[Step, Any, None]:
        """The driver calls of a save (see :meth:`save`), for either driver's runner."""
        if must_create:
            if self.session_key != self._unwritten_key and (yield ("read", key)) != "":
                raise CreateError
            yield ("write", key, text, metadata)
            self._unwritten_key = None
        elif self._moved_from is not None:
            # Loaded under a fallback secret's key: written under the current one only if
            # the old record still exists (never brought back after a logout elsewhere).
            if (yield ("read", self._moved_from)) == "":
                raise UpdateError
            yield ("write", key, text, metadata)
            yield ("destroy", self._moved_from)
            self._moved_from = None
        elif not (yield ("write_if_present", key, text, metadata)):
            raise UpdateError

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            session_key = self.session_key
        if valid_key(session_key):
            assert session_key is not None
            handler = self._manager.handler()
            for where in self._records_of(session_key):
                handler.destroy(where)

    async def adelete(self, session_key: str | None = None) -> None:
        if session_key is None:
            session_key = self.session_key
        if valid_key(session_key):
            assert session_key is not None
            handler = self._manager.async_handler()
            for where in self._records_of(session_key):
                await handler.destroy(where)

    def _records_of(self, session_key: str) -> list[str]:
        """Every record that may hold the session: its key, then (while a secret is being
        rotated) its keys under the fallback secrets, so a logout ends it wherever it is."""
        return [self._record_key(session_key), *self._manager.fallback_storage_keys(session_key)]

    @classmethod
    def clear_expired(cls) -> None:
        """``manage.py clearsessions``: the driver's gc, for sessions idle past ``lifetime``.

        A session whose own (shorter) expiry has passed is refused when it is next
        read, and its record removed then.
        """
        removed = session_manager().collect_garbage()
        logger.debug("satchel: clearsessions removed %d sessions", removed)

    @classmethod
    async def aclear_expired(cls) -> None:
        removed = await session_manager().acollect_garbage()
        logger.debug("satchel: clearsessions removed %d sessions", removed)


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's ``SessionMiddleware``, holding the session's lock across the request.

    Only with ``"block": True`` in ``SATCHEL_SESSION`` (otherwise it is Django's
    middleware, unchanged): requests of one session then run one at a time, so
    none overwrites another's changes. A request that waits longer than
    ``block_wait_seconds`` is answered 503 with ``Retry-After``; its view does
    not run. A driver that cannot lock is refused when the middleware is built.
    """

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        session_manager().check_blocking()

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:  # type: ignore[attr-defined]  # set by Django's MiddlewareMixin
            return self.__acall__(request)
        manager = session_manager()
        key = _lock_key(manager, request)
        if key is None:
            return super().__call__(request)  # not blocking: Django's middleware as it is
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(manager.lock_record(key))
            except LockTimeout:
                return _busy(manager)
            return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        manager = session_manager()
        key = _lock_key(manager, request)
        response: HttpResponseBase
        if key is None:
            response = await super().__acall__(request)
            return response
        async with contextlib.AsyncExitStack() as held:
            try:
                await held.enter_async_context(manager.alock_record(key))
            except LockTimeout:
                return _busy(manager)
            response = await super().__acall__(request)
            return response


def _lock_key(manager: SessionManager, request: HttpRequest) -> str | None:
    """The storage key to lock for the request, or ``None`` (not blocking, or no valid key)."""
    if not manager.config.block:
        return None
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if session_key is None or not valid_key(session_key):
        return None
    return record_key(manager, session_key)


def _busy(manager: SessionManager) -> HttpResponse:
    busy = BusyResponse.for_config(manager.config)
    response = HttpResponse(busy.body, status=busy.status)
    for name, value in busy.headers:
        response[name] = value
    return response
