"""Raw pickle bytes planted under a session's real Redis key run no code and start a
fresh session: with the driver's own client, with a user's ``decode_responses``
client (which cannot decode them), sync and async."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio

from satchel import SessionConfig, SessionManager
from satchel.ids import generate_id
from satchel.testing.conformance import (
    PICKLE_BOMB_WENT_OFF,
    check_a_planted_pickle_is_ignored,
    pickle_bomb,
)

BOMB = pickle_bomb()


def test_the_planted_bytes_are_a_pickle_and_not_utf8() -> None:
    with pytest.raises(UnicodeDecodeError):
        BOMB.decode("utf-8")
    assert BOMB.startswith(b"\x80")  # a pickle's PROTO opcode


@pytest.fixture
def planted(raw_redis: redis.Redis, unique_prefix: str) -> str:
    """A valid cookie whose session key holds the raw pickle (the tests' managers set no
    secret_key, so the key is the prefix + the id's unkeyed digest)."""
    PICKLE_BOMB_WENT_OFF.clear()
    cookie = generate_id()
    key = SessionManager(SessionConfig()).storage_key(cookie)
    raw_redis.set(f"{unique_prefix}{key}", BOMB)
    return cookie


def _options(kind: str, redis_url: str) -> dict[str, Any]:
    if kind == "connection":
        return {}
    if kind == "decode_responses client":
        return {"client": redis.Redis.from_url(redis_url, decode_responses=True)}
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["connection", "decode_responses client"])
def test_planted_pickle_bytes_give_a_fresh_session_and_run_nothing(
    planted: str,
    redis_url: str,
    unique_prefix: str,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = SessionManager(
        SessionConfig(
            driver="redis",
            connection=redis_url,
            prefix=unique_prefix,
            options=_options(kind, redis_url),
        )
    )
    check_a_planted_pickle_is_ignored(manager, planted, caplog)


@pytest.mark.parametrize("kind", ["connection", "decode_responses async client"])
def test_async_planted_pickle_bytes_give_a_fresh_session_and_run_nothing(
    planted: str, redis_url: str, unique_prefix: str, kind: str
) -> None:
    async def main() -> None:
        options: dict[str, Any] = {}
        if kind == "decode_responses async client":
            options["async_client"] = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        manager = SessionManager(
            SessionConfig(
                driver="redis", connection=redis_url, prefix=unique_prefix, options=options
            )
        )
        session = await manager.astart(planted)
        assert session.all() == {}
        assert session.id != planted
        await manager.async_handler().close()
        if "async_client" in options:
            await options["async_client"].aclose()

    asyncio.run(main())
    assert PICKLE_BOMB_WENT_OFF == []
