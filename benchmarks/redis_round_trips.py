"""Redis round trips per request with the ``redis`` driver, counted by Redis itself.

Requests go through satchel's WSGI middleware (the sync driver) and its ASGI
middleware (the ``redis.asyncio`` twin), ``REQUESTS`` of each kind, against a
private ``redis-server`` (so no other client's commands are counted):

- no cookie: a first visit whose application never looks at the session
- untouched: the request carries the session's cookie, the application never looks
- read-only: it reads a value (GET)
- modified:  it changes a value (GET, then SET … XX)
- refreshed: it only reads, but ``touch_interval`` has passed since the last
  write, so the unchanged session is written again to slide its expiry (GET, SET … XX)

WSGI loads the session lazily, so an untouched request costs nothing; ASGI
reads it before the application runs when the request carries the cookie (a
synchronous ``request.session.get`` inside a coroutine cannot wait for I/O),
so there an untouched request costs one GET (``skip_paths`` make it 0).

The count is the difference of ``INFO commandstats`` before and after, less the
``INFO`` calls themselves; connections are opened by a warm-up request first.
The same cases are then run through the bare ``SessionManager`` API
(``lazy``/``get``/``put``/``save``). ``tests/redis/test_round_trips_per_request.py``
runs these very functions in CI.

Run: ``python benchmarks/redis_round_trips.py`` (needs ``redis-server`` on
PATH, or ``SATCHEL_BENCH_REDIS_URL`` pointing at a Redis that nothing else uses
during the run). Exits non-zero when a count differs from the expected one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from functools import partial
from typing import Any

import redis

from satchel import SessionConfig, SessionManager
from satchel.asgi import SessionMiddleware as AsgiSessionMiddleware
from satchel.testing.concurrency import call_asgi, call_wsgi, wsgi_environ
from satchel.wsgi import SessionMiddleware as WsgiSessionMiddleware

REQUESTS = 200
KINDS = ("no cookie", "untouched", "read-only", "modified", "refreshed")
EXPECTED = {
    "wsgi": {"no cookie": 0, "untouched": 0, "read-only": 1, "modified": 2, "refreshed": 2},
    # The session is read before the app runs whenever the request carries its cookie.
    "asgi": {"no cookie": 0, "untouched": 1, "read-only": 1, "modified": 2, "refreshed": 2},
}
URL_ENV = "SATCHEL_BENCH_REDIS_URL"
SESSION_KEY = "satchel.session"
Message = MutableMapping[str, Any]


class SteppingClock:
    """The manager's clock; a "refreshed" request moves it past ``touch_interval`` first."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """``SATCHEL_BENCH_REDIS_URL``, or a private redis-server on a free loopback port."""
    url = os.environ.get(URL_ENV)
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(f"redis-server is not on PATH and {URL_ENV} is not set")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", folder]  # fmt: skip
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)


def command_calls(observer: redis.Redis) -> dict[str, int]:
    """Calls per command so far, as Redis counts them."""
    stats = observer.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


def commands_since(observer: redis.Redis, before: dict[str, int]) -> dict[str, int]:
    """The commands sent since ``before = command_calls(observer)``, per command
    (the INFO calls of the count left out)."""
    after = command_calls(observer)
    delta = {name: after[name] - before.get(name, 0) for name in after if name != "info"}
    return {name: calls for name, calls in delta.items() if calls}


def count_commands(observer: redis.Redis, work: Callable[[], object]) -> dict[str, int]:
    """The commands ``work`` sent, per command."""
    before = command_calls(observer)
    work()
    return commands_since(observer, before)


def repeat(work: Callable[[], object], times: int) -> Callable[[], None]:
    """``work`` done ``times`` times in a row, as one callable to count."""

    def run() -> None:
        for _ in range(times):
            work()

    return run


def _use_session(session: Any, kind: str) -> None:
    if kind in ("read-only", "refreshed"):
        session.get("user")
    elif kind == "modified":
        session.put("hits", int(session.get("hits", 0)) + 1)


