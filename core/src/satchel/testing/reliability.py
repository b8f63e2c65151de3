"""The reliability suite: no resurrected logouts, no lost updates under load.

Like the conformance suite, subclass these classes in a ``Test…`` class and
provide one fixture, ``satchel_manager_factory``:
``factory(clock=None, **config_overrides) -> SessionManager``, a manager on
your driver with the given config keys on top of the ones it needs, and
``clock`` (when given) passed on to :class:`~satchel.SessionManager`::

    import pytest
    from satchel import SessionConfig, SessionManager
    from satchel.testing import ConcurrencyConformance, ResurrectionConformance

    class TestMongoReliability(ResurrectionConformance, ConcurrencyConformance):
        @pytest.fixture
        def satchel_manager_factory(self, mongo_url):
            def make(clock=None, **overrides):
                config = {"driver": "mongo", "connection": mongo_url, "lottery": [0, 1]}
                return SessionManager(SessionConfig.from_dict({**config, **overrides}), clock=clock)

            return make

* :class:`ResurrectionConformance`: a request that loaded a session before
  another one ended it (``invalidate()``, ``regenerate(destroy=True)``) saves
  late, with changed data or only a refresh; the save reports
  :attr:`~satchel.SaveOutcome.ENDED` and the old id stays empty (Rack
  CVE-2025-46336); so does one that moved the session to a new id meanwhile
  (``regenerate``, ``migrate``), which writes nothing under the new id either; and a
  ``merge_on_save`` save into a record that expired during the request writes
  nothing. Needs ``write_existing`` or core's read-then-write fallback.
* :class:`AsyncResurrectionConformance`: the same race through the async twin.
* :class:`ConcurrencyConformance`: 40 overlapping requests of one session
  through the WSGI and the ASGI middleware; with ``block = true`` (alone or with
  ``merge_on_save``) every increment survives, with ``merge_on_save`` every
  request's own key. The
  controls without either must lose writes, so the suite can fail. What a
  merge applies: a ``forget`` reaches the store, a key the request only read is
  never written back over another request's change, and the merged session is
  held to ``max_payload_bytes``. And 200 requests with made-up ids under
  ``block = true`` leave the store as it was (the locks they took leave no
  record). Needs a driver that locks, and ``stored_state`` overridden to list
  what the store holds.

Class attributes tune it: ``handler_type`` / ``async_handler_type`` (the
handler classes the manager must build), ``clock_start`` (the fake clock's
first reading; ``None`` for the real time), ``close_async_handler`` (close the
async twin inside the event loop that used it), ``released_lock_lingers_seconds``
(how long a released lock may stay in the store before it expires by itself).
Override ``stored_state(manager)`` to return every record the store holds
(sessions and locks, say as sets of keys): the suite compares it before and
after a late save, and before and after the made-up ids. Override the ``via``
fixture to run only some of ``"wsgi"`` and ``"asgi"``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import ClassVar

import pytest

from satchel.errors import SessionTooLarge
from satchel.ids import generate_id
from satchel.manager import SessionManager
from satchel.store import SaveOutcome, Session
from satchel.testing.concurrency import (
    REQUESTS,
    Via,
    concurrent_distinct_keys,
    concurrent_increments,
    seed_session,
    untouched_requests,
)

ManagerFactory = Callable[..., SessionManager]

ENDINGS: dict[str, Callable[[Session], None]] = {
    "invalidate": lambda session: session.invalidate(),
    "regenerate-destroy": lambda session: session.regenerate(destroy=True),
}
# What request A does to the session it loaded before B ended it: a new id, old data.
MOVES: dict[str, Callable[[Session], None]] = {
    "regenerate-destroy": lambda session: session.regenerate(destroy=True),
    "regenerate": lambda session: session.regenerate(),
    "migrate": lambda session: session.migrate(),
}
TOUCH_INTERVAL_SECONDS = 60
PAST_THE_TOUCH_INTERVAL = 120  # a save this much later is a refresh, even unchanged
UNKNOWN_ID_REQUESTS = 200
MERGE_LIMIT = 8 * 1024  # max_payload_bytes in the merge size test


class Clock:
    """A clock that stands still until a test moves ``now``."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now


def logged_in(manager: SessionManager) -> str:
    """Store a logged-in session; return its cookie value."""
    session = manager.start(None)
    session.put("user_id", 42)
    session.save()
    return session.cookie_value()


