"""A session's load/save lifecycle: reading, expiry, change detection, flash aging, writing.

:class:`SessionLifecycle` holds the state of one session between its load
and its save; :class:`satchel.Session` puts the application-facing API on
top of it. The lifecycle reaches the store only through a
:class:`SessionBackend` (the driver's calls, the clock and the record codec),
which :class:`satchel.SessionManager` provides.

A load and a save are each written once, as steps that yield the driver
calls they need (:data:`Step`); :meth:`satchel.records.DriverCalls.run` and
its async twin carry them out.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from satchel import dotted, payload
from satchel.cookies import read_cookie
from satchel.crypto import DecryptError
from satchel.handler import RequestMetadata
from satchel.ids import generate_id, is_valid_id, log_digest
from satchel.records import (
    AsyncDriverCalls,
    DriverCalls,
    RecordCodec,
    Step,
    record_metadata,
    request_metadata,
)

if TYPE_CHECKING:
    from satchel.config import SessionConfig

logger = logging.getLogger("satchel")

# One driver call a load or save asks for: ("read", key) -> str, ("destroy", key),
# ("write", key, record, metadata), ("write_if_present", key, record, metadata) -> bool,
# and around a merge ("lock", key, lock_seconds, wait_seconds), ("write_locked", key,
# record, metadata) -> bool and ("unlock",): the methods of DriverCalls of those names.
Steps = Generator[Step, Any, Any]


class SaveOutcome(enum.Enum):
    """What ``save`` did, which tells the web glue what to do with the cookie."""

    NOT_LOADED = "not loaded"  # the request never used the session: nothing to do
    UNCHANGED = "unchanged"  # loaded, nothing changed, refresh not due
    WRITTEN = "written"  # the data changed (or the id): written through the driver
    REFRESHED = "refreshed"  # unchanged data rewritten to slide the idle expiry
    EMPTY = "empty"  # the session ended empty: nothing stored, any old record removed
    ENDED = "ended"  # another request ended the session meanwhile: nothing written


# The members as module globals: reading one off the enum class costs a descriptor call
# (Python 3.11), and every save makes several such reads.
_NOT_LOADED = SaveOutcome.NOT_LOADED
_UNCHANGED = SaveOutcome.UNCHANGED
_WRITTEN = SaveOutcome.WRITTEN
_REFRESHED = SaveOutcome.REFRESHED
_EMPTY = SaveOutcome.EMPTY
_ENDED = SaveOutcome.ENDED


@attrs.frozen
class Expiry:
    """A config's expiry rules, in seconds, worked out once.

    Attributes:
        idle: The idle lifetime (``lifetime``).
        absolute: The absolute lifetime (``absolute_lifetime``), or ``None``.
        refresh_interval: How long an unchanged session goes unwritten:
            ``touch_interval``, but never longer than half the idle lifetime, or
            an active session whose data never changes would idle out while in use.
    """

    idle: int
    absolute: int | None
    refresh_interval: float

    @classmethod
    def from_config(cls, config: SessionConfig) -> Expiry:
        """The rules ``config`` sets."""
        idle = config.lifetime_seconds
        return cls(
            idle=idle,
            absolute=config.absolute_lifetime_seconds,
            refresh_interval=min(config.touch_interval, idle / 2),
        )

    def passed(self, envelope: payload.Envelope, now: float) -> bool:
        """Whether ``envelope`` is past its idle or absolute lifetime at ``now``."""
        if now - envelope.last_activity > self.idle:
            return True
        absolute = self.absolute
        return absolute is not None and now - envelope.created > absolute


class SessionBackend(Protocol):
    """What a session needs from its manager: the driver, the clock and the record codec."""

    @property
    def config(self) -> SessionConfig:
        """The session config."""

    @property
    def clock(self) -> Callable[[], float]:
        """Unix seconds, for every expiry decision."""

    @property
    def codec(self) -> RecordCodec:
        """Storage keys and sealed records."""

    @property
    def expiry(self) -> Expiry:
        """The config's expiry rules."""

    @property
    def stores_in_cookie(self) -> bool:
        """Whether the driver keeps the payload in the cookie itself."""

    def driver_calls(self) -> DriverCalls:
        """The sync driver's calls."""

    def async_driver_calls(self) -> AsyncDriverCalls:
        """The async driver's calls."""

    def holds_lock(self, key: str) -> bool:
        """Whether this thread or task holds the request lock on ``key``."""

    def warn_if_shared_store(self) -> None:
        """Warn once when sessions go to a store other apps may share, keyed by no secret."""


