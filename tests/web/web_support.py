"""Shared pieces of the web glue tests: one small app per framework, a cookie jar, spy drivers.

A module of its own (not conftest.py), so test modules import it by a name
no other test folder uses.

Every framework gets the same routes (``/<action>?key=…&value=…``) backed by
:func:`run_action`, so a behaviour is tested once and run through Starlette,
FastAPI, Flask and plain WSGI alike. Tests keep their own cookie jar (the
clients' jars are off) so that they can send forged or stale cookies exactly.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import attrs
import flask
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response as WerkzeugResponse

import satchel
import satchel.asgi
import satchel.flask
import satchel.wsgi
from satchel import (
    AsyncSessionHandler,
    RequestMetadata,
    Session,
    SessionHandler,
    SessionManager,
)
from satchel.drivers import ArraySessionHandler
from satchel.testing.services import free_port, wait_for_port

CART_APP = Path(__file__).resolve().parents[2] / "examples" / "cart" / "app.py"
FRAMEWORKS = ("starlette", "fastapi", "flask", "wsgi")
SECRET = "a-test-secret-of-enough-length-0123456789"
OLD_SECRET = "an-older-test-secret-of-enough-length-9876"


class FakeClock:
    """A clock the tests move by hand (core decides every expiry with it)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- drivers that report what they are asked --------------------------------------------


@attrs.define
class Call:
    method: str
    thread: int


class SpyHandler(ArraySessionHandler):
    """The array driver (lock, write_existing), recording each call, its thread and any metadata.

    It stands for a driver with remote I/O, so its async twin runs it in worker threads.
    """

    runs_on_event_loop = False

    def __init__(self, lifetime_seconds: int) -> None:
        super().__init__(lifetime_seconds)
        self.calls: list[Call] = []
        self.metadata: list[RequestMetadata] = []

    def _record(self, method: str) -> None:
        self.calls.append(Call(method, threading.get_ident()))

    def methods(self) -> list[str]:
        return [call.method for call in self.calls]

    def read(self, session_id: str) -> str:
        self._record("read")
        return super().read(session_id)

    def write(self, session_id: str, data: str) -> bool:
        self._record("write")
        return super().write(session_id, data)

    def write_with_metadata(self, session_id: str, data: str, metadata: RequestMetadata) -> bool:
        self.metadata.append(metadata)
        return self.write(session_id, data)

    def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool:
        # Saving a session loaded from the store: still a write, only conditional.
        self._record("write")
        if metadata is not None:
            self.metadata.append(metadata)
        return super().write_existing(session_id, data, metadata)

    def destroy(self, session_id: str) -> bool:
        self._record("destroy")
        return super().destroy(session_id)

    def gc(self, lifetime: int) -> int:
        self._record("gc")
        return super().gc(lifetime)

    def stored(self) -> dict[str, str]:
        return {key: entry.data for key, entry in self._entries.items()}


class RefusingSyncHandler(SessionHandler):
    """The sync side of a driver with an async twin: the ASGI glue must never call it."""

    def read(self, session_id: str) -> str:
        raise AssertionError("the sync driver was called from ASGI")

    def write(self, session_id: str, data: str) -> bool:
        raise AssertionError("the sync driver was called from ASGI")

    def destroy(self, session_id: str) -> bool:
        raise AssertionError("the sync driver was called from ASGI")

    def gc(self, lifetime: int) -> int:
        raise AssertionError("the sync driver was called from ASGI")


class AsyncSpyHandler(AsyncSessionHandler):
    """An async driver that records the calls it awaited."""

    def __init__(self) -> None:
        self.entries: dict[str, str] = {}
        self.calls: list[str] = []

    async def read(self, session_id: str) -> str:
        await asyncio.sleep(0)  # a real suspension point, as network I/O would be
        self.calls.append("read")
        return self.entries.get(session_id, "")

    async def write(self, session_id: str, data: str) -> bool:
        await asyncio.sleep(0)
        self.calls.append("write")
        self.entries[session_id] = data
        return True

    async def destroy(self, session_id: str) -> bool:
        self.calls.append("destroy")
        self.entries.pop(session_id, None)
        return True

    async def gc(self, lifetime: int) -> int:
        self.calls.append("gc")
        return 0

    @asynccontextmanager
    async def _lock(self) -> Any:
        yield

    def lock(
        self, session_id: str, *, lock_seconds: float, wait_seconds: float
    ) -> AbstractAsyncContextManager[None]:
        self.calls.append("lock")
        return self._lock()  # type: ignore[no-any-return]