class _ManagerFixtures:
    handler_type: ClassVar[type | tuple[type, ...] | None] = None
    async_handler_type: ClassVar[type | tuple[type, ...] | None] = None
    clock_start: ClassVar[float | None] = None

    @pytest.fixture
    def satchel_manager_factory(self) -> ManagerFactory:
        pytest.fail("provide the satchel_manager_factory fixture in your test class", pytrace=False)

    def new_clock(self) -> Clock:
        return Clock(self.clock_start)

    def check_async_handler(self, handler: object) -> None:
        if self.async_handler_type is not None:
            assert isinstance(handler, self.async_handler_type)

    def check_handlers(self, manager: SessionManager) -> None:
        if self.handler_type is not None:
            assert isinstance(manager.handler(), self.handler_type)
        self.check_async_handler(manager.async_handler())

    def stored_state(self, manager: SessionManager) -> object:
        """Every record the store holds under the manager's config (sessions, locks), to
        compare before and after; override it. :class:`ConcurrencyConformance` needs it."""
        return None

    def assert_nothing_stored(self, manager: SessionManager, cookie: str) -> None:
        """The ended session's id holds no record, read past core."""
        assert manager.handler().read(manager.storage_key(cookie)) == ""

    def assert_not_moved(self, manager: SessionManager, cookie: str, moved: Session) -> None:
        """A session moved to a new id after it ended left nothing under either id."""
        assert moved.cookie_action() is None  # never clobber the cookie B just sent
        assert moved.id != cookie
        self.assert_nothing_stored(manager, cookie)
        self.assert_nothing_stored(manager, moved.id)
        assert manager.start(moved.id).all() == {}


class ResurrectionConformance(_ManagerFixtures):
    """A late save of an ended session writes nothing (sync)."""

    @pytest.mark.parametrize("ending", list(ENDINGS))
    def test_a_late_write_does_not_resurrect(
        self, satchel_manager_factory: ManagerFactory, ending: str
    ) -> None:
        manager = satchel_manager_factory(
            clock=self.new_clock(), touch_interval=TOUCH_INTERVAL_SECONDS
        )
        cookie = logged_in(manager)
        slow = manager.start(cookie)  # request A: loaded before the logout
        quick = manager.start(cookie)  # request B: ends the session
        ENDINGS[ending](quick)
        quick.save()
        after_logout = self.stored_state(manager)
        slow.put("cart", ["apple"])
        assert slow.save() is SaveOutcome.ENDED
        assert slow.cookie_action() is None  # never clobber the cookie B just sent
        assert self.stored_state(manager) == after_logout  # nothing written for the old id
        revived = manager.start(cookie)
        assert revived.all() == {}
        assert revived.id != cookie
        self.assert_nothing_stored(manager, cookie)

    def test_a_late_refresh_does_not_resurrect(
        self, satchel_manager_factory: ManagerFactory
    ) -> None:
        clock = self.new_clock()
        manager = satchel_manager_factory(clock=clock, touch_interval=TOUCH_INTERVAL_SECONDS)
        cookie = logged_in(manager)
        clock.now += PAST_THE_TOUCH_INTERVAL  # A's save would be a refresh
        slow = manager.start(cookie)
        slow.get("user_id")
        quick = manager.start(cookie)
        quick.invalidate()
        quick.save()
        assert slow.save() is SaveOutcome.ENDED
        assert manager.start(cookie).all() == {}
        self.assert_nothing_stored(manager, cookie)

    def test_a_merge_into_a_record_that_expired_meanwhile_writes_nothing(
        self, satchel_manager_factory: ManagerFactory
    ) -> None:
        clock = self.new_clock()
        manager = satchel_manager_factory(clock=clock, merge_on_save=True)
        cookie = logged_in(manager)
        slow = manager.start(cookie)  # loaded while the session was live
        slow.get("user_id")
        stored = manager.handler().read(manager.storage_key(cookie))
        clock.now += manager.config.lifetime_seconds + 1  # it idles out during the request
        slow.put("cart", ["plum"])
        assert slow.save() is SaveOutcome.ENDED
        assert slow.cookie_action() is None
        assert manager.handler().read(manager.storage_key(cookie)) == stored  # nothing written
        assert manager.start(cookie).all() == {}  # still expired, not revived

    def test_a_late_write_under_merge_on_save_does_not_resurrect(
        self, satchel_manager_factory: ManagerFactory
    ) -> None:
        manager = satchel_manager_factory(merge_on_save=True)
        cookie = logged_in(manager)
        slow = manager.start(cookie)
        slow.get("user_id")
        quick = manager.start(cookie)
        quick.invalidate()
        quick.save()
        slow.put("cart", ["plum"])
        assert slow.save() is SaveOutcome.ENDED
        assert manager.start(cookie).all() == {}
        self.assert_nothing_stored(manager, cookie)

    @pytest.mark.parametrize("ending", list(ENDINGS))
    @pytest.mark.parametrize("move", list(MOVES))
    def test_a_late_new_id_does_not_resurrect(
        self, satchel_manager_factory: ManagerFactory, ending: str, move: str
    ) -> None:
        manager = satchel_manager_factory()
        cookie = logged_in(manager)
        slow = manager.start(cookie)  # request A: loaded before the logout
        quick = manager.start(cookie)
        ENDINGS[ending](quick)
        quick.save()
        after_logout = self.stored_state(manager)
        MOVES[move](slow)  # A then logs in again, say: the old data under a new id
        assert slow.save() is SaveOutcome.ENDED
        assert self.stored_state(manager) == after_logout
        self.assert_not_moved(manager, cookie, slow)

    @pytest.mark.parametrize("move", list(MOVES))
    def test_a_new_id_for_a_live_session_still_writes(
        self, satchel_manager_factory: ManagerFactory, move: str
    ) -> None:
        manager = satchel_manager_factory()
        cookie = logged_in(manager)
        session = manager.start(cookie)
        MOVES[move](session)
        assert session.save() is SaveOutcome.WRITTEN
        assert manager.start(session.cookie_value()).all() == {"user_id": 42}
        kept = manager.start(cookie)
        assert kept.all() == ({} if move == "regenerate-destroy" else {"user_id": 42})

    def test_ordinary_saves_of_a_live_session_still_write(
        self, satchel_manager_factory: ManagerFactory
    ) -> None:
        manager = satchel_manager_factory()
        cookie = logged_in(manager)
        first = manager.start(cookie)
        second = manager.start(cookie)
        first.put("a", 1)
        assert first.save() is SaveOutcome.WRITTEN
        second.put("b", 2)
        assert second.save() is SaveOutcome.WRITTEN  # last writer wins without blocking or merging
        assert manager.start(cookie).get("b") == 2


