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
    import pytest
    from satchel.drivers import ArraySessionHandler
    from satchel.testing import HandlerConformance, LockConformance, WriteExistingConformance


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


    TestForgetsNothing = suite(ForgetsNothing)
    TestTruncates = suite(Truncates)
    TestNeverLocks = suite(NeverLocks, LockConformance)
    TestResurrects = suite(Resurrects, WriteExistingConformance)
    TestGcKeepsEverything = suite(GcKeepsEverything)
    """
)

EXPECTED_FAILURES = {
    "TestForgetsNothing": {"test_destroy_removes_the_session"},
    "TestTruncates": {"test_a_megabyte_payload_round_trips"},
    "TestNeverLocks": {
        "test_a_held_lock_makes_others_time_out",
        "test_waiter_gets_the_lock_once_released",
        "test_expired_holder_never_releases_the_next_holders_lock",
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
