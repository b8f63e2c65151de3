"""Shared fixtures for the core session tests: a fake clock, managers and a recording driver."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from satchel import RequestMetadata, SessionConfig, SessionHandler, SessionManager
from satchel.store import Session

START = 1_800_000_000.0


class FakeClock:
    """A controllable clock: ``manager.clock()`` returns ``now``; ``advance`` moves it."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingHandler(SessionHandler):
    """A dict-backed driver that records every call and never expires anything.

    Because it never expires a record, every expiry a test sees was decided by core.
    """

    def __init__(self) -> None:
        self.store: dict[str, str] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def open(self, save_path: str, session_name: str) -> bool:
        self.calls.append(("open", (save_path, session_name)))
        return True

    def close(self) -> bool:
        self.calls.append(("close", ()))
        return True

    def read(self, session_id: str) -> str:
        self.calls.append(("read", (session_id,)))
        return self.store.get(session_id, "")

    def write(self, session_id: str, data: str) -> bool:
        self.calls.append(("write", (session_id, data)))
        self.store[session_id] = data
        return True

    def destroy(self, session_id: str) -> bool:
        self.calls.append(("destroy", (session_id,)))
        self.store.pop(session_id, None)
        return True

    def gc(self, lifetime: int) -> int:
        self.calls.append(("gc", (lifetime,)))
        return 0

    def names(self) -> list[str]:
        """The method names called so far, in order."""
        return [name for name, _ in self.calls]

    def count(self, name: str) -> int:
        return sum(1 for called, _ in self.calls if called == name)

    def keys_of(self, name: str) -> list[str]:
        """The session ids (storage keys) passed to every call of ``name``."""
        return [args[0] for called, args in self.calls if called == name]


class MetadataRecordingHandler(RecordingHandler):
    """The recording driver that also takes request metadata, as the database driver does."""

    def __init__(self) -> None:
        super().__init__()
        self.metadata: list[RequestMetadata] = []

    def write_with_metadata(self, session_id: str, data: str, metadata: RequestMetadata) -> bool:
        self.metadata.append(metadata)
        return self.write(session_id, data)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def manager(clock: FakeClock) -> SessionManager:
    """An ``array``-driver manager on the fake clock."""
    return SessionManager(SessionConfig(driver="array"), clock=clock)


@pytest.fixture
def recording() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def metadata_recording() -> MetadataRecordingHandler:
    return MetadataRecordingHandler()


MakeManager = Callable[..., SessionManager]


@pytest.fixture
def make_recording_manager(clock: FakeClock, recording: RecordingHandler) -> MakeManager:
    """Build a manager on the ``recording`` driver (registered with ``extend``) with config overrides."""

    def make(**overrides: Any) -> SessionManager:
        config = SessionConfig(driver="recording", **overrides)
        made = SessionManager(config, clock=clock)
        made.extend("recording", lambda _config: recording)
        return made

    return make


@pytest.fixture
def recording_manager(make_recording_manager: MakeManager) -> SessionManager:
    return make_recording_manager()


@pytest.fixture
def sessions_dir(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def file_manager(clock: FakeClock, sessions_dir: Path) -> SessionManager:
    """A ``file``-driver manager writing into ``tmp_path``, on the fake clock."""
    return SessionManager(SessionConfig(driver="file", files=str(sessions_dir)), clock=clock)


NextRequest = Callable[[SessionManager, Session], Session]


def _next_request(manager: SessionManager, session: Session) -> Session:
    """End the current request (``save``) and start the next one with the cookie it sent."""
    session.save()
    return manager.start(session.cookie_value())


@pytest.fixture
def next_request() -> NextRequest:
    """``next_request(manager, session)``: save, then start the next request with its cookie."""
    return _next_request
