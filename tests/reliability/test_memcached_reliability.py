"""The memcached driver under concurrent load: no lost updates, no resurrected logouts, no invalid keys.

``satchel.testing.reliability``'s suite (as in ``test_concurrency_builtin.py``
and ``test_resurrection.py``) on real ``memcached`` processes, one server and a
pool of two: 40 overlapping
requests of one session through the WSGI and the ASGI middleware (the async
twin runs the sync handler in worker threads); the controls without ``block``
or ``merge_on_save`` lose writes, so the tests can fail. Then hostile cookies
through the middleware: none ever reaches memcached.

Servers (``tests/fixtures/memcached_servers.py``): ``SATCHEL_TEST_MEMCACHED``
or a ``memcached -I 4m`` started for the run; the pool is always started there. A missing ``memcached`` skips, or fails when
``SATCHEL_REQUIRE_SERVICES`` names ``memcached``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import pytest
from fixtures.hostile_ids import HOSTILE_IDS as SHARED_HOSTILE_IDS
from fixtures.memcached_servers import memcached_keys
from pymemcache.client.base import PooledClient

from satchel import SessionConfig, SessionManager
from satchel.ids import is_valid_id
from satchel.testing import (
    AsyncResurrectionConformance,
    ConcurrencyConformance,
    ResurrectionConformance,
)
from satchel.testing.concurrency import call_wsgi, wsgi_environ
from satchel.wsgi import SessionMiddleware as WsgiSessionMiddleware
from satchel_memcached import (
    AsyncMemcachedSessionHandler,
    MemcachedSessionHandler,
    ThreadedMemcachedSessionHandler,
    is_valid_key,
)

QUICK = {"connect_timeout": 2.0, "timeout": 2.0}


class MemcachedReliability(
    ResurrectionConformance, AsyncResurrectionConformance, ConcurrencyConformance
):
    """``satchel.testing.reliability``'s suite on one memcached topology."""

    connection_fixture: ClassVar[str]
    handler_type = MemcachedSessionHandler
    async_handler_type = (AsyncMemcachedSessionHandler, ThreadedMemcachedSessionHandler)

    @pytest.fixture
    def satchel_manager_factory(
        self, request: pytest.FixtureRequest, unique_prefix: str
    ) -> Callable[..., SessionManager]:
        connection = str(request.getfixturevalue(self.connection_fixture))

        def make(clock: Callable[[], float] | None = None, **config: Any) -> SessionManager:
            settings = {
                "driver": "memcached",
                "connection": connection,
                "prefix": unique_prefix,
                "lottery": [0, 1],
                "options": QUICK,
                **config,
            }
            return SessionManager(SessionConfig.from_dict(settings), clock=clock)

        return make

    def stored_state(self, manager: SessionManager) -> object:
        """Every live key under the test's prefix (sessions and locks), on every server."""
        assert manager.config.connection is not None
        return memcached_keys(manager.config.connection, manager.config.prefix)


class TestSingleServer(MemcachedReliability):
    connection_fixture = "memcached_connection"


class TestPoolOfTwo(MemcachedReliability):
    connection_fixture = "memcached_pool_connection"


# -- hostile ids -----------------------------------------------------------------------

# The ids of tests/fixtures/hostile_ids.py (test_hostile_ids.py's), and more that no memcached key
# may hold: spaces, control characters, DEL, more than 250 bytes, non-ASCII.
HOSTILE_IDS = [
    *SHARED_HOSTILE_IDS,
    "a" * 20 + "\t" + "a" * 19,
    "a" * 39 + "\x7f",
    "a" * 251,
    "a" * 19 + "\r\nflush_all\r\n",
    "a" * 19 + " get x\r\n",
    "\U0001f600" * 40,
]


class RecordingClient:
    """A real pymemcache client that notes every key handed to it."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.keys: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if args and isinstance(args[0], str):
                self.keys.append(args[0])
            return method(*args, **kwargs)

        return call


@pytest.fixture
def recording_manager(
    memcached_connection: str, unique_prefix: str
) -> Iterator[tuple[SessionManager, RecordingClient]]:
    host, _, port = memcached_connection.split(",", maxsplit=1)[0].rpartition(":")
    real = PooledClient((host, int(port)), default_noreply=False, connect_timeout=3, timeout=3)
    recorder = RecordingClient(real)
    manager = SessionManager(
        SessionConfig(
            driver="memcached", prefix=unique_prefix, lottery=(0, 1), options={"client": recorder}
        )
    )
    yield manager, recorder
    real.close()


@pytest.mark.parametrize("hostile", HOSTILE_IDS, ids=range(len(HOSTILE_IDS)))
def test_a_hostile_cookie_never_reaches_memcached(
    recording_manager: tuple[SessionManager, RecordingClient], hostile: str
) -> None:
    """Through the WSGI middleware, with blocking on: a fresh session, and memcached
    sees only valid keys made from the fresh id, never one made from the cookie."""
    manager, recorder = recording_manager

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        session = environ["satchel.session"]
        before = dict(session)
        session.put("visited", True)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [repr(before).encode()]

    middleware = WsgiSessionMiddleware(app, manager, block=True)
    cookie_header = f"{manager.config.cookie}={hostile}"
    status, headers, body = call_wsgi(middleware, wsgi_environ(cookie_header))
    assert status.startswith("200")
    assert body == b"{}"  # a fresh, empty session
    set_cookies = [value for name, value in headers if name.lower() == "set-cookie"]
    assert len(set_cookies) == 1
    new_id = set_cookies[0].split(";", 1)[0].split("=", 1)[1]
    assert is_valid_id(new_id)
    assert new_id != hostile
    if hostile:
        assert hostile not in set_cookies[0]  # nothing echoed
    # Every key memcached was handed is a valid key naming the fresh id (its
    # session record), none made from the hostile cookie: no read, no lock.
    assert recorder.keys
    assert all(is_valid_key(key) for key in recorder.keys)
    fresh_key = manager.config.prefix + manager.storage_key(new_id)
    assert set(recorder.keys) == {fresh_key}
    assert manager.start(new_id).get("visited") is True


def test_hostile_ids_handed_straight_to_the_handler_make_valid_keys(
    memcached_connection: str, unique_prefix: str
) -> None:
    """A third-party caller passing raw ids to the driver: every id round-trips on the
    real server under a key of its own, and the server never sees an invalid key."""
    handler = MemcachedSessionHandler.from_config(
        SessionConfig(driver="memcached", connection=memcached_connection, prefix=unique_prefix)
    )
    digests = SessionManager(SessionConfig())
    ids = [*HOSTILE_IDS, *(digests.storage_key(i) for i in ("x" * 40, "y" * 40))]
    for index, session_id in enumerate(ids):
        assert is_valid_key(handler._key(session_id))
        assert is_valid_key(handler._lock_key(session_id))
        assert handler.write(session_id, f"payload {index}") is True
        with handler.lock(session_id, lock_seconds=5, wait_seconds=1):
            pass
    for index, session_id in enumerate(ids):
        assert handler.read(session_id) == f"payload {index}"
    for session_id in ids:
        handler.destroy(session_id)
        assert handler.read(session_id) == ""
