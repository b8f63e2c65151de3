"""satchel beside its peers and the raw clients, on every backend, in one run.

``python -m benchmarks.peers [--quick] [--out FOLDER]`` measures the table that
docs/benchmarks.md shows: for each backend (Redis, memcached, file, cookie,
SQLite, PostgreSQL), each payload size (200 B and 20 KB) and each workload
(untouched, read-only, read-modify-write), every row:

- satchel through its WSGI middleware, ASGI middleware, Flask session
  interface and Django session engine;
- the peers on that backend: Flask-Session, starsessions, Starlette's and
  Flask's signed-cookie sessions, Django's sessions (db, cache, file,
  signed_cookies) and Beaker;
- the floors: the same four frameworks with no session library, the view
  calling the raw client itself (see :mod:`benchmarks.peer_apps`).

Per row it counts backend calls, writes and ``Set-Cookie`` headers per request
(:mod:`benchmarks.counting`: from the servers' own statistics where there is a
server), then times the rows in interleaved rounds (one request per row a
round, the order turning each round) and reports each row's median time over
its framework's floor. Each backend runs in a process of its own (Django's
settings are per process), on private Redis and memcached servers; PostgreSQL
is ``SATCHEL_BENCH_POSTGRES_URL`` (default the local ``test`` database).

Writes ``latest.json``, ``latest.md`` and ``latest.png`` to ``--out``
(default ``benchmarks/results``) and, for a full run, the chart to
``docs/assets/benchmarks.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import counting, peer_apps
from benchmarks.peer_apps import KINDS, Row

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS_CHART = ROOT / "docs" / "assets" / "benchmarks.png"
BACKENDS = ("redis", "memcached", "file", "cookie", "sqlite", "postgresql")
PAYLOADS = {"200 B": 200, "20 KB": 20_000}
COOKIE_LIMIT = 4096  # what browsers keep of one cookie
POSTGRES_ENV = "SATCHEL_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Rounds:
    """How much of each measurement a run does."""

    warm_up: int
    counted: int
    timed: int


FULL = Rounds(warm_up=20, counted=20, timed=500)
QUICK = Rounds(warm_up=1, counted=3, timed=3)


@dataclass
class Result:
    """One row's numbers for one backend, payload and workload."""

    backend: str
    payload: str
    workload: str
    library: str
    glue: str
    floor: bool
    median_us: float
    ratio: float
    calls: float
    writes: float
    set_cookie: float


def make_payload(size: int) -> dict[str, Any]:
    """A session value whose JSON (stored under ``user``) is about ``size`` bytes."""
    value: dict[str, Any] = {"id": 42, "name": "Ada Lovelace", "roles": ["reader", "editor"]}
    value["note"] = "x" * max(0, size - len(json.dumps({"user": value})) - 12)
    return value


# -- servers -------------------------------------------------------------------------------


@contextlib.contextmanager
def private_server(argv: list[str], port: int) -> Iterator[None]:
    from satchel.testing.services import stop_process, wait_for_port

    if shutil.which(argv[0]) is None:
        raise SystemExit(f"{argv[0]} is not on PATH")
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process=process)
        yield
    finally:
        stop_process(process)


# -- one backend ---------------------------------------------------------------------------


def satchel_manager(backend: str, where: dict[str, Any]) -> dict[str, Any]:
    """The ``SessionConfig`` of satchel's rows on ``backend`` (as a dict, for Django too)."""
    base: dict[str, Any] = {"secret_key": peer_apps.SECRET, "lottery": [0, 1], "secure": False}
    if backend in ("redis", "memcached"):
        return {**base, "driver": backend, "connection": where["url"]}
    if backend == "file":
        return {**base, "driver": "file", "files": os.path.join(where["folder"], "satchel")}
    if backend == "cookie":
        return {**base, "driver": "cookie"}
    return {**base, "driver": "database", "connection": where["url"]}


