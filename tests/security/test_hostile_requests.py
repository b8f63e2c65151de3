"""Hostile cookies through the WSGI and ASGI middlewares: never a 500, never stored, never echoed."""

from __future__ import annotations

import base64
import logging
import string
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs

import attrs
import pytest
from fixtures.base64_spellings import other_spellings
from recording_store import recording_manager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client

from satchel import SessionConfig, SessionManager, payload
from satchel.asgi import SessionMiddleware as AsgiSessionMiddleware
from satchel.ids import generate_id, is_valid_id
from satchel.testing.concurrency import call_wsgi, wsgi_environ
from satchel.wsgi import SessionMiddleware as WsgiSessionMiddleware

SECRET = "a-secret-key-for-the-security-tests"
HOSTILE_COOKIES = [
    "",
    "abcdefg",
    "a" * 10_240,
    "..",
    "../x",
    "..\\x",
    "%2e%2e%2f",
    "a" * 19 + "%0d%0a" + "a" * 19,
    "a" * 39 + "%00",
    "a" * 39 + " ",
    "é" * 40,
    "../../../../etc/passwd" + "a" * 18,
    "' OR 1=1--" + "a" * 30,
]


class Reply(NamedTuple):
    status: int
    body: str
    headers: list[tuple[str, str]]

    def set_cookies(self) -> list[str]:
        return [value for name, value in self.headers if name.lower() == "set-cookie"]

    def issued_id(self) -> str:
        (header,) = self.set_cookies()
        return header.split(";", 1)[0].split("=", 1)[1]

    def text(self) -> str:
        """Everything the client gets back, to search for an echo."""
        return "\n".join([*(f"{name}: {value}" for name, value in self.headers), self.body])


