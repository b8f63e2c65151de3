"""satchel: server-side sessions for Python web applications."""

from satchel.config import SessionConfig
from satchel.context import session
from satchel.errors import (
    ConfigError,
    DuplicateDriverError,
    LockTimeout,
    PoolExhausted,
    SatchelError,
    SessionBackendError,
    SessionBusy,
    SessionTooLarge,
    UnknownDriverError,
)
from satchel.handler import AsyncSessionHandler, RequestMetadata, SessionHandler
from satchel.hookspecs import hookimpl
from satchel.manager import SessionManager
from satchel.store import SaveOutcome, Session
from satchel.threaded import ThreadedAsyncHandler

__all__ = [
    "AsyncSessionHandler",
    "ConfigError",
    "DuplicateDriverError",
    "LockTimeout",
    "PoolExhausted",
    "RequestMetadata",
    "SatchelError",
    "SaveOutcome",
    "Session",
    "SessionBackendError",
    "SessionBusy",
    "SessionConfig",
    "SessionHandler",
    "SessionManager",
    "SessionTooLarge",
    "ThreadedAsyncHandler",
    "UnknownDriverError",
    "hookimpl",
    "session",
]
