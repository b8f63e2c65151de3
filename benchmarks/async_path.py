"""satchel's per-request cost over the raw client, through its ASGI and WSGI glue.

For the ``file``, ``memcached``, ``redis`` and ``cookie`` drivers and three kinds
of request carrying a session cookie (untouched, read-only, read-modify-write),
each request goes straight into the middleware (no server, no HTTP client) and
is compared, in the same process and in interleaved rounds (each in a shuffled
order, the garbage collector paused while a batch is timed), with:

- the bare application (no session at all);
- the floor: the bare application doing the same I/O with the raw client itself
  (a file read, plus a temporary file and ``os.replace`` to write; pymemcache;
  redis-py, and ``redis.asyncio`` for ASGI). ASGI loads a networked driver's
  session before the application runs whenever the request carries the cookie,
  so its untouched floor is one read (``file``, whose reads never wait, loads on
  first use: its untouched floor is the bare application, as under WSGI);
- for ``cookie``, Starlette's ``SessionMiddleware`` (signed, not encrypted).

Printed: the median over rounds of the mean time per request, the ratio to the
floor, and backend round trips per request with ``block`` off and on (counted
by memcached's ``stats`` and Redis's ``INFO commandstats``; for ``file``, the
driver calls). Needs memcached and Redis (``SATCHEL_BENCH_MEMCACHED``,
default ``127.0.0.1:11211``; ``SATCHEL_BENCH_REDIS_URL``, default
``redis://127.0.0.1:6379/15``, a database nothing else uses during the run).

Run: ``python -m benchmarks.async_path [--rounds N] [--requests N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis
from pymemcache.client.base import Client as MemcacheClient
from starlette.middleware.sessions import SessionMiddleware as StarletteSessions

from satchel import SessionConfig, SessionManager
from satchel.asgi import SessionMiddleware as AsgiSessionMiddleware
from satchel.testing.concurrency import call_asgi, call_wsgi, seed_session, wsgi_environ
from satchel.wsgi import SessionMiddleware as WsgiSessionMiddleware

KINDS = ("untouched", "read-only", "rmw")
DRIVERS = ("file", "memcached", "redis", "cookie")
VALUES = {"user": {"id": 42, "name": "Ada", "roles": ["admin", "dev"]}, "hits": 1}
Message = MutableMapping[str, Any]
AsgiApp = Callable[[Message, Any, Any], Awaitable[None]]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def use_session(session: Any, kind: str) -> None:
    if kind == "read-only":
        session.get("user")
    elif kind == "rmw":
        session.put("hits", int(session.get("hits", 0)) + 1)


async def respond(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def asgi_app(kind: str, io: Callable[[], Awaitable[None]] | None = None) -> AsgiApp:
    """An application that uses the session as ``kind`` says, or does ``io`` itself."""

    async def app(scope: Message, receive: Any, send: Any) -> None:
        if io is not None:
            await io()
        elif "session" in scope:
            use_session(scope["session"], kind)
        await respond(send)

    return app


def wsgi_app(kind: str, io: Callable[[], None] | None = None) -> WsgiApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if io is not None:
            io()
        elif "satchel.session" in environ:
            use_session(environ["satchel.session"], kind)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


class StarletteApp:
    """Starlette's ``request.session`` (a dict) used as ``kind`` says."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        session = scope["session"]
        if self.kind == "read-only":
            session.get("user")
        elif self.kind == "rmw":
            session["hits"] = int(session.get("hits", 0)) + 1
        await respond(send)


# -- raw-client floors -----------------------------------------------------------------------


def file_floor(folder: Path, payload: bytes) -> tuple[Callable[[], None], Callable[[], None]]:
    """A file read, and a read plus an atomic replace: the raw work of the file driver."""
    path = folder / ("f" * 64)
    path.write_bytes(payload)

    def read() -> None:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.read(fd, 65536)
        finally:
            os.close(fd)

    def read_write() -> None:
        read()
        temp = folder / f".tmp-{secrets.token_hex(4)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, payload)
        finally:
            os.close(fd)
        os.replace(temp, path)

    return read, read_write


