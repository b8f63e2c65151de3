"""``Session``: the per-request session with Laravel's API, and its load/save cycle.

A session is made by :class:`satchel.SessionManager` (``start``, ``astart`` or
``lazy``). Its data loads on first use (or eagerly with ``load``/``aload``)
and is written by ``save``/``asave`` only when something changed, or to
refresh the last-activity time at most once per ``touch_interval``.
"""

from __future__ import annotations

import copy
import enum
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

import attrs

from satchel import payload
from satchel.crypto import DecryptError
from satchel.errors import SessionTooLarge
from satchel.handler import (
    AsyncSessionHandler,
    AsyncSupportsLock,
    AsyncSupportsMetadata,
    AsyncSupportsWriteExisting,
    RequestMetadata,
    SessionHandler,
    SupportsLock,
    SupportsMetadata,
    SupportsWriteExisting,
    supports,
)
from satchel.ids import generate_id, is_valid_id, log_digest

if TYPE_CHECKING:
    from satchel.config import SessionConfig
    from satchel.manager import SessionManager

T = TypeVar("T")
logger = logging.getLogger("satchel")

MAX_COOKIE_BYTES = 4096  # name plus value: what browsers keep (RFC 6265bis)
_MISSING: Any = object()


class SaveOutcome(enum.Enum):
    """What ``save`` did, which tells the web glue what to do with the cookie."""

    NOT_LOADED = "not loaded"  # the request never used the session: nothing to do
    UNCHANGED = "unchanged"  # loaded, nothing changed, refresh not due
    WRITTEN = "written"  # the data changed (or the id): written through the driver
    REFRESHED = "refreshed"  # unchanged data rewritten to slide the idle expiry
    EMPTY = "empty"  # the session ended empty: nothing stored, any old record removed
    ENDED = "ended"  # another request ended the session meanwhile: nothing written


@attrs.define
class _SavePlan:
    destroy_keys: list[str]
    write_key: str | None = None
    data: str | None = None
    metadata: RequestMetadata | None = None
    outcome: SaveOutcome = SaveOutcome.UNCHANGED
    fingerprint: str | None = None
    existing: bool = False  # the record was loaded from the store: write only if it still exists
    merge: bool = False  # re-read at save and apply only this request's changes
    data_text: str | None = None
    # The record a migrated session was loaded from: gone means ended meanwhile.
    source_key: str | None = None

    def end(self) -> None:
        """Another request ended the session: nothing is written."""
        self.outcome = SaveOutcome.ENDED
        self.write_key = None
        self.data = None
        self.merge = False


