"""Issue 6 on the memcached driver: no lost updates, no resurrected logouts, no invalid keys.

The same tests as ``test_concurrency_builtin.py`` and ``test_resurrection.py``,
on real ``memcached`` processes, one server and a pool of two: 40 overlapping
requests of one session through the WSGI and the ASGI middleware (the async
twin runs the sync handler in worker threads); the controls without ``block``
or ``merge_on_save`` lose writes, so the tests can fail. Then hostile cookies
through the middleware: none ever reaches memcached.

Servers: ``SATCHEL_TEST_MEMCACHED`` or a ``memcached -I 4m`` started here; the
pool is always started here. A missing ``memcached`` skips, or fails when
``SATCHEL_REQUIRE_SERVICES`` names ``memcached``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from pymemcache.client.base import Client, PooledClient

from satchel import SaveOutcome, Session, SessionConfig, SessionManager
from satchel.ids import is_valid_id, storage_key
from satchel.testing import free_port, service_missing, start_server_process
from satchel.testing.concurrency import concurrent_distinct_keys, concurrent_increments
from satchel.wsgi import SessionMiddleware as WsgiSessionMiddleware
from satchel_memcached import AsyncMemcachedSessionHandler, MemcachedSessionHandler, is_valid_key

CONNECTION_ENV = "SATCHEL_TEST_MEMCACHED"
REQUESTS = 40
VIAS = ["wsgi", "asgi"]
TOPOLOGIES = ["single", "pool"]
QUICK = {"connect_timeout": 2.0, "timeout": 2.0}


# -- servers -------------------------------------------------------------------------


def _argv(port: int) -> list[str]:
    argv = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64", "-I", "4m"]
    if getattr(os, "geteuid", lambda: -1)() == 0:
        argv += ["-u", "root"]  # memcached refuses to run as root unless told to
    return argv


def _need_memcached() -> None:
    if shutil.which("memcached") is None:
        service_missing("memcached", "'memcached' is not on PATH (apt-get install -y memcached)")


@pytest.fixture(scope="module")
def single_connection() -> Iterator[str]:
    connection = os.environ.get(CONNECTION_ENV)
    if connection:
        host, _, port = connection.split(",", maxsplit=1)[0].strip().rpartition(":")
        client = Client((host, int(port)), connect_timeout=3, timeout=3)
        try:
            client.version()
        except Exception as exc:  # any failure means: not usable
            service_missing("memcached", f"{CONNECTION_ENV}={connection!r} does not answer: {exc}")
        finally:
            client.close()
        yield connection
        return
    _need_memcached()
    port = free_port()
    with start_server_process(_argv(port), port=port, name="memcached"):
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def pool_connection() -> Iterator[str]:
    _need_memcached()
    ports = [free_port(), free_port()]
    with contextlib.ExitStack() as stack:
        for port in ports:
            stack.enter_context(start_server_process(_argv(port), port=port, name="memcached"))
        yield ",".join(f"127.0.0.1:{port}" for port in ports)


@pytest.fixture(params=TOPOLOGIES)
def connection(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_connection"))


@pytest.fixture
def prefix() -> str:
    return f"satchel-reliability:{secrets.token_hex(6)}:"


def manager_for(connection: str, prefix: str, **config: Any) -> SessionManager:
    return SessionManager(
        SessionConfig.from_dict(
            {
                "driver": "memcached",
                "connection": connection,
                "prefix": prefix,
                "lottery": [0, 1],
                "options": QUICK,
                **config,
            }
        )
    )


# -- 40 overlapping requests ------------------------------------------------------------


@pytest.mark.parametrize("via", VIAS)
def test_blocking_keeps_every_increment(connection: str, prefix: str, via: str) -> None:
    manager = manager_for(connection, prefix, block=True)
    assert isinstance(manager.handler(), MemcachedSessionHandler)
    assert isinstance(manager.async_handler(), AsyncMemcachedSessionHandler)
    assert concurrent_increments(manager, via=via, requests=REQUESTS) == REQUESTS  # type: ignore[arg-type]


@pytest.mark.parametrize("via", VIAS)
def test_without_blocking_increments_are_lost(connection: str, prefix: str, via: str) -> None:
    manager = manager_for(connection, prefix)
    count = concurrent_increments(manager, via=via, requests=REQUESTS, block=False)  # type: ignore[arg-type]
    assert count < REQUESTS


@pytest.mark.parametrize("via", VIAS)
def test_merge_on_save_keeps_every_key(connection: str, prefix: str, via: str) -> None:
    manager = manager_for(connection, prefix, merge_on_save=True)
    keys = concurrent_distinct_keys(manager, via=via, requests=REQUESTS)  # type: ignore[arg-type]
    assert keys == {f"key{index}" for index in range(REQUESTS)}


@pytest.mark.parametrize("via", VIAS)
def test_without_merging_keys_are_lost(single_connection: str, prefix: str, via: str) -> None:
    manager = manager_for(single_connection, prefix)
    keys = concurrent_distinct_keys(manager, via=via, requests=REQUESTS)  # type: ignore[arg-type]
    assert len(keys) < REQUESTS


# -- no resurrection ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


ENDINGS: dict[str, Callable[[Session], None]] = {
    "invalidate": lambda session: session.invalidate(),
    "regenerate-destroy": lambda session: session.regenerate(destroy=True),
}


def clocked_manager(connection: str, prefix: str, clock: Clock) -> SessionManager:
    config = SessionConfig(
        driver="memcached",
        connection=connection,
        prefix=prefix,
        lottery=(0, 1),
        touch_interval=60,
        options=QUICK,
    )
    return SessionManager(config, clock=clock)


def logged_in(manager: SessionManager) -> str:
    session = manager.start(None)
    session.put("user_id", 42)
    session.save()
    return session.cookie_value()


def raw_record(manager: SessionManager, cookie: str) -> str:
    """What memcached holds under the cookie's id, read past core."""
    return manager.handler().read(storage_key(cookie))


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_late_write_does_not_resurrect(connection: str, prefix: str, ending: str) -> None:
    manager = clocked_manager(connection, prefix, Clock())
    cookie = logged_in(manager)
    slow = manager.start(cookie)  # request A: loaded before the logout
    quick = manager.start(cookie)  # request B: ends the session
    ENDINGS[ending](quick)
    quick.save()
    slow.put("cart", ["apple"])
    assert slow.save() is SaveOutcome.ENDED
    assert slow.cookie_action() is None
    assert raw_record(manager, cookie) == ""  # nothing written for the old id
    revived = manager.start(cookie)
    assert revived.all() == {}
    assert revived.id != cookie


