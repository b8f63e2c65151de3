"""Raw pickle bytes planted under a session's real memcached key run no code and start a
fresh session, whatever flags the item carries; a client that would deserialize them
(``pickle_serde``) is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from pymemcache import serde
from pymemcache.client.base import Client, PooledClient
from pymemcache.client.hash import HashClient

from satchel import ConfigError, SessionConfig, SessionManager
from satchel.ids import generate_id
from satchel.testing.conformance import (
    PICKLE_BOMB_WENT_OFF,
    check_a_planted_pickle_is_ignored,
    pickle_bomb,
)
from satchel_memcached import AsyncMemcachedSessionHandler, MemcachedSessionHandler

BOMB = pickle_bomb()
PICKLE_FLAGS = [0, serde.FLAG_PICKLE]  # raw, and marked as a pickle as pickle_serde would


def _server(connection: str) -> tuple[str, int]:
    host, _, port = connection.split(",", maxsplit=1)[0].rpartition(":")
    return host, int(port)


@pytest.fixture
def raw(memcached_connection: str) -> Iterator[Client]:
    client = Client(_server(memcached_connection), connect_timeout=3, timeout=3)
    yield client
    client.close()


def _plant(raw: Client, prefix: str, flags: int) -> str:
    """A valid cookie whose session key holds the raw pickle (the tests' managers set no
    secret_key, so the key is the prefix + the id's unkeyed digest)."""
    PICKLE_BOMB_WENT_OFF.clear()
    cookie = generate_id()
    key = SessionManager(SessionConfig()).storage_key(cookie)
    assert raw.set(f"{prefix}{key}", BOMB, flags=flags, noreply=False)
    return cookie


def test_the_planted_bytes_are_a_pickle_and_not_utf8() -> None:
    with pytest.raises(UnicodeDecodeError):
        BOMB.decode("utf-8")
    assert BOMB.startswith(b"\x80")


@pytest.mark.parametrize("flags", PICKLE_FLAGS)
def test_planted_pickle_bytes_give_a_fresh_session_and_run_nothing(
    raw: Client,
    memcached_connection: str,
    unique_prefix: str,
    flags: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cookie = _plant(raw, unique_prefix, flags)
    manager = SessionManager(
        SessionConfig(driver="memcached", connection=memcached_connection, prefix=unique_prefix)
    )
    check_a_planted_pickle_is_ignored(manager, cookie, caplog)


@pytest.mark.parametrize("flags", PICKLE_FLAGS)
def test_async_planted_pickle_bytes_give_a_fresh_session_and_run_nothing(
    raw: Client, memcached_connection: str, unique_prefix: str, flags: int
) -> None:
    cookie = _plant(raw, unique_prefix, flags)
    manager = SessionManager(
        SessionConfig(driver="memcached", connection=memcached_connection, prefix=unique_prefix)
    )

    async def main() -> None:
        session = await manager.astart(cookie)
        assert session.all() == {}
        assert session.id != cookie

    asyncio.run(main())
    assert PICKLE_BOMB_WENT_OFF == []


def test_what_a_pickle_serde_client_would_do() -> None:
    """Why such clients are refused: reading the planted item runs its code."""
    PICKLE_BOMB_WENT_OFF.clear()
    serde.pickle_serde.deserialize(b"key", BOMB, serde.FLAG_PICKLE)
    assert PICKLE_BOMB_WENT_OFF == ["unpickled"]
    PICKLE_BOMB_WENT_OFF.clear()


@pytest.mark.parametrize(
    "client",
    [
        pytest.param(
            lambda: PooledClient(("127.0.0.1", 11211), serde=serde.pickle_serde), id="pooled"
        ),
        pytest.param(lambda: Client(("127.0.0.1", 11211), serde=serde.pickle_serde), id="client"),
        pytest.param(
            lambda: HashClient(
                [("127.0.0.1", 11211), ("127.0.0.1", 11212)], serde=serde.pickle_serde
            ),
            id="hash",
        ),
        pytest.param(
            lambda: PooledClient(
                ("127.0.0.1", 11211), deserializer=serde.python_memcache_deserializer
            ),
            id="legacy-deserializer",
        ),
    ],
)
def test_a_client_that_deserializes_is_refused(client: object) -> None:
    config = SessionConfig(driver="memcached", options={"client": client()})  # type: ignore[operator]
    for factory in (MemcachedSessionHandler.from_config, AsyncMemcachedSessionHandler.from_config):
        with pytest.raises(ConfigError) as caught:
            factory(config)
        assert caught.value.key == "options.client"
        assert "deserializes" in str(caught.value)


def test_a_default_client_is_taken() -> None:
    client = PooledClient(("127.0.0.1", 11211))
    handler = MemcachedSessionHandler.from_config(
        SessionConfig(driver="memcached", options={"client": client})
    )
    assert handler.client is client