class AsyncResurrectionConformance(_ManagerFixtures):
    """A late save of an ended session writes nothing (through the async twin)."""

    close_async_handler: ClassVar[bool] = False

    def race(
        self,
        manager: SessionManager,
        cookie: str,
        ending: str,
        *,
        change: bool,
        move: str | None = None,
    ) -> Session:
        """Request A loads, B ends the session, then A (after ``MOVES[move]``) saves: A."""

        async def run() -> Session:
            twin = manager.async_handler()
            self.check_async_handler(twin)
            try:
                slow = await manager.astart(cookie)
                if not change:
                    slow.get("user_id")  # only the idle expiry is due: a refresh
                quick = await manager.astart(cookie)
                ENDINGS[ending](quick)
                await quick.asave()
                if change:
                    slow.put("cart", ["pear"])
                if move is not None:
                    MOVES[move](slow)
                await slow.asave()
                return slow
            finally:
                if self.close_async_handler:
                    await twin.close()

        return asyncio.run(run())

    @pytest.mark.parametrize("ending", list(ENDINGS))
    @pytest.mark.parametrize("move", list(MOVES))
    def test_async_late_new_id_does_not_resurrect(
        self, satchel_manager_factory: ManagerFactory, ending: str, move: str
    ) -> None:
        manager = satchel_manager_factory()
        cookie = logged_in(manager)
        slow = self.race(manager, cookie, ending, change=False, move=move)
        assert slow.last_outcome is SaveOutcome.ENDED
        self.assert_not_moved(manager, cookie, slow)

    @pytest.mark.parametrize("ending", list(ENDINGS))
    def test_async_late_write_does_not_resurrect(
        self, satchel_manager_factory: ManagerFactory, ending: str
    ) -> None:
        manager = satchel_manager_factory(
            clock=self.new_clock(), touch_interval=TOUCH_INTERVAL_SECONDS
        )
        cookie = logged_in(manager)
        assert self.race(manager, cookie, ending, change=True).last_outcome is SaveOutcome.ENDED
        assert manager.start(cookie).all() == {}
        self.assert_nothing_stored(manager, cookie)

    @pytest.mark.parametrize("ending", list(ENDINGS))
    def test_async_late_refresh_does_not_resurrect(
        self, satchel_manager_factory: ManagerFactory, ending: str
    ) -> None:
        clock = self.new_clock()
        manager = satchel_manager_factory(clock=clock, touch_interval=TOUCH_INTERVAL_SECONDS)
        cookie = logged_in(manager)
        clock.now += PAST_THE_TOUCH_INTERVAL
        assert self.race(manager, cookie, ending, change=False).last_outcome is SaveOutcome.ENDED
        assert manager.start(cookie).all() == {}
        self.assert_nothing_stored(manager, cookie)


