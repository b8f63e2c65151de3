"""The memcached driver's own promises: keys, expiry, pool, outages, options, registration."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheUnexpectedCloseError

from satchel import ConfigError, LockTimeout, SessionBackendError, SessionConfig
from satchel.handler import SupportsLock, SupportsWriteExisting
from satchel.plugins import load_plugins
from satchel.testing import free_port, new_storage_id
from satchel.testing.services import frozen_process
from satchel_memcached import (
    AsyncMemcachedSessionHandler,
    MemcachedSessionHandler,
    StrictHashClient,
    is_valid_key,
    key_id,
    memcached_expiry,
    parse_servers,
)

THIRTY_DAYS = 30 * 24 * 60 * 60
QUICK = {"connect_timeout": 1.0, "timeout": 1.0}
ERROR_WITHIN_SECONDS = 3.0


def _raw(connection: str) -> Client:
    host, _, port = connection.split(",", maxsplit=1)[0].rpartition(":")
    return Client((host, int(port)), connect_timeout=3, timeout=3, default_noreply=False)


@pytest.fixture
def raw(memcached_connection: str) -> Iterator[Client]:
    client = _raw(memcached_connection)
    yield client
    client.close()


@pytest.fixture
def handler(memcached_connection: str, unique_prefix: str) -> MemcachedSessionHandler:
    return MemcachedSessionHandler.from_config(
        SessionConfig(driver="memcached", connection=memcached_connection, prefix=unique_prefix)
    )


# --- keys ------------------------------------------------------------------------------------

HOSTILE_IDS = [
    "",
    "x" * 10_000,
    "has space",
    "tab\there",
    "line\r\nbreak",
    "nul\x00byte",
    "ctrl\x01\x7f",
    "../../etc/passwd",
    "%2e%2e%2f",
    "semi;colon",
    "ünïcödé 水",
    "\ud800 lone surrogate",
    "lock:abc",
    "~" + "0" * 64,
]


@pytest.mark.parametrize("session_id", HOSTILE_IDS)
def test_any_id_becomes_a_valid_key_and_round_trips(
    handler: MemcachedSessionHandler, session_id: str
) -> None:
    key = handler._key(session_id)
    assert is_valid_key(key)
    assert is_valid_key(handler._lock_key(session_id))
    handler.write(session_id, f"payload of {session_id!r}")
    assert handler.read(session_id) == f"payload of {session_id!r}"
    handler.destroy(session_id)
    assert handler.read(session_id) == ""


def test_distinct_ids_never_share_a_key(handler: MemcachedSessionHandler) -> None:
    ids = [*HOSTILE_IDS, "abc", "ABC", new_storage_id(), key_id("has space")]
    keys = {handler._key(session_id) for session_id in ids}
    lock_keys = {handler._lock_key(session_id) for session_id in ids}
    assert len(keys) == len(ids)
    assert not keys & lock_keys


def test_digest_ids_go_in_as_they_are(handler: MemcachedSessionHandler, unique_prefix: str) -> None:
    session_id = new_storage_id()
    assert handler._key(session_id) == unique_prefix + session_id


def test_an_app_key_equal_to_the_session_id_cannot_touch_the_session(
    handler: MemcachedSessionHandler, raw: Client
) -> None:
    session_id = new_storage_id()
    handler.write(session_id, "the session")
    raw.set(session_id, b"app cache value")
    raw.delete(session_id)
    assert handler.read(session_id) == "the session"


@pytest.mark.parametrize("prefix", ["has space:", "tab\t", "ünï:", "p" * 101, "ctl\x01"])
def test_a_prefix_that_cannot_make_valid_keys_is_refused(
    memcached_connection: str, prefix: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        MemcachedSessionHandler.from_config(
            SessionConfig(driver="memcached", connection=memcached_connection, prefix=prefix)
        )
    assert caught.value.key == "prefix"


# --- expiry ----------------------------------------------------------------------------------


def test_expiry_up_to_thirty_days_is_relative_beyond_it_absolute() -> None:
    now = 1_900_000_000.0
    assert memcached_expiry(7200, now) == 7200
    assert memcached_expiry(THIRTY_DAYS, now) == THIRTY_DAYS
    assert memcached_expiry(THIRTY_DAYS + 1, now) == int(now) + THIRTY_DAYS + 1


def test_a_lifetime_over_thirty_days_keeps_the_session(
    memcached_connection: str, unique_prefix: str, raw: Client
) -> None:
    # Sent as a relative 31 days, memcached would read it as a time in 1970: gone at once.
    raw.set(unique_prefix + "control", b"x", expire=31 * 24 * 3600)
    assert raw.get(unique_prefix + "control") is None
    handler = MemcachedSessionHandler.from_config(
        SessionConfig(
            driver="memcached",
            connection=memcached_connection,
            prefix=unique_prefix,
            lifetime=31 * 24 * 60,
        )
    )
    session_id = new_storage_id()
    handler.write(session_id, "a month and a day")
    assert handler.read(session_id) == "a month and a day"
    assert handler.write_existing(session_id, "rewritten") is True
    assert handler.read(session_id) == "rewritten"


def test_gc_is_zero_and_removes_nothing(handler: MemcachedSessionHandler) -> None:
    session_id = new_storage_id()
    handler.write(session_id, "kept")
    assert handler.gc(0) == 0
    assert handler.read(session_id) == "kept"


class LosesLockReplies:
    """A pymemcache client whose lock claims (``add``) reach the server but whose reply is lost."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def add(self, *args: Any, **kwargs: Any) -> Any:
        self.client.add(*args, **kwargs)
        raise MemcacheUnexpectedCloseError