def test_a_late_refresh_does_not_resurrect(connection: str, prefix: str) -> None:
    clock = Clock()
    manager = clocked_manager(connection, prefix, clock)
    cookie = logged_in(manager)
    clock.now += 120  # past touch_interval: A's save would be a refresh
    slow = manager.start(cookie)
    slow.get("user_id")
    quick = manager.start(cookie)
    quick.invalidate()
    quick.save()
    assert slow.save() is SaveOutcome.ENDED
    assert raw_record(manager, cookie) == ""


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_async_late_write_and_refresh_do_not_resurrect(
    connection: str, prefix: str, ending: str
) -> None:
    clock = Clock()
    manager = clocked_manager(connection, prefix, clock)
    written, refreshed = logged_in(manager), logged_in(manager)
    clock.now += 120

    async def race(cookie: str, change: bool) -> SaveOutcome:
        slow = await manager.astart(cookie)
        quick = await manager.astart(cookie)
        ENDINGS[ending](quick)
        await quick.asave()
        if change:
            slow.put("cart", ["pear"])
        else:
            slow.get("user_id")  # only the idle expiry is due: a refresh
        return await slow.asave()

    assert asyncio.run(race(written, change=True)) is SaveOutcome.ENDED
    assert asyncio.run(race(refreshed, change=False)) is SaveOutcome.ENDED
    assert raw_record(manager, written) == ""
    assert raw_record(manager, refreshed) == ""


def test_a_late_write_under_merge_on_save_does_not_resurrect(
    single_connection: str, prefix: str
) -> None:
    manager = manager_for(single_connection, prefix, merge_on_save=True)
    cookie = logged_in(manager)
    slow = manager.start(cookie)
    slow.get("user_id")
    quick = manager.start(cookie)
    quick.invalidate()
    quick.save()
    slow.put("cart", ["plum"])
    assert slow.save() is SaveOutcome.ENDED
    assert raw_record(manager, cookie) == ""


# -- hostile ids -----------------------------------------------------------------------

# The ids of tests/security/test_hostile_ids.py, and more that no memcached key
# may hold: spaces, control characters, DEL, more than 250 bytes, non-ASCII.
HOSTILE_IDS = [
    "",
    "abcdefg",
    "a" * 10_240,
    "..",
    "../x",
    "..\\x",
    "%2e%2e%2f",
    "a" * 39 + "\x00",
    "a" * 19 + "\r\n" + "a" * 19,
    "a" * 39 + ";",
    "a" * 39 + " ",
    "é" * 40,
    "a" * 41,
    "../../../../etc/passwd" + "a" * 18,
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
    single_connection: str, prefix: str
) -> Iterator[tuple[SessionManager, RecordingClient]]:
    host, _, port = single_connection.split(",", maxsplit=1)[0].rpartition(":")
    real = PooledClient((host, int(port)), default_noreply=False, connect_timeout=3, timeout=3)
    recorder = RecordingClient(real)
    manager = SessionManager(
        SessionConfig(
            driver="memcached", prefix=prefix, lottery=(0, 1), options={"client": recorder}
        )
    )
    yield manager, recorder
    real.close()


def _environ(cookie_header: str | None) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookie_header is not None:
        environ["HTTP_COOKIE"] = cookie_header
    return environ


def _request(
    middleware: WsgiSessionMiddleware, cookie_header: str
) -> tuple[str, list[tuple[str, str]], bytes]:
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append((line, headers))
        return lambda data: None

    body: Iterable[bytes] = middleware(_environ(cookie_header), start_response)
    try:
        content = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return seen[0][0], seen[0][1], content


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
    status, headers, body = _request(middleware, cookie_header)
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
    fresh_key = manager.config.prefix + storage_key(new_id)
    assert set(recorder.keys) == {fresh_key}
    assert manager.start(new_id).get("visited") is True


def test_hostile_ids_handed_straight_to_the_handler_make_valid_keys(
    single_connection: str, prefix: str
) -> None:
    """A third-party caller passing raw ids to the driver: every id round-trips on the
    real server under a key of its own, and the server never sees an invalid key."""
    handler = MemcachedSessionHandler.from_config(
        SessionConfig(driver="memcached", connection=single_connection, prefix=prefix)
    )
    ids = [*HOSTILE_IDS, *(storage_key(i) for i in ("x" * 40, "y" * 40))]
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
