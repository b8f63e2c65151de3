"""satchel side by side with peer libraries, in one run, on one Redis server.

For three kinds of request — untouched (the handler never looks at the
session), read-only and modified — it measures each library's time per
request (in interleaved rounds, so drift in the machine's speed weighs on
every library alike) and the Redis commands each request costs, and prints
satchel's time as a ratio of each peer's (below 1.0: satchel is faster).

- Flask: satchel's ``SessionInterface`` (redis driver) vs Flask-Session 0.8 (redis).
- Starlette: satchel's ASGI middleware (redis driver, redis.asyncio) vs
  starsessions (RedisStore, autoload) and Starlette's own signed-cookie
  ``SessionMiddleware`` (no store at all: a floor, not a like-for-like peer).
- Django: ``SESSION_ENGINE = "satchel.django"`` (redis driver) vs Django's
  cache backend on a ``RedisCache`` of the same server, each behind Django's
  own ``SessionMiddleware``, through Django's test ``Client``.

Run: ``nox -s bench`` or ``python benchmarks/peers.py`` (needs ``redis-server`` on PATH).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import django
import flask
import httpx
import redis
from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponse
from django.test import Client as DjangoClient
from django.test.utils import override_settings
from django.urls import path as django_path
from flask_session import Session as FlaskSessionExtension
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessions
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starsessions import SessionAutoloadMiddleware
from starsessions import SessionMiddleware as StarSessions
from starsessions.stores.redis import RedisStore

from satchel import SessionConfig, SessionManager
from satchel.asgi import SessionMiddleware as SatchelSessions
from satchel.flask import SessionInterface

REQUESTS = 2000
KINDS = ("untouched", "read-only", "modified")


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A private redis-server on a free loopback port, so command counts are ours alone."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        with contextlib.suppress(redis.ConnectionError):
            client.ping()
            break
        time.sleep(0.05)
    try:
        yield url
    finally:
        process.terminate()
        process.wait()


def command_calls(client: redis.Redis) -> int:
    stats: dict[str, dict[str, int]] = client.info("commandstats")  # type: ignore[assignment]
    ignored = ("cmdstat_info", "cmdstat_ping", "cmdstat_config", "cmdstat_client", "cmdstat_hello")
    return sum(value["calls"] for name, value in stats.items() if not name.startswith(ignored))


class Result:
    def __init__(self, library: str, kind: str, seconds: list[float], commands: float) -> None:
        self.library = library
        self.kind = kind
        self.microseconds = statistics.median(seconds) * 1e6
        self.commands = commands


COUNTED_REQUESTS = 100  # requests per library whose Redis commands are counted, alone


def measure(kind: str, client: redis.Redis, requests: dict[str, Callable[[], Any]]) -> list[Result]:
    """:func:`ameasure` for synchronous requests (each awaited as a coroutine, alike)."""

    def as_coroutine(one_request: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
        async def call() -> Any:
            return one_request()

        return call

    return asyncio.run(
        ameasure(kind, client, {library: as_coroutine(f) for library, f in requests.items()})
    )


async def ameasure(
    kind: str, client: redis.Redis, requests: dict[str, Callable[[], Awaitable[Any]]]
) -> list[Result]:
    """One kind of request for every library: commands counted per library on its own,
    then the timings taken in rounds of one request per library (the order turning
    each round), so a machine that slows down or speeds up weighs on all alike."""
    commands = {}
    for library, one_request in requests.items():
        for _ in range(50):  # warm up connections and caches
            await one_request()
        before = command_calls(client)
        for _ in range(COUNTED_REQUESTS):
            await one_request()
        commands[library] = (command_calls(client) - before) / COUNTED_REQUESTS
    timings: dict[str, list[float]] = {library: [] for library in requests}
    order = list(requests)
    for round_number in range(REQUESTS):
        turn = round_number % len(order)
        for library in order[turn:] + order[:turn]:
            started = time.perf_counter()
            await requests[library]()
            timings[library].append(time.perf_counter() - started)
    return [Result(library, kind, timings[library], commands[library]) for library in requests]


def measure_test_clients(clients: dict[str, Any], client: redis.Redis) -> list[Result]:
    """Every kind of request through each library's synchronous test client (``get(path)``)."""
    results = []
    for kind in KINDS:
        requests = {
            library: (lambda path=f"/{kind}", http=test_client: http.get(path))
            for library, test_client in clients.items()
        }
        results += measure(kind, client, requests)
    return results


# -- Flask -------------------------------------------------------------------------------


def flask_app(configure: Callable[[Any], None]) -> Any:
    app = flask.Flask(__name__)
    app.secret_key = "benchmark-secret-key-0123456789"
    configure(app)

    @app.get("/login")
    def login() -> str:
        flask.session["user"] = {"id": 1, "cart": ["apple"]}
        return "ok"

    @app.get("/untouched")
    def untouched() -> str:
        return "ok"

    @app.get("/read-only")
    def read_only() -> str:
        return str(flask.session.get("user"))

    @app.get("/modified")
    def modified() -> str:
        flask.session["counter"] = flask.session.get("counter", 0) + 1
        return "ok"

    return app


