"""Two applications on one store, replayed through real servers.

App A is a Starlette app under uvicorn, app B a plain WSGI app under
werkzeug's threaded server; both keep their sessions in one Redis database
with one prefix, or in one sessions folder, with default settings otherwise.
A cookie of one is replayed to the other as a client would send it: the
other never adopts the session unless both share the ``secret_key`` on
purpose. Rotating the key (the old one moved to ``secret_key_fallbacks``)
keeps every session and moves it under the new key.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from werkzeug.serving import make_server
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response as WerkzeugResponse

import satchel.asgi
import satchel.wsgi
from satchel import Session, SessionConfig, SessionManager
from satchel.testing.services import free_port, wait_for_port

COOKIE = "satchel_session"
APP_A = "the-secret-of-application-a-0123456789abcdef"
APP_B = "the-secret-of-application-b-0123456789abcdef"
OLD = "the-secret-before-rotation-0123456789abcdef"
NEW = "the-secret-after-rotation-0123456789abcdefg"


def act(session: Session, path: str, params: dict[str, str]) -> str:
    """What both applications do: log a user in, or say who is logged in."""
    if path == "/login":
        session.regenerate(destroy=True)
        session.put("user", params["user"])
        return "ok"
    return json.dumps(session.get("user"))


def asgi_app(manager: SessionManager) -> Any:
    async def endpoint(request: Request) -> PlainTextResponse:
        params = dict(request.query_params)
        return PlainTextResponse(act(request.session, request.url.path, params))  # type: ignore[arg-type]

    routes = [Route("/login", endpoint), Route("/whoami", endpoint)]
    return satchel.asgi.SessionMiddleware(Starlette(routes=routes), manager)


def wsgi_app(manager: SessionManager) -> Any:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = WerkzeugRequest(environ)
        text = act(environ["satchel.session"], request.path, dict(request.args))
        return WerkzeugResponse(text)(environ, start_response)  # type: ignore[no-any-return]

    return satchel.wsgi.SessionMiddleware(app, manager)


@contextlib.contextmanager
def under_uvicorn(manager: SessionManager) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        asgi_app(manager), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped before it started"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@contextlib.contextmanager
def under_werkzeug(manager: SessionManager) -> Iterator[str]:
    port = free_port()
    server = make_server("127.0.0.1", port, wsgi_app(manager), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        wait_for_port(port, timeout=20)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=20)


SERVERS = {"uvicorn": under_uvicorn, "werkzeug": under_werkzeug}


class Browser:
    """Requests to one server with the cookie the test chooses (no jar of its own)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, cookie: str | None, **params: str) -> tuple[str, str | None]:
        """The body, and the session cookie the response set (None if it set none)."""
        headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
        response = httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=20)
        assert response.status_code == 200, response.text
        issued = None
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            if name == COOKIE:
                issued = rest.split(";", 1)[0] or None
        return response.text, issued

    def login(self, user: str, cookie: str | None = None) -> str:
        body, issued = self.get("/login", cookie, user=user)
        assert body == "ok"
        assert issued is not None
        return issued

    def whoami(self, cookie: str) -> str | None:
        body, _ = self.get("/whoami", cookie)
        return json.loads(body)  # type: ignore[no-any-return]


class SharedStore:
    """One store (a Redis database and prefix, or a folder) that applications are pointed at."""

    def __init__(self, settings: dict[str, Any], has: Callable[[str], bool]) -> None:
        self.settings = settings
        self.has = has  # whether a record is stored under a storage key

    def app(self, **config: Any) -> SessionManager:
        return SessionManager(SessionConfig(**{**self.settings, "lottery": (0, 1), **config}))


@pytest.fixture(params=["redis", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SharedStore:
    if request.param == "file":
        folder = tmp_path / "shared-sessions"
        return SharedStore(
            {"driver": "file", "files": str(folder)}, lambda key: (folder / key).exists()
        )
    redis_url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("unique_prefix")
    raw = request.getfixturevalue("raw_redis")
    return SharedStore(
        {"driver": "redis", "connection": redis_url, "prefix": prefix},
        lambda key: bool(raw.exists(f"{prefix}{key}")),
    )


@contextlib.contextmanager
def running(store: SharedStore, server: str, **config: Any) -> Iterator[Browser]:
    with SERVERS[server](store.app(**config)) as url:
        yield Browser(url)


def test_apps_on_one_store_share_sessions_only_when_they_share_the_secret(
    store: SharedStore,
) -> None:
    with (
        running(store, "uvicorn", secret_key=APP_A) as app_a,
        running(store, "werkzeug", secret_key=APP_B) as app_b,
    ):
        alice = app_a.login("alice")
        assert app_a.whoami(alice) == "alice"
        # A's cookie replayed to B: B never adopts A's session...
        assert app_b.whoami(alice) is None
        mallory = app_b.login("mallory", cookie=alice)
        assert mallory != alice
        # ...never writes over it, and A never adopts B's.
        assert app_a.whoami(alice) == "alice"
        assert app_b.whoami(mallory) == "mallory"
        assert app_a.whoami(mallory) is None
        # B's login destroyed only what B found, which was nothing of A's.
        assert store.has(store.app(secret_key=APP_A).storage_key(alice))
    # Sharing on purpose: the same secret_key and the same store.
    with (
        running(store, "uvicorn", secret_key=APP_A) as app_a,
        running(store, "werkzeug", secret_key=APP_A) as app_c,
    ):
        assert app_c.whoami(alice) == "alice"
        bob = app_c.login("bob")
        assert app_a.whoami(bob) == "bob"


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_rotating_the_secret_keeps_every_session_and_moves_it_to_the_new_key(
    store: SharedStore, encrypt: bool
) -> None:
    with running(store, "werkzeug", secret_key=OLD, encrypt=encrypt) as before:
        alice = before.login("alice")
        bob = before.login("bob")
    old_digests, new_digests = store.app(secret_key=OLD), store.app(secret_key=NEW)
    assert store.has(old_digests.storage_key(alice))
    # The key rotated, the old one kept as a fallback: alice comes back and is still alice.
    with running(
        store, "uvicorn", secret_key=NEW, secret_key_fallbacks=[OLD], encrypt=encrypt
    ) as rotated:
        assert rotated.whoami(alice) == "alice"
    assert store.has(new_digests.storage_key(alice))
    assert not store.has(old_digests.storage_key(alice))
    # Once the fallback is dropped, a moved session still works; one never moved has ended.
    with running(store, "werkzeug", secret_key=NEW, encrypt=encrypt) as after:
        assert after.whoami(alice) == "alice"
        assert after.whoami(bob) is None