def test_a_lock_claim_whose_reply_was_lost_is_released(
    memcached_connection: str, unique_prefix: str, raw: Client
) -> None:
    lossy = MemcachedSessionHandler(
        LosesLockReplies(_raw(memcached_connection)), lifetime_seconds=30, prefix=unique_prefix
    )
    key = new_storage_id()
    with pytest.raises(SessionBackendError, match="add failed: MemcacheUnexpectedCloseError"):
        lossy.lock(key, lock_seconds=30, wait_seconds=1).__enter__()
    # Released with its token (marked released), not held for 30 seconds.
    assert raw.get(f"{unique_prefix}lock:{key}") in (None, b"released")
    with MemcachedSessionHandler(
        _raw(memcached_connection), lifetime_seconds=30, prefix=unique_prefix
    ).lock(key, lock_seconds=5, wait_seconds=0.1):
        pass


def test_a_lock_entered_and_abandoned_is_not_released_by_the_collector(
    handler: MemcachedSessionHandler,
) -> None:
    key = new_storage_id()
    held = handler.lock(key, lock_seconds=30, wait_seconds=1)
    held.__enter__()
    del held
    gc.collect()
    with pytest.raises(LockTimeout), handler.lock(key, lock_seconds=5, wait_seconds=0.1):
        pass


def test_handler_declares_lock_and_write_existing(handler: MemcachedSessionHandler) -> None:
    assert isinstance(handler, SupportsWriteExisting)
    assert isinstance(handler, SupportsLock)


def test_released_lock_is_marked_and_free_for_the_next(
    handler: MemcachedSessionHandler, raw: Client
) -> None:
    session_id = new_storage_id()
    with handler.lock(session_id, lock_seconds=10, wait_seconds=1):
        assert len(raw.get(handler._lock_key(session_id))) == 32
    assert raw.get(handler._lock_key(session_id)) in (b"released", None)
    started = time.monotonic()
    with handler.lock(session_id, lock_seconds=10, wait_seconds=1):
        assert time.monotonic() - started < 0.5


def _stats(client: Client) -> dict[str, int]:
    stats = client.stats()
    names = ("cmd_get", "cmd_set", "delete_hits", "delete_misses")
    return {name: int(stats[name.encode()]) for name in names}


def test_one_round_trip_per_operation(start_memcached: Any, unique_prefix: str) -> None:
    port = free_port()
    with start_memcached(port):
        connection = f"127.0.0.1:{port}"
        handler = MemcachedSessionHandler.from_config(
            SessionConfig(driver="memcached", connection=connection, prefix=unique_prefix)
        )
        observer = _raw(connection)
        session_id = new_storage_id()
        steps = [
            (lambda: handler.read(session_id), {"cmd_get": 1}),
            (lambda: handler.write(session_id, "x"), {"cmd_set": 1}),
            (lambda: handler.write_existing(session_id, "y"), {"cmd_set": 1}),
            (lambda: handler.destroy(session_id), {"delete_hits": 1}),
            (lambda: handler.gc(60), {}),
        ]
        for step, expected in steps:
            before = _stats(observer)
            step()
            after = _stats(observer)
            assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == expected
        observer.close()


