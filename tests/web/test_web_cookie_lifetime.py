"""The cookie's lifetime on the wire, the same in every glue: ``Expires`` beside ``Max-Age``,
and a session emptied by its request removed from the store with its cookie deleted.

Run through Starlette, FastAPI, Flask and plain WSGI with their test clients,
and through werkzeug's own HTTP server for Flask and WSGI.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fixtures.live_servers import serve_wsgi
from web_support import (
    FakeClock,
    HarnessFactory,
    ManagerFactory,
    SpyHandler,
    build_flask,
    build_wsgi,
    cookie_attributes,
)
from werkzeug.http import http_date, parse_date

from satchel.cookies import EPOCH_EXPIRES

# The attributes a deleting cookie must repeat, or the browser keeps the cookie it set.
SCOPE_ATTRIBUTES = ("domain", "path", "secure", "samesite", "partitioned", "httponly")
COOKIE_SETTINGS: dict[str, Any] = {
    "domain": "shop.example",
    "secure": True,
    "same_site": "strict",
    "partitioned": True,
}
FLASK_COOKIE_SETTINGS: dict[str, Any] = {
    "SESSION_COOKIE_DOMAIN": "shop.example",
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_SAMESITE": "Strict",
    "SESSION_COOKIE_PARTITIONED": True,
}


def scope_of(header: str) -> dict[str, str]:
    attributes = cookie_attributes(header)
    return {name: attributes[name] for name in SCOPE_ATTRIBUTES if name in attributes}


def test_the_cookie_carries_expires_beside_max_age(
    harness: HarnessFactory, clock: FakeClock
) -> None:
    client = harness(lifetime=30)
    header = client.get("/put", key="a", value="1").cookie_header(client.cookie_name)
    assert header is not None
    attributes = cookie_attributes(header)
    assert attributes["max-age"] == "1800"
    assert attributes["expires"] == http_date(clock.now + 1800)  # werkzeug's own format
    assert parse_date(attributes["expires"]) is not None


def test_a_deleting_cookie_expires_at_the_epoch(harness: HarnessFactory) -> None:
    client = harness()
    client.get("/put", key="a", value="1")
    header = client.get("/pop", key="a").cookie_header(client.cookie_name)
    assert header is not None
    attributes = cookie_attributes(header)
    assert attributes["max-age"] == "0"
    assert attributes["expires"] == EPOCH_EXPIRES == http_date(0)


def test_a_browser_session_cookie_has_neither(harness: HarnessFactory) -> None:
    client = harness()
    header = client.get("/temporary").cookie_header(client.cookie_name)
    assert header is not None
    assert "max-age" not in cookie_attributes(header)
    assert "expires" not in cookie_attributes(header)


def test_popping_the_last_key_removes_the_session_and_deletes_its_cookie_in_scope(
    harness: HarnessFactory, spy: SpyHandler
) -> None:
    # A login that regenerates the id, then the last key popped: nothing is left.
    client = harness(**COOKIE_SETTINGS, options={"flask_config": FLASK_COOKIE_SETTINGS})
    set_header = client.get("/login", user="ada", https=True).cookie_header(client.cookie_name)
    assert set_header is not None
    assert spy.stored()
    reply = client.get("/pop", key="user", https=True)
    assert json.loads(reply.text) == "ada"
    header = reply.cookie_header(client.cookie_name)
    assert header is not None, "the emptied session's cookie was not deleted"
    assert header.startswith(f"{client.cookie_name}=;")
    assert cookie_attributes(header)["max-age"] == "0"
    assert scope_of(header) == scope_of(set_header)
    assert scope_of(header) == {
        "domain": "shop.example",
        "path": "/",
        "secure": "",
        "samesite": "Strict",
        "partitioned": "",
        "httponly": "",
    }
    assert spy.stored() == {}  # the record is gone too


def test_a_session_emptied_by_its_request_creates_nothing_and_sends_nothing(
    harness: HarnessFactory, spy: SpyHandler
) -> None:
    client = harness()
    client.get("/pop", key="nothing-there")
    assert client.cookie is None
    assert spy.stored() == {}


# -- through werkzeug's HTTP server -------------------------------------------------------------


@pytest.mark.parametrize("glue", ["flask", "wsgi"])
def test_through_werkzeugs_server_the_cookie_expires_and_an_emptied_session_is_deleted(
    make_manager: ManagerFactory, spy: SpyHandler, clock: FakeClock, glue: str
) -> None:
    manager = make_manager(**COOKIE_SETTINGS)
    if glue == "flask":
        app = build_flask(manager)
        app.config.update(FLASK_COOKIE_SETTINGS)
    else:
        app = build_wsgi(manager)
    with serve_wsgi(app) as url, httpx.Client(base_url=url) as http:
        login = http.get("/login", params={"user": "ada"})
        set_header = next(
            value
            for value in login.headers.get_list("set-cookie")
            if value.startswith("satchel_session=")
        )
        attributes = cookie_attributes(set_header)
        assert attributes["expires"] == http_date(clock.now + int(attributes["max-age"]))
        cookie = set_header.split(";", 1)[0]
        reply = http.get("/pop", params={"key": "user"}, headers={"Cookie": cookie})
        assert reply.json() == "ada"
        (header,) = reply.headers.get_list("set-cookie")
        assert header.startswith("satchel_session=;")
        assert cookie_attributes(header)["expires"] == EPOCH_EXPIRES
        assert cookie_attributes(header)["max-age"] == "0"
        assert scope_of(header) == scope_of(set_header)
    assert spy.stored() == {}
