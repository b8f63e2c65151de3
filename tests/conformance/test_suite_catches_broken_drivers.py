"""The conformance suite fails broken drivers: each flaw below makes exactly its tests fail."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BROKEN_DRIVERS = textwrap.dedent(
    """
    import contextlib
    import pickle
    import pytest
    from satchel.drivers import ArraySessionHandler
    from satchel.testing import (
        AsyncHandlerConformance,
        AsyncLockConformance,
        AsyncTouchConformance,
        HandlerConformance,
        LockConformance,
        TouchConformance,
        WriteExistingConformance,
    )
    from satchel.threaded import ThreadedAsyncHandler


    class ForgetsNothing(ArraySessionHandler):
        def destroy(self, session_id):
            return True


    class Truncates(ArraySessionHandler):
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


    class TouchForgets(ArraySessionHandler):
        def touch(self, session_id):
            return session_id in self._entries


    class PlantsReads(ArraySessionHandler):
        # Claims to keep nothing below, yet reads back what was written.
        pass


    class Unpickles(ArraySessionHandler):
        def read(self, session_id):
            data = super().read(session_id)
            with contextlib.suppress(Exception):
                pickle.loads(data.encode("latin-1"))  # the flaw under test
            return data


    class Resurrects(ArraySessionHandler):
        def write_existing(self, session_id, data, metadata=None):
            return self.write(session_id, data)


    class GcKeepsEverything(ArraySessionHandler):
        def read(self, session_id):
            entry = self._entries.get(session_id)
            return entry.data if entry else ""

        def gc(self, lifetime):
            return 0


    def suite(handler_class, *mixins):
        class Suite(HandlerConformance, *mixins):
            @pytest.fixture
            def satchel_handler_factory(self):
                return handler_class.from_config

        return Suite


    def async_suite(handler_class, *mixins):
        class Suite(AsyncHandlerConformance, *mixins):
            @pytest.fixture
            def satchel_async_handler_factory(self):
                return lambda config: ThreadedAsyncHandler(handler_class.from_config(config))

        return Suite


    TestForgetsNothing = suite(ForgetsNothing)
    TestTruncates = suite(Truncates)
    TestNeverLocks = suite(NeverLocks, LockConformance)
    TestResurrects = suite(Resurrects, WriteExistingConformance)
    TestGcKeepsEverything = suite(GcKeepsEverything)
    TestUnpickles = suite(Unpickles)
    TestLockExpiresEarly = suite(LockExpiresEarly, LockConformance)
    TestAsyncLockExpiresEarly = async_suite(LockExpiresEarly, AsyncLockConformance)
    TestReleasesAnyHolder = suite(ReleasesAnyHolder, LockConformance)
    TestAsyncReleasesAnyHolder = async_suite(ReleasesAnyHolder, AsyncLockConformance)
    TestTouchForgets = suite(TouchForgets, TouchConformance)
    TestAsyncTouchForgets = async_suite(TouchForgets, AsyncTouchConformance)


    class TestPlantsReads(suite(PlantsReads)):
        keeps_nothing = True
    """
)

EXPECTED_FAILURES = {
    "TestForgetsNothing": {"test_destroy_removes_the_session"},
    "TestTruncates": {"test_a_megabyte_payload_round_trips"},
    "TestNeverLocks": {
        "test_a_held_lock_makes_others_time_out",
        "test_waiter_gets_the_lock_once_released",
        "test_expired_holder_never_releases_the_next_holders_lock",
        "test_lock_of_a_dead_holder_expires",
    },
    "TestUnpickles": {"test_a_stored_pickle_runs_no_code_and_starts_a_fresh_session"},
    "TestLockExpiresEarly": {"test_lock_of_a_dead_holder_expires"},
    "TestAsyncLockExpiresEarly": {"test_async_lock_of_a_dead_holder_expires"},
    "TestReleasesAnyHolder": {"test_expired_holder_never_releases_the_next_holders_lock"},
    "TestAsyncReleasesAnyHolder": {
        "test_async_expired_holder_never_releases_the_next_holders_lock"
    },
    "TestTouchForgets": {"test_touch_extends_the_expiry"},
    "TestAsyncTouchForgets": {"test_async_touch_extends_the_expiry"},
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
    },
    "TestResurrects": {
        "test_write_existing_never_creates_a_record",
        "test_write_existing_after_destroy_writes_nothing",
    },
    "TestGcKeepsEverything": {"test_gc_removes_only_idle_sessions"},
}


@pytest.fixture(scope="module")
def failures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    folder: Path = tmp_path_factory.mktemp("broken")
    (folder / "test_broken_drivers.py").write_text(BROKEN_DRIVERS)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=folder,
    )
    found: dict[str, set[str]] = {}
    for suite, test in re.findall(r"FAILED \S*::(Test\w+)::(test_\w+)", result.stdout):
        found.setdefault(suite, set()).add(test)
    return found


@pytest.mark.parametrize("suite", list(EXPECTED_FAILURES))
def test_each_flaw_fails_exactly_its_tests(failures: dict[str, set[str]], suite: str) -> None:
    assert failures.get(suite, set()) == EXPECTED_FAILURES[suite]
