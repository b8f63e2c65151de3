"""Redis round trips per request with the ``redis`` driver, counted by Redis itself.

Three kinds of request go through satchel's WSGI middleware, each ``REQUESTS``
times, against a private ``redis-server`` (so no other client's commands are
counted):

- untouched: the application never looks at the session   -> expected 0
- read-only: it reads a value                               -> expected 1 (GET)
- modified:  it changes a value                             -> expected 2 (GET, SET)

The count is the difference of ``INFO commandstats`` before and after, less the
``INFO`` calls themselves; connections are opened by a warm-up request first.
The same three cases are then run through the bare ``SessionManager`` API
(``lazy``/``get``/``put``/``save``).

Run: ``python benchmarks/redis_round_trips.py`` (needs ``redis-server`` on
PATH, or ``SATCHEL_BENCH_REDIS_URL`` pointing at a Redis that nothing else uses
during the run). Exits non-zero when a count differs from the expected one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis

from satchel import SessionConfig, SessionManager
from satchel.wsgi import SessionMiddleware

REQUESTS = 200
EXPECTED = {"untouched": 0, "read-only": 1, "modified": 2}
URL_ENV = "SATCHEL_BENCH_REDIS_URL"
SESSION_KEY = "satchel.session"


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


def count_commands(observer: redis.Redis, work: Callable[[], None]) -> dict[str, int]:
    """The commands ``work`` sent, per command (the INFO calls of the count left out)."""
    before = command_calls(observer)
    work()
    after = command_calls(observer)
    delta = {name: after[name] - before.get(name, 0) for name in after if name != "info"}
    return {name: calls for name, calls in delta.items() if calls}


def wsgi_app(kind: str) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """A one-line application that leaves, reads or changes the session."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        session = environ[SESSION_KEY]
        if kind == "read-only":
            session.get("user")
        elif kind == "modified":
            session.put("hits", int(session.get("hits", 0)) + 1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def wsgi_request(app: Callable[..., Iterable[bytes]], cookie_header: str) -> None:
    """One request through the middleware, body consumed and closed as a server would."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "HTTP_COOKIE": cookie_header,
        "REMOTE_ADDR": "127.0.0.1",
    }
    body = app(environ, lambda status, headers, exc_info=None: None)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def main() -> int:
    failures = 0
    with redis_url() as url:
        config = SessionConfig(
            driver="redis", connection=url, prefix=f"bench-{secrets.token_hex(4)}:"
        )
        manager = SessionManager(config)
        # One stored session whose cookie every request carries.
        seed = manager.start(None)
        seed.put("user", 42)
        seed.save()
        cookie_header = f"{config.cookie}={seed.id}"
        observer = redis.Redis.from_url(url)

        print(f"Redis round trips per request, {REQUESTS} requests each, counted by {url}")
        print(f"{'path':<10} {'request':<10} {'expected':>8} {'measured':>9}  commands")
        for kind, expected in EXPECTED.items():
            app = SessionMiddleware(wsgi_app(kind), manager)
            wsgi_request(app, cookie_header)  # warm-up: connections are open before counting
            commands = count_commands(
                observer,
                lambda app=app: [wsgi_request(app, cookie_header) for _ in range(REQUESTS)],
            )
            failures += report("wsgi", kind, expected, commands)

        def bare(kind: str) -> None:
            session = manager.lazy(seed.id)
            if kind == "read-only":
                session.get("user")
            elif kind == "modified":
                session.put("hits", int(session.get("hits", 0)) + 1)
            session.save()

        for kind, expected in EXPECTED.items():
            commands = count_commands(
                observer, lambda kind=kind: [bare(kind) for _ in range(REQUESTS)]
            )
            failures += report("manager", kind, expected, commands)
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
