"""``Session``: the per-request session with Laravel's API.

A session is made by :class:`satchel.SessionManager` (``start``, ``astart`` or
``lazy``). Its data loads on first use (or eagerly with ``load``/``aload``)
and is written by ``save``/``asave`` only when something changed, or to
refresh the last-activity time at most once per ``touch_interval``; the
load/save lifecycle itself is :class:`satchel.lifecycle.SessionLifecycle`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any, TypeVar, overload

from satchel import dotted, payload
from satchel.handler import RequestMetadata
from satchel.ids import generate_id
from satchel.lifecycle import SaveOutcome, SessionBackend, SessionLifecycle
from satchel.records import MAX_COOKIE_BYTES

__all__ = ["MAX_COOKIE_BYTES", "SaveOutcome", "Session"]

T = TypeVar("T")
# Values nothing can change in place: reading one leaves the session as it was loaded.
_UNCHANGEABLE = frozenset({str, int, float, bool, type(None)})


def _plain_scalar(value: Any, encoded: Any) -> bool:
    """Whether ``value``, which :func:`satchel.payload.encode_value` made ``encoded``, is
    one of JSON's own scalars that needs no tag (not a large integer, NaN or infinity)."""
    return encoded is value and type(value) in _UNCHANGEABLE


class Session(MutableMapping[str, Any]):
    """One user's session, with Laravel's methods and the ``MutableMapping`` interface.

    Dot notation (``get("user.teams")``) reaches into nested mappings in the
    Laravel-style methods; the mapping interface (``session["key"]``) uses keys
    as they are. Bookkeeping (flash lists, the CSRF token, timestamps) is kept
    apart: ``all()``, iteration, ``len()`` and ``in`` see only the
    application's data.

    ``backend`` is what the session needs from its manager (the driver, the
    clock, the record codec): :class:`satchel.SessionManager` is one.
    ``metadata`` is what a driver that keeps request metadata is told; the web
    glue passes ``client`` instead, the client's address as the server
    reported it and its ``User-Agent``, made into metadata only when a driver
    stores it. It also passes the request's whole ``Cookie`` header as
    ``cookie_header`` in place of the cookie's value (``incoming`` is then
    ``None``): the session cookie is read from it only once the session is
    used, so a request that never uses it never parses its cookie.
    """

    def __init__(
        self,
        backend: SessionBackend,
        incoming: str | None,
        *,
        metadata: RequestMetadata | None = None,
        client: tuple[object, str | None] | None = None,
        cookie_header: str | None = None,
    ) -> None:
        if cookie_header is not None and incoming is not None:
            raise TypeError("give the session cookie's value or the Cookie header, not both")
        self._backend = backend
        self._life = SessionLifecycle(backend, incoming, metadata, client, cookie_header)

    # -- identity --------------------------------------------------------------

    @property
    def id(self) -> str:
        """The session id (loads the session: strict mode may replace the incoming id)."""
        self._ensure_loaded()
        return self._life.id

    @property
    def name(self) -> str:
        """The cookie name."""
        return self._backend.config.cookie

    @property
    def incoming_cookie(self) -> str | None:
        """The cookie value the request carried, if any."""
        return self._life.read_cookie_header()

    @property
    def metadata(self) -> RequestMetadata | None:
        """What the web glue told about the request (for drivers that store it)."""
        return self._life.request_metadata()

    @metadata.setter
    def metadata(self, value: RequestMetadata | None) -> None:
        self._life.metadata = value

    @property
    def loaded(self) -> bool:
        """Whether the stored session has been read (or found absent); a record read by
        :meth:`aprefetch` counts from the session's first use."""
        return self._life.loaded

    @property
    def accessed(self) -> bool:
        """Whether the application read or changed the session (Flask's ``accessed``)."""
        return self._life.accessed

    @property
    def new(self) -> bool:
        """True when no stored session was found for the request (Flask's ``new``)."""
        self._ensure_loaded()
        # A session moving to another storage key (a new id, or a rotated secret) was found.
        return not self._life.stored and self._life.source_key is None

    @property
    def modified(self) -> bool:
        """True when the data changed since the session was loaded (Flask's ``modified``).

        It stays true once ``save`` has written the change, as Flask's does, so
        code running after the save (``teardown_request`` handlers, tests)
        still sees what the request did. A new session counts as modified once
        it holds something.
        """
        return self._life.modified()

    @property
    def permanent(self) -> bool:
        """Flask's ``session.permanent``; defaults to ``not expire_on_close``."""
        life = self._life
        if not life.loaded:
            self.load()
        permanent = life.envelope.permanent
        if permanent is None:
            return not self._backend.config.expire_on_close
        return permanent

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self._touch()
        self._life.envelope.permanent = bool(value)

    @property
    def is_empty(self) -> bool:
        """No application data and no token."""
        self._ensure_loaded()
        envelope = self._life.envelope
        return not envelope.values and envelope.token is None

    @property
    def created_at(self) -> float:
        """Unix time the session was created."""
        self._ensure_loaded()
        return self._life.envelope.created

    @property
    def last_activity(self) -> float:
        """Unix time of the session's last write."""
        self._ensure_loaded()
        return self._life.envelope.last_activity

    @property
    def last_outcome(self) -> SaveOutcome | None:
        """What the last ``save`` did (``None`` before one)."""
        return self._life.last_outcome

    # -- loading and saving ------------------------------------------------------

    def load(self) -> None:
        """Read the session now, through the sync driver (no-op when already loaded)."""
        life = self._life
        if not life.loaded:
            if life.prefetched is None:
                life.load_from(self._backend.driver_calls().read)
            else:
                life.adopt_prefetched()

    async def aload(self) -> None:
        """Read the session now, through the async driver (no-op when already loaded)."""
        life = self._life
        if not life.loaded:
            if life.prefetched is not None:
                life.adopt_prefetched()
                return
            calls = self._backend.async_driver_calls()
            if calls.local is not None:
                life.load_from(calls.local.read)  # its reads never wait
            else:
                await calls.run(life.load_steps())

    async def aprefetch(self) -> None:
        """Read the stored record now, through the async driver, and decode it on first use.

        For glue whose application reads the session synchronously while the
        store must be awaited (ASGI): the I/O happens here, and a request that
        never uses its session still counts as one that never loaded it (no
        flash data aged, no refresh, no cookie sent). A no-op when loaded or
        prefetched already.
        """
        life = self._life
        if not life.loaded and life.prefetched is None:
            await self._backend.async_driver_calls().run(life.prefetch_steps())

    def _ensure_loaded(self) -> None:
        if not self._life.loaded:
            self.load()

    def _touch(self) -> dict[str, Any]:
        """The values, for a change or for a read that hands out what could be changed."""
        values = self._change()
        self._life.expose()
        return values

    def _change(self) -> dict[str, Any]:
        """The values, for a change through the API (what is put is checked there)."""
        life = self._life
        if not life.loaded:
            self.load()
        life.accessed = True
        life.change()
        return life.envelope.values

    def _read(self) -> dict[str, Any]:
        """The values, for a read that hands out nothing the caller could change in place."""
        life = self._life
        if not life.loaded:
            self.load()
        life.accessed = True
        return life.envelope.values

    def _handing_out(self, value: Any) -> Any:
        """``value``, read from the values: a container may be changed in place from now on."""
        if type(value) not in _UNCHANGEABLE:
            self._life.expose()
        return value

    def age_flash_data(self) -> None:
        """Forget last request's flash data and keep this request's for the next one."""
        self._life.age_flash_data()

    def save(self, *, age_flash: bool = True) -> SaveOutcome:
        """Age flash data and write through the sync driver if anything changed.

        ``age_flash=False`` keeps the flash data as it is: for glue that loaded a
        session the request never used (Flask's cookie refresh), so the data is
        still there for the request that does.
        """
        life = self._life
        settled = life.save_without_driver(age_flash)
        if settled is not None:
            return settled
        calls = self._backend.driver_calls()
        outcome: SaveOutcome = calls.run(life.save_steps(calls.keeps_metadata, age_flash))
        return outcome

    async def asave(self, *, age_flash: bool = True) -> SaveOutcome:
        """Age flash data and write through the async driver if anything changed
        (``age_flash``: as for :meth:`save`)."""
        life = self._life
        settled = life.save_without_driver(age_flash)
        if settled is not None:
            return settled
        calls = self._backend.async_driver_calls()
        outcome: SaveOutcome = await calls.run(life.save_steps(calls.keeps_metadata, age_flash))
        return outcome

    def cookie_value(self) -> str:
        """What the session cookie carries: the id, or the sealed payload for the cookie driver."""
        life = self._life
        if self._backend.stores_in_cookie:
            if life.cookie_value is not None:
                return life.cookie_value
            if life.last_outcome is SaveOutcome.UNCHANGED and life.incoming:
                return life.incoming  # saved unchanged: the request's cookie still carries it all
            raise RuntimeError("the cookie driver's value exists only after save()")
        if not life.loaded:
            self.load()
        return life.id  # as the id property, without its call

    def cookie_action(self) -> str | None:
        """After ``save``: ``"set"`` the cookie, ``"delete"`` it, or leave it (``None``)."""
        return self._life.cookie_action()

    # -- reading -----------------------------------------------------------------

    @overload
    def get(self, key: str, default: Any = None) -> Any: ...

    @overload
    def get(self, key: str, default: Any = None, *, type: type[T]) -> T: ...

    def get(self, key: str, default: Any = None, *, type: type[Any] | None = None) -> Any:
        """The value at ``key`` (dot notation); a callable ``default`` is called.

        With ``type=Cls``, the value is structured into ``Cls`` (an attrs class
        or a dataclass) with cattrs.
        """
        value = dotted.lookup(self._read(), key)
        if value is dotted.MISSING:
            return default() if callable(default) else default
        if type is not None:
            self._life.expose()
            return payload.structure_as(value, type)
        if builtins.type(value) not in _UNCHANGEABLE:
            self._life.expose()  # as _handing_out, without its call: the read most requests make
        return value

    def all(self) -> dict[str, Any]:
        """All of the application's data (a shallow copy)."""
        return dict(self._touch())

    def only(self, keys: str | Iterable[str]) -> dict[str, Any]:
        """The given top-level keys that are present."""
        values = self._touch()
        return {key: values[key] for key in dotted.keys_of(keys) if key in values}

    def except_(self, keys: str | Iterable[str]) -> dict[str, Any]:
        """Everything but the given top-level keys."""
        excluded = set(dotted.keys_of(keys))
        return {key: value for key, value in self._touch().items() if key not in excluded}

    def exists(self, keys: str | Iterable[str]) -> bool:
        """Present, even if None; with a list, all of them."""
        values = self._read()
        return all(dotted.lookup(values, key) is not dotted.MISSING for key in dotted.keys_of(keys))

    def has(self, keys: str | Iterable[str]) -> bool:
        """Present and not None; with a list, all of them."""
        values = self._read()
        return all(
            dotted.lookup(values, key) not in (dotted.MISSING, None) for key in dotted.keys_of(keys)
        )

    def missing(self, keys: str | Iterable[str]) -> bool:
        """Absent or None; with a list, true when any of them is."""
        return not self.has(keys)

    # -- writing -----------------------------------------------------------------

    def put(self, key: str | Mapping[str, Any], value: Any = None) -> None:
        """Store a value at ``key`` (dot notation), or every pair of a mapping."""
        values = self._change()
        # A string key is the common case: no Mapping check (an ABC's isinstance is slow).
        pairs = ((key, value),) if type(key) is str or not isinstance(key, Mapping) else key.items()
        for name, item in pairs:
            if not isinstance(name, str):
                raise TypeError(f"session keys must be strings, not {type(name).__name__}")
            # Refuse what cannot be stored, naming the key; a dotted key's own levels count
            # toward the depth limit.
            encoded = payload.encode_value(item, name, depth=name.count("."))
            if "." in name or not _plain_scalar(item, encoded):
                # The caller holds the container too, or a dotted key made levels whose
                # names could collide with a type tag.
                self._life.plain = False
            dotted.assign(values, name, item)

    def push(self, key: str, value: Any) -> None:
        """Append ``value`` to the list at ``key`` (created when missing or None).

        A value that is not a list is a ``TypeError`` (as Laravel errors), never replaced.
        """
        current = self.get(key, None)
        if current is not None and not isinstance(current, (list, tuple)):
            raise TypeError(f"session value {key!r} is not a list")
        items = list(current) if current is not None else []
        items.append(value)
        self.put(key, items)

    def pull(self, key: str, default: Any = None) -> Any:
        """Return the value at ``key`` and remove it."""
        value = self.get(key, dotted.MISSING)
        if value is dotted.MISSING:
            return default() if callable(default) else default
        self.forget(key)
        return value

    def forget(self, keys: str | Iterable[str]) -> None:
        """Remove one key or several (dot notation)."""
        values = self._touch()
        for key in dotted.keys_of(keys):
            dotted.forget(values, key)

    def flush(self) -> None:
        """Remove all data, flash data and the CSRF token."""
        self._touch()
        self._life.envelope.values = {}
        self._life.envelope.flash_new = []
        self._life.envelope.flash_old = []
        self._life.envelope.token = None

    def increment(self, key: str, by: int | float = 1) -> int | float:
        """Add ``by`` to the number at ``key`` (0 when missing or None, as Laravel) and return it."""
        current = self.get(key)
        if current is None:
            current = 0
        if isinstance(current, bool) or not isinstance(current, (int, float)):
            raise TypeError(f"session value {key!r} is not a number")
        result = current + by
        self.put(key, result)
        return result

    def decrement(self, key: str, by: int | float = 1) -> int | float:
        """Subtract ``by`` from the number at ``key`` and return it."""
        return self.increment(key, -by)

    def remember(self, key: str, callback: Callable[[], T]) -> T:
        """The value at ``key`` if not None; otherwise store and return ``callback()``."""
        value = self.get(key)
        if value is not None:
            return value  # type: ignore[no-any-return]
        value = callback()
        self.put(key, value)
        return value

    # -- flash data ----------------------------------------------------------------

    def flash(self, key: str, value: Any = True) -> None:
        """Store a value for this request and the next one."""
        self.put(key, value)
        envelope = self._life.envelope
        dotted.append_unique(envelope.flash_new, [key])
        envelope.flash_old = [name for name in envelope.flash_old if name != key]

    def now(self, key: str, value: Any) -> None:
        """Store a value for this request only."""
        self.put(key, value)
        dotted.append_unique(self._life.envelope.flash_old, [key])

    def reflash(self) -> None:
        """Keep all current flash data for one more request."""
        self._touch()
        envelope = self._life.envelope
        dotted.append_unique(envelope.flash_new, envelope.flash_old)
        envelope.flash_old = []

    def keep(self, keys: str | Iterable[str]) -> None:
        """Keep the given flash keys for one more request."""
        self._touch()
        names = dotted.keys_of(keys)
        envelope = self._life.envelope
        dotted.append_unique(envelope.flash_new, names)
        envelope.flash_old = [name for name in envelope.flash_old if name not in names]

    # -- identity changes ------------------------------------------------------------

    def regenerate(self, destroy: bool = False) -> None:
        """Give the session a new id (keeping its data) and a new CSRF token.

        A session that had no token yet gets none here (``token()`` makes a
        fresh one on first use, as ever): a token nobody asked for would keep
        a session whose data is later removed from counting as empty. With
        ``destroy=True`` the old record is removed at save.
        """
        self.migrate(destroy)
        if self._life.envelope.token is not None:
            self.regenerate_token()

    def migrate(self, destroy: bool = False) -> None:
        """Give the session a new id, keeping its data and token.

        The save then writes only if the record it was loaded from still exists:
        were it logged out meanwhile, writing would bring it back under the new id.
        """
        self._touch()
        life = self._life
        if life.stored and not self._backend.stores_in_cookie:
            life.move_from(life.storage_key(), destroy=destroy)
        life.id = generate_id()
        life.stored = False  # nothing is stored under the new id yet
        life.force_write = True

    def invalidate(self) -> None:
        """Remove all data and give the session a new id (the old record is removed at save).

        It is a new session: the absolute lifetime counts again from now.
        """
        self.flush()
        self.migrate(destroy=True)
        self._life.source_key = None  # a new session: it owes nothing to the old record
        self._life.envelope.created = self._backend.clock()

    def token(self) -> str:
        """The CSRF token kept in the session, made on first use."""
        self._touch()
        if self._life.envelope.token is None:
            self._life.envelope.token = generate_id()
        return self._life.envelope.token

    def regenerate_token(self) -> str:
        """Replace the CSRF token and return the new one."""
        self._touch()
        self._life.envelope.token = generate_id()
        return self._life.envelope.token

    # -- MutableMapping ------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._handing_out(self._read()[key])

    def __setitem__(self, key: str, value: Any) -> None:
        values = self._change()
        if not _plain_scalar(value, payload.encode_value(value, key)):
            self._life.plain = False  # the caller holds the container too
        values[key] = value

    def __delitem__(self, key: str) -> None:
        del self._touch()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._read()))

    def __len__(self) -> int:
        return len(self._read())

    def __contains__(self, key: object) -> bool:
        return key in self._read()

    def clear(self) -> None:
        """Remove all data (the same as ``flush``)."""
        self.flush()

    def __repr__(self) -> str:
        # Never print the id: logs and tracebacks must not carry it.
        state = "loaded" if self._life.loaded else "not loaded"
        return f"<Session {state}, driver {self._backend.config.driver!r}>"
