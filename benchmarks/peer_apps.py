"""The rows of the comparison: one application per library, glue and backend.

Every row answers four paths: ``/login`` stores the payload under ``user``;
``/untouched`` never looks at the session; ``/read-only`` reads ``user``;
``/read-modify-write`` reads ``user`` and increments ``counter``. Requests go
straight to each stack's WSGI or ASGI callable (no test client, no HTTP), so
what is timed is the framework, the session library and the backend.

The floors ("raw client") are the same framework with no session library: the
view parses the cookie itself and calls the backend's client directly (redis-py
GET/SET EX, pymemcache get/set, a file read and an atomic replace, one SQL
SELECT and one UPDATE; for cookies a JSON payload signed with HMAC-SHA256).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from wsgiref.util import setup_testing_defaults

import flask
from flask.sessions import SessionInterface as FlaskSessionInterface

from benchmarks.counting import SqlCounter
from satchel import SessionManager
from satchel.asgi import SessionMiddleware as SatchelAsgi
from satchel.flask import SessionInterface as SatchelFlask
from satchel.testing.concurrency import call_wsgi
from satchel.wsgi import SessionMiddleware as SatchelWsgi

SECRET = "benchmark-secret-key-0123456789-abcdefghij"
KINDS = ("untouched", "read-only", "read-modify-write")
LIFETIME_SECONDS = 3600
Headers = list[tuple[str, str]]
Request = Callable[[str, str | None], Awaitable[Headers]]  # (path, cookie header) -> headers


@dataclass
class Row:
    """One library on one glue; ``request`` sends one request and returns its headers."""

    library: str
    glue: str
    request: Request
    floor: bool = False


# -- the session's use, the same in every framework ----------------------------------------


def use_mapping(session: Any, path: str, payload: Any) -> str:
    """What each view does with a dict-like session (Flask, Django, Starlette, Beaker)."""
    if path == "/login":
        session["user"] = payload
    elif path == "/read-only":
        return str(len(session.get("user") or ()))
    elif path == "/read-modify-write":
        session.get("user")
        session["counter"] = session.get("counter", 0) + 1
    return "ok"


def use_satchel(session: Any, path: str, payload: Any) -> str:
    """The same, through satchel's ``get``/``put``."""
    if path == "/login":
        session.put("user", payload)
    elif path == "/read-only":
        return str(len(session.get("user") or ()))
    elif path == "/read-modify-write":
        session.get("user")
        session.put("counter", session.get("counter", 0) + 1)
    return "ok"


# -- raw clients: the floors ---------------------------------------------------------------


class RawStore(Protocol):
    def load(self, key: str) -> dict[str, Any] | None: ...
    def save(self, key: str, data: dict[str, Any]) -> None: ...


class RawCookie:
    """A floor for the cookie backend: JSON, base64 and an HMAC, no library."""

    key = SECRET.encode()

    def sign(self, data: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
        mac = hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def open(self, value: str) -> dict[str, Any] | None:
        body, _, mac = value.rpartition(".")
        expected = hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, expected):
            return None
        loaded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body))
        return loaded


RAW_COOKIE = "raw_session"


def raw_view(store: RawStore | None, path: str, cookie_header: str | None, payload: Any) -> str:
    """The floor's view: returns the Set-Cookie value to send, or ""."""
    cookie = _cookie_value(cookie_header)
    if store is None:  # the cookie backend
        signer = RawCookie()
        if path == "/login":
            return signer.sign({"user": payload})
        if path == "/untouched" or cookie is None:
            return ""
        data = signer.open(cookie) or {}
        if path == "/read-modify-write":
            data["counter"] = data.get("counter", 0) + 1
            return signer.sign(data)
        return ""
    if path == "/login":
        key = secrets.token_urlsafe(24)
        store.save(key, {"user": payload})
        return key
    if path == "/untouched" or cookie is None:
        return ""
    data = store.load(cookie) or {}
    if path == "/read-modify-write":
        data["counter"] = data.get("counter", 0) + 1
        store.save(cookie, data)
    return ""


def _cookie_value(cookie_header: str | None) -> str | None:
    if not cookie_header:
        return None
    for part in cookie_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == RAW_COOKIE:
            return value
    return None