def test_a_payload_over_the_item_limit_is_a_clear_error(
    handler: MemcachedSessionHandler, raw: Client
) -> None:
    item_limit = int(raw.stats("settings")[b"item_size_max"])
    session_id = new_storage_id()
    with pytest.raises(SessionBackendError) as caught:
        handler.write(session_id, "x" * (item_limit + 1))
    assert "'memcached'" in str(caught.value)
    assert handler.read(session_id) == ""


# --- pool --------------------------------------------------------------------------------------


def test_pool_spreads_sessions_over_every_server(
    memcached_pool: list[int], unique_prefix: str
) -> None:
    connection = ",".join(f"127.0.0.1:{port}" for port in memcached_pool)
    handler = MemcachedSessionHandler.from_config(
        SessionConfig(driver="memcached", connection=connection, prefix=unique_prefix)
    )
    assert isinstance(handler.client, StrictHashClient)
    ids = [new_storage_id() for _ in range(60)]
    for session_id in ids:
        handler.write(session_id, "spread")
    per_server = []
    for port in memcached_pool:
        client = _raw(f"127.0.0.1:{port}")
        per_server.append(sum(client.get(handler._key(i)) is not None for i in ids))
        client.close()
    assert sum(per_server) == len(ids)  # each session on exactly one server
    assert all(count > 0 for count in per_server)


def test_pool_server_outage_fails_loudly_then_the_pool_routes_around_it(
    start_memcached: Any, unique_prefix: str
) -> None:
    ports = [free_port() for _ in range(3)]
    connection = ",".join(f"127.0.0.1:{port}" for port in ports)
    options = {**QUICK, "retry_attempts": 1, "retry_timeout": 0.2, "dead_timeout": 60}
    with start_memcached(ports[0]), start_memcached(ports[1]):
        victim = start_memcached(ports[2])
        victim.__enter__()
        handler = MemcachedSessionHandler.from_config(
            SessionConfig(
                driver="memcached", connection=connection, prefix=unique_prefix, options=options
            )
        )
        ids = [new_storage_id() for _ in range(30)]
        for session_id in ids:
            handler.write(session_id, "before")
        victim.__exit__(None, None, None)
        victim_ids = [
            i
            for i in ids
            if handler.client.hasher.get_node(handler._key(i)).endswith(f":{ports[2]}")
        ]
        assert victim_ids
        session_id = victim_ids[0]
        # Never a silent "no session": every answer is the data or an error, until the
        # server is taken out; then its keys hash to the live servers.
        errors: list[str] = []
        deadline = time.monotonic() + 10
        while True:
            try:
                value = handler.read(session_id)
                break
            except SessionBackendError as exc:
                errors.append(str(exc))
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert errors
        assert all(f"server 127.0.0.1:{ports[2]}" in message for message in errors)
        assert value == ""  # now served by a live server, which never had it
        handler.write(session_id, "after")
        assert handler.read(session_id) == "after"
        others = [i for i in ids if i not in victim_ids]
        assert all(handler.read(i) == "before" for i in others)


# --- single-server outage -------------------------------------------------------------------------


def test_outage_is_a_clear_error_and_recovery_needs_no_restart(
    start_memcached: Any, unique_prefix: str
) -> None:
    port = free_port()
    config = SessionConfig(
        driver="memcached", connection=f"127.0.0.1:{port}", prefix=unique_prefix, options=QUICK
    )
    session_id = new_storage_id()
    with start_memcached(port):
        handler = MemcachedSessionHandler.from_config(config)
        handler.write(session_id, "before")
        assert handler.read(session_id) == "before"
    for operation in (
        lambda: handler.read(session_id),
        lambda: handler.write(session_id, "during"),
        lambda: handler.destroy(session_id),
    ):
        started = time.monotonic()
        with pytest.raises(SessionBackendError) as caught:
            operation()
        assert time.monotonic() - started < ERROR_WITHIN_SECONDS
        assert caught.value.driver == "memcached"
        assert f"127.0.0.1:{port}" in str(caught.value)
    with start_memcached(port):
        assert handler.read(session_id) == ""
        handler.write(session_id, "after")
        assert handler.read(session_id) == "after"


