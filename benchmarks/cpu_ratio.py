"""satchel's own CPU per request, as a multiple of one stdlib JSON round trip.

DESIGN's performance budget: through the WSGI middleware on the ``array``
driver (no I/O), satchel's time per request over the bare application's, as
a multiple of ``json.dumps(json.loads(payload))`` of the same stored payload
(about 200 bytes) measured in the same process — untouched ≤ 0.3x,
read-only ≤ 1.5x, read-modify-write ≤ 3x.

Three more rows put the glue beside its framework's own session interface,
each over the same bare application: the ASGI middleware against
Starlette's ``SessionMiddleware``, and the Flask glue against Flask's
``SecureCookieSessionInterface``.

Everything runs in this process, with no server and no socket: each case is
timed in batches, the batches of every case interleaved round after round
(so drift in the machine's speed weighs on every case alike), and the
median batch counts.

Run: ``python -m benchmarks.cpu_ratio [--quick] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

import flask
from flask.sessions import SecureCookieSessionInterface
from flask.sessions import SessionInterface as FlaskSessionInterface
from starlette.middleware.sessions import SessionMiddleware as StarletteSessions

from satchel import SessionConfig, SessionManager
from satchel.asgi import SessionMiddleware as AsgiSessions
from satchel.flask import SessionInterface as SatchelFlaskSessions
from satchel.wsgi import SessionMiddleware as WsgiSessions

KINDS = ("untouched", "read-only", "read-modify-write")
BUDGET = {"untouched": 0.3, "read-only": 1.5, "read-modify-write": 3.0}
SECRET = "cpu-ratio-benchmark-secret-0123456789abcdef"
# The application's data: about 200 bytes once stored with satchel's bookkeeping.
DATA: dict[str, Any] = {
    "user": {"id": 4242, "name": "Ada Lovelace", "roles": ["admin"]},
    "locale": "en-GB",
}
Runner = Callable[[int], None]


# -- WSGI -------------------------------------------------------------------------------


def _wsgi_app(kind: str, *, sessions: bool) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if sessions and kind == "read-only":
            environ["satchel.session"].get("user.name")
        elif sessions and kind == "read-modify-write":
            environ["satchel.session"].increment("visits")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def _wsgi_environ(cookie: str | None) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.9",
        "HTTP_USER_AGENT": "cpu-ratio/1.0",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
    }
    if cookie is not None:
        environ["HTTP_COOKIE"] = cookie
    return environ


def _wsgi_runner(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> Runner:
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    def run(count: int) -> None:
        for _ in range(count):
            body = app(dict(environ), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()

    return run


def _manager() -> SessionManager:
    return SessionManager(SessionConfig(driver="array", secret_key=SECRET))


def _stored_session(manager: SessionManager) -> tuple[str, str]:
    """A session holding :data:`DATA` in ``manager``'s store: its cookie value and stored text."""
    session = manager.start(None)
    session.put(dict(DATA))
    session.save()
    stored = manager.handler().read(manager.storage_key(session.id))
    assert stored, "the array driver kept nothing"
    return session.id, stored


def wsgi_cases() -> tuple[dict[str, Runner], str]:
    """Runners for the bare and wrapped WSGI app of every kind, and the stored payload."""
    manager = _manager()
    session_id, stored = _stored_session(manager)
    cookie = f"{manager.config.cookie}={session_id}"
    runners: dict[str, Runner] = {}
    for kind in KINDS:
        runners[f"wsgi bare {kind}"] = _wsgi_runner(
            _wsgi_app(kind, sessions=False), _wsgi_environ(cookie)
        )
        runners[f"wsgi satchel {kind}"] = _wsgi_runner(
            WsgiSessions(_wsgi_app(kind, sessions=True), manager), _wsgi_environ(cookie)
        )
    return runners, stored


# -- ASGI -------------------------------------------------------------------------------


def _asgi_app(kind: str, *, sessions: bool) -> Callable[..., Any]:
    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if sessions and kind == "read-only":
            scope["session"].get("locale")
        elif sessions and kind == "read-modify-write":
            session = scope["session"]
            session["visits"] = session.get("visits", 0) + 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def _asgi_scope(cookie: str | None) -> dict[str, Any]:
    headers = [(b"host", b"localhost"), (b"user-agent", b"cpu-ratio/1.0")]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode("latin-1")))
    # What the middlewares read; a server adds more (asgi, http_version, raw_path…).
    return {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "root_path": "",
        "headers": headers,
        "client": ("203.0.113.9", 50000),
        "query_string": b"",
    }