class Session(MutableMapping[str, Any]):
    """One user's session, with Laravel's methods and the ``MutableMapping`` interface.

    Dot notation (``get("user.teams")``) reaches into nested mappings in the
    Laravel-style methods; the mapping interface (``session["key"]``) uses keys
    as they are. Bookkeeping (flash lists, the CSRF token, timestamps) is kept
    apart: ``all()``, iteration, ``len()`` and ``in`` see only the
    application's data.
    """

    def __init__(
        self,
        manager: SessionManager,
        incoming: str | None,
        *,
        metadata: RequestMetadata | None = None,
    ) -> None:
        self._manager = manager
        self._config = manager.config
        self._incoming = incoming
        self.metadata = metadata
        self._loaded = False
        self._accessed = False
        self._stored = False  # a record for the current id exists in the store
        self._force_write = False
        # A save wrote this session's changes or removed its emptied record: ``modified`` stays true.
        self._saved_changes = False
        self._loaded_fingerprint: str | None = None
        self._loaded_bookkeeping: tuple[str | None, bool | None] = (None, None)
        self._pending_destroy: list[str] = []
        # The stored record this session was loaded from, once migrate() moved its data
        # to a new id that is not saved yet.
        self._source_key: str | None = None
        self._id = ""
        self._envelope = self._fresh_envelope()
        self._cookie_value: str | None = None
        self.last_outcome: SaveOutcome | None = None

    # -- identity --------------------------------------------------------------

    @property
    def id(self) -> str:
        """The session id (loads the session: strict mode may replace the incoming id)."""
        self._ensure_loaded()
        return self._id

    @property
    def name(self) -> str:
        """The cookie name."""
        return self._config.cookie

    @property
    def incoming_cookie(self) -> str | None:
        """The cookie value the request carried, if any."""
        return self._incoming

    @property
    def loaded(self) -> bool:
        """Whether the stored session has been read (or found absent)."""
        return self._loaded

    @property
    def accessed(self) -> bool:
        """Whether the application read or changed the session (Flask's ``accessed``)."""
        return self._accessed

    @property
    def new(self) -> bool:
        """True when no stored session was found for the request (Flask's ``new``)."""
        self._ensure_loaded()
        # A session moving to another storage key (a new id, or a rotated secret) was found.
        return not self._stored and self._source_key is None

    @property
    def modified(self) -> bool:
        """True when the data changed since the session was loaded (Flask's ``modified``).

        It stays true once ``save`` has written the change, as Flask's does, so
        code running after the save (``teardown_request`` handlers, tests)
        still sees what the request did. A new session counts as modified once
        it holds something.
        """
        if not self._loaded:
            return False
        if self._saved_changes or self._force_write:
            return True
        if not self._stored:
            return bool(self._envelope.values) or self._envelope.token is not None
        return self._fingerprint() != self._loaded_fingerprint

    @property
    def permanent(self) -> bool:
        """Flask's ``session.permanent``; defaults to ``not expire_on_close``."""
        self._ensure_loaded()
        if self._envelope.permanent is None:
            return not self._config.expire_on_close
        return self._envelope.permanent

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self._touch()
        self._envelope.permanent = bool(value)

    @property
    def is_empty(self) -> bool:
        """No application data and no token."""
        self._ensure_loaded()
        return not self._envelope.values and self._envelope.token is None

    @property
    def created_at(self) -> float:
        """Unix time the session was created."""
        self._ensure_loaded()
        return self._envelope.created

    @property
    def last_activity(self) -> float:
        """Unix time of the session's last write."""
        self._ensure_loaded()
        return self._envelope.last_activity

    # -- loading ---------------------------------------------------------------

    def _fresh_envelope(self) -> payload.Envelope:
        now = self._manager.clock()
        return payload.Envelope(values={}, created=now, last_activity=now)

    def _start_fresh(self) -> None:
        self._id = ""  # issued below only if no stored session is adopted
        self._envelope = self._fresh_envelope()
        self._stored = False
        self._loaded_fingerprint = None

    def _load_plan(self) -> list[str]:
        """The storage keys to read in turn until one holds the session (none: read nothing).

        The current key first, then each ``secret_key_fallbacks`` key's, read
        only when the ones before hold nothing.
        """
        incoming = self._incoming
        if incoming is None or incoming == "":
            return []
        if self._manager.stores_in_cookie:
            return []  # the payload is the cookie itself
        if not is_valid_id(incoming):
            # Strict mode: a malformed id never reaches a driver, a path or a log.
            logger.info("satchel: ignored a malformed session cookie")
            return []
        manager = self._manager
        return [manager.storage_key(incoming), *manager.fallback_storage_keys(incoming)]

    def _finish_load(self, raw: str, key: str | None, *, fallback: bool = False) -> None:
        """Adopt ``raw``, the stored text read under ``key`` ("" when nothing was found).

        ``fallback``: ``key`` is a ``secret_key_fallbacks`` key's, not the current one.
        """
        self._manager.warn_if_shared_store()
        self._start_fresh()
        incoming = self._incoming
        if self._manager.stores_in_cookie:
            if incoming:
                self._adopt(self._open_cookie(incoming), key=None)
        elif raw:
            assert incoming is not None
            assert key is not None
            text = self._open_stored(raw, key, incoming)
            if text is not None:
                self._adopt(text, key=key, session_id=incoming)
        if not self._stored:
            self._id = generate_id()
        self._loaded = True
        stored_data = self._envelope.stored_data
        self._loaded_bookkeeping = (self._envelope.token, self._envelope.permanent)
        if self._stored and stored_data is not None:
            self._loaded_fingerprint = payload.body_fingerprint(stored_data, self._envelope)
        else:
            self._loaded_fingerprint = None
        if self._stored and fallback:
            assert key is not None
            self._move_from(key, destroy=True)  # the next save moves it to the current key

    def _adopt(self, text: str | None, *, key: str | None, session_id: str | None = None) -> None:
        if text is None:
            return
        try:
            envelope = payload.loads(text)
        except payload.PayloadError as exc:
            logger.warning(
                "satchel: the stored session %s is corrupt (%s); starting an empty session",
                log_digest(session_id or text[:64]),
                exc,
            )
            return
        if self._expired(envelope):
            if key is not None:
                self._pending_destroy.append(key)
            return
        if self._manager.stores_in_cookie:
            session_id = envelope.client_id if is_valid_id(envelope.client_id) else None
            if session_id is None:
                return
        assert session_id is not None
        self._id = session_id
        self._envelope = envelope
        self._stored = True

    def _open_stored(self, raw: str, key: str, session_id: str) -> str | None:
        try:
            text, stale_key = open_record(self._manager, raw, key)
        except DecryptError as exc:
            logger.warning(
                "satchel: the stored session %s failed to decrypt (%s); starting an empty session",
                log_digest(session_id),
                exc,
            )
            return None
        if stale_key:
            self._force_write = True  # re-encrypt under the current key
        return text

    def _open_cookie(self, cookie_value: str) -> str | None:
        encrypter = self._manager.encrypter
        assert encrypter is not None
        try:
            plaintext, stale_key = encrypter.decrypt(cookie_value, self._cookie_context())
        except DecryptError:
            logger.info("satchel: refused a session cookie that failed to authenticate")
            return None
        if stale_key:
            self._force_write = True  # re-issue the cookie under the current key
        return plaintext.decode("utf-8", "replace")

    def _cookie_context(self) -> bytes:
        return b"satchel cookie:" + self._config.cookie.encode("ascii")

    def _expired(self, envelope: payload.Envelope) -> bool:
        now = self._manager.clock()
        if now - envelope.last_activity > self._config.lifetime_seconds:
            return True
        absolute = self._config.absolute_lifetime_seconds
        return absolute is not None and now - envelope.created > absolute

    def load(self) -> None:
        """Read the session now, through the sync driver (no-op when already loaded)."""
        if self._loaded:
            return
        raw, found, keys = "", None, self._load_plan()
        for found in keys:
            raw = self._manager.handler().read(found)
            if raw:
                break
        self._finish_load(raw, found, fallback=found is not None and found != keys[0])

    async def aload(self) -> None:
        """Read the session now, through the async driver (no-op when already loaded)."""
        if self._loaded:
            return
        raw, found, keys = "", None, self._load_plan()
        for found in keys:
            raw = await self._manager.async_handler().read(found)
            if raw:
                break
        self._finish_load(raw, found, fallback=found is not None and found != keys[0])

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.load()

    def _touch(self) -> dict[str, Any]:
        self._ensure_loaded()
        self._accessed = True
        return self._envelope.values

    # -- saving ----------------------------------------------------------------

    def _fingerprint(self) -> str:
        data_text = payload.data_json(payload.encode_values(self._envelope.values))
        return payload.body_fingerprint(data_text, self._envelope)

    def _refresh_interval(self) -> float:
        # Never longer than half the idle lifetime, or an active session whose
        # data never changes would idle out while in use.
        return min(self._config.touch_interval, self._config.lifetime_seconds / 2)

    def age_flash_data(self) -> None:
        """Forget last request's flash data and keep this request's for the next one."""
        envelope = self._envelope
        for key in envelope.flash_old:
            _forget(envelope.values, key)
        envelope.flash_old = envelope.flash_new
        envelope.flash_new = []

    def _plan_save(self, *, wants_metadata: bool) -> _SavePlan:
        plan = _SavePlan(destroy_keys=list(self._pending_destroy))
        if not self._loaded:
            plan.outcome = SaveOutcome.NOT_LOADED
            return plan
        envelope = self._envelope
        # Aging changes the values only when it forgets last request's flash keys.
        aging_forgets = bool(envelope.flash_old)
        self.age_flash_data()
        in_cookie = self._manager.stores_in_cookie
        key = None if in_cookie else self._manager.storage_key(self._id)
        if not envelope.values and envelope.token is None:
            if self._stored and key is not None:
                plan.destroy_keys.append(key)
            plan.outcome = SaveOutcome.EMPTY
            return plan
        untouched = not self._accessed and self._stored and envelope.stored_data is not None
        if untouched and not aging_forgets:
            # Loaded but never used, with no flash data to age: the stored text is current.
            data_text = envelope.stored_data
        else:
            # TypeError names a key whose value cannot be stored.
            data_text = payload.data_json(payload.encode_values(envelope.values))
        assert data_text is not None
        plan.fingerprint = payload.body_fingerprint(data_text, envelope)
        changed = (
            self._force_write or not self._stored or plan.fingerprint != self._loaded_fingerprint
        )
        now = self._manager.clock()
        if changed:
            plan.outcome = SaveOutcome.WRITTEN
        elif now - envelope.last_activity >= self._refresh_interval():
            plan.outcome = SaveOutcome.REFRESHED
        else:
            return plan
        envelope.last_activity = now
        envelope.client_id = self._id if in_cookie else None
        text = payload.dumps(envelope, data_text)
        # A refresh rewrites what the store already holds: only a write is held to the limit.
        limited = plan.outcome is SaveOutcome.WRITTEN
        if in_cookie:
            self._cookie_value = self._seal_cookie(text, limited=limited)
            return plan
        assert key is not None
        plan.write_key = key
        plan.existing = self._stored
        plan.source_key = self._source_key
        plan.data_text = data_text
        plan.merge = (
            self._config.merge_on_save
            and plan.existing
            and plan.outcome is SaveOutcome.WRITTEN
            and envelope.stored_data is not None
            # Under the request's own lock (block = true) nobody else can write between
            # its load and this save, and the driver's lock is not reentrant.
            and not self._manager.holds_lock(key)
        )
        plan.data = self._seal_stored(text, key)
        if limited:
            self._check_payload_size(plan.data)
        if wants_metadata:
            plan.metadata = record_metadata(self._config, envelope.values, self.metadata)
        return plan

    def _seal_stored(self, text: str, key: str) -> str:
        return seal_record(self._manager, text, key)

    def _check_payload_size(self, data: str) -> None:
        """``SessionTooLarge`` when ``data``, as handed to the driver, passes ``max_payload_bytes``."""
        limit = self._config.max_payload_bytes
        if limit is None:
            return
        size = len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise SessionTooLarge(size, limit, "max_payload_bytes")

    def _seal_cookie(self, text: str, *, limited: bool) -> str:
        encrypter = self._manager.encrypter
        assert encrypter is not None
        value = encrypter.encrypt(text.encode("utf-8"), self._cookie_context())
        if limited:
            self._check_payload_size(value)
        size = len(self._config.cookie) + 1 + len(value)
        if size > MAX_COOKIE_BYTES:
            raise SessionTooLarge(size, MAX_COOKIE_BYTES)
        return value

    def _finish_save(self, plan: _SavePlan) -> SaveOutcome:
        self._pending_destroy.clear()
        self._source_key = None
        if plan.outcome is SaveOutcome.ENDED:
            # Logged out or regenerated elsewhere while this request ran: writing
            # would bring the old session back (Rack CVE-2025-46336).
            logger.info(
                "satchel: session %s ended during the request; its changes were not saved",
                log_digest(self._id),
            )
            self._stored = False
            self._loaded_fingerprint = None
        if plan.outcome is SaveOutcome.WRITTEN or (
            plan.outcome is SaveOutcome.EMPTY and self._stored
        ):
            self._saved_changes = True
        if plan.outcome in (SaveOutcome.WRITTEN, SaveOutcome.REFRESHED):
            self._stored = True
            self._force_write = False
            self._loaded_fingerprint = plan.fingerprint
            self._envelope.stored_data = plan.data_text
            self._loaded_bookkeeping = (self._envelope.token, self._envelope.permanent)
        elif plan.outcome is SaveOutcome.EMPTY:
            self._stored = False
            self._loaded_fingerprint = None
        self.last_outcome = plan.outcome
        return plan.outcome

    def save(self) -> SaveOutcome:
        """Age flash data and write through the sync driver if anything changed."""
        handler = self._manager.handler()
        plan = self._plan_save(wants_metadata=supports(handler, SupportsMetadata))
        if plan.source_key is not None and handler.read(plan.source_key) == "":
            plan.end()  # read before the old record is destroyed below
        for ended_key in plan.destroy_keys:
            handler.destroy(ended_key)
        key, data, metadata = plan.write_key, plan.data, plan.metadata
        if plan.merge and key is not None and supports(handler, SupportsLock):
            config = self._config
            with handler.lock(
                key, lock_seconds=config.block_lock_seconds, wait_seconds=config.block_wait_seconds
            ):
                data = self._merge(plan, handler.read(key))
                if data is None:
                    plan.outcome = SaveOutcome.ENDED
                elif supports(handler, SupportsWriteExisting):
                    if not handler.write_existing(key, data, metadata):
                        plan.outcome = SaveOutcome.ENDED
                else:
                    write_record(handler, key, data, metadata)
        elif key is not None and data is not None:
            if not plan.existing:
                write_record(handler, key, data, metadata)
            elif not write_if_present(handler, key, data, metadata):
                plan.outcome = SaveOutcome.ENDED
        return self._finish_save(plan)

    async def asave(self) -> SaveOutcome:
        """Age flash data and write through the async driver if anything changed."""
        handler = self._manager.async_handler()
        plan = self._plan_save(wants_metadata=supports(handler, AsyncSupportsMetadata))
        if plan.source_key is not None and await handler.read(plan.source_key) == "":
            plan.end()
        for ended_key in plan.destroy_keys:
            await handler.destroy(ended_key)
        key, data, metadata = plan.write_key, plan.data, plan.metadata
        if plan.merge and key is not None and supports(handler, AsyncSupportsLock):
            config = self._config
            async with handler.lock(
                key, lock_seconds=config.block_lock_seconds, wait_seconds=config.block_wait_seconds
            ):
                data = self._merge(plan, await handler.read(key))
                if data is None:
                    plan.outcome = SaveOutcome.ENDED
                elif supports(handler, AsyncSupportsWriteExisting):
                    if not await handler.write_existing(key, data, metadata):
                        plan.outcome = SaveOutcome.ENDED
                else:
                    await awrite_record(handler, key, data, metadata)
        elif key is not None and data is not None:
            if not plan.existing:
                await awrite_record(handler, key, data, metadata)
            elif not await awrite_if_present(handler, key, data, metadata):
                plan.outcome = SaveOutcome.ENDED
        return self._finish_save(plan)

    def _merge(self, plan: _SavePlan, raw: str) -> str | None:
        """This request's changes applied over what is stored now (``None``: the session ended).

        Only the top-level keys this request set, changed or forgot are
        applied, so concurrent requests that touch different keys keep each
        other's writes. Runs under the driver's lock.
        """
        if raw == "":
            return None
        key = self._manager.storage_key(self._id)
        text = self._open_stored(raw, key, self._id)
        try:
            theirs = payload.loads(text) if text is not None else None
        except payload.PayloadError:
            theirs = None
        if theirs is None:
            return plan.data  # unreadable: this request's whole session replaces it
        if self._expired(theirs):
            return None
        ours = self._envelope
        loaded = json.loads(ours.stored_data or "{}")
        encoded = payload.encode_values(ours.values)
        for name, value in encoded.items():
            if name not in loaded or payload.canonical_json(value) != payload.canonical_json(
                loaded[name]
            ):
                theirs.values[name] = ours.values[name]
        for name in loaded:
            if name not in encoded:
                theirs.values.pop(name, None)
        loaded_token, loaded_permanent = self._loaded_bookkeeping
        if ours.token != loaded_token:
            theirs.token = ours.token
        if ours.permanent != loaded_permanent:
            theirs.permanent = ours.permanent
        present = theirs.values.keys()
        theirs.flash_new = [
            n for n in dict.fromkeys(theirs.flash_new + ours.flash_new) if n in present
        ]
        theirs.flash_old = [
            n for n in dict.fromkeys(theirs.flash_old + ours.flash_old) if n in present
        ]
        theirs.created = min(theirs.created, ours.created)
        theirs.last_activity = ours.last_activity
        data_text = payload.data_json(payload.encode_values(theirs.values))
        data = self._seal_stored(payload.dumps(theirs, data_text), key)
        self._check_payload_size(data)  # the merged session, theirs and ours, must fit too
        plan.data_text = data_text
        plan.fingerprint = payload.body_fingerprint(data_text, theirs)
        self._envelope = theirs
        return data

    def cookie_value(self) -> str:
        """What the session cookie carries: the id, or the sealed payload for the cookie driver."""
        if self._manager.stores_in_cookie:
            if self._cookie_value is not None:
                return self._cookie_value
            if self.last_outcome is SaveOutcome.UNCHANGED and self._incoming:
                return self._incoming  # saved unchanged: the request's cookie still carries it all
            raise RuntimeError("the cookie driver's value exists only after save()")
        return self.id

    def cookie_action(self) -> str | None:
        """After ``save``: ``"set"`` the cookie, ``"delete"`` it, or leave it (``None``)."""
        outcome = self.last_outcome
        if outcome in (SaveOutcome.WRITTEN, SaveOutcome.REFRESHED):
            return "set"
        if outcome is SaveOutcome.EMPTY and self._incoming:
            return "delete"
        return None

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
        value = _lookup(self._touch(), key)
        if value is _MISSING:
            return default() if callable(default) else default
        if type is not None:
            return payload.structure_as(value, type)
        return value

    def all(self) -> dict[str, Any]:
        """All of the application's data (a shallow copy)."""
        return dict(self._touch())

    def only(self, keys: str | Iterable[str]) -> dict[str, Any]:
        """The given top-level keys that are present."""
        values = self._touch()
        return {key: values[key] for key in _keys(keys) if key in values}

    def except_(self, keys: str | Iterable[str]) -> dict[str, Any]:
        """Everything but the given top-level keys."""
        excluded = set(_keys(keys))
        return {key: value for key, value in self._touch().items() if key not in excluded}

    def exists(self, keys: str | Iterable[str]) -> bool:
        """Present, even if None; with a list, all of them."""
        values = self._touch()
        return all(_lookup(values, key) is not _MISSING for key in _keys(keys))

    def has(self, keys: str | Iterable[str]) -> bool:
        """Present and not None; with a list, all of them."""
        values = self._touch()
        return all(_lookup(values, key) not in (_MISSING, None) for key in _keys(keys))

    def missing(self, keys: str | Iterable[str]) -> bool:
        """Absent or None (the seed's meaning); with a list, true when any of them is."""
        return not self.has(keys)

    # -- writing -----------------------------------------------------------------

    def put(self, key: str | Mapping[str, Any], value: Any = None) -> None:
        """Store a value at ``key`` (dot notation), or every pair of a mapping."""
        values = self._touch()
        pairs = key.items() if isinstance(key, Mapping) else [(key, value)]
        for name, item in pairs:
            if not isinstance(name, str):
                raise TypeError(f"session keys must be strings, not {type(name).__name__}")
            # Refuse what cannot be stored, naming the key; a dotted key's own levels count
            # toward the depth limit.
            payload.encode_value(item, name, depth=name.count("."))
            _assign(values, name, item)

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
        value = self.get(key, _MISSING)
        if value is _MISSING:
            return default() if callable(default) else default
        self.forget(key)
        return value

    def forget(self, keys: str | Iterable[str]) -> None:
        """Remove one key or several (dot notation)."""
        values = self._touch()
        for key in _keys(keys):
            _forget(values, key)

    def flush(self) -> None:
        """Remove all data, flash data and the CSRF token."""
        self._touch()
        self._envelope.values = {}
        self._envelope.flash_new = []
        self._envelope.flash_old = []
        self._envelope.token = None

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
        envelope = self._envelope
        _append_unique(envelope.flash_new, [key])
        envelope.flash_old = [name for name in envelope.flash_old if name != key]

    def now(self, key: str, value: Any) -> None:
        """Store a value for this request only."""
        self.put(key, value)
        _append_unique(self._envelope.flash_old, [key])

    def reflash(self) -> None:
        """Keep all current flash data for one more request."""
        self._touch()
        envelope = self._envelope
        _append_unique(envelope.flash_new, envelope.flash_old)
        envelope.flash_old = []

    def keep(self, keys: str | Iterable[str]) -> None:
        """Keep the given flash keys for one more request."""
        self._touch()
        names = _keys(keys)
        envelope = self._envelope
        _append_unique(envelope.flash_new, names)
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
        if self._envelope.token is not None:
            self.regenerate_token()

    def migrate(self, destroy: bool = False) -> None:
        """Give the session a new id, keeping its data and token.

        The save then writes only if the record it was loaded from still exists:
        were it logged out meanwhile, writing would bring it back under the new id.
        """
        self._touch()
        if self._stored and not self._manager.stores_in_cookie:
            self._move_from(self._manager.storage_key(self._id), destroy=destroy)
        self._id = generate_id()
        self._stored = False  # nothing is stored under the new id yet
        self._force_write = True

    def _move_from(self, old_key: str, *, destroy: bool) -> None:
        """Make the next save write this session under its current storage key, not ``old_key``.

        The save writes only if the record at ``old_key`` still exists (were it
        ended meanwhile, writing would bring it back), and with ``destroy``
        removes that record.
        """
        self._source_key = old_key
        if destroy:
            self._pending_destroy.append(old_key)
        self._stored = False  # nothing is stored under the new key yet
        self._force_write = True

    def invalidate(self) -> None:
        """Remove all data and give the session a new id (the old record is removed at save).

        It is a new session: the absolute lifetime counts again from now.
        """
        self.flush()
        self.migrate(destroy=True)
        self._source_key = None  # a new session: it owes nothing to the old record
        self._envelope.created = self._manager.clock()

    def token(self) -> str:
        """The CSRF token kept in the session, made on first use."""
        self._touch()
        if self._envelope.token is None:
            self._envelope.token = generate_id()
        return self._envelope.token

    def regenerate_token(self) -> str:
        """Replace the CSRF token and return the new one."""
        self._touch()
        self._envelope.token = generate_id()
        return self._envelope.token

    # -- MutableMapping ------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._touch()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        values = self._touch()
        payload.encode_value(value, key)
        values[key] = value

    def __delitem__(self, key: str) -> None:
        del self._touch()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._touch()))

    def __len__(self) -> int:
        return len(self._touch())

    def __contains__(self, key: object) -> bool:
        return key in self._touch()

    def clear(self) -> None:
        """Remove all data (the same as ``flush``)."""
        self.flush()

    def __repr__(self) -> str:
        # Never print the id: logs and tracebacks must not carry it.
        state = "loaded" if self._loaded else "not loaded"
        return f"<Session {state}, driver {self._config.driver!r}>"


