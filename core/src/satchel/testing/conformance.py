"""The driver conformance suite: every driver passes these tests.

Subclass :class:`DriverConformance` once in a ``Test…`` class and provide the fixtures:

* ``satchel_handler_factory``: ``factory(config) -> SessionHandler``, for a driver
  with a synchronous handler;
* ``satchel_async_handler_factory``: ``factory(config) -> AsyncSessionHandler``,
  called inside the running event loop, for a driver with an async twin;
* ``satchel_base_config`` (optional): a mapping of config keys the driver
  needs (``driver``, ``connection``, ``options``, …);
* ``satchel_clock`` (optional): a :class:`MovingClock` the factories hand their
  handlers, for a driver that can take one, so expiry is tested without sleeping.

The suite runs what the driver's capabilities allow (see
:class:`DriverConformance`).
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

import pytest

from satchel.config import SessionConfig
from satchel.errors import LockTimeout, SessionTooLarge
from satchel.handler import (
    AsyncSessionHandler,
    AsyncSupportsLock,
    AsyncSupportsWriteExisting,
    SessionHandler,
    SupportsLock,
    SupportsWriteExisting,
    supports,
)
from satchel.ids import generate_id
from satchel.manager import SessionManager
from satchel.payload import MAX_DEPTH, Envelope, dumps

T = TypeVar("T")
SyncFactory = Callable[[SessionConfig], SessionHandler]
AsyncFactory = Callable[[SessionConfig], AsyncSessionHandler]

NON_ASCII = "zß水🎉 — ünïcödé \u00e9\u0301 \U0001f600 \\ \" ' <>&"
ONE_MEGABYTE = 1024 * 1024
PAYLOAD_LIMIT = 8 * 1024  # max_payload_bytes in the size tests
SHORT_LIFETIME_SECONDS = 1
IDLE_SLEEP_SECONDS = 2.2  # past a 1-second lifetime even for stores that keep whole seconds
# gc counts in seconds: a session idle half a second is within gc(6), and past
# what gc would keep if it took the 6 as minutes (0.1 s).
GC_LIFETIME_SECONDS = 6
GC_IDLE_SECONDS = 0.5
# An overwrite: a session of a 4-second lifetime is written again 2.5 s after its
# first write and read 3 s later, past its first expiry even where a whole-second
# store clock adds a second (memcached), and 1.5 s inside the expiry the rewrite gave it.
OVERWRITE_LIFETIME_SECONDS = 4
OVERWRITE_AFTER_SECONDS = 2.5
READ_AFTER_OVERWRITE_SECONDS = 3.0
# A dead holder's lock: taken for DEAD_HOLDER_LOCK_SECONDS, it must keep others out
# for nearly that long, and let them in soon after (a store whose clock ticks in
# whole seconds may round the expiry up by a second, and a loaded machine polls late).
DEAD_HOLDER_LOCK_SECONDS = 1.0
DEAD_HOLDER_EARLIEST_SECONDS = 0.9 * DEAD_HOLDER_LOCK_SECONDS
DEAD_HOLDER_LATEST_SECONDS = DEAD_HOLDER_LOCK_SECONDS + 2.0


class MovingClock:
    """Real time, plus however far the suite moved it forward.

    Hand it to the handlers a factory builds (for a driver that takes a clock):
    the expiry tests then move it instead of sleeping, while locks taken on it
    still expire in real time.
    """

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead

    def advance(self, seconds: float) -> None:
        self.ahead += seconds


def new_storage_id() -> str:
    """A fresh storage key, shaped like the ones core hands drivers (64 lowercase hex characters)."""
    return secrets.token_hex(32)


def _config(base: Mapping[str, Any], **overrides: Any) -> SessionConfig:
    return SessionConfig.from_dict({**base, **overrides})


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def _assert_waited_for_the_dead_holder(waited: float) -> None:
    """The next holder got a dead holder's lock once, and only once, it expired."""
    assert waited >= DEAD_HOLDER_EARLIEST_SECONDS, (
        f"a lock taken for {DEAD_HOLDER_LOCK_SECONDS:g} s was free after {waited:.2f} s"
    )
    assert waited <= DEAD_HOLDER_LATEST_SECONDS, (
        f"a lock taken for {DEAD_HOLDER_LOCK_SECONDS:g} s kept others out for {waited:.2f} s"
    )


# What unpickling _PickleBomb would append to: the suite checks it stays empty.
PICKLE_BOMB_WENT_OFF: list[str] = []


def _pickle_bomb_went_off(marker: str) -> str:
    PICKLE_BOMB_WENT_OFF.append(marker)
    return marker