class ConcurrencyConformance(_ManagerFixtures):
    """Overlapping requests of one session keep every write with ``block`` or ``merge_on_save``;
    requests with made-up ids under ``block`` leave nothing in the store."""

    requests: ClassVar[int] = REQUESTS
    # How long a released lock may stay in the store before it expires by itself
    # (for a store that marks a lock released and lets the mark expire later).
    released_lock_lingers_seconds: ClassVar[float] = 0.0

    @pytest.fixture(params=["wsgi", "asgi"])
    def via(self, request: pytest.FixtureRequest) -> Via:
        """The middleware the requests go through; override it to run only some."""
        value: Via = request.param
        return value

    def test_blocking_keeps_every_increment(
        self, satchel_manager_factory: ManagerFactory, via: Via
    ) -> None:
        manager = satchel_manager_factory(block=True)
        self.check_handlers(manager)
        assert concurrent_increments(manager, via=via, requests=self.requests) == self.requests

    def test_blocking_with_merge_on_save_keeps_every_increment(
        self, satchel_manager_factory: ManagerFactory, via: Via
    ) -> None:
        # The save must not take the lock its own request already holds (no reentrancy).
        manager = satchel_manager_factory(block=True, merge_on_save=True)
        self.check_handlers(manager)
        assert concurrent_increments(manager, via=via, requests=self.requests) == self.requests

    def test_without_blocking_increments_are_lost(
        self, satchel_manager_factory: ManagerFactory, via: Via
    ) -> None:
        manager = satchel_manager_factory()
        count = concurrent_increments(manager, via=via, requests=self.requests, block=False)
        assert count < self.requests

    def test_merge_on_save_keeps_every_key(
        self, satchel_manager_factory: ManagerFactory, via: Via
    ) -> None:
        manager = satchel_manager_factory(merge_on_save=True)
        keys = concurrent_distinct_keys(manager, via=via, requests=self.requests)
        assert keys == {f"key{index}" for index in range(self.requests)}

    def test_without_merging_keys_are_lost(
        self, satchel_manager_factory: ManagerFactory, via: Via
    ) -> None:
        manager = satchel_manager_factory()
        keys = concurrent_distinct_keys(manager, via=via, requests=self.requests)
        assert len(keys) < self.requests

    def test_blocking_on_unknown_ids_leaves_nothing_in_the_store(
        self, satchel_manager_factory: ManagerFactory, via: Via
    ) -> None:
        """Made-up ids under ``block``, to a page that never touches the session: the
        locks they took leave no record, so the store holds what it held before."""
        manager = satchel_manager_factory(block=True)
        seed_session(manager, {"seed": True})  # the store is in use
        before = self.stored_state(manager)
        if before is None:
            pytest.fail("override stored_state() to list what the store holds", pytrace=False)
        cookies = [generate_id() for _ in range(UNKNOWN_ID_REQUESTS)]
        statuses = untouched_requests(manager, cookies, via=via)
        assert set(statuses) == {200}
        time.sleep(self.released_lock_lingers_seconds)
        assert self.stored_state(manager) == before

    def test_merge_on_save_applies_a_forget(self, satchel_manager_factory: ManagerFactory) -> None:
        # A logout that forgets the user id, while another request of the session writes.
        manager = satchel_manager_factory(merge_on_save=True)
        self.check_handlers(manager)
        cookie = seed_session(manager, {"user_id": 42, "cart": ["apple"]})
        logout = manager.start(cookie)
        other = manager.start(cookie)
        logout.forget("user_id")
        other.put("theme", "dark")
        assert other.save() is SaveOutcome.WRITTEN
        assert logout.save() is SaveOutcome.WRITTEN
        assert manager.start(cookie).all() == {"cart": ["apple"], "theme": "dark"}

    def test_merge_on_save_never_writes_back_a_key_it_only_read(
        self, satchel_manager_factory: ManagerFactory
    ) -> None:
        manager = satchel_manager_factory(merge_on_save=True)
        cookie = seed_session(manager, {"count": 1, "cart": ["apple"]})
        reader = manager.start(cookie)  # loaded before the writer's save
        assert (reader.get("count"), reader.get("cart")) == (1, ["apple"])
        writer = manager.start(cookie)
        writer.increment("count")
        writer.push("cart", "pear")
        assert writer.save() is SaveOutcome.WRITTEN
        reader.put("seen", True)  # a change of its own, so its save merges
        assert reader.save() is SaveOutcome.WRITTEN
        assert manager.start(cookie).all() == {"count": 2, "cart": ["apple", "pear"], "seen": True}

    def test_merge_on_save_holds_the_merged_session_to_max_payload_bytes(
        self, satchel_manager_factory: ManagerFactory
    ) -> None:
        manager = satchel_manager_factory(merge_on_save=True, max_payload_bytes=MERGE_LIMIT)
        cookie = seed_session(manager, {"n": 1})
        first = manager.start(cookie)
        second = manager.start(cookie)
        half = MERGE_LIMIT * 5 // 8
        first.put("a", "x" * half)
        assert first.save() is SaveOutcome.WRITTEN
        second.put("b", "y" * half)  # fits alone, not beside the first request's value
        with pytest.raises(SessionTooLarge) as caught:
            second.save()
        assert caught.value.limit_name == "max_payload_bytes"
        assert manager.start(cookie).all() == {"n": 1, "a": "x" * half}