def _asgi_call(app: Callable[..., Any], scope: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one request to completion in a fresh event loop (for set-up, not timing)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(dict(scope), receive, send))
    return sent


def _asgi_runner(
    loop: asyncio.AbstractEventLoop, app: Callable[..., Any], scope: dict[str, Any]
) -> Runner:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        return None

    async def batch(count: int) -> None:
        for _ in range(count):
            await app(dict(scope), receive, send)

    def run(count: int) -> None:
        loop.run_until_complete(batch(count))

    return run


def _starlette_cookie(app: Callable[..., Any]) -> str:
    """The cookie Starlette's SessionMiddleware sets for a session holding :data:`DATA`."""

    async def fill(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        scope["session"].update(DATA)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sent = _asgi_call(StarletteSessions(fill, secret_key=SECRET), _asgi_scope(None))
    for name, value in sent[0]["headers"]:
        if name == b"set-cookie":
            return str(value.decode("latin-1")).split(";", 1)[0]
    raise RuntimeError("Starlette set no session cookie")


def asgi_cases(loop: asyncio.AbstractEventLoop) -> dict[str, Runner]:
    """Runners for the bare app, satchel's ASGI middleware and Starlette's, every kind."""
    manager = _manager()
    session_id, _ = _stored_session(manager)
    satchel_cookie = f"{manager.config.cookie}={session_id}"
    starlette_cookie = _starlette_cookie(_asgi_app("untouched", sessions=False))
    runners: dict[str, Runner] = {}
    for kind in KINDS:
        runners[f"asgi bare {kind}"] = _asgi_runner(
            loop, _asgi_app(kind, sessions=False), _asgi_scope(satchel_cookie)
        )
        runners[f"asgi satchel {kind}"] = _asgi_runner(
            loop, AsgiSessions(_asgi_app(kind, sessions=True), manager), _asgi_scope(satchel_cookie)
        )
        runners[f"asgi starlette {kind}"] = _asgi_runner(
            loop,
            StarletteSessions(_asgi_app(kind, sessions=True), secret_key=SECRET),
            _asgi_scope(starlette_cookie),
        )
    return runners


# -- Flask ------------------------------------------------------------------------------


class _NoSessions(FlaskSessionInterface):
    """The bare Flask app's session interface: an empty session, nothing saved."""

    def open_session(self, app: flask.Flask, request: Any) -> Any:
        return self.null_session_class()

    def save_session(self, app: flask.Flask, session: Any, response: Any) -> None:
        return None


def _flask_app(kind: str, interface: FlaskSessionInterface | None) -> flask.Flask:
    app = flask.Flask(f"cpu_ratio_{kind.replace('-', '_')}")
    app.secret_key = SECRET
    app.session_interface = interface or _NoSessions()
    sessions = interface is not None

    @app.route("/")
    def index() -> str:
        if sessions and kind == "read-only":
            flask.session.get("locale")
        elif sessions and kind == "read-modify-write":
            flask.session["visits"] = flask.session.get("visits", 0) + 1
        return "ok"

    return app


def _flask_cookie(app: flask.Flask) -> str:
    """The cookie Flask's own interface sets for a session holding :data:`DATA`."""
    filler = flask.Flask("cpu_ratio_fill")
    filler.secret_key = SECRET

    @filler.route("/")
    def fill() -> str:
        # Permanent, as a satchel session is by default: both re-send the cookie with
        # a renewed expiry on every request under SESSION_REFRESH_EACH_REQUEST.
        flask.session.permanent = True
        flask.session.update(DATA)
        return "ok"

    response = filler.test_client().get("/")
    header = response.headers["Set-Cookie"]
    return header.split(";", 1)[0]


def flask_cases() -> dict[str, Runner]:
    """Runners for the bare Flask app, satchel's interface and Flask's own, every kind."""
    manager = _manager()
    session_id, _ = _stored_session(manager)
    satchel_cookie = f"{manager.config.cookie}={session_id}"
    flask_cookie = _flask_cookie(_flask_app("untouched", None))
    satchel_interface = SatchelFlaskSessions(manager)
    runners: dict[str, Runner] = {}
    for kind in KINDS:
        runners[f"flask bare {kind}"] = _wsgi_runner(
            _flask_app(kind, None).wsgi_app, _wsgi_environ(satchel_cookie)
        )
        runners[f"flask satchel {kind}"] = _wsgi_runner(
            _flask_app(kind, satchel_interface).wsgi_app, _wsgi_environ(satchel_cookie)
        )
        runners[f"flask flask {kind}"] = _wsgi_runner(
            _flask_app(kind, SecureCookieSessionInterface()).wsgi_app, _wsgi_environ(flask_cookie)
        )
    return runners


# -- timing -----------------------------------------------------------------------------


def json_round_trip(payload: str) -> Runner:
    """The yardstick: one stdlib ``json.dumps(json.loads(payload))``."""

    def run(count: int) -> None:
        dumps, loads = json.dumps, json.loads
        for _ in range(count):
            dumps(loads(payload))

    return run


def measure(runners: dict[str, Runner], *, rounds: int, batch: int) -> dict[str, float]:
    """Median seconds per call of each runner, over ``rounds`` interleaved batches."""
    for run in runners.values():
        run(max(1, batch // 4))  # warm-up: caches, lazy imports, the driver
    samples: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    order = random.Random(7)
    for _ in range(rounds):
        order.shuffle(names)
        for name in names:
            gc.collect()
            gc.disable()
            try:
                start = time.perf_counter()
                runners[name](batch)
                samples[name].append((time.perf_counter() - start) / batch)
            finally:
                gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


def report(medians: dict[str, float]) -> dict[str, Any]:
    """The ratios the budget speaks of, from the medians of one run."""
    yardstick = medians["json round trip"]
    result: dict[str, Any] = {
        "json_round_trip_us": yardstick * 1e6,
        "wsgi": {},
        "asgi": {},
        "flask": {},
    }
    for kind in KINDS:
        own = medians[f"wsgi satchel {kind}"] - medians[f"wsgi bare {kind}"]
        result["wsgi"][kind] = {
            "satchel_us": own * 1e6,
            "ratio": own / yardstick,
            "budget": BUDGET[kind],
        }
        for glue, peer in (("asgi", "starlette"), ("flask", "flask")):
            bare = medians[f"{glue} bare {kind}"]
            ours = medians[f"{glue} satchel {kind}"] - bare
            theirs = medians[f"{glue} {peer} {kind}"] - bare
            result[glue][kind] = {
                "satchel_us": ours * 1e6,
                f"{peer}_us": theirs * 1e6,
                "satchel_over_peer": ours / theirs if theirs > 0 else None,
            }
    return result


def show(result: dict[str, Any], payload_bytes: int) -> None:
    yardstick = result["json_round_trip_us"]
    print(f"json.dumps(json.loads(payload)), {payload_bytes}-byte payload: {yardstick:.2f} µs")
    print("\nWSGI middleware, array driver, over the bare app:")
    print(f"  {'kind':<18} {'satchel µs':>11} {'ratio':>7} {'budget':>7}")
    for kind, row in result["wsgi"].items():
        mark = "ok" if row["ratio"] <= row["budget"] else "OVER"
        print(
            f"  {kind:<18} {row['satchel_us']:>11.2f} {row['ratio']:>6.2f}x "
            f"{row['budget']:>6.1f}x {mark}"
        )
    for glue, peer, title in (
        ("asgi", "starlette", "ASGI middleware vs Starlette's SessionMiddleware"),
        ("flask", "flask", "Flask glue vs Flask's SecureCookieSessionInterface"),
    ):
        print(f"\n{title}, over the bare app:")
        print(f"  {'kind':<18} {'satchel µs':>11} {peer + ' µs':>13} {'satchel/' + peer:>16}")
        for kind, row in result[glue].items():
            ratio = row["satchel_over_peer"]
            shown = f"{ratio:.2f}x" if ratio is not None else "n/a"
            print(f"  {kind:<18} {row['satchel_us']:>11.2f} {row[peer + '_us']:>13.2f} {shown:>16}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    args = parser.parse_args(argv)
    rounds, batch = (5, 200) if args.quick else (25, 500)
    loop = asyncio.new_event_loop()
    try:
        runners, stored = wsgi_cases()
        runners["json round trip"] = json_round_trip(stored)
        runners.update(asgi_cases(loop))
        runners.update(flask_cases())
        medians = measure(runners, rounds=rounds, batch=batch)
    finally:
        loop.close()
    result = report(medians)
    result["payload_bytes"] = len(stored.encode("utf-8"))
    result["rounds"], result["batch"] = rounds, batch
    show(result, result["payload_bytes"])
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