class _PickleBomb:
    """Pickled, it runs :func:`_pickle_bomb_went_off` when anything unpickles it."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_pickle_bomb_went_off, ("unpickled",))


def pickle_bomb(protocol: int = pickle.HIGHEST_PROTOCOL) -> bytes:
    """A pickle whose loading runs code: what a store must never have unpickled."""
    return pickle.dumps(_PickleBomb(), protocol=protocol)


def pickle_payloads() -> dict[str, str]:
    """:func:`pickle_bomb` as text a handler can be given: protocol 0 (ASCII), and
    the same behind a protocol-2 header (a byte past 127, read as Latin-1). No NUL:
    core never writes one, and text columns cannot hold it."""
    text = pickle_bomb(protocol=0).decode("ascii")
    return {"protocol 0": text, "protocol 2 header": "\x80\x02" + text}


def check_a_planted_pickle_is_ignored(
    manager: SessionManager, cookie: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Start the session of ``cookie``, under whose key a pickle bomb was planted: a
    fresh, empty session with a new id, no code run, no raw id in the log, and the
    same manager saving the new session as usual."""
    with caplog.at_level(logging.WARNING, logger="satchel"):
        session = manager.start(cookie)
    assert session.all() == {}
    assert session.id != cookie
    assert PICKLE_BOMB_WENT_OFF == []
    assert cookie not in caplog.text
    session.put("fresh", 1)
    session.save()
    assert manager.start(session.id).get("fresh") == 1


SYNC = "sync"
"""The driver has a synchronous handler (the ``satchel_handler_factory`` fixture)."""
ASYNC = "async"
"""The driver has an async twin (the ``satchel_async_handler_factory`` fixture)."""
LOCK = "lock"
"""The handler can lock (:class:`~satchel.handler.SupportsLock`), for session blocking."""
WRITE_EXISTING = "write_existing"
"""The handler can write only over a record that still exists
(:class:`~satchel.handler.SupportsWriteExisting`)."""
CAPABILITIES = frozenset({SYNC, ASYNC, LOCK, WRITE_EXISTING})

_TestFunction = TypeVar("_TestFunction", bound=Callable[..., None])
_DECLARATION_CHECK = "test_the_driver_has_the_declared_capabilities"


def _needs(capability: str) -> Callable[[_TestFunction], _TestFunction]:
    """Mark a test as one that applies only to a driver with ``capability``."""

    def mark(test: _TestFunction) -> _TestFunction:
        test.satchel_needs = capability  # type: ignore[attr-defined]
        return test

    return mark


def _needed_by(name: str, test: object) -> frozenset[str]:
    """The capabilities the test ``name`` applies to: its kind of handler, and any it is marked with."""
    kind = ASYNC if name.startswith("test_async_") else SYNC
    extra = getattr(test, "satchel_needs", None)
    if name == _DECLARATION_CHECK:
        return frozenset()
    return frozenset({kind} if extra is None else {kind, extra})


# The capabilities found per test class (building a handler for each test would be slow).
_detected_capabilities: dict[type, frozenset[str]] = {}