def bench_flask(url: str, client: redis.Redis) -> list[Result]:
    def satchel_setup(app: Any) -> None:
        manager = SessionManager(SessionConfig(driver="redis", connection=url, lottery=(0, 1)))
        app.session_interface = SessionInterface(manager)

    def flask_session_setup(app: Any) -> None:
        app.config.update(SESSION_TYPE="redis", SESSION_REDIS=redis.Redis.from_url(url))
        FlaskSessionExtension(app)

    clients = {
        library: flask_app(setup).test_client()
        for library, setup in (("satchel", satchel_setup), ("Flask-Session", flask_session_setup))
    }
    for test_client in clients.values():
        test_client.get("/login")
    return measure_test_clients(clients, client)


# -- Starlette -----------------------------------------------------------------------------


def starlette_routes() -> list[Any]:
    async def login(request: Request) -> PlainTextResponse:
        request.session["user"] = {"id": 1, "cart": ["apple"]}
        return PlainTextResponse("ok")

    async def untouched(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def read_only(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(request.session.get("user")))

    async def modified(request: Request) -> PlainTextResponse:
        request.session["counter"] = request.session.get("counter", 0) + 1
        return PlainTextResponse("ok")

    return [
        Route("/login", login),
        Route("/untouched", untouched),
        Route("/read-only", read_only),
        Route("/modified", modified),
    ]


async def bench_starlette(url: str, client: redis.Redis) -> list[Result]:
    manager = SessionManager(SessionConfig(driver="redis", connection=url, lottery=(0, 1)))
    stacks = {
        "satchel": [Middleware(SatchelSessions, manager=manager)],
        "starsessions": [
            Middleware(StarSessions, store=RedisStore(url), lifetime=3600, cookie_https_only=False),
            Middleware(SessionAutoloadMiddleware),
        ],
        "Starlette (cookie)": [Middleware(StarletteSessions, secret_key="benchmark-secret")],
    }
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for library, middleware in stacks.items():
            app = Starlette(routes=starlette_routes(), middleware=middleware)
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://testserver"
                )
            )
            await http.get("/login")
            clients[library] = http
        results = []
        for kind in KINDS:
            requests = {
                library: (lambda path=f"/{kind}", http=http: http.get(path))
                for library, http in clients.items()
            }
            results += await ameasure(kind, client, requests)
    return results


# -- Django --------------------------------------------------------------------------------


def django_login(request: HttpRequest) -> HttpResponse:
    request.session["user"] = {"id": 1, "cart": ["apple"]}
    return HttpResponse("ok")


def django_untouched(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def django_read_only(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(request.session.get("user")))


def django_modified(request: HttpRequest) -> HttpResponse:
    request.session["counter"] = request.session.get("counter", 0) + 1
    return HttpResponse("ok")


# This module is the Django app's urlconf (ROOT_URLCONF).
urlpatterns = [
    django_path("login", django_login),
    django_path("untouched", django_untouched),
    django_path("read-only", django_read_only),
    django_path("modified", django_modified),
]


def bench_django(url: str, client: redis.Redis) -> list[Result]:
    django_settings.configure(
        SECRET_KEY="benchmark-secret-key-0123456789",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["django.contrib.sessions"],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        ROOT_URLCONF=__name__,
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
        },
        SATCHEL_SESSION={"driver": "redis", "connection": url},
    )
    django.setup()
    engines = {
        "satchel": "satchel.django",
        "Django (cache)": "django.contrib.sessions.backends.cache",
    }
    clients = {}
    for library, engine in engines.items():
        # Django's SessionMiddleware takes its engine when the client's first request loads it.
        with override_settings(SESSION_ENGINE=engine):
            test_client = DjangoClient()
            test_client.get("/login")
        clients[library] = test_client
    return measure_test_clients(clients, client)


def report(title: str, results: list[Result]) -> None:
    print(f"\n{title}: median µs per request ({REQUESTS} requests), Redis commands per request")
    libraries = list(dict.fromkeys(result.library for result in results))
    by_key = {(result.library, result.kind): result for result in results}
    header = f"{'request':<11}" + "".join(f"{library:>24}" for library in libraries)
    print(header)
    for kind in KINDS:
        cells = []
        for library in libraries:
            result = by_key[(library, kind)]
            cells.append(f"{result.microseconds:>10.0f} µs {result.commands:>4.1f} cmd")
        print(f"{kind:<11}" + "".join(f"{cell:>24}" for cell in cells))
    for library in libraries[1:]:
        ratios = [
            by_key[("satchel", kind)].microseconds / by_key[(library, kind)].microseconds
            for kind in KINDS
        ]
        print(
            f"satchel / {library}: "
            + ", ".join(f"{kind} {ratio:.2f}" for kind, ratio in zip(KINDS, ratios, strict=True))
        )


def main() -> None:
    with redis_server() as url:
        client = redis.Redis.from_url(url)
        report("Flask", bench_flask(url, client))
        report("Starlette", asyncio.run(bench_starlette(url, client)))
        report("Django", bench_django(url, client))


if __name__ == "__main__":
    main()