def test_async_outage_is_a_clear_error_and_recovery_needs_no_restart(
    start_memcached: Any, unique_prefix: str
) -> None:
    port = free_port()
    config = SessionConfig(
        driver="memcached", connection=f"127.0.0.1:{port}", prefix=unique_prefix, options=QUICK
    )
    session_id = new_storage_id()

    async def main() -> None:
        with start_memcached(port):
            handler = AsyncMemcachedSessionHandler.from_config(config)
            await handler.write(session_id, "before")
        with pytest.raises(SessionBackendError) as caught:
            await handler.read(session_id)
        assert f"127.0.0.1:{port}" in str(caught.value)
        with start_memcached(port):
            await handler.write(session_id, "after")
            assert await handler.read(session_id) == "after"
        await handler.close()

    asyncio.run(main())


# --- connection and options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connection", "servers"),
    [
        (None, (("127.0.0.1", 11211),)),
        ("cache1:11212", (("cache1", 11212),)),
        ("cache1", (("cache1", 11211),)),
        (" a:1 , b:2,c ", (("a", 1), ("b", 2), ("c", 11211))),
        ("[::1]:11300,[fd00::2]", (("::1", 11300), ("fd00::2", 11211))),
    ],
)
def test_connection_forms(connection: str | None, servers: tuple[tuple[str, int], ...]) -> None:
    assert parse_servers(connection) == servers


@pytest.mark.parametrize("connection", ["", ",", "a:port", "a:70000", "memcached://a:1", "a b:1"])
def test_bad_connections_are_named(connection: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MemcachedSessionHandler.from_config(
            SessionConfig(driver="memcached", connection=connection)
        )
    assert caught.value.key == "connection"


def test_unknown_option_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        MemcachedSessionHandler.from_config(
            SessionConfig(driver="memcached", options={"timout": 1})
        )
    assert caught.value.key == "options.timout"
    assert "timeout" in str(caught.value)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"timeout": 0}, "options.timeout"),
        ({"connect_timeout": "slow"}, "options.connect_timeout"),
        ({"retry_attempts": -1}, "options.retry_attempts"),
        ({"max_pool_size": 0}, "options.max_pool_size"),
        ({"tls": "sometimes"}, "options.tls"),
        ({"tls_keyfile": "/k.pem"}, "options.tls_certfile"),
    ],
)
def test_bad_option_values_are_named(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MemcachedSessionHandler.from_config(SessionConfig(driver="memcached", options=options))
    assert caught.value.key == key


def test_registered_through_the_entry_point_with_an_async_twin() -> None:
    loaded = load_plugins()
    spec = loaded.registry.get("memcached")
    assert spec.distribution == "satchel-memcached"
    config = SessionConfig(driver="memcached")
    assert isinstance(spec.build(config), MemcachedSessionHandler)
    assert spec.async_factory is not None
    assert isinstance(spec.build_async(config), AsyncMemcachedSessionHandler)
    assert not [failure for failure in loaded.failures if "memcached" in failure.distribution]


def test_something_that_is_not_a_client_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        MemcachedSessionHandler.from_config(
            SessionConfig(driver="memcached", options={"client": "127.0.0.1:11211"})
        )
    assert caught.value.key == "options.client"


def test_async_write_existing_never_brings_back_a_destroyed_session(
    memcached_connection: str, unique_prefix: str
) -> None:
    config = SessionConfig(
        driver="memcached", connection=memcached_connection, prefix=unique_prefix
    )

    async def main() -> None:
        handler = AsyncMemcachedSessionHandler.from_config(config)
        key = new_storage_id()
        assert await handler.write_existing(key, "never was") is False
        assert await handler.read(key) == ""
        await handler.write(key, "logged in")
        assert await handler.write_existing(key, "updated ünï") is True
        assert await handler.read(key) == "updated ünï"
        await handler.destroy(key)
        assert await handler.write_existing(key, "again?") is False
        assert await handler.read(key) == ""

    asyncio.run(main())


def test_a_server_that_stops_answering_fails_within_the_timeout(
    start_memcached: Any, unique_prefix: str
) -> None:
    port = free_port()
    config = SessionConfig(
        driver="memcached", connection=f"127.0.0.1:{port}", prefix=unique_prefix, options=QUICK
    )
    session_id = new_storage_id()
    with start_memcached(port) as process:
        handler = MemcachedSessionHandler.from_config(config)
        handler.write(session_id, "before")
        with frozen_process(process):  # alive, connected, silent
            started = time.monotonic()
            with pytest.raises(SessionBackendError):
                handler.read(session_id)
            assert 0.9 <= time.monotonic() - started < ERROR_WITHIN_SECONDS
        assert handler.read(session_id) == "before"