def wsgi_client(manager: SessionManager) -> Callable[..., Reply]:
    """``request(cookie, pad=0)``: count a visit (and store ``pad`` characters more)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        session = environ["satchel.session"]
        session.put("visits", session.get("visits", 0) + 1)
        pad = int(parse_qs(environ.get("QUERY_STRING", "")).get("pad", ["0"])[0])
        if pad:
            session.put("pad", "x" * pad)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(session.get("visits")).encode()]

    # use_cookies=False: with its cookie jar on, werkzeug's client drops the Cookie header.
    client = Client(WsgiSessionMiddleware(app, manager), use_cookies=False)

    def request(cookie: str | None, pad: int = 0) -> Reply:
        headers = {"Cookie": f"satchel_session={cookie}"} if cookie is not None else {}
        # buffered: read and closed at once, as a server does
        response = client.get("/", headers=headers, query_string={"pad": pad}, buffered=True)
        return Reply(response.status_code, response.get_data(as_text=True), list(response.headers))

    return request


def asgi_client(manager: SessionManager) -> Callable[..., Reply]:
    """``request(cookie, pad=0)``: count a visit (and store ``pad`` characters more)."""

    async def visit(request: Request) -> PlainTextResponse:
        visits = request.session.get("visits", 0) + 1
        request.session.put("visits", visits)
        pad = int(request.query_params.get("pad", "0"))
        if pad:
            request.session.put("pad", "x" * pad)
        return PlainTextResponse(str(visits))

    client = TestClient(AsgiSessionMiddleware(Starlette(routes=[Route("/", visit)]), manager))

    def request(cookie: str | None, pad: int = 0) -> Reply:
        client.cookies.clear()
        headers = {"Cookie": f"satchel_session={cookie}".encode()} if cookie is not None else {}
        response = client.get("/", headers=headers, params={"pad": pad})
        return Reply(response.status_code, response.text, list(response.headers.multi_items()))

    return request


CLIENTS = {"wsgi": wsgi_client, "asgi": asgi_client}


@pytest.mark.parametrize("via", list(CLIENTS))
@pytest.mark.parametrize("cookie", HOSTILE_COOKIES, ids=range(len(HOSTILE_COOKIES)))
def test_a_hostile_cookie_gives_a_fresh_session(via: str, cookie: str) -> None:
    manager, store = recording_manager()
    reply = CLIENTS[via](manager)(cookie)
    assert reply.status == 200
    assert reply.body == "1"  # a fresh session, not the attacker's
    issued = reply.issued_id()
    assert issued != cookie
    # The driver was asked about the issued session only: no read, and no write,
    # for the hostile id; and only the issued session is stored.
    assert store.calls == [("write", manager.storage_key(issued))]
    assert set(store._entries) == {manager.storage_key(issued)}
    assert not cookie or cookie not in reply.text()  # nothing of the hostile value is echoed


EIGHT_KB_COOKIES = {
    "plain": "x" * 8192,
    # what an 8 KB cookie-driver cookie would look like: url-safe base64
    "base64": base64.urlsafe_b64encode(bytes(range(256)) * 24).decode(),
}


@pytest.mark.parametrize("via", list(CLIENTS))
@pytest.mark.parametrize("cookie", list(EIGHT_KB_COOKIES))
def test_an_8_kb_cookie_is_a_fresh_session_not_an_error(via: str, cookie: str) -> None:
    value = EIGHT_KB_COOKIES[cookie]
    assert len(value) == 8192
    manager, store = recording_manager()
    reply = CLIENTS[via](manager)(value)
    assert (reply.status, reply.body) == (200, "1")
    assert store.calls == [("write", manager.storage_key(reply.issued_id()))]
    assert value not in reply.text()


@pytest.mark.parametrize("via", list(CLIENTS))
@pytest.mark.parametrize("cookie", list(EIGHT_KB_COOKIES))
def test_an_8_kb_cookie_on_the_cookie_driver_is_a_fresh_session_not_an_error(
    via: str, cookie: str
) -> None:
    value = EIGHT_KB_COOKIES[cookie]
    manager = SessionManager(SessionConfig(driver="cookie", secret_key=SECRET))
    reply = CLIENTS[via](manager)(value)
    assert (reply.status, reply.body) == (200, "1")
    issued = reply.issued_id()
    assert manager.start(issued).all() == {"visits": 1}  # a new, readable cookie-driver cookie
    assert value not in reply.text()


def test_ten_thousand_requests_with_unknown_ids_create_no_files(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    manager = SessionManager(SessionConfig(driver="file", files=str(folder), lottery=(0, 1)))

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["satchel.session"].get("anything")  # the application looks, stores nothing
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    # Called as a server calls it (no test client's URL and header building), so
    # ten thousand requests stay quick; generate_id gives well-formed ids nobody issued.
    middleware = WsgiSessionMiddleware(app, manager)
    statuses: set[str] = set()
    for _ in range(10_000):
        environ = wsgi_environ(f"satchel_session={generate_id()}")
        status, _, body = call_wsgi(middleware, environ)
        statuses.add(status)
        assert body == b"ok"
    assert statuses == {"200 OK"}
    assert not folder.exists() or list(folder.iterdir()) == []
    assert [path.name for path in tmp_path.iterdir()] in ([], ["sessions"])


def cookie_driver_cookie(manager: SessionManager) -> str:
    session = manager.start(None)
    session.put("role", "user")
    session.save()
    return session.cookie_value()


def test_every_bit_flip_and_truncation_of_a_cookie_driver_cookie_is_rejected() -> None:
    manager = SessionManager(SessionConfig(driver="cookie", secret_key=SECRET))
    cookie = cookie_driver_cookie(manager)
    raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
    tried = 0
    for index in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[index] ^= 1 << bit
            forged = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
            assert manager.start(forged).all() == {}
            tried += 1
    for length in range(len(cookie)):
        assert manager.start(cookie[:length]).all() == {}
    assert manager.start(cookie).all() == {"role": "user"}
    assert tried == len(raw) * 8


@pytest.mark.parametrize(
    "forged_by",
    [
        {"secret_key": "another-application-secret-key-0123456789"},  # another app's key
        {"secret_key": SECRET, "cookie": "other_session"},  # the same key, another cookie name
    ],
)
def test_a_cookie_made_by_another_app_or_for_another_name_is_rejected(
    forged_by: dict[str, str],
) -> None:
    forger = SessionManager(SessionConfig(driver="cookie", **forged_by))
    forged = cookie_driver_cookie(forger)
    victim = SessionManager(SessionConfig(driver="cookie", secret_key=SECRET))
    assert victim.start(forged).all() == {}


def test_a_cookie_driver_cookie_in_another_format_is_rejected() -> None:
    manager = SessionManager(SessionConfig(driver="cookie", secret_key=SECRET))
    cookie = cookie_driver_cookie(manager)
    raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
    for variant in (
        base64.urlsafe_b64encode(b"\x02" + raw[1:]).decode(),  # a future format byte
        base64.b64encode(raw).decode(),  # standard base64 with padding
        cookie + "==",
        '{"role": "admin"}',
        base64.urlsafe_b64encode(b'{"v":1,"data":{"role":"admin"}}').decode(),
    ):
        assert manager.start(variant).all() == {}


def cookie_with_client_id(manager: SessionManager, client_id: object) -> str:
    """A cookie-driver cookie sealed under the app's own key, holding ``visits = 41``,
    whose payload carries ``client_id`` as its id (``None``: no id at all)."""
    real_dumps = payload.dumps

    def dumps(envelope: payload.Envelope, data_text: str | None = None) -> str:
        return real_dumps(attrs.evolve(envelope, client_id=client_id), data_text)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(payload, "dumps", dumps)
        session = manager.start(None)
        session.put("visits", 41)
        session.save()
    return session.cookie_value()


BAD_CLIENT_IDS = {
    "missing": None,
    "empty": "",
    "short": "a" * 39,
    "long": "a" * 41,
    "dotdot": "../" + "a" * 37,
    "nul": "a" * 39 + "\x00",
    "non-ascii": "é" * 40,
    "number": 42,
    "list": ["a" * 40],
}


@pytest.mark.parametrize("via", list(CLIENTS))
@pytest.mark.parametrize("client_id", list(BAD_CLIENT_IDS))
def test_a_cookie_driver_payload_without_a_valid_client_id_is_a_fresh_session(
    via: str, client_id: str
) -> None:
    # Sealed under the right key, so only the id check stands between it and adoption.
    manager = SessionManager(SessionConfig(driver="cookie", secret_key=SECRET))
    genuine = cookie_with_client_id(manager, generate_id())
    assert CLIENTS[via](manager)(genuine).body == "42"  # the control: the forging path works
    forged = cookie_with_client_id(manager, BAD_CLIENT_IDS[client_id])
    session = manager.start(forged)
    assert session.all() == {}
    assert is_valid_id(session.id)
    reply = CLIENTS[via](manager)(forged)
    assert (reply.status, reply.body) == (200, "1")
    assert manager.start(reply.issued_id()).all() == {"visits": 1}


@pytest.mark.parametrize("via", list(CLIENTS))
def test_every_other_spelling_of_a_real_cookie_driver_cookie_is_a_fresh_session(via: str) -> None:
    """The spare low bits of the last base64 character, changed: the same bytes, another
    cookie. Each is refused (a fresh session, never a 500); the real cookie still works."""
    manager = SessionManager(SessionConfig(driver="cookie", secret_key=SECRET))
    request = CLIENTS[via](manager)
    tried: dict[int, int] = {}
    pad = 0
    while set(tried) != {0, 2, 3}:  # cookies of every length mod 4, so spare bits of 4 and 2
        pad += 1
        assert pad < 100
        cookie = request(None, pad=pad).issued_id()
        if len(cookie) % 4 in tried:
            continue
        variants = other_spellings(cookie)
        for variant in variants:
            reply = request(variant)
            assert (reply.status, reply.body) == (200, "1"), variant
            assert reply.issued_id() not in (variant, cookie)
        assert request(cookie).body == "2"
        tried[len(cookie) % 4] = len(variants)
    assert tried == {0: 0, 2: 15, 3: 3}


@pytest.mark.parametrize("via", list(CLIENTS))
def test_logs_never_carry_a_session_id(via: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    manager, _ = recording_manager()
    request = CLIENTS[via](manager)
    issued = [request(cookie).issued_id() for cookie in [None, *HOSTILE_COOKIES[:6], "Z" * 40]]
    assert len(issued) >= 8
    logged = caplog.text
    for session_id in issued:
        assert session_id not in logged
    assert "Z" * 40 not in logged  # not even a well-formed unknown id


def test_two_hundred_thousand_ids_are_unique_and_evenly_spread() -> None:
    count = 200_000
    ids = {generate_id() for _ in range(count)}
    assert len(ids) == count
    frequencies = dict.fromkeys(string.ascii_letters + string.digits, 0)
    for session_id in list(ids)[:20_000]:
        for symbol in session_id:
            frequencies[symbol] += 1
    expected = 20_000 * 40 / 62
    chi_square = sum((seen - expected) ** 2 / expected for seen in frequencies.values())
    assert chi_square < 120  # 61 degrees of freedom: p < 1e-6 above about 120
