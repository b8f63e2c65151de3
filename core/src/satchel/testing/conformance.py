"""The driver conformance suite: every driver passes these tests.

Subclass the classes below in a ``Test…`` class and provide the fixtures:

* ``satchel_handler_factory`` (required): ``factory(config) -> SessionHandler``;
* ``satchel_async_handler_factory`` (for :class:`AsyncHandlerConformance`):
  ``factory(config) -> AsyncSessionHandler``, called inside the running event loop;
* ``satchel_base_config`` (optional): a mapping of config keys the driver
  needs (``driver``, ``connection``, ``options``, …).

Set ``gc_removes_expired = False`` on the class when the store expires
sessions itself and ``gc`` returns 0 (Redis, memcached): the suite then checks
that an idle session is gone without counting it. Set ``keeps_nothing = True``
for a driver that stores nothing by design (``null``): every read is then
expected to be ``""`` and the rest of the contract (writes, destroys and gc
succeed, no error, no code run) still holds.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import secrets
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

import pytest

from satchel.config import SessionConfig
from satchel.errors import LockTimeout, SessionTooLarge
from satchel.handler import (
    AsyncSessionHandler,
    AsyncSupportsLock,
    AsyncSupportsTouch,
    AsyncSupportsWriteExisting,
    SessionHandler,
    SupportsLock,
    SupportsTouch,
    SupportsWriteExisting,
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
# touch: a session of a 4-second lifetime is touched 2.5 s after its write and read
# 3 s later, past its first expiry even where a whole-second store clock adds a
# second (memcached), and 1.5 s inside the expiry the touch gave it.
TOUCH_LIFETIME_SECONDS = 4
TOUCH_AFTER_SECONDS = 2.5
READ_AFTER_TOUCH_SECONDS = 3.0
# A dead holder's lock: taken for DEAD_HOLDER_LOCK_SECONDS, it must keep others out
# for nearly that long, and let them in soon after (a store whose clock ticks in
# whole seconds may round the expiry up by a second, and a loaded machine polls late).
DEAD_HOLDER_LOCK_SECONDS = 1.0
DEAD_HOLDER_EARLIEST_SECONDS = 0.9 * DEAD_HOLDER_LOCK_SECONDS
DEAD_HOLDER_LATEST_SECONDS = DEAD_HOLDER_LOCK_SECONDS + 2.0


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


class _ConfigFixtures:
    keeps_nothing: ClassVar[bool] = False

    @pytest.fixture
    def satchel_base_config(self) -> Mapping[str, Any]:
        """Config keys the driver needs; override in the subclass."""
        return {}

    def kept(self, data: str) -> str:
        """What a read gives back after ``data`` was written: ``data``, or ``""``
        for a driver that keeps nothing (``keeps_nothing = True``)."""
        return "" if self.keeps_nothing else data


class HandlerConformance(_ConfigFixtures):
    """The contract every synchronous :class:`~satchel.SessionHandler` keeps."""

    gc_removes_expired: ClassVar[bool] = True

    @pytest.fixture
    def satchel_handler_factory(self) -> SyncFactory:
        pytest.fail("provide the satchel_handler_factory fixture in your test class", pytrace=False)

    @pytest.fixture
    def make_handler(
        self, satchel_handler_factory: SyncFactory, satchel_base_config: Mapping[str, Any]
    ) -> Iterator[Callable[..., SessionHandler]]:
        """Build a handler from the base config plus overrides; closes them all afterwards."""
        made: list[SessionHandler] = []

        def make(**overrides: Any) -> SessionHandler:
            handler = satchel_handler_factory(_config(satchel_base_config, **overrides))
            made.append(handler)
            return handler

        yield make
        for handler in made:
            handler.close()

    @pytest.fixture
    def handler(self, make_handler: Callable[..., SessionHandler]) -> SessionHandler:
        return make_handler()

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
        self, make_handler: Callable[..., SessionHandler]
    ) -> None:
        handler = make_handler(lifetime=SHORT_LIFETIME_SECONDS / 60)
        idle, live = new_storage_id(), new_storage_id()
        handler.write(idle, "idle")
        time.sleep(IDLE_SLEEP_SECONDS)
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


def nested_payload(levels: int, now: float) -> str:
    """A stored payload whose value ``deep`` is ``levels`` lists, one inside the other."""
    deep = "[" * levels + "]" * levels
    return dumps(Envelope(values={}, created=now, last_activity=now), f'{{"deep":{deep}}}')


class TouchConformance(_ConfigFixtures):
    """For a handler with ``touch``: it extends the expiry without rewriting."""

    def test_handler_supports_touch(self, handler: SessionHandler) -> None:
        assert isinstance(handler, SupportsTouch)

    def test_touch_of_a_missing_id_is_harmless(self, handler: SessionHandler) -> None:
        assert isinstance(handler, SupportsTouch)
        handler.touch(new_storage_id())

    def test_touch_extends_the_expiry(self, make_handler: Callable[..., SessionHandler]) -> None:
        handler = make_handler(lifetime=TOUCH_LIFETIME_SECONDS / 60)
        assert isinstance(handler, SupportsTouch)
        key, untouched = new_storage_id(), new_storage_id()
        handler.write(key, "kept alive")
        handler.write(untouched, "left alone")
        time.sleep(TOUCH_AFTER_SECONDS)
        assert handler.touch(key) is True
        time.sleep(READ_AFTER_TOUCH_SECONDS)
        assert handler.read(untouched) == ""  # the wait did pass the first expiry
        assert handler.read(key) == "kept alive"


class WriteExistingConformance(_ConfigFixtures):
    """For a handler with ``write_existing``: it writes only over a record that still exists."""

    def test_handler_supports_write_existing(self, handler: SessionHandler) -> None:
        assert isinstance(handler, SupportsWriteExisting)

    def test_write_existing_updates_a_live_record(self, handler: SessionHandler) -> None:
        assert isinstance(handler, SupportsWriteExisting)
        key = new_storage_id()
        handler.write(key, "first")
        assert handler.write_existing(key, "second") is True
        assert handler.read(key) == "second"

    def test_write_existing_never_creates_a_record(self, handler: SessionHandler) -> None:
        assert isinstance(handler, SupportsWriteExisting)
        key = new_storage_id()
        assert handler.write_existing(key, "resurrected?") is False
        assert handler.read(key) == ""

    def test_write_existing_after_destroy_writes_nothing(self, handler: SessionHandler) -> None:
        assert isinstance(handler, SupportsWriteExisting)
        key = new_storage_id()
        handler.write(key, "logged in")
        handler.destroy(key)
        assert handler.write_existing(key, "logged in, again?") is False
        assert handler.read(key) == ""


class AsyncWriteExistingConformance(_ConfigFixtures):
    """For an async handler with ``write_existing`` (use with :class:`AsyncHandlerConformance`)."""

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


class LockConformance(_ConfigFixtures):
    """For a handler that locks: exclusion, timeouts, expiry and safe release."""

    def test_handler_supports_lock(self, handler: SessionHandler) -> None:
        assert isinstance(handler, SupportsLock)

    def test_lock_can_be_taken_again_after_release(self, handler: SessionHandler) -> None:
        assert isinstance(handler, SupportsLock)
        key = new_storage_id()
        with handler.lock(key, lock_seconds=5, wait_seconds=1):
            pass
        with handler.lock(key, lock_seconds=5, wait_seconds=0.5):
            pass

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

    def test_lock_of_a_dead_holder_expires(self, handler: SessionHandler) -> None:
        assert isinstance(handler, SupportsLock)
        key = new_storage_id()
        abandoned = handler.lock(key, lock_seconds=DEAD_HOLDER_LOCK_SECONDS, wait_seconds=1)
        abandoned.__enter__()  # never exited: the holder "died"
        started = time.monotonic()
        with handler.lock(key, lock_seconds=5, wait_seconds=5):
            waited = time.monotonic() - started
        _assert_waited_for_the_dead_holder(waited)

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


class AsyncHandlerConformance(_ConfigFixtures):
    """The contract every :class:`~satchel.AsyncSessionHandler` keeps."""

    gc_removes_expired: ClassVar[bool] = True

    @pytest.fixture
    def satchel_async_handler_factory(self) -> AsyncFactory:
        pytest.fail(
            "provide the satchel_async_handler_factory fixture in your test class", pytrace=False
        )

    @pytest.fixture
    def run_with_handler(
        self, satchel_async_handler_factory: AsyncFactory, satchel_base_config: Mapping[str, Any]
    ) -> Callable[..., Any]:
        """Run ``body(handler)`` in a fresh event loop with a handler built inside it."""

        def run(
            body: Callable[[AsyncSessionHandler], Coroutine[Any, Any, T]], **overrides: Any
        ) -> T:
            async def main() -> T:
                handler = satchel_async_handler_factory(_config(satchel_base_config, **overrides))
                try:
                    return await body(handler)
                finally:
                    await handler.close()

            return _run(main())

        return run

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
        self, run_with_handler: Callable[..., Any]
    ) -> None:
        async def body(handler: AsyncSessionHandler) -> None:
            idle, live = new_storage_id(), new_storage_id()
            await handler.write(idle, "idle")
            await asyncio.sleep(IDLE_SLEEP_SECONDS)
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


class AsyncLockConformance(_ConfigFixtures):
    """For an async handler that locks (use with :class:`AsyncHandlerConformance`)."""

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


class AsyncTouchConformance(_ConfigFixtures):
    """For an async handler with ``touch`` (use with :class:`AsyncHandlerConformance`)."""

    def test_async_touch_extends_the_expiry(self, run_with_handler: Callable[..., Any]) -> None:
        async def body(handler: AsyncSessionHandler) -> None:
            assert isinstance(handler, AsyncSupportsTouch)
            key, untouched = new_storage_id(), new_storage_id()
            await handler.write(key, "kept alive")
            await handler.write(untouched, "left alone")
            await handler.touch(new_storage_id())  # a missing id is harmless
            await asyncio.sleep(TOUCH_AFTER_SECONDS)
            assert await handler.touch(key) is True
            await asyncio.sleep(READ_AFTER_TOUCH_SECONDS)
            assert await handler.read(untouched) == ""  # the wait did pass the first expiry
            assert await handler.read(key) == "kept alive"

        run_with_handler(body, lifetime=TOUCH_LIFETIME_SECONDS / 60)