def seal_record(manager: SessionManager, text: str, key: str) -> str:
    """What a driver stores for a payload: the text itself, or under ``encrypt`` its
    AES-GCM sealing, bound to the storage key so a record cannot be moved to another."""
    encrypter = manager.encrypter
    if not manager.config.encrypt or encrypter is None:
        return text
    return encrypter.encrypt(text.encode("utf-8"), key.encode("ascii"))


def open_record(manager: SessionManager, raw: str, key: str) -> tuple[str, bool]:
    """The payload text of a stored record, and whether it was sealed under a fallback key.

    Raises :class:`satchel.crypto.DecryptError` when an encrypted record fails to
    authenticate (tampered, moved from another key, or sealed under an unknown secret).
    """
    encrypter = manager.encrypter
    if not manager.config.encrypt or encrypter is None:
        return raw, False
    plaintext, stale_key = encrypter.decrypt(raw, key.encode("ascii"))
    return plaintext.decode("utf-8", "replace"), stale_key


def record_metadata(
    config: SessionConfig, values: Mapping[str, Any], request: RequestMetadata | None = None
) -> RequestMetadata:
    """What a driver that keeps metadata is handed with a write: the request's, plus the values.

    Encrypted sessions hand drivers none of their values, or the database
    driver would store user_id in plaintext beside the ciphertext.
    """
    copied = {} if config.encrypt else copy.deepcopy(dict(values))
    return attrs.evolve(request or RequestMetadata(), values=copied)