class RawRedis:
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)

    def load(self, key: str) -> dict[str, Any] | None:
        value = self.client.get(f"raw:{key}")
        return None if value is None else json.loads(value)  # type: ignore[arg-type]

    def save(self, key: str, data: dict[str, Any]) -> None:
        self.client.set(f"raw:{key}", json.dumps(data), ex=LIFETIME_SECONDS)


class RawAsyncRedis:
    """The ASGI floor on Redis: redis.asyncio."""

    def __init__(self, url: str) -> None:
        import redis.asyncio

        self.client = redis.asyncio.Redis.from_url(url)

    async def load(self, key: str) -> dict[str, Any] | None:
        value = await self.client.get(f"raw:{key}")
        return None if value is None else json.loads(value)

    async def save(self, key: str, data: dict[str, Any]) -> None:
        await self.client.set(f"raw:{key}", json.dumps(data), ex=LIFETIME_SECONDS)


class RawMemcached:
    def __init__(self, host: str, port: int) -> None:
        from pymemcache.client.base import Client

        # Writes wait for the server's answer, as satchel's driver does: the same work.
        self.client = Client((host, port), no_delay=True, default_noreply=False)

    def load(self, key: str) -> dict[str, Any] | None:
        value = self.client.get(f"raw:{key}")
        return None if value is None else json.loads(value)

    def save(self, key: str, data: dict[str, Any]) -> None:
        self.client.set(f"raw:{key}", json.dumps(data), expire=LIFETIME_SECONDS)


class RawFile:
    def __init__(self, folder: str) -> None:
        self.folder = folder
        os.makedirs(folder, exist_ok=True)

    def load(self, key: str) -> dict[str, Any] | None:
        try:
            with open(os.path.join(self.folder, key), "rb") as file:
                return json.loads(file.read())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    def save(self, key: str, data: dict[str, Any]) -> None:
        descriptor, temporary = tempfile.mkstemp(dir=self.folder)
        with os.fdopen(descriptor, "wb") as file:
            file.write(json.dumps(data).encode())
        os.replace(temporary, os.path.join(self.folder, key))


class RawSql:
    """One SELECT and one UPDATE (or INSERT) on a DB-API connection in autocommit."""

    def __init__(self, url: str, counter: SqlCounter) -> None:
        self.counter = counter
        if url.startswith("sqlite"):
            self.connection: Any = sqlite3.connect(
                url.split("///", 1)[1], isolation_level=None, check_same_thread=False
            )
            self.marker = "?"
        else:
            import psycopg

            self.connection = psycopg.connect(_libpq_url(url), autocommit=True)
            self.marker = "%s"
        self.execute("DROP TABLE IF EXISTS bench_raw")
        self.execute("CREATE TABLE bench_raw (id VARCHAR(64) PRIMARY KEY, payload TEXT)")

    def execute(self, sql: str, *params: Any) -> Any:
        self.counter.statement(sql)
        cursor = self.connection.cursor()
        cursor.execute(sql.replace("?", self.marker), params)
        return cursor

    def load(self, key: str) -> dict[str, Any] | None:
        row = self.execute("SELECT payload FROM bench_raw WHERE id = ?", key).fetchone()
        return None if row is None else json.loads(row[0])  # type: ignore[no-any-return]

    def save(self, key: str, data: dict[str, Any]) -> None:
        if (
            self.execute(
                "UPDATE bench_raw SET payload = ? WHERE id = ?", json.dumps(data), key
            ).rowcount
            == 0
        ):
            self.execute("INSERT INTO bench_raw (id, payload) VALUES (?, ?)", key, json.dumps(data))


def _libpq_url(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


# -- calling the stacks --------------------------------------------------------------------


def wsgi_caller(
    app: Callable[..., Iterable[bytes]], extra: dict[str, Any] | None = None
) -> Request:
    """Call a WSGI application as a server would (body read and closed)."""

    async def request(path: str, cookie_header: str | None) -> Headers:
        environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
        if cookie_header:
            environ["HTTP_COOKIE"] = cookie_header
        setup_testing_defaults(environ)
        if extra:
            environ.update(extra)
        status, headers, content = call_wsgi(app, environ)
        if not status.startswith("200"):
            raise RuntimeError(f"{path}: {status}: {content[:2000]!r}")
        return headers

    return request


def asgi_caller(app: Callable[..., Awaitable[None]]) -> Request:
    async def request(path: str, cookie_header: str | None) -> Headers:
        headers = [(b"host", b"testserver")]
        if cookie_header:
            headers.append((b"cookie", cookie_header.encode("latin-1")))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 1234), "server": ("testserver", 80),
        }  # fmt: skip
        captured: Headers = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                captured[:] = [
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in message["headers"]
                ]

        await app(scope, receive, send)
        return captured

    return request


