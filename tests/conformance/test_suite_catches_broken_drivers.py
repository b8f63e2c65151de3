"""The conformance suite fails broken drivers: each flaw below makes exactly its tests fail."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from satchel.testing import SYNC, WRITE_EXISTING, DriverConformance

BROKEN_DRIVERS = textwrap.dedent(
    """
    import contextlib
    import pickle
    import pytest
    from satchel.drivers import ArraySessionHandler
    from satchel.testing import ASYNC, LOCK, SYNC, WRITE_EXISTING, DriverConformance, MovingClock
    from satchel.threaded import ThreadedAsyncHandler


    class Unlocked(ArraySessionHandler):
        # No lock: the lock tests wait in real time, and these flaws are elsewhere.
        lock = None


    class ForgetsNothing(Unlocked):
        def destroy(self, session_id):
            return True


    class Truncates(Unlocked):
        def write(self, session_id, data):
            return super().write(session_id, data[:65536])


    class NeverLocks(ArraySessionHandler):
        @contextlib.contextmanager
        def lock(self, session_id, *, lock_seconds, wait_seconds):
            yield


    class LockExpiresEarly(ArraySessionHandler):
        def lock(self, session_id, *, lock_seconds, wait_seconds):
            return super().lock(
                session_id, lock_seconds=lock_seconds / 4, wait_seconds=wait_seconds
            )


    class ReleasesAnyHolder(ArraySessionHandler):
        @contextlib.contextmanager
        def lock(self, session_id, *, lock_seconds, wait_seconds):
            with super().lock(session_id, lock_seconds=lock_seconds, wait_seconds=wait_seconds):
                yield
            self._locks.pop(session_id, None)  # frees whoever holds it by now


    class PlantsReads(Unlocked):
        # Claims to keep nothing below, yet reads back what was written.
        pass


    class Unpickles(Unlocked):
        def read(self, session_id):
            data = super().read(session_id)
            with contextlib.suppress(Exception):
                pickle.loads(data.encode("latin-1"))  # the flaw under test
            return data


    class Resurrects(Unlocked):
        def write_existing(self, session_id, data, metadata=None):
            return self.write(session_id, data)


    class WritesOverExpired(Unlocked):
        def write_existing(self, session_id, data, metadata=None):
            if session_id not in self._entries:  # there, but maybe long expired
                return False
            return self.write(session_id, data)


    class ReadIgnoresLifetime(Unlocked):
        def read(self, session_id):
            entry = self._entries.get(session_id)
            return entry.data if entry else ""


    class GcKeepsEverything(ReadIgnoresLifetime):
        def gc(self, lifetime):
            return 0


    class GcInMinutes(Unlocked):
        def gc(self, lifetime):
            return super().gc(lifetime / 60)


    class OverwriteKeepsFirstTime(Unlocked):
        def write(self, session_id, data):
            first = self._entries.get(session_id)
            super().write(session_id, data)
            if first is not None:
                self._entries[session_id].written_at = first.written_at
            return True


    class CachesReads(Unlocked):
        # A read cache that destroy forgets to clear.
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.cache = {}

        def read(self, session_id):
            if session_id not in self.cache:
                self.cache[session_id] = super().read(session_id)
            return self.cache[session_id]

        def write(self, session_id, data):
            self.cache.pop(session_id, None)
            return super().write(session_id, data)


    def suite(handler_class, *declared):
        # The kit on handler_class, on a moving clock, for the capabilities declared.

        class Suite(DriverConformance):
            capabilities = frozenset(declared)

            @pytest.fixture
            def satchel_clock(self):
                return MovingClock()

            @pytest.fixture
            def satchel_handler_factory(self, satchel_clock):
                if SYNC not in declared:
                    return None
                return lambda config: handler_class(config.lifetime_seconds, clock=satchel_clock)

            @pytest.fixture
            def satchel_async_handler_factory(self, satchel_clock):
                if ASYNC not in declared:
                    return None
                return lambda config: ThreadedAsyncHandler(
                    handler_class(config.lifetime_seconds, clock=satchel_clock)
                )

        return Suite


    TestForgetsNothing = suite(ForgetsNothing, SYNC, WRITE_EXISTING)
    TestTruncates = suite(Truncates, SYNC, WRITE_EXISTING)
    TestNeverLocks = suite(NeverLocks, SYNC, LOCK, WRITE_EXISTING)
    TestResurrects = suite(Resurrects, SYNC, WRITE_EXISTING)
    TestAsyncResurrects = suite(Resurrects, ASYNC, WRITE_EXISTING)
    TestWritesOverExpired = suite(WritesOverExpired, SYNC, WRITE_EXISTING)
    TestAsyncWritesOverExpired = suite(WritesOverExpired, ASYNC, WRITE_EXISTING)
    TestReadIgnoresLifetime = suite(ReadIgnoresLifetime, SYNC, WRITE_EXISTING)
    TestAsyncReadIgnoresLifetime = suite(ReadIgnoresLifetime, ASYNC, WRITE_EXISTING)
    TestGcKeepsEverything = suite(GcKeepsEverything, SYNC, WRITE_EXISTING)
    TestGcInMinutes = suite(GcInMinutes, SYNC, WRITE_EXISTING)
    TestAsyncGcInMinutes = suite(GcInMinutes, ASYNC, WRITE_EXISTING)
    TestOverwriteKeepsFirstTime = suite(OverwriteKeepsFirstTime, SYNC, WRITE_EXISTING)
    TestAsyncOverwriteKeepsFirstTime = suite(OverwriteKeepsFirstTime, ASYNC, WRITE_EXISTING)
    TestCachesReads = suite(CachesReads, SYNC, WRITE_EXISTING)
    TestAsyncCachesReads = suite(CachesReads, ASYNC, WRITE_EXISTING)
    TestUnpickles = suite(Unpickles, SYNC, WRITE_EXISTING)
    TestLockExpiresEarly = suite(LockExpiresEarly, SYNC, LOCK, WRITE_EXISTING)
    TestAsyncLockExpiresEarly = suite(LockExpiresEarly, ASYNC, LOCK, WRITE_EXISTING)
    TestReleasesAnyHolder = suite(ReleasesAnyHolder, SYNC, LOCK, WRITE_EXISTING)
    TestAsyncReleasesAnyHolder = suite(ReleasesAnyHolder, ASYNC, LOCK, WRITE_EXISTING)
    TestMisdeclared = suite(ArraySessionHandler, SYNC, WRITE_EXISTING)  # it can lock too


    class TestPlantsReads(suite(PlantsReads, SYNC, WRITE_EXISTING)):
        keeps_nothing = True


    class TestUndeclared(DriverConformance):
        # Nothing declared: what the handler lacks (a lock, an async twin) is skipped.
        @pytest.fixture
        def satchel_clock(self):
            return MovingClock()

        @pytest.fixture
        def satchel_handler_factory(self, satchel_clock):
            return lambda config: Unlocked(config.lifetime_seconds, clock=satchel_clock)
    """
)

EXPECTED_FAILURES = {
    "TestForgetsNothing": {
        "test_destroy_removes_the_session",
        "test_destroy_after_a_read_removes_the_session",
        "test_write_existing_after_destroy_writes_nothing",
    },
    "TestTruncates": {"test_a_megabyte_payload_round_trips"},
    "TestNeverLocks": {
        "test_a_held_lock_makes_others_time_out",
        "test_waiter_gets_the_lock_once_released",
        "test_lock_of_a_dead_holder_expires",
        "test_expired_holder_never_releases_the_next_holders_lock",
    },
    "TestResurrects": {
        "test_write_existing_over_an_expired_record_writes_nothing",
        "test_write_existing_never_creates_a_record",
        "test_write_existing_after_destroy_writes_nothing",
    },
    "TestAsyncResurrects": {
        "test_async_write_existing_over_an_expired_record_writes_nothing",
        "test_async_write_existing_writes_only_over_a_live_record",
    },
    "TestWritesOverExpired": {"test_write_existing_over_an_expired_record_writes_nothing"},
    "TestAsyncWritesOverExpired": {
        "test_async_write_existing_over_an_expired_record_writes_nothing"
    },
    "TestReadIgnoresLifetime": {
        "test_read_honours_the_lifetime_without_gc",
        "test_an_overwrite_restarts_the_lifetime",
        "test_write_existing_over_an_expired_record_writes_nothing",
    },
    "TestAsyncReadIgnoresLifetime": {
        "test_async_read_honours_the_lifetime_without_gc",
        "test_async_overwrite_restarts_the_lifetime",
        "test_async_write_existing_over_an_expired_record_writes_nothing",
    },
    "TestGcKeepsEverything": {
        "test_gc_removes_only_idle_sessions",
        "test_read_honours_the_lifetime_without_gc",
        "test_an_overwrite_restarts_the_lifetime",
        "test_write_existing_over_an_expired_record_writes_nothing",
    },
    "TestGcInMinutes": {"test_gc_counts_the_lifetime_in_seconds"},
    "TestAsyncGcInMinutes": {"test_async_gc_counts_the_lifetime_in_seconds"},
    "TestOverwriteKeepsFirstTime": {"test_an_overwrite_restarts_the_lifetime"},
    "TestAsyncOverwriteKeepsFirstTime": {"test_async_overwrite_restarts_the_lifetime"},
    "TestCachesReads": {"test_destroy_after_a_read_removes_the_session"},
    "TestAsyncCachesReads": {
        "test_async_round_trip_overwrite_and_destroy",
        "test_async_destroy_after_a_read_removes_the_session",
    },
    "TestUnpickles": {"test_a_stored_pickle_runs_no_code_and_starts_a_fresh_session"},
    "TestLockExpiresEarly": {"test_lock_of_a_dead_holder_expires"},
    "TestAsyncLockExpiresEarly": {"test_async_lock_of_a_dead_holder_expires"},
    "TestReleasesAnyHolder": {"test_expired_holder_never_releases_the_next_holders_lock"},
    "TestAsyncReleasesAnyHolder": {
        "test_async_expired_holder_never_releases_the_next_holders_lock"
    },
    "TestMisdeclared": {"test_the_driver_has_the_declared_capabilities"},
    "TestPlantsReads": {
        "test_write_then_read_round_trips",
        "test_overwrite_replaces_the_payload",
        "test_destroy_removes_the_session",
        "test_a_megabyte_payload_round_trips",
        "test_non_ascii_payload_round_trips",
        "test_ids_are_isolated",
        "test_gc_keeps_sessions_within_the_lifetime",
        "test_gc_removes_only_idle_sessions",
        "test_threads_writing_distinct_sessions_corrupt_nothing",
        "test_a_stored_payload_nested_too_deep_starts_a_fresh_session",
        "test_a_save_over_max_payload_bytes_raises_and_keeps_the_stored_session",
        "test_gc_counts_the_lifetime_in_seconds",
        "test_an_overwrite_restarts_the_lifetime",
        "test_destroy_after_a_read_removes_the_session",
        "test_read_honours_the_lifetime_without_gc",
        "test_write_existing_over_an_expired_record_writes_nothing",
    },
}


@pytest.fixture(scope="module")
def kit_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The output of the kit run on the broken drivers."""
    folder: Path = tmp_path_factory.mktemp("broken")
    (folder / "test_broken_drivers.py").write_text(BROKEN_DRIVERS)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rfs",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "-p",
            "no:xdist",
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=folder,
    )
    return result.stdout