def write_record(
    handler: SessionHandler, key: str, data: str, metadata: RequestMetadata | None
) -> None:
    """Write a record, with the metadata when there is some and the driver keeps it."""
    if metadata is not None and supports(handler, SupportsMetadata):
        handler.write_with_metadata(key, data, metadata)
    else:
        handler.write(key, data)


async def awrite_record(
    handler: AsyncSessionHandler, key: str, data: str, metadata: RequestMetadata | None
) -> None:
    """The async form of :func:`write_record`."""
    if metadata is not None and supports(handler, AsyncSupportsMetadata):
        await handler.write_with_metadata(key, data, metadata)
    else:
        await handler.write(key, data)


def write_if_present(
    handler: SessionHandler, key: str, data: str, metadata: RequestMetadata | None
) -> bool:
    """Write a record only if it still exists; False, writing nothing, when it is gone.

    Atomic with a driver that offers ``write_existing``; otherwise a read, then
    the write (one more round trip, and a small race window).
    """
    if supports(handler, SupportsWriteExisting):
        return handler.write_existing(key, data, metadata)
    if handler.read(key) == "":
        return False
    write_record(handler, key, data, metadata)
    return True


async def awrite_if_present(
    handler: AsyncSessionHandler, key: str, data: str, metadata: RequestMetadata | None
) -> bool:
    """The async form of :func:`write_if_present`."""
    if supports(handler, AsyncSupportsWriteExisting):
        return await handler.write_existing(key, data, metadata)
    if await handler.read(key) == "":
        return False
    await awrite_record(handler, key, data, metadata)
    return True