# -- WSGI ----------------------------------------------------------------------------------

SATCHEL_WSGI_KEY = "satchel.session"


def satchel_wsgi(manager: SessionManager, payload: Any) -> Row:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = use_satchel(environ[SATCHEL_WSGI_KEY], environ["PATH_INFO"], payload)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body.encode()]

    return Row("satchel", "WSGI", wsgi_caller(SatchelWsgi(app, manager)))


def raw_wsgi(store: RawStore | None, payload: Any) -> Row:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = [("Content-Type", "text/plain")]
        cookie = raw_view(store, environ["PATH_INFO"], environ.get("HTTP_COOKIE"), payload)
        if cookie:
            headers.append(("Set-Cookie", f"{RAW_COOKIE}={cookie}; Path=/; HttpOnly"))
        start_response("200 OK", headers)
        return [b"ok"]

    return Row("raw client", "WSGI", wsgi_caller(app), floor=True)


def beaker_wsgi(options: dict[str, Any], payload: Any) -> Row:
    from beaker.middleware import SessionMiddleware as BeakerMiddleware

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        body = "ok"
        if path != "/untouched":
            session = environ["beaker.session"]
            body = use_mapping(session, path, payload)
            if path in ("/login", "/read-modify-write"):
                session.save()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body.encode()]

    config = {"session.key": "beaker_session", "session.secret": SECRET,
              "session.timeout": LIFETIME_SECONDS, **options}  # fmt: skip
    return Row("Beaker", "WSGI", wsgi_caller(BeakerMiddleware(app, config)))


# -- ASGI ----------------------------------------------------------------------------------


def asgi_app(use: Callable[[Any, str, Any], str], payload: Any) -> Callable[..., Awaitable[None]]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        body = "ok" if path == "/untouched" else use(scope["session"], path, payload)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body.encode()})

    return app


def satchel_asgi(manager: SessionManager, payload: Any) -> Row:
    return Row("satchel", "ASGI", asgi_caller(SatchelAsgi(asgi_app(use_satchel, payload), manager)))