# -- the shared routes ---------------------------------------------------------------------


def run_action(session: Session, action: str, params: Mapping[str, str]) -> str:
    """What every test app does for ``/<action>``."""
    if action == "put":
        session.put(params["key"], params["value"])
        return "ok"
    if action == "get":
        return json.dumps(session.get(params["key"]))
    if action == "push":
        session.push(params["key"], params["value"])
        return "ok"
    if action == "flash":
        session.flash(params.get("key", "status"), params["value"])
        return "ok"
    if action == "login":
        session.regenerate(destroy=True)
        session.put("user", params.get("user", "alice"))
        return "ok"
    if action == "logout":
        session.invalidate()
        return "ok"
    if action == "helper":
        # The global helper, not the session handed in: it must be the same one.
        return json.dumps(satchel.session.get(params["key"]))
    if action == "big":
        session.put("blob", "x" * int(params["size"]))
        return "ok"
    if action == "temporary":
        session.permanent = False
        session.put("kind", "temporary")
        return "ok"
    if action == "all":
        return json.dumps(session.all())
    if action == "pop":
        return json.dumps(session.pop(params["key"], None))  # the mapping's pop, as Flask apps use
    if action == "deep":
        # Tuples: the container the decoder spends the most stack on.
        value: Any = "leaf"
        for _ in range(int(params["levels"])):
            value = (value,)
        try:
            session.put("deep", value)
        except TypeError as exc:
            return f"TypeError: {exc}"
        return "ok"
    if action == "depth":
        value, levels = session.get("deep"), 0
        while isinstance(value, tuple):
            value, levels = value[0], levels + 1
        return str(levels)
    return "hello"  # "untouched" and anything else never looks at the session


def _stream_chunks(session: Session) -> Iterator[bytes]:
    yield b"first "
    yield json.dumps(session.get("streamed")).encode()


def build_starlette(manager: SessionManager, **options: Any) -> Any:
    async def action(request: Request) -> PlainTextResponse:
        name = request.path_params["action"]
        return PlainTextResponse(run_action(request.session, name, request.query_params))  # type: ignore[arg-type]

    async def stream(request: Request) -> StreamingResponse:
        request.session.put("streamed", "yes")
        return StreamingResponse(_stream_chunks(request.session))  # type: ignore[arg-type]

    app = Starlette(routes=[Route("/stream", stream), Route("/{action}", action)])
    return satchel.asgi.SessionMiddleware(app, manager, **options)


def build_fastapi(manager: SessionManager, **options: Any) -> Any:
    app = FastAPI()

    @app.get("/stream")
    async def stream(request: Request) -> StreamingResponse:
        request.session.put("streamed", "yes")
        return StreamingResponse(_stream_chunks(request.session))  # type: ignore[arg-type]

    @app.get("/{action}", response_class=PlainTextResponse)
    async def action(request: Request, action: str) -> str:
        return run_action(request.session, action, request.query_params)  # type: ignore[arg-type]

    app.add_middleware(satchel.asgi.SessionMiddleware, manager=manager, **options)  # type: ignore[arg-type]
    return app


def build_flask(manager: SessionManager, **options: Any) -> flask.Flask:
    app = flask.Flask(__name__)
    app.testing = True
    app.session_interface = satchel.flask.SessionInterface(manager, **options)

    @app.route("/stream")
    def stream() -> flask.Response:
        flask.session["streamed"] = "yes"
        session = flask.session._get_current_object()  # type: ignore[attr-defined]
        return flask.Response(flask.stream_with_context(_stream_chunks(session)))

    @app.route("/<action>")
    def action(action: str) -> str:
        return run_action(flask.session, action, flask.request.args)  # type: ignore[arg-type]

    return app


def build_wsgi(manager: SessionManager, **options: Any) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        request = WerkzeugRequest(environ)
        session: Session = environ["satchel.session"]
        name = request.path.strip("/")
        if name == "stream":
            session.put("streamed", "yes")
            response = WerkzeugResponse(_stream_chunks(session))
        else:
            response = WerkzeugResponse(run_action(session, name, request.args))
        return response(environ, start_response)

    return satchel.wsgi.SessionMiddleware(app, manager, **options)