def wsgi_app(kind: str) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """A one-line WSGI application that leaves, reads or changes the session."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        _use_session(environ.get(SESSION_KEY), kind)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def asgi_app(kind: str) -> Callable[..., Awaitable[None]]:
    """The ASGI form of :func:`wsgi_app`."""

    async def app(scope: Message, receive: Any, send: Any) -> None:
        _use_session(scope.get("session"), kind)  # none on a skip path
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def wsgi_request(app: Callable[..., Iterable[bytes]], cookie_header: str | None) -> str:
    """One request through the middleware, body consumed and closed as a server would;
    returns the status line."""
    status, _, _ = call_wsgi(app, wsgi_environ(cookie_header))
    return status


async def asgi_request(app: Callable[..., Awaitable[None]], cookie_header: str | None) -> int:
    """One HTTP request through the ASGI middleware; returns the status code."""
    headers = [(b"host", b"bench")]
    if cookie_header is not None:
        headers.append((b"cookie", cookie_header.encode("latin-1")))
    return await call_asgi(app, headers)


def measure(
    observer: redis.Redis,
    manager: SessionManager,
    clock: SteppingClock,
    cookie: str,
    *,
    via: str,
    kind: str,
    requests: int = REQUESTS,
) -> dict[str, int]:
    """The commands Redis received for ``requests`` requests of ``kind`` through the
    ``via`` (``wsgi`` or ``asgi``) middleware, after one warm-up request."""
    cookie_header = None if kind == "no cookie" else f"{manager.config.cookie}={cookie}"

    def next_request() -> None:
        if kind == "refreshed":
            clock.now += manager.config.touch_interval + 1

    if via == "wsgi":
        wsgi = WsgiSessionMiddleware(wsgi_app(kind), manager)

        def one() -> None:
            next_request()
            wsgi_request(wsgi, cookie_header)

        one()  # warm-up: connections are open before counting
        return count_commands(observer, repeat(one, requests))

    asgi = AsgiSessionMiddleware(asgi_app(kind), manager)

    async def main() -> dict[str, int]:
        async def one() -> None:
            next_request()
            await asgi_request(asgi, cookie_header)

        await one()  # warm-up: this event loop's client connects before counting
        before = command_calls(observer)
        for _ in range(requests):
            await one()
        return commands_since(observer, before)

    return asyncio.run(main())


def seed(manager: SessionManager) -> str:
    """Store the session every request carries; return its cookie value."""
    session = manager.start(None)
    session.put("user", 42)
    session.save()
    return session.cookie_value()


def main() -> int:
    failures = 0
    with redis_url() as url:
        clock = SteppingClock()
        config = SessionConfig(
            driver="redis", connection=url, prefix=f"bench-{secrets.token_hex(4)}:"
        )
        manager = SessionManager(config, clock=clock)
        cookie = seed(manager)
        observer = redis.Redis.from_url(url)

        print(f"Redis round trips per request, {REQUESTS} requests each, counted by {url}")
        print(f"{'path':<10} {'request':<10} {'expected':>8} {'measured':>9}  commands")
        for via, expected in EXPECTED.items():
            for kind in KINDS:
                commands = measure(observer, manager, clock, cookie, via=via, kind=kind)
                failures += report(via, kind, expected[kind], commands)

        def bare(kind: str) -> None:
            session = manager.lazy(cookie)
            _use_session(session, kind)
            session.save()

        for kind in ("untouched", "read-only", "modified"):
            commands = count_commands(observer, repeat(partial(bare, kind), REQUESTS))
            failures += report("manager", kind, EXPECTED["wsgi"][kind], commands)
        observer.close()
    return 1 if failures else 0


def report(path: str, kind: str, expected: int, commands: dict[str, int]) -> int:
    """Print one line; return 1 when the count per request is not the expected one."""
    total = sum(commands.values())
    per_request = total / REQUESTS
    breakdown = ", ".join(
        f"{name.upper()} {calls / REQUESTS:g}" for name, calls in sorted(commands.items())
    )
    ok = per_request == expected
    print(
        f"{path:<10} {kind:<10} {expected:>8} {per_request:>9g}  {breakdown or '-'}"
        f"{'' if ok else '   <-- differs'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