def as_async(function: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        function()

    return call


# -- timing ----------------------------------------------------------------------------------


class Cases:
    """Named request functions, timed in interleaved rounds."""

    def __init__(self) -> None:
        self.sync: dict[str, Callable[[], object]] = {}
        self.asynchronous: dict[str, Callable[[], Awaitable[object]]] = {}
        self.times: dict[str, list[float]] = {}

    async def run(self, rounds: int, requests: int) -> dict[str, float]:
        """The median over ``rounds`` of each case's mean time per request, in µs.

        Each round times every case once, in a shuffled order (the same seed
        every run), with the cyclic garbage collector paused during each timed
        batch, as ``cpu_ratio`` times: neither the order of the cases nor a
        collection that one of them happens to trigger favours another.
        """
        cases: list[tuple[str, Callable[[], Any]]] = [*self.sync.items()]
        cases += self.asynchronous.items()
        asynchronous = set(self.asynchronous)
        for name, call in cases:  # warm-up: connections open, files exist, caches filled
            for _ in range(max(1, requests // 10)):
                if name in asynchronous:
                    await call()
                else:
                    call()
        order = random.Random(7)
        for _ in range(rounds):
            order.shuffle(cases)
            for name, call in cases:
                gc.collect()
                gc.disable()
                try:
                    start = time.perf_counter()
                    if name in asynchronous:
                        for _ in range(requests):
                            await call()
                    else:
                        for _ in range(requests):
                            call()
                    spent = time.perf_counter() - start
                finally:
                    gc.enable()
                self.times.setdefault(name, []).append(spent / requests)
        return {name: statistics.median(values) * 1e6 for name, values in self.times.items()}


def manager_for(driver: str, folder: Path, memcached: str, redis_url: str, block: bool) -> Any:
    settings: dict[str, Any] = {
        "driver": driver,
        "lottery": (0, 1),
        "secret_key": "bench-" + secrets.token_urlsafe(32),
        "block": block,
        "prefix": f"bench-{secrets.token_hex(4)}:",
    }
    if driver == "file":
        settings["files"] = str(folder / f"sessions-{secrets.token_hex(4)}")
    elif driver == "memcached":
        settings["connection"] = memcached
    elif driver == "redis":
        settings["connection"] = redis_url
    return SessionManager(SessionConfig(**settings))


def asgi_call(app: AsgiApp, cookie: str) -> Callable[[], Awaitable[int]]:
    headers = [(b"host", b"bench"), (b"cookie", cookie.encode("latin-1"))]
    return lambda: call_asgi(app, headers)


def wsgi_call(app: WsgiApp, cookie: str) -> Callable[[], object]:
    return lambda: call_wsgi(app, wsgi_environ(cookie))


# -- round trips -----------------------------------------------------------------------------


def memcached_commands(client: MemcacheClient) -> int:
    stats = client.stats()
    names = (b"cmd_get", b"cmd_set", b"cmd_touch", b"delete_hits", b"delete_misses")
    return sum(int(stats.get(name, 0)) for name in names)


def redis_commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(entry["calls"]) for name, entry in stats.items() if name != "cmdstat_info")


class FileCalls:
    """Counts the file driver's calls by wrapping the handler's methods (not the calls
    one makes to another: ``write_existing`` writes through ``write``)."""

    METHODS = ("read", "write", "write_existing", "destroy", "lock")

    def __init__(self) -> None:
        self.count = 0
        self.depth = 0

    def watch(self, manager: SessionManager) -> None:
        handler = manager.handler()
        for name in self.METHODS:
            method = getattr(handler, name)

            def counted(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
                self.count += self.depth == 0
                self.depth += 1
                try:
                    return _method(*args, **kwargs)
                finally:
                    self.depth -= 1

            setattr(handler, name, counted)


async def round_trips(
    folder: Path, memcached: str, redis_url: str, mc: MemcacheClient, rc: redis.Redis
) -> list[str]:
    lines = []
    requests = 20
    for driver in ("file", "memcached", "redis"):
        for block in (False, True):
            row = []
            for via in ("asgi", "wsgi"):
                for kind in KINDS:
                    manager = manager_for(driver, folder, memcached, redis_url, block)
                    cookie = f"{manager.config.cookie}={seed_session(manager, VALUES)}"
                    files = FileCalls()
                    if driver == "file":
                        files.watch(manager)
                    if via == "asgi":
                        call = asgi_call(AsgiSessionMiddleware(asgi_app(kind), manager), cookie)
                        await call()
                    else:
                        wcall = wsgi_call(WsgiSessionMiddleware(wsgi_app(kind), manager), cookie)
                        wcall()

                    def counter(driver: str = driver, files: FileCalls = files) -> int:
                        if driver == "memcached":
                            return memcached_commands(mc)
                        if driver == "redis":
                            return redis_commands(rc)
                        return files.count

                    before = counter()
                    for _ in range(requests):
                        if via == "asgi":
                            await call()
                        else:
                            wcall()
                    row.append(f"{(counter() - before) / requests:g}")
            lines.append(
                f"{driver:<10} block={'on ' if block else 'off'} "
                + " ".join(f"{value:>6}" for value in row)
            )
    return lines


# -- main ------------------------------------------------------------------------------------


async def bench(
    rounds: int, requests: int, memcached: str, redis_url: str, out: Path | None
) -> None:
    host, _, port = memcached.partition(":")
    mc = MemcacheClient((host, int(port or 11211)), no_delay=True, default_noreply=False)
    rc = redis.Redis.from_url(redis_url)
    arc = aredis.Redis.from_url(redis_url)
    payload = b'{"user":{"id":42,"name":"Ada","roles":["admin","dev"]},"hits":1}'
    mc_key, rc_key = f"bench-raw-{secrets.token_hex(4)}", f"bench-raw-{secrets.token_hex(4)}"
    mc.set(mc_key, payload)
    rc.set(rc_key, payload)

    async def aredis_read() -> None:
        await arc.get(rc_key)

    async def aredis_rmw() -> None:
        await arc.get(rc_key)
        await arc.set(rc_key, payload, ex=7200, xx=True)

    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        file_read, file_rmw = file_floor(folder, payload)

        def mc_rmw() -> None:
            mc.get(mc_key)
            mc.set(mc_key, payload, expire=7200)

        def rc_rmw() -> None:
            rc.get(rc_key)
            rc.set(rc_key, payload, ex=7200, xx=True)

        floors_sync: dict[str, dict[str, Callable[[], object]]] = {
            "file": {"read": file_read, "rmw": file_rmw},
            "memcached": {"read": lambda: mc.get(mc_key), "rmw": mc_rmw},
            "redis": {"read": lambda: rc.get(rc_key), "rmw": rc_rmw},
        }
        cases = Cases()
        bare_asgi, bare_wsgi = asgi_app("untouched"), wsgi_app("untouched")
        cases.asynchronous["asgi bare"] = asgi_call(bare_asgi, "a=b")
        cases.sync["wsgi bare"] = wsgi_call(bare_wsgi, "a=b")
        for driver, floors in floors_sync.items():
            for op, function in floors.items():
                cases.sync[f"wsgi {driver} floor {op}"] = wsgi_call(wsgi_app(op, function), "a=b")
                io = (aredis_read if op == "read" else aredis_rmw) if driver == "redis" else None
                cases.asynchronous[f"asgi {driver} floor {op}"] = asgi_call(
                    asgi_app(op, io or as_async(function)), "a=b"
                )
        for kind in KINDS:
            starlette = StarletteSessions(StarletteApp(kind), secret_key="bench-secret")
            login = StarletteSessions(StarletteApp("login"), secret_key="bench-secret")
            cookie = await starlette_cookie(login)
            cases.asynchronous[f"asgi starlette {kind}"] = asgi_call(starlette, cookie)
        for driver in DRIVERS:
            for kind in KINDS:
                manager = manager_for(driver, folder, memcached, redis_url, block=False)
                cookie = f"{manager.config.cookie}={seed_session(manager, VALUES)}"
                asgi = AsgiSessionMiddleware(asgi_app(kind), manager)
                cases.asynchronous[f"asgi {driver} {kind}"] = asgi_call(asgi, cookie)
                wsgi = WsgiSessionMiddleware(wsgi_app(kind), manager)
                cases.sync[f"wsgi {driver} {kind}"] = wsgi_call(wsgi, cookie)
        result = await cases.run(rounds, requests)
        rows = ratios(result)
        report(rows)
        print("\nbackend round trips per request (file: driver calls), with block off and on")
        print(f"{'':<21}" + " ".join(f"{v + ' ' + k[:5]:>6}" for v in ("A", "W") for k in KINDS))
        trips = await round_trips(folder, memcached, redis_url, mc, rc)
        for line in trips:
            print(line)
        if out is not None:
            document = {"rounds": rounds, "requests": requests, "rows": rows, "round_trips": trips}
            out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    mc.delete(mc_key)
    rc.delete(rc_key)
    await arc.aclose()


async def starlette_cookie(app: Any) -> str:
    """The cookie Starlette's middleware sets for a session holding ``VALUES``."""
    cookies: list[str] = []

    class Login:
        async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
            scope["session"].update(VALUES)
            await respond(send)

    async def send(message: Message) -> None:
        for name, value in message.get("headers", []):
            if name == b"set-cookie":
                cookies.append(value.decode("latin-1").split(";")[0])

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    app.app = Login()
    scope = {"type": "http", "path": "/", "headers": [], "method": "GET", "query_string": b""}
    await app(scope, receive, send)
    return cookies[0]


def ratios(result: dict[str, float]) -> list[dict[str, Any]]:
    """Each satchel row beside its floor: the raw client doing the same I/O in the same
    app (the bare app for an untouched request that loads nothing), or Starlette's
    ``SessionMiddleware`` for the cookie driver under ASGI."""
    rows = []
    for via in ("asgi", "wsgi"):
        bare = result[f"{via} bare"]
        for driver in DRIVERS:
            for kind in KINDS:
                measured = result[f"{via} {driver} {kind}"]
                if driver == "cookie":
                    floor_name = f"asgi starlette {kind}" if via == "asgi" else f"{via} bare"
                elif kind == "untouched" and (via == "wsgi" or driver == "file"):
                    floor_name = f"{via} bare"  # loads on first use: no I/O to compare with
                else:
                    floor_name = f"{via} {driver} floor {'rmw' if kind == 'rmw' else 'read'}"
                floor = result[floor_name]
                rows.append({"via": via, "driver": driver, "kind": kind, "us": measured,
                             "floor": floor_name, "floor_us": floor, "ratio": measured / floor,
                             "over_bare_us": measured - bare})  # fmt: skip
    return rows


def report(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'via':<5} {'driver':<10} {'request':<10} {'µs':>8} {'floor':>8} {'ratio':>6} {'over bare':>9}"
    )
    for row in rows:
        print(
            f"{row['via']:<5} {row['driver']:<10} {row['kind']:<10} {row['us']:>8.1f} "
            f"{row['floor_us']:>8.1f} {row['ratio']:>6.2f} {row['over_bare_us']:>9.1f}"
        )
    print("(cookie's floor: Starlette's SessionMiddleware on ASGI, the bare app on WSGI)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this path")
    args = parser.parse_args()
    memcached = os.environ.get("SATCHEL_BENCH_MEMCACHED", "127.0.0.1:11211")
    redis_url = os.environ.get("SATCHEL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    asyncio.run(bench(args.rounds, args.requests, memcached, redis_url, args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
