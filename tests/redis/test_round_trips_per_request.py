"""Redis commands per request through the WSGI and ASGI middlewares, counted by Redis.

Guards the round trips the docs promise, on a private ``redis-server`` (no other
client's commands are counted), with the counting of ``benchmarks/redis_round_trips.py``:
WSGI loads lazily, so an untouched request costs nothing; ASGI reads a session
whose cookie came before the application runs (one GET), and nothing on a
``skip_paths`` path; a read costs one GET; a change, or a refresh once
``touch_interval`` has passed, a GET and one SET.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
import redis

from satchel import SessionConfig, SessionManager
from satchel.asgi import SessionMiddleware as AsgiSessionMiddleware
from satchel.testing import free_port, start_server_process

REQUESTS = 5
BREAKDOWN = {
    0: {},
    1: {"get": REQUESTS},
    2: {"get": REQUESTS, "set": REQUESTS},
}


@pytest.fixture(scope="module")
def private_redis(redis_server_argv: Callable[..., list[str]]) -> Iterator[str]:
    port = free_port()
    with start_server_process(redis_server_argv(port), port=port, name="redis"):
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def counted(
    private_redis: str, redis_round_trips: ModuleType, unique_prefix: str
) -> Iterator[dict[str, Any]]:
    clock = redis_round_trips.SteppingClock()
    manager = SessionManager(
        SessionConfig(driver="redis", connection=private_redis, prefix=unique_prefix), clock=clock
    )
    observer = redis.Redis.from_url(private_redis)
    yield {
        "observer": observer,
        "manager": manager,
        "clock": clock,
        "cookie": redis_round_trips.seed(manager),
    }
    observer.close()


@pytest.mark.parametrize("via", ["wsgi", "asgi"])
@pytest.mark.parametrize("kind", ["no cookie", "untouched", "read-only", "modified", "refreshed"])
def test_round_trips_per_request(
    redis_round_trips: ModuleType, counted: dict[str, Any], via: str, kind: str
) -> None:
    commands = redis_round_trips.measure(
        counted["observer"],
        counted["manager"],
        counted["clock"],
        counted["cookie"],
        via=via,
        kind=kind,
        requests=REQUESTS,
    )
    expected = redis_round_trips.EXPECTED[via][kind]
    assert commands == BREAKDOWN[expected], f"{via} {kind}: expected {expected} per request"


def test_the_expected_counts_are_the_documented_ones(redis_round_trips: ModuleType) -> None:
    # So the parametrized test above cannot pass on a table someone loosened.
    assert redis_round_trips.EXPECTED == {
        "wsgi": {"no cookie": 0, "untouched": 0, "read-only": 1, "modified": 2, "refreshed": 2},
        "asgi": {"no cookie": 0, "untouched": 1, "read-only": 1, "modified": 2, "refreshed": 2},
    }


def test_an_asgi_skip_path_never_reaches_redis(
    redis_round_trips: ModuleType, counted: dict[str, Any]
) -> None:
    manager = counted["manager"]
    app = AsgiSessionMiddleware(redis_round_trips.asgi_app("untouched"), manager, skip_paths=["/"])
    cookie_header = f"{manager.config.cookie}={counted['cookie']}"

    async def requests() -> None:
        for _ in range(REQUESTS):
            assert await redis_round_trips.asgi_request(app, cookie_header) == 200

    assert (
        redis_round_trips.count_commands(counted["observer"], lambda: asyncio.run(requests())) == {}
    )


def test_a_modified_request_really_stored_its_change(
    redis_round_trips: ModuleType, counted: dict[str, Any]
) -> None:
    """The counts are of requests that did their work: the session holds every change."""
    for via in ("wsgi", "asgi"):
        redis_round_trips.measure(
            counted["observer"],
            counted["manager"],
            counted["clock"],
            counted["cookie"],
            via=via,
            kind="modified",
            requests=REQUESTS,
        )
    session = counted["manager"].start(counted["cookie"])
    assert session.get("hits") == 2 * (REQUESTS + 1)  # each run has a warm-up request
    assert session.get("user") == 42
