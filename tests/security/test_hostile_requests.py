"""Hostile cookies through the WSGI and ASGI middlewares: never a 500, never stored, never echoed."""

from __future__ import annotations

import base64
import logging
import string
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client

from satchel import SessionConfig, SessionManager
from satchel.asgi import SessionMiddleware as AsgiSessionMiddleware
from satchel.drivers import ArraySessionHandler
from satchel.ids import generate_id
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


class RecordingArray(ArraySessionHandler):
    def __init__(self) -> None:
        super().__init__(7200)
        self.keys: list[str] = []

    def read(self, session_id: str) -> str:
        self.keys.append(session_id)
        return super().read(session_id)


def make_manager(**config: Any) -> tuple[SessionManager, RecordingArray]:
    store = RecordingArray()
    manager = SessionManager(SessionConfig(driver="recording", lottery=(0, 1), **config))
    manager.extend("recording", lambda config: store)
    return manager, store


def wsgi_client(manager: SessionManager) -> Callable[[str | None], tuple[int, str, list[str]]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        session = environ["satchel.session"]
        session.put("visits", session.get("visits", 0) + 1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(session.get("visits")).encode()]

    client = Client(WsgiSessionMiddleware(app, manager))

    def request(cookie: str | None) -> tuple[int, str, list[str]]:
        headers = {"Cookie": f"satchel_session={cookie}"} if cookie is not None else {}
        response = client.get(
            "/", headers=headers, buffered=True
        )  # read and closed at once, as a server does
        return (
            response.status_code,
            response.get_data(as_text=True),
            response.headers.getlist("Set-Cookie"),
        )

    return request


def asgi_client(manager: SessionManager) -> Callable[[str | None], tuple[int, str, list[str]]]:
    async def visit(request: Request) -> PlainTextResponse:
        visits = request.session.get("visits", 0) + 1
        request.session.put("visits", visits)
        return PlainTextResponse(str(visits))

    client = TestClient(AsgiSessionMiddleware(Starlette(routes=[Route("/", visit)]), manager))

    def request(cookie: str | None) -> tuple[int, str, list[str]]:
        client.cookies.clear()
        headers = {"Cookie": f"satchel_session={cookie}".encode()} if cookie is not None else {}
        response = client.get("/", headers=headers)
        return response.status_code, response.text, response.headers.get_list("set-cookie")

    return request


CLIENTS = {"wsgi": wsgi_client, "asgi": asgi_client}


@pytest.mark.parametrize("via", list(CLIENTS))
@pytest.mark.parametrize("cookie", HOSTILE_COOKIES, ids=range(len(HOSTILE_COOKIES)))
def test_a_hostile_cookie_gives_a_fresh_session(via: str, cookie: str) -> None:
    manager, store = make_manager()
    status, body, set_cookies = CLIENTS[via](manager)(cookie)
    assert status == 200
    assert body == "1"  # a fresh session, not the attacker's
    assert store.keys == []  # no read reached the driver for a malformed id
    (header,) = set_cookies
    issued = header.split(";", 1)[0].split("=", 1)[1]
    assert issued != cookie
    assert not cookie or cookie not in header  # nothing of the hostile value is echoed
    assert list(store._entries) != [cookie]


@pytest.mark.parametrize("via", list(CLIENTS))
def test_an_8_kb_cookie_header_is_a_fresh_session_not_an_error(via: str) -> None:
    manager, _ = make_manager()
    status, body, _ = CLIENTS[via](manager)("x" * 8192)
    assert (status, body) == (200, "1")


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
        {"secret_key": "another-application-secret-key"},  # another app's key
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


@pytest.mark.parametrize("via", list(CLIENTS))
def test_logs_never_carry_a_session_id(via: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    manager, _ = make_manager()
    request = CLIENTS[via](manager)
    issued: list[str] = []
    for cookie in [None, *HOSTILE_COOKIES[:6], "Z" * 40]:
        _, _, set_cookies = request(cookie)
        issued += [header.split(";", 1)[0].split("=", 1)[1] for header in set_cookies]
    assert len(issued) >= 8
    logged = caplog.text
    for session_id in issued:
        assert session_id not in logged
    assert "Z" * 40 not in logged  # not even a well-formed unknown id


def test_a_million_ids_are_unique_and_evenly_spread() -> None:
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