class DriverConformance:
    """The contract a driver keeps: subclass it once per driver (or driver setup).

    It runs every test the driver's capabilities allow: the synchronous tests
    when ``satchel_handler_factory`` gives a factory, the async ones when
    ``satchel_async_handler_factory`` does, and the lock and ``write_existing``
    tests when the handler has them (found with :func:`satchel.handler.supports`).
    A test whose capability the driver lacks is skipped as "not applicable".

    Declare ``capabilities`` (a set of :data:`SYNC`, :data:`ASYNC`, :data:`LOCK`,
    :data:`WRITE_EXISTING`) to pin them down: the tests of any other capability are
    then not collected, and ``test_the_driver_has_the_declared_capabilities`` checks
    that the handlers have exactly the ones declared.

    Attributes:
        capabilities: The capabilities the driver declares, or ``None`` to detect them.
        gc_removes_expired: ``False`` when the store expires sessions itself and
            ``gc`` returns 0 (Redis, memcached): the suite then checks that an idle
            session is gone without counting it.
        keeps_nothing: ``True`` for a driver that stores nothing by design
            (``null``): every read is then expected to be ``""``, and the rest of
            the contract (writes, destroys and gc succeed, no error, no code run) holds.
    """

    capabilities: ClassVar[frozenset[str] | set[str] | None] = None
    gc_removes_expired: ClassVar[bool] = True
    keeps_nothing: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.capabilities
        if declared is not None and not set(declared) <= CAPABILITIES:
            unknown = ", ".join(sorted(set(declared) - CAPABILITIES))
            raise TypeError(f"{cls.__name__} declares unknown capabilities: {unknown}")
        for name, test in vars(DriverConformance).items():
            if not name.startswith("test_") or name in cls.__dict__:
                continue
            if declared is None:
                wanted = name != _DECLARATION_CHECK
            else:
                wanted = _needed_by(name, test) <= set(declared)
            # A test attribute that is not callable is not collected.
            setattr(cls, name, test if wanted else None)

    @pytest.fixture
    def satchel_handler_factory(self) -> SyncFactory | None:
        """``factory(config) -> SessionHandler``; override it for a driver with a sync handler."""
        return None

    @pytest.fixture
    def satchel_async_handler_factory(self) -> AsyncFactory | None:
        """``factory(config) -> AsyncSessionHandler``, called inside the running event loop;
        override it for a driver with an async twin."""
        return None

    @pytest.fixture
    def satchel_base_config(self) -> Mapping[str, Any]:
        """Config keys the driver needs; override in the subclass."""
        return {}

    @pytest.fixture
    def satchel_clock(self) -> MovingClock | None:
        """A :class:`MovingClock` the factories hand their handlers, for a driver that
        takes one: the suite then moves it instead of sleeping. ``None``: it sleeps."""
        return None

    def kept(self, data: str) -> str:
        """What a read gives back after ``data`` was written: ``data``, or ``""``
        for a driver that keeps nothing (``keeps_nothing = True``)."""
        return "" if self.keeps_nothing else data

    @pytest.fixture
    def pass_time(self, satchel_clock: MovingClock | None) -> Callable[[float], None]:
        """Let ``seconds`` pass: on the moving clock when there is one, else asleep."""
        if self.keeps_nothing:
            return lambda seconds: None  # nothing stored, nothing to expire: no need to wait
        return time.sleep if satchel_clock is None else satchel_clock.advance

    @pytest.fixture
    def async_pass_time(
        self, satchel_clock: MovingClock | None, pass_time: Callable[[float], None]
    ) -> Callable[[float], Awaitable[None]]:
        """The async form of ``pass_time``."""

        async def advance(seconds: float) -> None:
            pass_time(seconds)

        return asyncio.sleep if satchel_clock is None and not self.keeps_nothing else advance

    @pytest.fixture
    def make_handler(
        self, satchel_handler_factory: SyncFactory | None, satchel_base_config: Mapping[str, Any]
    ) -> Iterator[Callable[..., SessionHandler]]:
        """Build a handler from the base config plus overrides; closes them all afterwards."""
        made: list[SessionHandler] = []

        def make(**overrides: Any) -> SessionHandler:
            assert satchel_handler_factory is not None
            handler = satchel_handler_factory(_config(satchel_base_config, **overrides))
            made.append(handler)
            return handler

        yield make
        for handler in made:
            assert handler.close() is True

    @pytest.fixture
    def handler(self, make_handler: Callable[..., SessionHandler]) -> SessionHandler:
        return make_handler()

    @pytest.fixture
    def run_with_handler(
        self,
        satchel_async_handler_factory: AsyncFactory | None,
        satchel_base_config: Mapping[str, Any],
    ) -> Callable[..., Any]:
        """Run ``body(handler)`` in a fresh event loop with a handler built inside it."""

        def run(
            body: Callable[[AsyncSessionHandler], Coroutine[Any, Any, T]], **overrides: Any
        ) -> T:
            async def main() -> T:
                assert satchel_async_handler_factory is not None
                handler = satchel_async_handler_factory(_config(satchel_base_config, **overrides))
                try:
                    return await body(handler)
                finally:
                    assert await handler.close() is True

            return _run(main())

        return run

    def _detect(self, request: pytest.FixtureRequest) -> frozenset[str]:
        """The capabilities the driver's handlers have (found once per test class)."""
        found = _detected_capabilities.get(type(self))
        if found is not None:
            return found
        capabilities: set[str] = set()
        if request.getfixturevalue("satchel_handler_factory") is not None:
            capabilities.add(SYNC)
            handler = request.getfixturevalue("make_handler")()
            capabilities |= {LOCK} if supports(handler, SupportsLock) else set()
            if supports(handler, SupportsWriteExisting):
                capabilities.add(WRITE_EXISTING)
        if request.getfixturevalue("satchel_async_handler_factory") is not None:
            capabilities.add(ASYNC)

            async def twin_capabilities(twin: AsyncSessionHandler) -> set[str]:
                found = {LOCK} if supports(twin, AsyncSupportsLock) else set()
                return found | (
                    {WRITE_EXISTING} if supports(twin, AsyncSupportsWriteExisting) else set()
                )

            twin = request.getfixturevalue("run_with_handler")(twin_capabilities)
            capabilities |= twin if SYNC not in capabilities else set()
        found = _detected_capabilities[type(self)] = frozenset(capabilities)
        return found

    @pytest.fixture(autouse=True)
    def _skip_what_does_not_apply(
        self, request: pytest.FixtureRequest, satchel_base_config: Mapping[str, Any]
    ) -> None:
        # Asks for the base config by name, so a parametrized one (a URL per server)
        # is parametrized for every test, the capability check included.
        name = request.function.__name__
        if name not in vars(DriverConformance):
            return  # a test of the subclass's own
        missing = _needed_by(name, request.function) - self._detect(request)
        if missing:
            pytest.skip(f"not applicable: the driver has no {' or '.join(sorted(missing))}")

    def test_the_driver_has_the_declared_capabilities(self, request: pytest.FixtureRequest) -> None:
        assert self.capabilities is not None
        assert self._detect(request) == set(self.capabilities)

    def test_open_and_close_succeed(self, handler: SessionHandler) -> None:
        assert handler.open("", "satchel_session") is True
        assert handler.close() is True

    def test_read_of_a_missing_id_is_empty(self, handler: SessionHandler) -> None:
        assert handler.read(new_storage_id()) == ""

    def test_write_then_read_round_trips(self, handler: SessionHandler) -> None:
        key = new_storage_id()
        assert handler.write(key, '{"v":1,"data":{"a":1}}') is True
        assert handler.read(key) == self.kept('{"v":1,"data":{"a":1}}')

    def test_overwrite_replaces_the_payload(self, handler: SessionHandler) -> None:
        key = new_storage_id()
        handler.write(key, "first")
        handler.write(key, "second, longer than the first")
        handler.write(key, "third")
        assert handler.read(key) == self.kept("third")

    def test_destroy_removes_the_session(self, handler: SessionHandler) -> None:
        key, other = new_storage_id(), new_storage_id()
        handler.write(key, "doomed")
        handler.write(other, "kept")
        assert handler.destroy(key) is True
        assert handler.read(key) == ""
        assert handler.read(other) == self.kept("kept")

    def test_destroy_of_a_missing_id_succeeds(self, handler: SessionHandler) -> None:
        assert handler.destroy(new_storage_id()) is True

    def test_a_megabyte_payload_round_trips(self, handler: SessionHandler) -> None:
        key = new_storage_id()
        data = ("0123456789abcdef" * (ONE_MEGABYTE // 16))[:ONE_MEGABYTE]
        handler.write(key, data)
        assert handler.read(key) == self.kept(data)

    def test_non_ascii_payload_round_trips(self, handler: SessionHandler) -> None:
        key = new_storage_id()
        handler.write(key, NON_ASCII)
        assert handler.read(key) == self.kept(NON_ASCII)

    def test_ids_are_isolated(self, handler: SessionHandler) -> None:
        keys = [new_storage_id() for _ in range(5)]
        for index, key in enumerate(keys):
            handler.write(key, f"payload {index}")
        handler.write(keys[2], "changed")
        assert [handler.read(key) for key in keys] == [
            self.kept(text)
            for text in ("payload 0", "payload 1", "changed", "payload 3", "payload 4")
        ]

    def test_gc_keeps_sessions_within_the_lifetime(self, handler: SessionHandler) -> None:
        key = new_storage_id()
        handler.write(key, "fresh")
        handler.gc(3600)
        assert handler.read(key) == self.kept("fresh")

    def test_gc_removes_only_idle_sessions(
        self, make_handler: Callable[..., SessionHandler], pass_time: Callable[[float], None]
    ) -> None:
        handler = make_handler(lifetime=SHORT_LIFETIME_SECONDS / 60)
        idle, live = new_storage_id(), new_storage_id()
        handler.write(idle, "idle")
        pass_time(IDLE_SLEEP_SECONDS)
        handler.write(live, "live")
        removed = handler.gc(SHORT_LIFETIME_SECONDS)
        if self.gc_removes_expired:
            assert removed >= 1
        else:
            assert removed == 0
        assert handler.read(idle) == ""
        assert handler.read(live) == self.kept("live")

    def test_threads_writing_distinct_sessions_corrupt_nothing(
        self, handler: SessionHandler
    ) -> None:
        keys = [new_storage_id() for _ in range(64)]

        def work(index: int) -> None:
            for round_ in range(5):
                handler.write(keys[index], f"{index}:{round_}:" + "x" * (index * 97))

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(work, range(len(keys))))
        for index, key in enumerate(keys):
            assert handler.read(key) == self.kept(f"{index}:4:" + "x" * (index * 97))

    def test_a_stored_pickle_runs_no_code_and_starts_a_fresh_session(
        self,
        make_handler: Callable[..., SessionHandler],
        satchel_base_config: Mapping[str, Any],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A ``__reduce__`` payload under a valid id's key is never unpickled: the id
        gets a fresh, empty session instead, and no code runs."""
        # The control, on our own bytes only: loading the bomb does run code.
        PICKLE_BOMB_WENT_OFF.clear()
        pickle.loads(pickle_bomb(protocol=0))  # noqa: S301
        assert PICKLE_BOMB_WENT_OFF == ["unpickled"]
        PICKLE_BOMB_WENT_OFF.clear()
        handler = make_handler()
        manager = SessionManager(_config(satchel_base_config))
        manager.extend(manager.config.driver, lambda _config: handler)
        for name, text in pickle_payloads().items():
            cookie = generate_id()
            handler.write(manager.storage_key(cookie), text)
            session = manager.start(cookie)
            assert session.all() == {}, name
            assert session.id != cookie, f"{name}: the planted id must not be kept"
            assert PICKLE_BOMB_WENT_OFF == [], name
            assert cookie not in caplog.text  # never a raw id in a log line

    def test_a_stored_payload_nested_too_deep_starts_a_fresh_session(
        self,
        make_handler: Callable[..., SessionHandler],
        satchel_base_config: Mapping[str, Any],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A payload planted under a valid id's key with a value nested past
        ``MAX_DEPTH`` (or past what the JSON parser can take) is a corrupt session:
        an empty one and a warning, never a ``RecursionError``. The control, a value
        at the limit planted the same way, is adopted."""
        handler = make_handler()
        manager = SessionManager(_config(satchel_base_config))
        manager.extend(manager.config.driver, lambda _config: handler)
        for levels in (MAX_DEPTH, MAX_DEPTH + 1, 100_000):
            cookie = generate_id()
            handler.write(manager.storage_key(cookie), nested_payload(levels, manager.clock()))
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="satchel"):
                session = manager.start(cookie)
            if levels <= MAX_DEPTH and not self.keeps_nothing:
                assert session.id == cookie, "the control, at the limit, must be adopted"
                assert session.get("deep") is not None
                continue
            assert session.all() == {}, levels
            assert session.id != cookie, levels
            if not self.keeps_nothing:
                assert "corrupt" in caplog.text, levels
            assert cookie not in caplog.text

    def test_a_save_over_max_payload_bytes_raises_and_keeps_the_stored_session(
        self, make_handler: Callable[..., SessionHandler], satchel_base_config: Mapping[str, Any]
    ) -> None:
        """A changed session larger than ``max_payload_bytes`` is a ``SessionTooLarge``
        naming the limit; the driver is handed nothing, so the stored session stays."""
        handler = make_handler()
        manager = SessionManager(_config(satchel_base_config, max_payload_bytes=PAYLOAD_LIMIT))
        manager.extend(manager.config.driver, lambda _config: handler)
        session = manager.start(None)
        session.put("blob", "x" * (PAYLOAD_LIMIT // 2))
        session.save()
        cookie = session.cookie_value()
        stored = handler.read(manager.storage_key(cookie))
        assert (stored != "") is not self.keeps_nothing  # the control was stored
        grown = manager.start(cookie)
        grown.put("more", "y" * PAYLOAD_LIMIT)
        with pytest.raises(SessionTooLarge) as caught:
            grown.save()
        assert (caught.value.limit, caught.value.limit_name) == (PAYLOAD_LIMIT, "max_payload_bytes")
        assert caught.value.size > PAYLOAD_LIMIT
        assert handler.read(manager.storage_key(cookie)) == stored
        fresh = manager.start(None)
        fresh.put("blob", "z" * (2 * PAYLOAD_LIMIT))
        with pytest.raises(SessionTooLarge):
            fresh.save()
        assert handler.read(manager.storage_key(fresh.id)) == ""

    def test_gc_counts_the_lifetime_in_seconds(
        self, handler: SessionHandler, pass_time: Callable[[float], None]
    ) -> None:
        """``gc(lifetime)`` takes seconds: a session idle longer than ``lifetime / 60``
        seconds, but well within ``lifetime``, stays."""
        key = new_storage_id()
        handler.write(key, "idle a little")
        pass_time(GC_IDLE_SECONDS)
        handler.gc(GC_LIFETIME_SECONDS)
        assert handler.read(key) == self.kept("idle a little")

    def test_read_honours_the_lifetime_without_gc(
        self, make_handler: Callable[..., SessionHandler], pass_time: Callable[[float], None]
    ) -> None:
        handler = make_handler(lifetime=SHORT_LIFETIME_SECONDS / 60)
        key = new_storage_id()
        handler.write(key, "idle")
        pass_time(IDLE_SLEEP_SECONDS)
        assert handler.read(key) == ""

    def test_an_overwrite_restarts_the_lifetime(
        self, make_handler: Callable[..., SessionHandler], pass_time: Callable[[float], None]
    ) -> None:
        """Core keeps an active session alive by writing it again: a session lives
        ``lifetime`` past its last write, not its first."""
        handler = make_handler(lifetime=OVERWRITE_LIFETIME_SECONDS / 60)
        key, left = new_storage_id(), new_storage_id()
        handler.write(key, "first")
        handler.write(left, "left alone")
        pass_time(OVERWRITE_AFTER_SECONDS)
        handler.write(key, "second")
        pass_time(READ_AFTER_OVERWRITE_SECONDS)
        assert handler.read(left) == ""  # the wait did pass the first expiry
        assert handler.read(key) == self.kept("second")

    def test_destroy_after_a_read_removes_the_session(self, handler: SessionHandler) -> None:
        key = new_storage_id()
        handler.write(key, "read, then ended")
        assert handler.read(key) == self.kept("read, then ended")
        assert handler.destroy(key) is True
        assert handler.read(key) == ""

    @_needs(WRITE_EXISTING)
    def test_write_existing_over_an_expired_record_writes_nothing(
        self, make_handler: Callable[..., SessionHandler], pass_time: Callable[[float], None]
    ) -> None:
        handler = make_handler(lifetime=SHORT_LIFETIME_SECONDS / 60)
        assert isinstance(handler, SupportsWriteExisting)
        key = new_storage_id()
        handler.write(key, "logged in")
        pass_time(IDLE_SLEEP_SECONDS)
        assert handler.write_existing(key, "back after it expired?") is False
        assert handler.read(key) == ""

    @_needs(WRITE_EXISTING)
    def test_write_existing_updates_a_live_record(self, handler: SessionHandler) -> None:
        assert isinstance(handler, SupportsWriteExisting)
        key = new_storage_id()
        handler.write(key, "first")
        assert handler.write_existing(key, "second") is True
        assert handler.read(key) == "second"

    @_needs(WRITE_EXISTING)
    def test_write_existing_never_creates_a_record(self, handler: SessionHandler) -> None:
        assert isinstance(handler, SupportsWriteExisting)
        key = new_storage_id()
        assert handler.write_existing(key, "resurrected?") is False
        assert handler.read(key) == ""

    @_needs(WRITE_EXISTING)
    def test_write_existing_after_destroy_writes_nothing(self, handler: SessionHandler) -> None:
        assert isinstance(handler, SupportsWriteExisting)
        key = new_storage_id()
        handler.write(key, "logged in")
        handler.destroy(key)
        assert handler.write_existing(key, "logged in, again?") is False
        assert handler.read(key) == ""

    @_needs(LOCK)
    def test_lock_can_be_taken_again_after_release(self, handler: SessionHandler) -> None:
        assert isinstance(handler, SupportsLock)
        key = new_storage_id()
        with handler.lock(key, lock_seconds=5, wait_seconds=1):
            pass
        with handler.lock(key, lock_seconds=5, wait_seconds=0.5):
            pass

    @_needs(LOCK)
    def test_a_held_lock_makes_others_time_out(self, handler: SessionHandler) -> None:
        assert isinstance(handler, SupportsLock)
        key = new_storage_id()
        with handler.lock(key, lock_seconds=10, wait_seconds=1):
            started = time.monotonic()
            with pytest.raises(LockTimeout), handler.lock(key, lock_seconds=10, wait_seconds=0.5):
                pass
            assert time.monotonic() - started >= 0.4
            # Another session's lock is independent.
            with handler.lock(new_storage_id(), lock_seconds=10, wait_seconds=0.5):
                pass

    @_needs(LOCK)
    def test_waiter_gets_the_lock_once_released(self, handler: SessionHandler) -> None:
        assert isinstance(handler, SupportsLock)
        key = new_storage_id()
        order: list[str] = []
        held = threading.Event()

        def holder() -> None:
            with handler.lock(key, lock_seconds=10, wait_seconds=1):
                held.set()
                time.sleep(0.5)
                order.append("holder done")

        thread = threading.Thread(target=holder)
        thread.start()
        assert held.wait(5)
        with handler.lock(key, lock_seconds=10, wait_seconds=5):
            order.append("waiter in")
        thread.join()
        assert order == ["holder done", "waiter in"]

    @_needs(LOCK)
    def test_lock_of_a_dead_holder_expires(self, handler: SessionHandler) -> None:
        assert isinstance(handler, SupportsLock)
        key = new_storage_id()
        abandoned = handler.lock(key, lock_seconds=DEAD_HOLDER_LOCK_SECONDS, wait_seconds=1)
        abandoned.__enter__()  # never exited: the holder "died"
        started = time.monotonic()
        with handler.lock(key, lock_seconds=5, wait_seconds=5):
            waited = time.monotonic() - started
        _assert_waited_for_the_dead_holder(waited)

    @_needs(LOCK)
    def test_expired_holder_never_releases_the_next_holders_lock(
        self, handler: SessionHandler
    ) -> None:
        assert isinstance(handler, SupportsLock)
        key = new_storage_id()
        first = handler.lock(key, lock_seconds=1, wait_seconds=1)
        first.__enter__()
        with handler.lock(key, lock_seconds=30, wait_seconds=5):
            first.__exit__(None, None, None)  # the late first holder lets go
            with pytest.raises(LockTimeout), handler.lock(key, lock_seconds=5, wait_seconds=0.3):
                pass

    def test_async_open_and_close_succeed(self, run_with_handler: Callable[..., Any]) -> None:
        async def body(handler: AsyncSessionHandler) -> None:
            assert await handler.open("", "satchel_session") is True

        run_with_handler(body)

    def test_async_round_trip_overwrite_and_destroy(
        self, run_with_handler: Callable[..., Any]
    ) -> None:
        async def body(handler: AsyncSessionHandler) -> None:
            key, other = new_storage_id(), new_storage_id()
            assert await handler.read(key) == ""
            assert await handler.write(key, "first") is True
            await handler.write(other, "other")
            assert await handler.read(key) == self.kept("first")
            await handler.write(key, NON_ASCII)
            assert await handler.read(key) == self.kept(NON_ASCII)
            assert await handler.destroy(key) is True
            assert await handler.read(key) == ""
            assert await handler.read(other) == self.kept("other")
            assert await handler.destroy(new_storage_id()) is True

        run_with_handler(body)

    def test_async_megabyte_payload(self, run_with_handler: Callable[..., Any]) -> None:
        async def body(handler: AsyncSessionHandler) -> None:
            key = new_storage_id()
            data = "é" * ONE_MEGABYTE
            await handler.write(key, data)
            assert await handler.read(key) == self.kept(data)

        run_with_handler(body)

    def test_async_gc_removes_only_idle_sessions(
        self,
        run_with_handler: Callable[..., Any],
        async_pass_time: Callable[[float], Awaitable[None]],
    ) -> None:
        async def body(handler: AsyncSessionHandler) -> None:
            idle, live = new_storage_id(), new_storage_id()
            await handler.write(idle, "idle")
            await async_pass_time(IDLE_SLEEP_SECONDS)
            await handler.write(live, "live")
            removed = await handler.gc(SHORT_LIFETIME_SECONDS)
            assert removed >= 1 if self.gc_removes_expired else removed == 0
            assert await handler.read(idle) == ""
            assert await handler.read(live) == self.kept("live")

        run_with_handler(body, lifetime=SHORT_LIFETIME_SECONDS / 60)

    def test_async_concurrent_writes_corrupt_nothing(
        self, run_with_handler: Callable[..., Any]
    ) -> None:
        async def body(handler: AsyncSessionHandler) -> None:
            keys = [new_storage_id() for _ in range(50)]
            await asyncio.gather(*(handler.write(key, f"v{i}" * 50) for i, key in enumerate(keys)))
            values = await asyncio.gather(*(handler.read(key) for key in keys))
            assert values == [self.kept(f"v{i}" * 50) for i in range(len(keys))]

        run_with_handler(body)

    def test_async_gc_counts_the_lifetime_in_seconds(
        self,
        run_with_handler: Callable[..., Any],
        async_pass_time: Callable[[float], Awaitable[None]],
    ) -> None:
        async def body(handler: AsyncSessionHandler) -> None:
            key = new_storage_id()
            await handler.write(key, "idle a little")
            await async_pass_time(GC_IDLE_SECONDS)
            await handler.gc(GC_LIFETIME_SECONDS)
            assert await handler.read(key) == self.kept("idle a little")

        run_with_handler(body)

    def test_async_read_honours_the_lifetime_without_gc(
        self,
        run_with_handler: Callable[..., Any],
        async_pass_time: Callable[[float], Awaitable[None]],
    ) -> None:
        async def body(handler: AsyncSessionHandler) -> None:
            key = new_storage_id()
            await handler.write(key, "idle")
            await async_pass_time(IDLE_SLEEP_SECONDS)
            assert await handler.read(key) == ""

        run_with_handler(body, lifetime=SHORT_LIFETIME_SECONDS / 60)

    def test_async_overwrite_restarts_the_lifetime(
        self,
        run_with_handler: Callable[..., Any],
        async_pass_time: Callable[[float], Awaitable[None]],
    ) -> None:
        async def body(handler: AsyncSessionHandler) -> None:
            key, left = new_storage_id(), new_storage_id()
            await handler.write(key, "first")
            await handler.write(left, "left alone")
            await async_pass_time(OVERWRITE_AFTER_SECONDS)
            await handler.write(key, "second")
            await async_pass_time(READ_AFTER_OVERWRITE_SECONDS)
            assert await handler.read(left) == ""  # the wait did pass the first expiry
            assert await handler.read(key) == self.kept("second")

        run_with_handler(body, lifetime=OVERWRITE_LIFETIME_SECONDS / 60)

    def test_async_destroy_after_a_read_removes_the_session(
        self, run_with_handler: Callable[..., Any]
    ) -> None:
        async def body(handler: AsyncSessionHandler) -> None:
            key = new_storage_id()
            await handler.write(key, "read, then ended")
            assert await handler.read(key) == self.kept("read, then ended")
            assert await handler.destroy(key) is True
            assert await handler.read(key) == ""

        run_with_handler(body)

    @_needs(WRITE_EXISTING)
    def test_async_write_existing_over_an_expired_record_writes_nothing(
        self,
        run_with_handler: Callable[..., Any],
        async_pass_time: Callable[[float], Awaitable[None]],
    ) -> None:
        async def body(handler: AsyncSessionHandler) -> None:
            assert isinstance(handler, AsyncSupportsWriteExisting)
            key = new_storage_id()
            await handler.write(key, "logged in")
            await async_pass_time(IDLE_SLEEP_SECONDS)
            assert await handler.write_existing(key, "back after it expired?") is False
            assert await handler.read(key) == ""

        run_with_handler(body, lifetime=SHORT_LIFETIME_SECONDS / 60)

    @_needs(WRITE_EXISTING)
    def test_async_write_existing_writes_only_over_a_live_record(
        self, run_with_handler: Callable[..., Any]
    ) -> None:
        async def body(handler: AsyncSessionHandler) -> None:
            assert isinstance(handler, AsyncSupportsWriteExisting)
            live, missing, ended = new_storage_id(), new_storage_id(), new_storage_id()
            await handler.write(live, "first")
            assert await handler.write_existing(live, "second") is True
            assert await handler.read(live) == "second"
            assert await handler.write_existing(missing, "resurrected?") is False
            assert await handler.read(missing) == ""
            await handler.write(ended, "logged in")
            await handler.destroy(ended)
            assert await handler.write_existing(ended, "logged in, again?") is False
            assert await handler.read(ended) == ""

        run_with_handler(body)

    @_needs(LOCK)
    def test_async_lock_excludes_and_times_out(self, run_with_handler: Callable[..., Any]) -> None:
        async def body(handler: AsyncSessionHandler) -> None:
            assert isinstance(handler, AsyncSupportsLock)
            key = new_storage_id()
            async with handler.lock(key, lock_seconds=10, wait_seconds=1):
                with pytest.raises(LockTimeout):
                    async with handler.lock(key, lock_seconds=10, wait_seconds=0.3):
                        pass
            async with handler.lock(key, lock_seconds=10, wait_seconds=0.5):
                pass

        run_with_handler(body)

    @_needs(LOCK)
    def test_async_lock_of_a_dead_holder_expires(
        self, run_with_handler: Callable[..., Any]
    ) -> None:
        async def body(handler: AsyncSessionHandler) -> None:
            assert isinstance(handler, AsyncSupportsLock)
            key = new_storage_id()
            abandoned = handler.lock(key, lock_seconds=DEAD_HOLDER_LOCK_SECONDS, wait_seconds=1)
            await abandoned.__aenter__()  # never exited: the holder "died"
            started = time.monotonic()
            async with handler.lock(key, lock_seconds=5, wait_seconds=5):
                waited = time.monotonic() - started
            _assert_waited_for_the_dead_holder(waited)

        run_with_handler(body)

    @_needs(LOCK)
    def test_async_expired_holder_never_releases_the_next_holders_lock(
        self, run_with_handler: Callable[..., Any]
    ) -> None:
        async def body(handler: AsyncSessionHandler) -> None:
            assert isinstance(handler, AsyncSupportsLock)
            key = new_storage_id()
            first = handler.lock(key, lock_seconds=1, wait_seconds=1)
            await first.__aenter__()
            async with handler.lock(key, lock_seconds=30, wait_seconds=5):
                await first.__aexit__(None, None, None)  # the late first holder lets go
                with pytest.raises(LockTimeout):
                    async with handler.lock(key, lock_seconds=5, wait_seconds=0.3):
                        pass

        run_with_handler(body)


def nested_payload(levels: int, now: float) -> str:
    """A stored payload whose value ``deep`` is ``levels`` lists, one inside the other."""
    deep = "[" * levels + "]" * levels
    return dumps(Envelope(values={}, created=now, last_activity=now), f'{{"deep":{deep}}}')
