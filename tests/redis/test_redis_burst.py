"""A burst of requests never runs a connection pool out into 500s (Starlette under uvicorn).

The replay of the attack: 20 real users log in, then 300 requests with random
cookies of a valid shape (ids the server never issued, each costing a store
read) arrive at once with one request of every real user. Every request
waits for a pooled connection up to ``options.pool_timeout``: with the
default pool each gets its 200, and with a deliberately tiny pool and wait
the ones that cannot be served in time get 503 with ``Retry-After``, the
answer to a lock timeout. None gets a 500.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures.live_servers import RawReply, ahttp_get, http_get, serve_asgi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from satchel import SessionConfig, SessionManager
from satchel.asgi import SessionMiddleware
from satchel.ids import generate_id

REAL_USERS = 20
RANDOM_COOKIES = 300
COOKIE = "satchel_session"


def burst_app(manager: SessionManager) -> Any:
    async def login(request: Request) -> PlainTextResponse:
        request.session.regenerate()
        request.session.put("user", request.query_params["user"])
        return PlainTextResponse("ok")

    async def visit(request: Request) -> PlainTextResponse:
        request.session.increment("visits")
        return PlainTextResponse(str(request.session.get("user", "anonymous")))

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(request.session.get("user", "anonymous")))

    routes = [Route("/login", login), Route("/visit", visit), Route("/", home)]
    return SessionMiddleware(Starlette(routes=routes), manager)


def cookie_of(reply: RawReply) -> str:
    header = reply.header("set-cookie")
    assert header is not None, reply
    return header.split(";", 1)[0].split("=", 1)[1]


@pytest.fixture
def serve_burst_app(redis_url: str, unique_prefix: str) -> Iterator[Any]:
    """``serve(**options)``: the burst app on the redis driver under uvicorn; returns its address."""
    with contextlib.ExitStack() as servers:

        def serve(**options: Any) -> str:
            config = SessionConfig(
                driver="redis",
                connection=redis_url,
                prefix=unique_prefix,
                lottery=(0, 1),
                options=options,
            )
            app = burst_app(SessionManager(config))
            return servers.enter_context(serve_asgi(app, backlog=4096))

        yield serve


def replay_burst(address: str) -> tuple[collections.Counter[int], list[RawReply], list[str]]:
    """Log 20 users in, then send the 300 random cookies and the 20 users' requests at once.

    Returns the statuses of all 320 requests, the users' replies and their names.
    """
    users = [f"user-{index}" for index in range(REAL_USERS)]
    cookies = [cookie_of(http_get(address, f"/login?user={user}")) for user in users]

    async def burst() -> list[RawReply]:
        strangers = [
            ahttp_get(address, "/", {"Cookie": f"{COOKIE}={generate_id()}"})
            for _ in range(RANDOM_COOKIES)
        ]
        real = [
            ahttp_get(address, "/visit", {"Cookie": f"{COOKIE}={cookie}"}) for cookie in cookies
        ]
        # The users' requests go out in the middle of the burst, not ahead of it.
        middle = RANDOM_COOKIES // 2
        return await asyncio.gather(*strangers[:middle], *real, *strangers[middle:])

    replies = asyncio.run(burst())
    middle = RANDOM_COOKIES // 2
    real_replies = replies[middle : middle + REAL_USERS]
    return collections.Counter(reply.status for reply in replies), real_replies, users


def assert_never_a_500(
    statuses: collections.Counter[int], real: list[RawReply], users: list[str]
) -> None:
    assert set(statuses) <= {200, 503}, f"statuses of the burst: {dict(statuses)}"
    for reply, user in zip(real, users, strict=True):
        if reply.status == 200:
            assert reply.body.decode() == user
        else:
            assert reply.status == 503
            assert reply.header("retry-after") is not None
            assert reply.header("set-cookie") is None


def test_a_burst_on_the_default_pool_gets_every_request_served(serve_burst_app: Any) -> None:
    address = serve_burst_app()
    statuses, real, users = replay_burst(address)
    print(f"default pool: {dict(statuses)}")  # the numbers the replay is about
    assert_never_a_500(statuses, real, users)
    assert [reply.status for reply in real] == [200] * REAL_USERS


def test_a_burst_on_a_tiny_pool_gets_503s_with_retry_after_never_a_500(
    serve_burst_app: Any,
) -> None:
    address = serve_burst_app(max_connections=2, pool_timeout=0.05)
    statuses, real, users = replay_burst(address)
    print(f"tiny pool: {dict(statuses)}")  # the numbers the replay is about
    assert_never_a_500(statuses, real, users)
    assert statuses[503] > 0, "the pool was never exhausted: the 503 path went untested"
