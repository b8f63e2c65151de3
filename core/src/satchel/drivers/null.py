"""The ``null`` driver: stores nothing (sessions last one request)."""

from __future__ import annotations

from satchel.config import SessionConfig
from satchel.handler import SessionHandler


class NullSessionHandler(SessionHandler):
    """Reads nothing, keeps nothing; for apps and tests that want no session state."""

    process_local = True  # nothing is stored, so nothing is shared
    runs_on_event_loop = True  # nothing to wait for: no worker thread for the async twin

    @classmethod
    def from_config(cls, config: SessionConfig) -> NullSessionHandler:
        return cls()

    def read(self, session_id: str) -> str:
        return ""

    def write(self, session_id: str, data: str) -> bool:
        return True

    def destroy(self, session_id: str) -> bool:
        return True

    def gc(self, lifetime: int) -> int:
        return 0