def raw_asgi(store: Any, payload: Any) -> Row:
    """``store`` may be async (redis.asyncio) or sync."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        cookie_header = dict(scope["headers"]).get(b"cookie", b"").decode("latin-1") or None
        if asyncio.iscoroutinefunction(getattr(store, "load", None)):
            cookie = await raw_async_view(store, path, cookie_header, payload)
        else:
            cookie = raw_view(store, path, cookie_header, payload)
        headers = [(b"content-type", b"text/plain")]
        if cookie:
            headers.append((b"set-cookie", f"{RAW_COOKIE}={cookie}; Path=/; HttpOnly".encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    return Row("raw client", "ASGI", asgi_caller(app), floor=True)


async def raw_async_view(store: Any, path: str, cookie_header: str | None, payload: Any) -> str:
    cookie = _cookie_value(cookie_header)
    if path == "/login":
        key = secrets.token_urlsafe(24)
        await store.save(key, {"user": payload})
        return key
    if path == "/untouched" or cookie is None:
        return ""
    data = await store.load(cookie) or {}
    if path == "/read-modify-write":
        data["counter"] = data.get("counter", 0) + 1
        await store.save(cookie, data)
    return ""


def starsessions_asgi(store: Any, payload: Any) -> Row:
    from starsessions import SessionAutoloadMiddleware
    from starsessions import SessionMiddleware as StarSessions

    app = SessionAutoloadMiddleware(asgi_app(use_mapping, payload))
    stack = StarSessions(app, store=store, lifetime=LIFETIME_SECONDS, cookie_https_only=False)
    return Row("starsessions", "ASGI", asgi_caller(stack))


def starlette_cookie_asgi(payload: Any) -> Row:
    from starlette.middleware.sessions import SessionMiddleware as StarletteSessions

    stack = StarletteSessions(asgi_app(use_mapping, payload), secret_key=SECRET)
    return Row("Starlette", "ASGI", asgi_caller(stack))


# -- Flask ---------------------------------------------------------------------------------


def flask_app(payload: Any, store: RawStore | None = None, *, floor: bool = False) -> flask.Flask:
    app = flask.Flask(f"bench-{secrets.token_hex(4)}")
    app.config["PROPAGATE_EXCEPTIONS"] = True  # a failing row stops the run, loudly
    if not floor:
        app.secret_key = SECRET

    def view(name: str) -> Callable[[], Any]:
        path = f"/{name}"

        def handle() -> Any:
            if floor:
                cookie = raw_view(store, path, flask.request.headers.get("Cookie"), payload)
                response = flask.make_response("ok")
                if cookie:
                    response.headers["Set-Cookie"] = f"{RAW_COOKIE}={cookie}; Path=/; HttpOnly"
                return response
            if name == "login":
                # Permanent, as satchel's and Flask-Session's sessions are by default:
                # each re-sends its cookie with a renewed expiry on every request
                # under SESSION_REFRESH_EACH_REQUEST, Flask's own included.
                flask.session.permanent = True
            return "ok" if name == "untouched" else use_mapping(flask.session, path, payload)

        return handle

    for name in ("login", *KINDS):
        app.add_url_rule(f"/{name}", name, view(name))
    return app


def satchel_flask(manager: SessionManager, payload: Any) -> Row:
    app = flask_app(payload)
    app.session_interface = SatchelFlask(manager)
    return Row("satchel", "Flask", wsgi_caller(app.wsgi_app))


def raw_flask(store: RawStore | None, payload: Any) -> Row:
    app = flask_app(payload, store, floor=True)
    return Row("raw client", "Flask", wsgi_caller(app.wsgi_app), floor=True)


def flask_session(config: dict[str, Any], payload: Any, library: str = "Flask-Session") -> Row:
    from flask_session import Session as FlaskSessionExtension

    app = flask_app(payload)
    app.config.update(config)
    if config.get("SESSION_TYPE") == "sqlalchemy":
        from flask_sqlalchemy import SQLAlchemy

        database = SQLAlchemy()
        database.init_app(app)
        app.config["SESSION_SQLALCHEMY"] = database
        with app.app_context():
            FlaskSessionExtension(app)
            database.create_all()
    else:
        FlaskSessionExtension(app)
    return Row(library, "Flask", wsgi_caller(app.wsgi_app))


def flask_cookie(payload: Any) -> Row:
    """Flask's own signed-cookie sessions (``SecureCookieSessionInterface``)."""
    app = flask_app(payload)
    assert not isinstance(app.session_interface, SatchelFlask)
    assert isinstance(app.session_interface, FlaskSessionInterface)
    return Row("Flask", "Flask", wsgi_caller(app.wsgi_app))


# -- Django --------------------------------------------------------------------------------


def configure_django(settings: dict[str, Any]) -> None:
    import django
    from django.conf import settings as django_settings

    # Every request runs to its end before the next starts: the synchronous rows are
    # awaited from one event loop only so that all rows are timed by the same loop.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

    django_settings.configure(
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["django.contrib.sessions"],
        MIDDLEWARE=[],
        ROOT_URLCONF="benchmarks.peer_django_urls",
        USE_TZ=True,
        DEBUG_PROPAGATE_EXCEPTIONS=True,
        **settings,
    )
    django.setup()


def django_row(
    library: str, engine: str | None, payload: Any, store: RawStore | None = None
) -> Row:
    """Django behind its own ``SessionMiddleware`` with ``engine``; None: the floor."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings

    middleware = [] if engine is None else ["django.contrib.sessions.middleware.SessionMiddleware"]
    with override_settings(MIDDLEWARE=middleware, SESSION_ENGINE=engine or "unused"):
        handler = WSGIHandler()
    extra = {"bench.payload": payload, "bench.floor": engine is None, "bench.raw": store}
    return Row(library, "Django", wsgi_caller(handler, extra), floor=engine is None)
