"""``"block": True``: satchel's SessionMiddleware holds the session's lock across each request.

Two requests of one session that each read a count, wait and write it back
keep both increments only when they run one after the other.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import AsyncClient, Client
from django.test.utils import override_settings

from satchel import ConfigError
from satchel.django import record_key, session_manager

SATCHEL_MIDDLEWARE = [
    "satchel.django.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]


@pytest.fixture(params=["file", "redis", "sqlite"])
def blocking(
    request: pytest.FixtureRequest, tmp_path: Path, unique_prefix: str, make_table: Any
) -> Iterator[dict[str, Any]]:
    """Blocking on each driver that can lock (the database one with its lock table)."""
    config: dict[str, Any]
    if request.param == "file":
        config = {"driver": "file", "files": str(tmp_path / "sessions")}
    elif request.param == "redis":
        url = request.getfixturevalue("redis_url")
        config = {"driver": "redis", "connection": url, "prefix": unique_prefix}
    else:
        url = request.getfixturevalue("sqlite_url")
        config = {"driver": "database", "connection": url, "table": make_table(url, locks=True)}
    config.update(block=True, block_wait_seconds=20)
    with override_settings(MIDDLEWARE=SATCHEL_MIDDLEWARE, SATCHEL_SESSION=config):
        yield config


def started_session() -> Client:
    client = Client()
    client.get("/add/apple")
    return client


def test_concurrent_requests_of_one_session_keep_every_change(blocking: dict[str, Any]) -> None:
    cookies = started_session().cookies
    replies: list[int] = []

    def count() -> None:
        client = Client()
        client.cookies = cookies
        replies.append(client.get("/slow-count").json()["count"])

    threads = [threading.Thread(target=count) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(replies) == [1, 2]
    client = Client()
    client.cookies = cookies
    assert client.get("/slow-count").json()["count"] == 3


def test_concurrent_async_requests_keep_every_change(blocking: dict[str, Any]) -> None:
    cookies = started_session().cookies

    async def main() -> list[int]:
        clients = [AsyncClient() for _ in range(2)]
        for client in clients:
            client.cookies = cookies
        replies = await asyncio.gather(*(client.get("/async/slow-count") for client in clients))
        return sorted(reply.json()["count"] for reply in replies)

    assert asyncio.run(main()) == [1, 2]


def test_a_request_that_waits_too_long_gets_503(blocking: dict[str, Any]) -> None:
    client = started_session()
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    with override_settings(
        SATCHEL_SESSION={**blocking, "block_wait_seconds": 0.2, "block_lock_seconds": 5}
    ):
        manager = session_manager()
        with manager.lock_record(record_key(manager, key)):
            busy = Client()
            busy.cookies = client.cookies
            reply = busy.get("/add/pear")
        assert reply.status_code == 503
        assert reply["Retry-After"] == "5"
        assert client.get("/show").json()["cart"] == ["apple"]  # the view never ran


def test_blocking_needs_satchels_middleware(tmp_path: Path) -> None:
    with (
        override_settings(
            SATCHEL_SESSION={"driver": "file", "files": str(tmp_path), "block": True}
        ),
        pytest.raises(ImproperlyConfigured, match=r"satchel\.django\.SessionMiddleware"),
    ):
        Client().get("/add/apple")


def test_a_driver_that_cannot_lock_is_refused() -> None:
    with (
        override_settings(
            MIDDLEWARE=SATCHEL_MIDDLEWARE, SATCHEL_SESSION={"driver": "null", "block": True}
        ),
        pytest.raises(ConfigError, match="'block'"),
    ):
        Client().get("/add/apple")


def test_without_block_the_middleware_is_djangos(tmp_path: Path) -> None:
    with override_settings(
        MIDDLEWARE=SATCHEL_MIDDLEWARE, SATCHEL_SESSION={"driver": "file", "files": str(tmp_path)}
    ):
        client = started_session()
        assert client.get("/show").json()["cart"] == ["apple"]