# -- one client over any framework -----------------------------------------------------------


@attrs.define
class Reply:
    status: int
    headers: list[tuple[str, str]]
    text: str

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return ", ".join(values) if values else None

    def set_cookies(self) -> list[str]:
        return self.all("set-cookie")

    def cookie_header(self, name: str) -> str | None:
        """The one ``Set-Cookie`` for cookie ``name`` (fails if there are several)."""
        found = [value for value in self.set_cookies() if value.split("=", 1)[0] == name]
        assert len(found) <= 1, found
        return found[0] if found else None


def cookie_attributes(header: str) -> dict[str, str]:
    """The attributes of a ``Set-Cookie`` value, names lowercased (flags map to "")."""
    attributes: dict[str, str] = {}
    for part in header.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        attributes[key.lower()] = value
    return attributes


class Harness:
    """Drives one framework's test app, with a cookie jar the test controls."""

    def __init__(
        self,
        framework: str,
        manager: SessionManager,
        *,
        cookie_name: str | None = None,
        flask_config: Mapping[str, Any] | None = None,
        client_address: str = "203.0.113.7",
        **options: Any,
    ) -> None:
        self.framework = framework
        self.manager = manager
        self.cookie_name = cookie_name or manager.config.cookie
        self.cookie: str | None = None
        self.client_address = client_address
        if framework in ("starlette", "fastapi"):
            build = build_starlette if framework == "starlette" else build_fastapi
            self.app = build(manager, **options)
            self._asgi = TestClient(self.app, client=(client_address, 50000))
        elif framework == "flask":
            self.app = build_flask(manager, **options)
            self.app.config.update(flask_config or {})
            self._werkzeug = self.app.test_client(use_cookies=False)
        else:
            self.app = build_wsgi(manager, **options)
            self._werkzeug = Client(self.app, use_cookies=False)

    @property
    def is_asgi(self) -> bool:
        return self.framework in ("starlette", "fastapi")

    def get(
        self,
        path: str,
        *,
        https: bool = False,
        headers: Mapping[str, str] | None = None,
        send_cookie: bool = True,
        **params: str,
    ) -> Reply:
        sent = dict(headers or {})
        if send_cookie and self.cookie is not None and "Cookie" not in sent:
            sent["Cookie"] = f"{self.cookie_name}={self.cookie}"
        scheme = "https" if https else "http"
        if self.is_asgi:
            self._asgi.cookies.clear()
            response = self._asgi.get(
                f"{scheme}://testserver{path}",
                params=params,
                # Bytes, so a test can send what a hostile client would (not only ASCII).
                headers={key: value.encode("latin-1") for key, value in sent.items()},
            )
            reply = Reply(response.status_code, list(response.headers.multi_items()), response.text)
        else:
            result = self._werkzeug.get(
                path,
                query_string=params,
                headers=sent,
                base_url=f"{scheme}://localhost",
                environ_base={"REMOTE_ADDR": self.client_address},
            )
            reply = Reply(
                result.status_code, list(result.headers.items()), result.get_data(as_text=True)
            )
            result.close()
        self._remember(reply)
        return reply

    def _remember(self, reply: Reply) -> None:
        header = reply.cookie_header(self.cookie_name)
        if header is None:
            return
        value = header.split(";", 1)[0].split("=", 1)[1]
        if cookie_attributes(header).get("max-age") == "0":
            self.cookie = None
        else:
            self.cookie = value


ManagerFactory = Callable[..., SessionManager]
HarnessFactory = Callable[..., Harness]


# -- the cart example, as its README runs it ---------------------------------------------------


@contextmanager
def serve_cart_example(driver: str, folder: Path) -> Iterator[str]:
    """``python examples/cart/app.py`` (uvicorn) on a free port, the ``driver`` chosen by
    ``SESSION_*`` variables (the file driver's sessions in ``folder``); yields its URL."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("SESSION_")}
    env["SESSION_DRIVER"] = driver
    env["SESSION_FILES"] = str(folder)
    env["SESSION_SECRET_KEY"] = "browser-test-secret-0123456789abcdef"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(CART_APP), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        try:
            wait_for_port(port, timeout=20)
        except TimeoutError:
            process.kill()
            _, errors = process.communicate()
            pytest.fail(f"the cart app did not start: {errors.decode(errors='replace')}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