def _keys(keys: str | Iterable[str]) -> list[str]:
    return [keys] if isinstance(keys, str) else list(keys)


def _append_unique(target: list[str], names: Iterable[str]) -> None:
    for name in names:
        if name not in target:
            target.append(name)


def _list_index(segment: str) -> int | None:
    """The list index a dot-notation segment names, or ``None`` when it names none.

    Only a canonical non-negative integer is an index (``"0"``, ``"12"``; not
    ``"01"``, ``"-1"`` or non-ASCII digits), as PHP turns only those into
    integer array keys.
    """
    if segment.isascii() and segment.isdigit() and (segment == "0" or segment[0] != "0"):
        return int(segment)
    return None


def _child(container: Any, segment: str) -> Any:
    """One step of a dotted path: a mapping's key or a list's index (``_MISSING`` if absent)."""
    if isinstance(container, Mapping):
        return container.get(segment, _MISSING)
    if isinstance(container, (list, tuple)):
        index = _list_index(segment)
        if index is not None and index < len(container):
            return container[index]  # Laravel's Arr::get indexes lists too
    return _MISSING


def _lookup(values: Mapping[str, Any], key: str) -> Any:
    """Laravel's ``Arr::get``: the literal key first, then the dotted path."""
    if key in values:
        return values[key]
    current: Any = values
    for segment in key.split("."):
        current = _child(current, segment)
        if current is _MISSING:
            break
    return current