def _marks(envelope: payload.Envelope) -> tuple[Any, ...]:
    """The bookkeeping a save compares, besides the values."""
    return (
        tuple(envelope.flash_new),
        tuple(envelope.flash_old),
        envelope.token,
        envelope.permanent,
    )


class SessionLifecycle:
    """The state of one session from its load to its save, and the steps of both.

    Attributes (read by :class:`satchel.Session`):
        incoming: The session cookie's value the request carried, if any: ``None`` too
            while ``cookie_header`` is still to be read (see :meth:`read_cookie_header`).
        cookie_header: The request's ``Cookie`` header, until the session cookie is read
            from it: by the load, or by :meth:`read_cookie_header` before one.
        id: The session id ("" until loaded).
        envelope: The decoded payload: the values and the bookkeeping.
        loaded: Whether the store was read (or found to hold nothing) and the record adopted.
        accessed: Whether the application read or changed the session.
        exposed: Whether the application changed the values or holds one it may change
            in place (a read of a string or a number is neither).
        stored: Whether a record for the current id exists in the store.
        force_write: The next save writes, changed or not (a new id, a rotated key).
    """

    # The state of a session nothing has happened to yet, as class defaults: a request whose
    # session is never used sets only what __init__ sets.
    loaded = False
    accessed = False
    # The application changed the values, or was handed a container it may change in
    # place: only then must a save encode them to learn whether they changed.
    exposed = False
    # The values hold only JSON's own types, untagged (Envelope.plain), and no container
    # of theirs was handed out or put since: their plain encoding needs no check.
    plain = False
    stored = False
    force_write = False
    # A save wrote this session's changes or removed its emptied record: ``modified`` stays true.
    saved_changes = False
    # The values' JSON and the bookkeeping as loaded (or last saved): a save compares them.
    loaded_json: bytes | None = None
    # The stored values as parsed, whose JSON ``loaded_json`` stands for until it is
    # encoded: only when the values may change (see ``expose``) or a save needs it.
    unencoded: dict[str, Any] | None = None
    loaded_marks: tuple[Any, ...] = ((), (), None, None)
    pending_destroy: tuple[str, ...] = ()  # storage keys the next save removes
    # The stored record this session was loaded from, once migrate() moved its data
    # to a new id that is not saved yet.
    source_key: str | None = None
    id = ""
    key_of_id: tuple[str, str] | None = None  # the id and its storage key
    envelope: payload.Envelope  # set by the load
    cookie_value: str | None = None
    last_outcome: SaveOutcome | None = None
    # The values' JSON that save_without_driver found changed, for the save_steps that follow.
    changed_json: bytes | None = None
    # What prefetch_steps read, until the session is first used: (record, key, keys tried).
    prefetched: tuple[str, str | None, list[str]] | None = None

    def __init__(
        self,
        backend: SessionBackend,
        incoming: str | None,
        metadata: RequestMetadata | None,
        client: tuple[object, str | None] | None = None,
        cookie_header: str | None = None,
    ) -> None:
        self.backend = backend
        self.config = backend.config
        self.incoming = incoming
        self.cookie_header = cookie_header  # read for ``incoming`` by the load, if ever
        self.metadata = metadata
        # The client's address as the server reported it and its User-Agent: made into
        # metadata only for a driver that stores it.
        self.client = client

    def read_cookie_header(self) -> str | None:
        """``incoming``, read from ``cookie_header`` now if it was given and not read yet.

        A request that never uses its session never parses its cookie; the load
        (and anything that needs the cookie before one) reads it here.
        """
        header = self.cookie_header
        if header is not None:
            self.cookie_header = None
            self.incoming = read_cookie(header, self.config.cookie)
        return self.incoming

    def fresh_envelope(self) -> payload.Envelope:
        """An empty payload created now."""
        now = self.backend.clock()
        return payload.Envelope(values={}, created=now, last_activity=now)

    def storage_key(self) -> str:
        """The storage key of the current id (digested once per id)."""
        known = self.key_of_id
        if known is None or known[0] != self.id:
            known = self.key_of_id = (self.id, self.backend.codec.storage_key(self.id))
        return known[1]

    def request_metadata(self) -> RequestMetadata | None:
        """What a driver that keeps metadata is told about the request."""
        if self.metadata is None and self.client is not None:
            self.metadata = request_metadata(*self.client)
        return self.metadata

    # -- loading ---------------------------------------------------------------------

    def load_steps(self) -> Steps:
        """Read the stored session (trying each fallback secret's key) and adopt it."""
        self._finish_load(*(yield from self._read_steps()))

    def prefetch_steps(self) -> Steps:
        """Read the stored record as :meth:`load_steps` does, and keep it unread: the
        session is decoded and adopted on first use (:meth:`adopt_prefetched`), so a
        request that never uses it changes nothing, as one that never loaded it."""
        self.prefetched = yield from self._read_steps()

    def adopt_prefetched(self) -> None:
        """Load the session from what :meth:`prefetch_steps` read (no driver call)."""
        prefetched = self.prefetched
        assert prefetched is not None
        self.prefetched = None
        self._finish_load(*prefetched)

    def _read_steps(self) -> Generator[Step, Any, tuple[str, str | None, list[str]]]:
        """Read each storage key in turn until one holds a record: the record ("" for
        none), the key it was found under and the keys tried (see :meth:`_finish_load`)."""
        keys = self._storage_keys_to_read()
        record, found = "", None
        for found in keys:
            record = yield ("read", found)
            if record:
                break
        return record, found, keys

    def load_from(self, read: Callable[[str], str]) -> None:
        """:meth:`load_steps` through a driver whose ``read`` answers at once (no step runner)."""
        # Written out rather than through _read_steps: every WSGI load comes here.
        keys = self._storage_keys_to_read()
        record, found = "", None
        for found in keys:
            record = read(found)
            if record:
                break
        self._finish_load(record, found, keys)

    def _storage_keys_to_read(self) -> list[str]:
        """The storage keys to read in turn until one holds the session (none: read nothing).

        The current key first, then each ``secret_key_fallbacks`` key's, read
        only when the ones before hold nothing.
        """
        # Every load comes here: no call when the cookie's value is known already.
        incoming = self.incoming if self.cookie_header is None else self.read_cookie_header()
        if not incoming or self.backend.stores_in_cookie:
            return []  # no cookie, or the payload is the cookie itself
        if not is_valid_id(incoming):
            # Strict mode: a malformed id never reaches a driver, a path or a log.
            logger.info("satchel: ignored a malformed session cookie")
            return []
        codec = self.backend.codec
        key = codec.storage_key(incoming)
        self.key_of_id = (incoming, key)
        if not self.config.secret_key_fallbacks:
            return [key]  # the common config: no other key to try
        return [key, *codec.fallback_storage_keys(incoming)]

    def _finish_load(self, record: str, key: str | None, keys: list[str]) -> None:
        """Adopt ``record``, read under ``key`` ("" when nothing was found), the last of ``keys``
        read (past the first: a ``secret_key_fallbacks`` key's, not the current one).
        """
        fallback = key is not None and key != keys[0]
        backend = self.backend
        backend.warn_if_shared_store()
        self.id = ""  # issued below only if no stored session is adopted
        self.stored = False
        incoming = self.incoming
        if backend.stores_in_cookie:
            if incoming:
                self._adopt(self._open_cookie(incoming), key=None)
        elif record:
            assert incoming is not None
            assert key is not None
            text = self._open_record(record, key, incoming) if backend.codec.encrypts else record
            self._adopt(text, key=key, session_id=incoming)
        if not self.stored:
            self.id = generate_id()
            self.envelope = self.fresh_envelope()
        self.loaded = True
        envelope = self.envelope
        self.plain = envelope.plain if self.stored else True  # a new session's values are {}
        self.loaded_marks = _marks(envelope)
        # The values' JSON as stored when the payload kept it, else encoded on first need.
        self.loaded_json = envelope.stored_json if self.stored else None
        self.unencoded = (
            envelope.stored_values if self.stored and self.loaded_json is None else None
        )
        if self.stored and fallback:
            assert key is not None
            self.move_from(key, destroy=True)  # the next save moves it to the current key

    def _adopt(self, text: str | None, *, key: str | None, session_id: str | None = None) -> None:
        """Adopt the payload ``text`` of the session ``session_id`` (``None``: the cookie
        driver's, whose payload carries its id), unless it is corrupt or expired."""
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
        backend = self.backend
        if backend.expiry.passed(envelope, backend.clock()):
            if key is not None:
                self.pending_destroy += (key,)
            return
        if session_id is None:
            session_id = envelope.client_id if is_valid_id(envelope.client_id) else None
            if session_id is None:
                return
        self.id = session_id
        self.envelope = envelope
        self.stored = True

    def _open_record(self, record: str, key: str, session_id: str) -> str | None:
        try:
            text, stale_key = self.backend.codec.open(record, key)
        except DecryptError as exc:
            logger.warning(
                "satchel: the stored session %s failed to decrypt (%s); starting an empty session",
                log_digest(session_id),
                exc,
            )
            return None
        if stale_key:
            self.force_write = True  # re-encrypt under the current key
        return text

    def _open_cookie(self, cookie_value: str) -> str | None:
        try:
            text, stale_key = self.backend.codec.open_cookie(cookie_value)
        except DecryptError:
            logger.info("satchel: refused a session cookie that failed to authenticate")
            return None
        if stale_key:
            self.force_write = True  # re-issue the cookie under the current key
        return text

    def expired(self, envelope: payload.Envelope) -> bool:
        """Whether ``envelope`` is past its idle or absolute lifetime."""
        backend = self.backend
        return backend.expiry.passed(envelope, backend.clock())

    # -- identity changes --------------------------------------------------------------

    def move_from(self, old_key: str, *, destroy: bool) -> None:
        """Make the next save write this session under its current storage key, not ``old_key``.

        The save writes only if the record at ``old_key`` still exists (were it
        ended meanwhile, writing would bring it back), and with ``destroy``
        removes that record.
        """
        self.source_key = old_key
        if destroy:
            self.pending_destroy += (old_key,)
        self.stored = False  # nothing is stored under the new key yet
        self.force_write = True

    # -- change detection ---------------------------------------------------------------

    def loaded_values_json(self) -> bytes | None:
        """The values' JSON as loaded (or last saved), encoded on first need."""
        unencoded = self.unencoded
        if unencoded is not None:
            self.unencoded = None
            self.loaded_json = payload.values_json(unencoded)
        return self.loaded_json

    def expose(self) -> None:
        """The values may change from now on, in place too: a container of theirs was
        handed out (see :meth:`change`)."""
        self.plain = False
        self.change()

    def change(self) -> None:
        """The values may change from now on: keep the JSON they were loaded as first.

        Without a tagged value the values are the parsed payload itself, so the
        loaded JSON must be encoded before either changes.
        """
        if not self.exposed:
            self.loaded_values_json()
            self.exposed = True

    def values_json(self) -> bytes:
        """The values' JSON as they are now (``TypeError`` names a key whose value cannot be stored)."""
        values = self.envelope.values
        if self.plain:
            return payload.values_json(values)
        loaded = self.loaded_json
        if loaded is None:
            return payload.encode_to_json(values)
        # Unchanged values are the very bytes loaded: found without the checks a write needs.
        changed = payload.changed_json(values, loaded)
        return loaded if changed is None else changed

    def modified(self) -> bool:
        """Whether the data changed since the load (or stays changed after a save wrote it)."""
        if not self.loaded:
            return False
        if self.saved_changes or self.force_write:
            return True
        envelope = self.envelope
        if not self.stored:
            return bool(envelope.values) or envelope.token is not None
        if _marks(envelope) != self.loaded_marks:
            return True
        return self.exposed and self.values_json() != self.loaded_json

    def age_flash_data(self) -> None:
        """Forget last request's flash data and keep this request's for the next one."""
        envelope = self.envelope
        if envelope.flash_old:
            self.loaded_values_json()  # before forgetting changes the values
        for key in envelope.flash_old:
            dotted.forget(envelope.values, key)
        envelope.flash_old = envelope.flash_new
        envelope.flash_new = []

    # -- saving ------------------------------------------------------------------------

    def save_unloaded(self) -> SaveOutcome:
        """The save of a session the request never used: nothing to do (nothing was read)."""
        self.last_outcome = _NOT_LOADED
        return _NOT_LOADED

    def save_without_driver(self, age_flash: bool = True) -> SaveOutcome | None:
        """The save of a session that needs no driver call, decided without the steps of
        :meth:`save_steps`: ``NOT_LOADED`` for a session never used, ``UNCHANGED`` for one
        nothing changed, with no flash data to age and no refresh due. ``None`` when the
        full save is needed.

        ``age_flash=False``: flash data is kept as it is (a session the glue read for its
        own needs, as Flask's cookie refresh does, which the request never used).
        """
        if not self.loaded:
            self.last_outcome = _NOT_LOADED  # as save_unloaded, for most requests
            return _NOT_LOADED
        self.changed_json = None
        if (
            not self.stored
            or self.force_write
            or self.pending_destroy
            or not (self.loaded_json or self.unencoded is not None)
        ):
            return None
        envelope = self.envelope
        if envelope.flash_new or envelope.flash_old:
            if age_flash or _marks(envelope) != self.loaded_marks:
                return None  # flash data to age (see save_steps), or bookkeeping changed
        # _marks(envelope), its flash lists being empty:
        elif self.loaded_marks != ((), (), envelope.token, envelope.permanent):
            return None
        if not envelope.values and envelope.token is None:
            return None  # an empty session is removed
        backend = self.backend
        if backend.clock() - envelope.last_activity >= backend.expiry.refresh_interval:
            return None
        if self.exposed:
            # The values were handed out or changed: encoded as they are now, they either
            # are what was loaded or are what save_steps writes.
            current = self.values_json()
            if current != self.loaded_json:
                self.changed_json = current
                return None
        # What _finish_save does for it: nothing is pending (checked above), and without
        # force_write no move is (move_from sets both).
        self.last_outcome = _UNCHANGED
        return _UNCHANGED

    def _json_to_save(self, loaded_json: bytes | None, aging_forgets: bool) -> bytes:
        """The values' JSON for a save, encoded only when it may differ from ``loaded_json``."""
        changed_json, self.changed_json = self.changed_json, None
        if self.stored and loaded_json and not aging_forgets and not self.exposed:
            # Never changed nor handed out, with no flash data to age: the stored JSON is current.
            return loaded_json
        if changed_json is not None and not aging_forgets:
            return changed_json  # encoded just now by save_without_driver
        return self.values_json()

    def save_steps(self, keeps_metadata: bool, age_flash: bool = True) -> Steps:
        """Age flash data, then write (or refresh, or remove) the session as needed.

        ``keeps_metadata``: the driver stores request metadata with a write.
        ``age_flash``: as for :meth:`save_without_driver`.
        Returns the :class:`SaveOutcome`.
        """
        destroy_keys = list(self.pending_destroy)
        if not self.loaded:
            return self.save_unloaded()
        envelope = self.envelope
        aging = age_flash and bool(envelope.flash_old or envelope.flash_new)
        # Aging changes the values only when it forgets last request's flash keys.
        aging_forgets = aging and bool(envelope.flash_old)
        if aging:
            self.age_flash_data()
        backend = self.backend
        in_cookie = backend.stores_in_cookie
        key = None if in_cookie else self.storage_key()
        if not envelope.values and envelope.token is None:
            if self.stored and key is not None:
                destroy_keys.append(key)
            if destroy_keys:
                yield from _destroy_all(destroy_keys)
            return self._finish_save(_EMPTY)
        loaded_json = self.loaded_values_json()
        encoded_json = self._json_to_save(loaded_json, aging_forgets)
        now = backend.clock()
        if (
            self.force_write
            or not self.stored
            or encoded_json != loaded_json
            or _marks(envelope) != self.loaded_marks
        ):
            outcome = _WRITTEN
        elif now - envelope.last_activity >= backend.expiry.refresh_interval:
            outcome = _REFRESHED
        else:
            if destroy_keys:
                yield from _destroy_all(destroy_keys)
            return self._finish_save(_UNCHANGED)
        envelope.last_activity = now
        envelope.client_id = self.id if in_cookie else None
        text = payload.dumps(envelope, encoded_json)
        # A refresh rewrites what the store already holds: only a write is held to the limit.
        limited = outcome is _WRITTEN
        codec = backend.codec
        if in_cookie:
            self.cookie_value = codec.seal_cookie(text, limited=limited)
            if destroy_keys:
                yield from _destroy_all(destroy_keys)
            return self._finish_save(outcome, encoded_json)
        assert key is not None
        record = codec.seal(text, key)
        if limited:
            codec.check_size(record)
        metadata = (
            record_metadata(self.config, envelope.values, self.request_metadata())
            if keeps_metadata
            else None
        )
        if self.source_key is not None and (yield ("read", self.source_key)) == "":
            # Read before the old record is destroyed below: the session ended meanwhile.
            if destroy_keys:
                yield from _destroy_all(destroy_keys)
            return self._finish_save(_ENDED)
        if destroy_keys:
            yield from _destroy_all(destroy_keys)
        written = yield from self._write_steps(key, record, metadata, outcome, encoded_json)
        if written is None:
            return self._finish_save(_ENDED)
        return self._finish_save(outcome, written)

    def _write_steps(
        self,
        key: str,
        record: str,
        metadata: RequestMetadata | None,
        outcome: SaveOutcome,
        encoded_json: bytes,
    ) -> Generator[Step, Any, bytes | None]:
        """Write ``record`` under ``key``; the values' JSON written, or ``None`` when the
        session ended meanwhile (nothing written).

        A record loaded from the store is written only if it still exists, and
        under ``merge_on_save`` merged with what is stored now.
        """
        if not self.stored:
            yield ("write", key, record, metadata)
            return encoded_json
        if not (
            self.config.merge_on_save
            and outcome is _WRITTEN
            and self.loaded_json is not None
            # Under the request's own lock (block = true) nobody else can write between
            # its load and this save, and the driver's lock is not reentrant.
            and not self.backend.holds_lock(key)
        ):
            written = yield ("write_if_present", key, record, metadata)
            return encoded_json if written else None
        config = self.config
        yield ("lock", key, config.block_lock_seconds, config.block_wait_seconds)
        merged = self._merge((yield ("read", key)), key, record)
        if merged is None or not (yield ("write_locked", key, merged[0], metadata)):
            return None
        yield ("unlock",)
        return merged[1]

    def _merge(self, record: str, key: str, ours_record: str) -> tuple[str, bytes] | None:
        """This request's changes applied over what is stored now, as a record and the values'
        JSON (``None``: the session ended meanwhile).

        Only the top-level keys this request set, changed or forgot are
        applied, so concurrent requests that touch different keys keep each
        other's writes. Runs under the driver's lock.
        """
        if record == "":
            return None
        text = self._open_record(record, key, self.id)
        try:
            theirs = payload.loads(text) if text is not None else None
        except payload.PayloadError:
            theirs = None
        ours = self.envelope
        if theirs is None:
            # Unreadable: this request's whole session replaces it.
            return ours_record, payload.encode_to_json(ours.values)
        if self.expired(theirs):
            return None
        loaded = payload.parse_values_json(self.loaded_values_json() or b"{}")
        encoded = payload.encode_values(ours.values)
        for name, value in encoded.items():
            if name not in loaded or payload.canonical_json(value) != payload.canonical_json(
                loaded[name]
            ):
                theirs.values[name] = ours.values[name]
        for name in loaded:
            if name not in encoded:
                theirs.values.pop(name, None)
        _, _, loaded_token, loaded_permanent = self.loaded_marks
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
        encoded_json = payload.encode_to_json(theirs.values)
        merged = self.backend.codec.seal(payload.dumps(theirs, encoded_json), key)
        self.backend.codec.check_size(merged)  # the merged session, theirs and ours, must fit too
        self.envelope = theirs
        self.plain = False  # theirs, with our values in it
        return merged, encoded_json

    def _finish_save(self, outcome: SaveOutcome, encoded_json: bytes | None = None) -> SaveOutcome:
        self.pending_destroy = ()
        self.source_key = None
        if outcome is _ENDED:
            # Logged out or regenerated elsewhere while this request ran: writing
            # would bring the old session back (Rack CVE-2025-46336).
            logger.info(
                "satchel: session %s ended during the request; its changes were not saved",
                log_digest(self.id),
            )
            self.stored = False
            self.loaded_json = self.unencoded = None
        if outcome is _WRITTEN or (outcome is _EMPTY and self.stored):
            self.saved_changes = True
        if outcome is _WRITTEN or outcome is _REFRESHED:
            self.stored = True
            self.force_write = False
            self.loaded_json = encoded_json
            self.loaded_marks = _marks(self.envelope)
        elif outcome is _EMPTY:
            self.stored = False
            self.loaded_json = self.unencoded = None
        self.last_outcome = outcome
        return outcome

    # -- the cookie ----------------------------------------------------------------------

    def cookie_action(self) -> str | None:
        """After ``save``: ``"set"`` the cookie, ``"delete"`` it, or leave it (``None``)."""
        outcome = self.last_outcome
        if outcome is _WRITTEN or outcome is _REFRESHED:
            return "set"
        if outcome is _EMPTY and self.incoming:
            return "delete"
        return None


def _destroy_all(keys: list[str]) -> Steps:
    for key in keys:
        yield ("destroy", key)