def django_settings(backend: str, where: dict[str, Any]) -> dict[str, Any]:
    # Inside Django, its own settings and clearsessions decide these.
    config = {
        k: v for k, v in satchel_manager(backend, where).items() if k not in ("lottery", "secure")
    }
    settings: dict[str, Any] = {"SATCHEL_SESSION": config}
    if backend == "redis":
        settings["CACHES"] = {"default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": where["url"]}}  # fmt: skip
    elif backend == "memcached":
        settings["CACHES"] = {"default": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": f"{where['host']}:{where['port']}", "OPTIONS": {"no_delay": True}}}  # fmt: skip
    elif backend == "file":
        settings["SESSION_FILE_PATH"] = os.path.join(where["folder"], "django")
        os.makedirs(settings["SESSION_FILE_PATH"])
    elif backend == "sqlite":
        settings["DATABASES"] = {"default": {"ENGINE": "django.db.backends.sqlite3",
                                             "NAME": where["path"], "CONN_MAX_AGE": None}}  # fmt: skip
    elif backend == "postgresql":
        settings["DATABASES"] = {"default": postgres_settings(where["url"])}
    return settings


def postgres_settings(url: str) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return {"ENGINE": "django.db.backends.postgresql", "NAME": parsed.database,
            "USER": parsed.username or "", "PASSWORD": parsed.password or "",
            "HOST": parsed.host or "", "PORT": str(parsed.port or ""), "CONN_MAX_AGE": None}  # fmt: skip


def build_rows(backend: str, where: dict[str, Any], payload: Any, counter: Any) -> list[Row]:
    """Every row on ``backend``: satchel's four glues, the peers, the four floors."""
    from satchel import SessionConfig, SessionManager

    config = satchel_manager(backend, where)
    manager = SessionManager(SessionConfig.from_dict(config))
    if backend in ("sqlite", "postgresql"):
        manager.handler().create_table()  # type: ignore[attr-defined]
    rows = [
        peer_apps.satchel_wsgi(manager, payload),
        peer_apps.satchel_asgi(manager, payload),
        peer_apps.satchel_flask(manager, payload),
    ]
    if backend != "cookie":  # Django's middleware owns the cookie: it holds the session key
        rows.append(peer_apps.django_row("satchel", "satchel.django", payload))
    raw: Any = None
    async_raw: Any = None
    if backend == "redis":
        from starsessions.stores.redis import RedisStore

        raw, async_raw = peer_apps.RawRedis(where["url"]), peer_apps.RawAsyncRedis(where["url"])
        import redis

        rows += [
            peer_apps.beaker_wsgi(
                {"session.type": "ext:redis", "session.url": where["url"]}, payload
            ),
            peer_apps.starsessions_asgi(RedisStore(where["url"]), payload),
            peer_apps.flask_session(
                {"SESSION_TYPE": "redis", "SESSION_REDIS": redis.Redis.from_url(where["url"])},
                payload,
            ),
            peer_apps.django_row(
                "Django (cache)", "django.contrib.sessions.backends.cache", payload
            ),
        ]
    elif backend == "memcached":
        from pymemcache.client.base import Client

        raw = peer_apps.RawMemcached(where["host"], where["port"])
        address = f"{where['host']}:{where['port']}"
        rows += [
            peer_apps.beaker_wsgi(
                {"session.type": "ext:memcached", "session.url": address}, payload
            ),
            peer_apps.flask_session(
                {
                    "SESSION_TYPE": "memcached",
                    "SESSION_MEMCACHED": Client((where["host"], where["port"]), no_delay=True),
                },
                payload,
            ),
            peer_apps.django_row(
                "Django (cache)", "django.contrib.sessions.backends.cache", payload
            ),
        ]
    elif backend == "file":
        raw = peer_apps.RawFile(os.path.join(where["folder"], "raw"))
        rows += [
            peer_apps.beaker_wsgi(
                {
                    "session.type": "file",
                    "session.data_dir": os.path.join(where["folder"], "beaker"),
                },
                payload,
            ),
            peer_apps.flask_session(
                {
                    "SESSION_TYPE": "filesystem",
                    "SESSION_FILE_DIR": os.path.join(where["folder"], "flask"),
                },
                payload,
            ),
            peer_apps.django_row("Django (file)", "django.contrib.sessions.backends.file", payload),
        ]
    elif backend == "cookie":
        from starsessions.stores.cookie import CookieStore

        rows += [
            peer_apps.beaker_wsgi(
                {"session.type": "cookie", "session.validate_key": peer_apps.SECRET}, payload
            ),
            peer_apps.starsessions_asgi(CookieStore(peer_apps.SECRET), payload),
            peer_apps.starlette_cookie_asgi(payload),
            peer_apps.flask_cookie(payload),
            peer_apps.django_row(
                "Django (signed_cookies)",
                "django.contrib.sessions.backends.signed_cookies",
                payload,
            ),
        ]
    else:
        raw = peer_apps.RawSql(where["url"], counter)
        rows += [
            peer_apps.beaker_wsgi(
                {
                    "session.type": "ext:database",
                    "session.url": where["url"],
                    "session.table_name": "beaker_sessions",
                },
                payload,
            ),
            peer_apps.flask_session(
                {
                    "SESSION_TYPE": "sqlalchemy",
                    "SQLALCHEMY_DATABASE_URI": where["url"],
                    "SESSION_SQLALCHEMY_TABLE": "flask_sessions",
                },
                payload,
            ),
            peer_apps.django_row("Django (db)", "django.contrib.sessions.backends.db", payload),
        ]
    rows += [
        peer_apps.raw_wsgi(raw, payload),
        peer_apps.raw_asgi(async_raw or raw, payload),
        peer_apps.raw_flask(raw, payload),
        peer_apps.django_row("raw client", None, payload, raw),
    ]
    return rows


async def login(row: Row) -> str:
    """Store the payload in a new session; the ``name=value`` of its cookie."""
    headers = await row.request("/login", None)
    for name, value in headers:
        if name.lower() == "set-cookie":
            return value.split(";", 1)[0]
    raise RuntimeError(f"{row.library} ({row.glue}): login set no cookie: {headers}")


def set_cookies(headers: peer_apps.Headers) -> int:
    return sum(1 for name, _ in headers if name.lower() == "set-cookie")


async def settled(counter: Any) -> Any:
    """The counter's snapshot once it stops moving.

    A command another row sent without waiting for its answer (pymemcache's
    ``noreply``, a late close) may reach the server after that row's own count;
    it must not count for the next row.
    """
    last = counter.snapshot()
    while True:
        await asyncio.sleep(0.02)
        now = counter.snapshot()
        if now == last:
            return now
        last = now


async def measure_group(
    backend: str, payload_name: str, rows: list[Row], counter: Any, rounds: Rounds
) -> list[Result]:
    """Every workload for every row of one backend and payload."""
    cookies = {id(row): await login(row) for row in rows}
    results = []
    for kind in KINDS:
        path = f"/{kind}"
        counts: dict[int, tuple[float, float, float]] = {}
        for row in rows:  # counted alone, after a warm-up
            for _ in range(rounds.warm_up):
                await row.request(path, cookies[id(row)])
            before = await settled(counter)
            headers = 0
            with counting.watching(counter):
                for _ in range(rounds.counted):
                    headers += set_cookies(await row.request(path, cookies[id(row)]))
            spent = counter.snapshot() - before
            n = rounds.counted
            counts[id(row)] = (spent.calls / n, spent.writes / n, headers / n)
        timings: dict[int, list[float]] = {id(row): [] for row in rows}
        for number in range(rounds.timed):
            turn = number % len(rows)
            for row in rows[turn:] + rows[:turn]:
                started = time.perf_counter()
                await row.request(path, cookies[id(row)])
                timings[id(row)].append(time.perf_counter() - started)
        medians = {key: statistics.median(values) * 1e6 for key, values in timings.items()}
        floors = {row.glue: medians[id(row)] for row in rows if row.floor}
        for row in rows:
            calls, writes, headers_per_request = counts[id(row)]
            results.append(Result(
                backend, payload_name, kind, row.library, row.glue, row.floor,
                round(medians[id(row)], 1), round(medians[id(row)] / floors[row.glue], 3),
                calls, writes, headers_per_request,
            ))  # fmt: skip
    return results


@contextlib.contextmanager
def backend_services(backend: str) -> Iterator[tuple[dict[str, Any], Any]]:
    """Where ``backend`` lives for this run, and its counter."""
    from satchel.testing.services import free_port

    with tempfile.TemporaryDirectory(prefix="satchel-bench-") as folder:
        if backend == "redis":
            port = free_port()
            argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", folder]  # fmt: skip
            with private_server(argv, port):
                url = f"redis://127.0.0.1:{port}/0"
                yield {"url": url}, counting.RedisCounter(url)
        elif backend == "memcached":
            port = free_port()
            argv = [
                "memcached",
                "-u",
                "root",
                "-l",
                "127.0.0.1",
                "-p",
                str(port),
                "-m",
                "64",
                "-I",
                "4m",
            ]
            with private_server(argv, port):
                where = {"host": "127.0.0.1", "port": port, "url": f"127.0.0.1:{port}"}
                yield where, counting.MemcachedCounter("127.0.0.1", port)
        elif backend == "file":
            yield {"folder": folder}, counting.FileCounter(folder)
        elif backend == "cookie":
            yield {}, counting.NoBackend()
        else:
            if backend == "sqlite":
                path = os.path.join(folder, "sessions.db")
                url = f"sqlite:///{path}"
            else:
                path, url = "", os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
                reset_postgres(url)
            counter = counting.SqlCounter()
            yield {"url": url, "path": path}, counter


def reset_postgres(url: str) -> None:
    """Drop the tables an earlier run left, so every run starts from empty tables."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        for table in (
            "sessions",
            "flask_sessions",
            "beaker_sessions",
            "django_session",
            "django_migrations",
            "bench_raw",
        ):
            connection.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


def run_backend(backend: str, rounds: Rounds) -> list[Result]:
    """All rows on one backend (in this process, which it configures Django for)."""
    with backend_services(backend) as (where, counter):
        peer_apps.configure_django(django_settings(backend, where))
        if backend in ("sqlite", "postgresql"):
            from django.core.management import call_command

            counter.watch_django()
            call_command("migrate", "sessions", verbosity=0)
        results: list[Result] = []
        for payload_name, size in PAYLOADS.items():
            payload = make_payload(size)
            if backend == "cookie" and size > COOKIE_LIMIT:
                continue  # no browser keeps a cookie that large
            rows = build_rows(backend, where, payload, counter)
            results += asyncio.run(measure_group(backend, payload_name, rows, counter, rounds))
    return results


# -- the whole table -----------------------------------------------------------------------


def run_all(rounds: Rounds, *, jobs: int) -> list[Result]:
    """Each backend in a child process (``jobs`` at a time); their results in order."""

    def child(backend: str) -> list[Result]:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            argv = [
                sys.executable,
                "-m",
                "benchmarks.peers",
                "--backend",
                backend,
                "--json",
                out.name,
            ]
            if rounds == QUICK:
                argv.append("--quick")
            done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{backend} failed:\n{done.stdout}\n{done.stderr}")
            return [Result(**entry) for entry in json.loads(Path(out.name).read_text())]

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return [result for results in pool.map(child, BACKENDS) for result in results]


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("satchel", "Flask-Session", "starsessions", "starlette", "Flask", "Django",
                 "Beaker", "redis", "pymemcache", "python-memcached", "SQLAlchemy", "psycopg"):  # fmt: skip
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a few requests per cell: shape and counts only"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for latest.json/.md/.png")
    parser.add_argument("--jobs", type=int, default=None, help="backends measured at once")
    parser.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    rounds = QUICK if options.quick else FULL
    if options.backend:
        results = run_backend(options.backend, rounds)
        options.json.write_text(json.dumps([asdict(result) for result in results]))
        return 0
    started = time.monotonic()
    results = run_all(rounds, jobs=options.jobs or (2 if options.quick else 1))
    seconds = time.monotonic() - started
    from benchmarks import peer_report

    meta = {"quick": options.quick, "rounds": asdict(rounds), "seconds": round(seconds, 1),
            "date": time.strftime("%Y-%m-%d", time.gmtime()), "machine": platform.machine(),
            "cpus": os.cpu_count(), "versions": versions()}  # fmt: skip
    options.out.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "results": [asdict(result) for result in results]}
    (options.out / "latest.json").write_text(json.dumps(document, indent=1) + "\n")
    (options.out / "latest.md").write_text(peer_report.markdown(document))
    peer_report.chart(document, options.out / "latest.png")
    if options.out.resolve() == RESULTS.resolve() and not options.quick:
        DOCS_CHART.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(options.out / "latest.png", DOCS_CHART)
    print(peer_report.headline(document))
    print(f"\n{len(results)} results in {seconds:.0f} s; written to {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