@pytest.fixture(scope="module")
def failures(kit_run: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for suite, test in re.findall(r"FAILED \S*::(Test\w+)::(test_\w+)", kit_run):
        found.setdefault(suite, set()).add(test)
    return found


@pytest.mark.parametrize("suite", list(EXPECTED_FAILURES))
def test_each_flaw_fails_exactly_its_tests(failures: dict[str, set[str]], suite: str) -> None:
    assert failures.get(suite, set()) == EXPECTED_FAILURES[suite]


def test_what_an_undeclared_driver_lacks_is_skipped_as_not_applicable(
    kit_run: str, failures: dict[str, set[str]]
) -> None:
    assert "TestUndeclared" not in failures
    assert "not applicable: the driver has no lock" in kit_run
    assert "not applicable: the driver has no async" in kit_run


class _Declared(DriverConformance):
    capabilities = frozenset({SYNC, WRITE_EXISTING})


class _Detected(DriverConformance):
    pass


def test_the_tests_of_undeclared_capabilities_are_not_collected() -> None:
    assert _Declared.test_the_driver_has_the_declared_capabilities is not None
    assert _Declared.test_write_existing_never_creates_a_record is not None
    assert _Declared.test_lock_of_a_dead_holder_expires is None  # type: ignore[comparison-overlap]
    assert _Declared.test_async_megabyte_payload is None  # type: ignore[comparison-overlap]


def test_without_a_declaration_everything_is_collected_but_its_check() -> None:
    assert _Detected.test_lock_of_a_dead_holder_expires is not None
    assert _Detected.test_async_megabyte_payload is not None
    assert _Detected.test_the_driver_has_the_declared_capabilities is None  # type: ignore[comparison-overlap]
