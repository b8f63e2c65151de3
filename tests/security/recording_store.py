"""The array driver, noting every call the manager makes and the key it hands over."""

from __future__ import annotations

from typing import Any

from satchel import SessionConfig, SessionManager
from satchel.drivers import ArraySessionHandler
from satchel.handler import RequestMetadata


class RecordingArray(ArraySessionHandler):
    """An array store whose ``calls`` list every ``(method, key)`` it was asked for, in order."""

    def __init__(self, lifetime_seconds: int = 7200) -> None:
        super().__init__(lifetime_seconds)
        self.calls: list[tuple[str, str]] = []

    def read(self, session_id: str) -> str:
        self.calls.append(("read", session_id))
        return super().read(session_id)

    def write(self, session_id: str, data: str) -> bool:
        self.calls.append(("write", session_id))
        return super().write(session_id, data)

    def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool:
        self.calls.append(("write_existing", session_id))
        return super().write_existing(session_id, data, metadata)

    def destroy(self, session_id: str) -> bool:
        self.calls.append(("destroy", session_id))
        return super().destroy(session_id)


def recording_manager(**config: Any) -> tuple[SessionManager, RecordingArray]:
    """A manager whose driver is a fresh :class:`RecordingArray` (no gc lottery)."""
    store = RecordingArray()
    manager = SessionManager(SessionConfig(driver="recording", lottery=(0, 1), **config))
    manager.extend("recording", lambda config: store)
    return manager, store