def _set_slot(
    container: dict[str, Any] | list[Any] | tuple[Any, ...],
    segment: str,
    value: Any,
    *,
    key: str,
    where: str,
) -> None:
    """Set ``segment`` of a mapping, or the index it names of a list (``where`` is its path)."""
    if isinstance(container, dict):
        container[segment] = value
        return
    if isinstance(container, tuple):
        raise _unchangeable(where, key)
    index = _list_index(segment)
    if index is None:
        raise TypeError(f"session value {where!r} is a list: {key!r} names no index in it")
    if index > len(container):
        raise IndexError(
            f"{key!r} is past the end of the session list {where!r} ({len(container)} items)"
        )
    if index == len(container):
        container.append(value)
    else:
        container[index] = value


def _assign(values: dict[str, Any], key: str, value: Any) -> None:
    """Laravel's ``Arr::set``: create nested mappings along a dotted path.

    Anything on the path that is neither a mapping nor a list is replaced by
    a mapping, as Laravel does. A list is indexed, as ``get`` reads it: an
    index in range is replaced and the index one past the end appends; any
    other segment raises (``TypeError``, or ``IndexError`` past the end)
    rather than replacing the list with a mapping. The error comes before any
    change: nothing is created until the path's last list is passed.
    """
    segments = key.split(".")
    current: dict[str, Any] | list[Any] | tuple[Any, ...] = values
    for depth, segment in enumerate(segments[:-1]):
        child = _child(current, segment)
        if not isinstance(child, (dict, list, tuple)):
            child = {}
            _set_slot(current, segment, child, key=key, where=".".join(segments[:depth]))
        current = child
    _set_slot(current, segments[-1], value, key=key, where=".".join(segments[:-1]))


def _forget(values: dict[str, Any], key: str) -> None:
    """Laravel's ``Arr::forget``: the literal key first, then the dotted path.

    An index in range of a list removes that element (later ones move up);
    a path that leads nowhere does nothing.
    """
    if key in values:
        del values[key]
        return
    segments = key.split(".")
    current: Any = values
    for segment in segments[:-1]:
        current = _child(current, segment)
        if current is _MISSING or current is None:
            return
    leaf = segments[-1]
    if isinstance(current, dict):
        current.pop(leaf, None)
    elif isinstance(current, (list, tuple)) and _child(current, leaf) is not _MISSING:
        if isinstance(current, tuple):
            raise _unchangeable(".".join(segments[:-1]), key)
        del current[int(leaf)]


def _unchangeable(where: str, key: str) -> TypeError:
    return TypeError(f"session value {where!r} is a tuple, which {key!r} cannot change in place")
