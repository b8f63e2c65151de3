"""The database driver under issue 6's load, on real SQLite, PostgreSQL and MySQL/MariaDB.

* The resurrection race (Rack CVE-2025-46336): a request that loaded a
  session before another one ended it (``invalidate``,
  ``regenerate(destroy=True)``) saves late — changed data or only a refresh —
  and the old id must still give an empty session. Sync and async.
* 40 overlapping requests of one session through the real WSGI and ASGI
  middlewares: with ``block = true`` every increment survives; with
  ``merge_on_save`` every request's own key survives. The control cases run
  the same load without either and lose writes, so these tests can fail.
* Hostile cookies made of SQL metacharacters never reach the driver.

Servers are found as in ``tests/database`` (``SATCHEL_TEST_POSTGRES_URL`` /
``SATCHEL_TEST_MYSQL_URL``, else the default local server, else a skip that
``SATCHEL_REQUIRE_SERVICES=postgres,mysql`` turns into a failure); the
fixtures live here so this module runs on its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from satchel import (
    AsyncSessionHandler,
    LockTimeout,
    SaveOutcome,
    Session,
    SessionConfig,
    SessionManager,
)
from satchel.handler import AsyncSupportsWriteExisting, SupportsWriteExisting
from satchel.ids import generate_id, storage_key
from satchel.testing import service_missing
from satchel.testing.concurrency import concurrent_distinct_keys, concurrent_increments
from satchel_database import (
    AsyncDatabaseSessionHandler,
    DatabaseSessionHandler,
    ThreadedDatabaseSessionHandler,
    create_async_handler,
    create_handler,
)
from satchel_database.schema import locks_table, sessions_table

REQUESTS = 40
VIAS = ["wsgi", "asgi"]
DATABASES = ["sqlite", "postgresql", "mysql"]
DEFAULT_URLS = {
    "postgresql": (
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        "postgresql+psycopg://root@127.0.0.1:5432/test",
    ),
    "mysql": ("mysql+pymysql://root@127.0.0.1:3306/test",),
}
URL_ENV = {"postgresql": "SATCHEL_TEST_POSTGRES_URL", "mysql": "SATCHEL_TEST_MYSQL_URL"}
SERVICE = {"postgresql": "postgres", "mysql": "mysql"}
SYNC_DRIVERS = {"postgresql": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}
ASYNC_DRIVERS = {
    "postgresql": "asyncpg",
    "mysql": "aiomysql",
    "mariadb": "aiomysql",
    "sqlite": "aiosqlite",
}


# -- finding the servers ----------------------------------------------------------


def _with_driver(url: str, drivers: dict[str, str]) -> str:
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend not in drivers:
        return url
    return parsed.set(drivername=f"{backend}+{drivers[backend]}").render_as_string(
        hide_password=False
    )


def async_url(url: str) -> str:
    """The same database through its asyncio driver."""
    return _with_driver(url, ASYNC_DRIVERS)


def _unreachable(url: str) -> str | None:
    """None when ``url`` answers ``SELECT 1``, else why not."""
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        engine.dispose()


_found: dict[str, str] = {}
_missing: dict[str, str] = {}


def server_url(backend: str) -> str:
    """The sync URL of the PostgreSQL or MySQL/MariaDB server (skip or fail without one)."""
    if backend in _found:
        return _found[backend]
    if backend in _missing:  # probe an absent server once per run, not once per test
        service_missing(SERVICE[backend], _missing[backend])
    configured = os.environ.get(URL_ENV[backend])
    candidates = (configured,) if configured else DEFAULT_URLS[backend]
    reasons = []
    for candidate in candidates:
        url = _with_driver(candidate, SYNC_DRIVERS)
        reason = _unreachable(url)
        if reason is None:
            _found[backend] = url
            return url
        reasons.append(f"{sa.make_url(url).render_as_string(hide_password=True)}: {reason}")
    where = (
        f"${URL_ENV[backend]}"
        if configured
        else f"the default local server (set ${URL_ENV[backend]})"
    )
    _missing[backend] = f"{where} did not answer: {'; '.join(reasons)}"
    service_missing(SERVICE[backend], _missing[backend])


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The sync URL of each database in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sessions.db'}"
    return server_url(str(request.param))


@pytest.fixture
def table(database_url: str) -> Iterator[str]:
    """A fresh sessions table (and lock table) for the test, dropped afterwards."""
    name = f"sessions_{secrets.token_hex(5)}"
    engine = sa.create_engine(database_url, poolclass=NullPool)
    try:
        sessions_table(name).create(engine)
        locks_table(name).create(engine)
        yield name
    finally:
        locks_table(name).drop(engine, checkfirst=True)
        sessions_table(name).drop(engine, checkfirst=True)
        engine.dispose()


@pytest.fixture
def make_manager(database_url: str, table: str) -> Iterator[Callable[..., SessionManager]]:
    """A manager on the test's table.

    Its async twin runs the sync handler in worker threads (the driver's
    choice for a sync URL), or with ``asgi_url`` the asyncio engine on that URL.
    """
    made: list[SessionManager] = []
    threaded: list[ThreadedDatabaseSessionHandler] = []

    def make(
        *, asgi_url: str | None = None, clock: Callable[[], float] | None = None, **config: Any
    ) -> SessionManager:
        settings = SessionConfig.from_dict(
            {
                "driver": "database",
                "connection": database_url,
                "table": table,
                "lottery": [0, 1],  # no gc mid-test
                "block_wait_seconds": 30,  # 40 waiters polling every 50 ms take a few seconds
                **config,
            }
        )

        def twin(config: SessionConfig) -> AsyncSessionHandler:
            if asgi_url is not None:
                return asyncio_handler(config, asgi_url)
            handler = create_async_handler(config)
            assert isinstance(handler, ThreadedDatabaseSessionHandler)
            threaded.append(handler)
            return handler

        manager = SessionManager(settings, clock=clock)
        manager.extend("database", create_handler, twin)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.handler().close()
    for handler in threaded:
        handler.handler.close()


def asyncio_handler(config: SessionConfig, url: str) -> AsyncDatabaseSessionHandler:
    """The asyncio-engine twin on ``url``, without a connection pool.

    ``satchel.testing.concurrency`` runs the ASGI requests in an event loop of
    its own, which pooled asyncpg/aiomysql/aiosqlite connections would
    outlive. With ``NullPool`` each connection is closed inside that loop; the
    handler, its SQL and its locks are the driver's own.
    """
    return AsyncDatabaseSessionHandler(
        create_async_engine(url, poolclass=NullPool),
        lifetime_seconds=config.lifetime_seconds,
        table=sessions_table(config.table),
    )


# -- the resurrection race ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


ENDINGS: dict[str, Callable[[Session], None]] = {
    "invalidate": lambda session: session.invalidate(),
    "regenerate-destroy": lambda session: session.regenerate(destroy=True),
}


def logged_in(manager: SessionManager) -> str:
    session = manager.start(None)
    session.put("user_id", 42)
    session.save()
    return session.cookie_value()


def test_the_handlers_write_only_over_existing_rows(
    make_manager: Callable[..., SessionManager],
) -> None:
    manager = make_manager()
    handler = manager.handler()
    assert isinstance(handler, DatabaseSessionHandler)
    assert isinstance(handler, SupportsWriteExisting)
    assert isinstance(manager.async_handler(), ThreadedDatabaseSessionHandler)
    assert isinstance(manager.async_handler(), AsyncSupportsWriteExisting)


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_late_write_does_not_resurrect(
    make_manager: Callable[..., SessionManager], ending: str
) -> None:
    clock = Clock()
    manager = make_manager(clock=clock, touch_interval=60)
    cookie = logged_in(manager)
    slow = manager.start(cookie)  # request A: loaded before the logout
    quick = manager.start(cookie)  # request B: logs out
    ENDINGS[ending](quick)
    quick.save()
    slow.put("cart", ["apple"])
    assert slow.save() is SaveOutcome.ENDED
    assert slow.cookie_action() is None
    revived = manager.start(cookie)
    assert revived.all() == {}
    assert revived.id != cookie
    assert manager.handler().read(storage_key(cookie)) == ""


def test_a_late_refresh_does_not_resurrect(make_manager: Callable[..., SessionManager]) -> None:
    clock = Clock()
    manager = make_manager(clock=clock, touch_interval=60)
    cookie = logged_in(manager)
    clock.now += 120  # past touch_interval: A's save would be a refresh
    slow = manager.start(cookie)
    slow.get("user_id")
    quick = manager.start(cookie)
    quick.invalidate()
    quick.save()
    assert slow.save() is SaveOutcome.ENDED
    assert manager.start(cookie).all() == {}
    assert manager.handler().read(storage_key(cookie)) == ""


@pytest.mark.parametrize("engine", ["asyncio", "threaded"])
@pytest.mark.parametrize("ending", list(ENDINGS))
def test_async_late_write_does_not_resurrect(
    make_manager: Callable[..., SessionManager], database_url: str, ending: str, engine: str
) -> None:
    clock = Clock()
    asgi_url = async_url(database_url) if engine == "asyncio" else None
    manager = make_manager(clock=clock, asgi_url=asgi_url, touch_interval=60)
    cookie = logged_in(manager)

    async def race() -> SaveOutcome:
        twin = manager.async_handler()
        expected = AsyncDatabaseSessionHandler if asgi_url else ThreadedDatabaseSessionHandler
        assert isinstance(twin, expected)
        try:
            slow = await manager.astart(cookie)
            quick = await manager.astart(cookie)
            ENDINGS[ending](quick)
            await quick.asave()
            slow.put("cart", ["pear"])
            return await slow.asave()
        finally:
            if asgi_url:
                await twin.close()

    assert asyncio.run(race()) is SaveOutcome.ENDED
    assert manager.start(cookie).all() == {}
    assert manager.handler().read(storage_key(cookie)) == ""


def test_async_late_refresh_does_not_resurrect(
    make_manager: Callable[..., SessionManager], database_url: str
) -> None:
    clock = Clock()
    manager = make_manager(clock=clock, asgi_url=async_url(database_url), touch_interval=60)
    cookie = logged_in(manager)
    clock.now += 120

    async def race() -> SaveOutcome:
        twin = manager.async_handler()
        try:
            slow = await manager.astart(cookie)
            slow.get("user_id")
            quick = await manager.astart(cookie)
            quick.invalidate()
            await quick.asave()
            return await slow.asave()
        finally:
            await twin.close()

    assert asyncio.run(race()) is SaveOutcome.ENDED
    assert manager.start(cookie).all() == {}


def test_ordinary_saves_of_a_live_session_still_write(
    make_manager: Callable[..., SessionManager],
) -> None:
    manager = make_manager()
    cookie = logged_in(manager)
    first = manager.start(cookie)
    second = manager.start(cookie)
    first.put("a", 1)
    assert first.save() is SaveOutcome.WRITTEN
    second.put("b", 2)
    assert second.save() is SaveOutcome.WRITTEN
    assert manager.start(cookie).get("b") == 2


# -- 40 overlapping requests -------------------------------------------------------------


def asgi_url_for(database_url: str, engine: str) -> str | None:
    return async_url(database_url) if engine == "asyncio" else None


VIA_ENGINES = [("wsgi", "sync"), ("asgi", "threaded"), ("asgi", "asyncio")]


@pytest.mark.parametrize(("via", "engine"), VIA_ENGINES)
def test_blocking_keeps_every_increment(
    make_manager: Callable[..., SessionManager], database_url: str, via: str, engine: str
) -> None:
    manager = make_manager(block=True, asgi_url=asgi_url_for(database_url, engine))
    count = concurrent_increments(manager, via=via, requests=REQUESTS)  # type: ignore[arg-type]
    assert count == REQUESTS


@pytest.mark.parametrize(("via", "engine"), VIA_ENGINES)
def test_without_blocking_increments_are_lost(
    make_manager: Callable[..., SessionManager], database_url: str, via: str, engine: str
) -> None:
    manager = make_manager(asgi_url=asgi_url_for(database_url, engine))
    count = concurrent_increments(manager, via=via, requests=REQUESTS, block=False)  # type: ignore[arg-type]
    assert count < REQUESTS


@pytest.mark.parametrize(("via", "engine"), VIA_ENGINES)
def test_merge_on_save_keeps_every_key(
    make_manager: Callable[..., SessionManager], database_url: str, via: str, engine: str
) -> None:
    manager = make_manager(merge_on_save=True, asgi_url=asgi_url_for(database_url, engine))
    keys = concurrent_distinct_keys(manager, via=via, requests=REQUESTS)  # type: ignore[arg-type]
    assert keys == {f"key{index}" for index in range(REQUESTS)}


@pytest.mark.parametrize("via", VIAS)
def test_without_merging_keys_are_lost(
    make_manager: Callable[..., SessionManager], via: str
) -> None:
    manager = make_manager()
    keys = concurrent_distinct_keys(manager, via=via, requests=REQUESTS)  # type: ignore[arg-type]
    assert len(keys) < REQUESTS


# -- SQL metacharacters ------------------------------------------------------------------

SQL_METACHARACTERS = ["' OR 1=1--", "x'; DROP TABLE sessions; --", "\\'", "%_", "1' OR '1'='1"]


@pytest.mark.parametrize("text", SQL_METACHARACTERS)
def test_a_cookie_of_sql_metacharacters_never_reaches_the_driver(
    make_manager: Callable[..., SessionManager],
    text: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = make_manager()
    bystander = logged_in(manager)
    handler = manager.handler()
    calls: list[str] = []
    for name in (
        "read",
        "write",
        "write_with_metadata",
        "write_existing",
        "destroy",
        "touch",
        "lock",
    ):
        original = getattr(handler, name)

        def spy(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kwargs)

        setattr(handler, name, spy)
    cookie = (text + "A" * 40)[:40]  # the length of a real id, but not its alphabet
    with caplog.at_level(logging.DEBUG, logger="satchel"):
        session = manager.start(cookie)
        assert session.all() == {}
        assert session.id != cookie
        assert calls == []  # strict mode: a malformed id is never looked up
        session.put("cart", ["apple"])
        assert session.save() is SaveOutcome.WRITTEN
    assert calls == ["write_with_metadata"]  # a new session: stored under a fresh id
    assert cookie not in caplog.text
    assert manager.start(bystander).get("user_id") == 42
    assert manager.start(session.id).get("cart") == ["apple"]


@pytest.mark.parametrize("text", SQL_METACHARACTERS)
def test_a_digest_of_sql_metacharacters_is_inert_in_every_handler_call(
    make_manager: Callable[..., SessionManager], database_url: str, table: str, text: str
) -> None:
    manager = make_manager()
    handler = manager.handler()
    assert isinstance(handler, DatabaseSessionHandler)
    bystander = storage_key(generate_id())
    handler.write(bystander, "kept")
    hostile = (text + "0" * 64)[:64]  # shaped like the digests core hands drivers
    assert handler.read(hostile) == ""
    assert handler.write_existing(hostile, "injected?") is False  # ``OR 1=1`` would match
    assert handler.touch(hostile) is False
    assert handler.destroy(hostile) is True
    with handler.lock(hostile, lock_seconds=5, wait_seconds=1):
        with pytest.raises(LockTimeout), handler.lock(hostile, lock_seconds=5, wait_seconds=0.2):
            pass
        with handler.lock(bystander, lock_seconds=5, wait_seconds=0.2):
            pass  # only the hostile id's lock is held
    assert handler.write(hostile, "hostile") is True
    assert handler.write_existing(hostile, "hostile, again") is True
    assert handler.read(hostile) == "hostile, again"
    handler.destroy(hostile)
    assert handler.read(hostile) == ""
    assert handler.read(bystander) == "kept"
    engine = sa.create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.select(sessions_table(table).c.id)).scalars().all()
            lock_rows = connection.execute(sa.select(locks_table(table).c.id)).scalars().all()
    finally:
        engine.dispose()
    assert rows == [bystander]  # the table is there and holds exactly the bystander
    assert lock_rows == []  # every lock taken was released
