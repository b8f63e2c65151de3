"""The ``cookie`` driver: the whole session lives in the cookie, encrypted with AES-GCM.

Core does the work (see :class:`satchel.store.Session`): the payload is
encrypted and authenticated under ``secret_key`` with the cookie's name as
associated data, so a cookie made for another app or another cookie name is
refused. The handler itself stores nothing; it marks the driver as one whose
payload travels in the cookie. A cookie-driver session cannot be revoked
server-side before it expires.
"""

from __future__ import annotations

from satchel.config import SessionConfig
from satchel.errors import ConfigError
from satchel.handler import SessionHandler


class CookieSessionHandler(SessionHandler):
    """The marker handler of the cookie driver: no server-side storage at all."""

    stores_in_cookie = True
    runs_on_event_loop = True  # nothing to wait for: no worker thread for the async twin

    @classmethod
    def from_config(cls, config: SessionConfig) -> CookieSessionHandler:
        if not config.secret_key:
            raise ConfigError("secret_key", "must be set for the cookie driver")
        return cls()

    def read(self, session_id: str) -> str:
        return ""

    def write(self, session_id: str, data: str) -> bool:
        return True

    def destroy(self, session_id: str) -> bool:
        return True

    def gc(self, lifetime: int) -> int:
        return 0
