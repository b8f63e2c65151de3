"""Requests through Django's own test ``Client`` (and ``AsyncClient``) on the satchel engine.

Django's ``SessionMiddleware`` writes the cookie from Django's settings;
``django.contrib.auth`` logs in (key cycled, data kept) and out (session
flushed); ``manage.py clearsessions`` prunes through the driver's gc.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator
from http.cookies import Morsel
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import AsyncClient, Client
from django.test.utils import override_settings
from fixtures.database_support import fetch_row
from web_support import SpyHandler

from satchel.django import SessionStore, session_manager


def session_cookie(response: Any) -> Morsel[str]:
    cookie: Morsel[str] = response.cookies[settings.SESSION_COOKIE_NAME]
    return cookie


def digest(session_key: str) -> str:
    return hashlib.sha256(session_key.encode("ascii")).hexdigest()


@pytest.fixture
def client(engine: dict[str, Any]) -> Client:
    return Client()


def test_a_cart_lasts_across_requests(client: Client) -> None:
    assert client.get("/add/apple").json()["cart"] == ["apple"]
    assert client.get("/add/pear").json()["cart"] == ["apple", "pear"]
    assert client.get("/show").json()["cart"] == ["apple", "pear"]
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert SessionStore(key)["cart"] == ["apple", "pear"]


def test_the_cookie_follows_djangos_defaults(client: Client) -> None:
    cookie = session_cookie(client.get("/add/apple"))
    assert len(cookie.value) == 32
    assert cookie["max-age"] == settings.SESSION_COOKIE_AGE
    assert cookie["expires"]
    assert cookie["path"] == "/"
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert not cookie["secure"]


def test_login_cycles_the_key_and_keeps_the_data(client: Client, user: Any) -> None:
    client.get("/add/apple")
    before = client.cookies[settings.SESSION_COOKIE_NAME].value
    reply = client.post("/login", {"username": user.username, "password": "secret"})
    assert reply.json() == {"cart": ["apple"], "user": user.username}
    after = session_cookie(reply).value
    assert after != before
    assert SessionStore().exists(before) is False
    stored = SessionStore(after)
    assert stored["cart"] == ["apple"]
    assert stored["_auth_user_id"] == str(user.pk)
    assert client.get("/show").json() == {"cart": ["apple"], "user": user.username}


def test_logout_flushes_the_session(client: Client, user: Any) -> None:
    client.get("/add/apple")
    client.post("/login", {"username": user.username, "password": "secret"})
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    reply = client.get("/logout")
    assert reply.json() == {"cart": [], "user": None}
    assert SessionStore().exists(key) is False
    assert client.get("/show").json() == {"cart": [], "user": None}


def test_the_async_api_and_alogin_alogout(engine: dict[str, Any], user: Any) -> None:
    async def main() -> None:
        client = AsyncClient()
        assert (await client.get("/async/add/apple")).json() == {"cart": ["apple"]}
        before = client.cookies[settings.SESSION_COOKIE_NAME].value
        reply = await client.post("/async/login", {"username": user.username, "password": "secret"})
        assert reply.json() == {"cart": ["apple"], "user": user.username}
        after = client.cookies[settings.SESSION_COOKIE_NAME].value
        assert after != before
        assert await SessionStore().aexists(before) is False
        assert (await client.get("/async/show")).json() == {"cart": ["apple"]}
        assert (await client.get("/async/logout")).json() == {"cart": []}
        assert await SessionStore().aexists(after) is False

    asyncio.run(main())


def test_a_session_ended_by_another_request_is_not_written_back(client: Client) -> None:
    client.get("/add/apple")
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    reply = client.get("/ended-elsewhere")
    # Django's SessionInterrupted: a 400, and the record stays gone.
    assert reply.status_code == 400
    assert SessionStore().exists(key) is False


def test_the_test_clients_own_session_helpers(client: Client, user: Any) -> None:
    seeded = client.session
    seeded["cart"] = ["pear"]
    seeded.save()
    assert client.get("/show").json() == {"cart": ["pear"], "user": None}
    assert client.login(username=user.username, password="secret") is True
    assert client.get("/show").json()["user"] == user.username
    client.logout()
    assert client.get("/show").json() == {"cart": [], "user": None}
    client.force_login(user)
    assert client.get("/show").json()["user"] == user.username
    assert client.session["_auth_user_id"] == str(user.pk)


def test_set_expiry_shapes_the_cookie(client: Client) -> None:
    assert session_cookie(client.get("/expire/120"))["max-age"] == 120
    browser = session_cookie(client.get("/expire/0"))
    assert browser["max-age"] == ""
    assert browser["expires"] == ""


# -- Django's settings, on the spy driver -----------------------------------------------------


@pytest.fixture
def spy_client(spy: SpyHandler) -> Client:
    return Client()


def test_an_untouched_request_costs_nothing_and_sets_no_cookie(
    spy_client: Client, spy: SpyHandler
) -> None:
    reply = spy_client.get("/untouched")
    assert settings.SESSION_COOKIE_NAME not in reply.cookies
    spy_client.get("/add/apple")
    spy.calls.clear()
    reply = spy_client.get("/untouched")
    assert settings.SESSION_COOKIE_NAME not in reply.cookies
    assert spy.methods() == []


def test_a_read_costs_one_read_and_rewrites_nothing(spy_client: Client, spy: SpyHandler) -> None:
    assert spy_client.get("/add/apple").status_code == 200
    assert spy.methods() == ["write"]  # a new session: no existence check spent
    spy.calls.clear()
    reply = spy_client.get("/show")
    assert reply.json()["cart"] == ["apple"]
    assert settings.SESSION_COOKIE_NAME not in reply.cookies
    assert reply.headers["Vary"] == "Cookie"
    assert spy.methods() == ["read"]


def test_a_change_costs_one_read_and_one_write(spy_client: Client, spy: SpyHandler) -> None:
    spy_client.get("/add/apple")
    spy.calls.clear()
    spy_client.get("/add/pear")
    assert spy.methods() == ["read", "write"]


def test_save_every_request_rewrites_each_read(spy: SpyHandler) -> None:
    with override_settings(SESSION_SAVE_EVERY_REQUEST=True):
        client = Client()
        client.get("/add/apple")
        spy.calls.clear()
        reply = client.get("/show")
        assert session_cookie(reply).value == client.cookies[settings.SESSION_COOKIE_NAME].value
        assert spy.methods() == ["read", "write"]


@override_settings(
    SESSION_COOKIE_NAME="sid",
    SESSION_COOKIE_DOMAIN=".example.test",
    SESSION_COOKIE_PATH="/shop",
    SESSION_COOKIE_SECURE=True,
    SESSION_COOKIE_HTTPONLY=False,
    SESSION_COOKIE_SAMESITE="Strict",
    SESSION_COOKIE_AGE=3600,
)
def test_djangos_cookie_settings_shape_the_cookie() -> None:
    with override_settings(SATCHEL_SESSION={"driver": "array"}):
        reply = Client().get("/add/apple")
    cookie = reply.cookies["sid"]
    assert cookie["domain"] == ".example.test"
    assert cookie["path"] == "/shop"
    assert cookie["secure"] is True
    assert cookie["httponly"] == ""
    assert cookie["samesite"] == "Strict"
    assert cookie["max-age"] == 3600


def test_expire_at_browser_close_sends_a_browser_session_cookie() -> None:
    with override_settings(
        SESSION_EXPIRE_AT_BROWSER_CLOSE=True, SATCHEL_SESSION={"driver": "array"}
    ):
        cookie = session_cookie(Client().get("/add/apple"))
    assert cookie["max-age"] == ""
    assert cookie["expires"] == ""


def test_flush_deletes_the_cookie(spy_client: Client, spy: SpyHandler) -> None:
    spy_client.get("/add/apple")
    key = spy_client.cookies[settings.SESSION_COOKIE_NAME].value
    cookie = session_cookie(spy_client.get("/flush"))
    assert cookie.value == ""
    assert cookie["max-age"] == 0
    assert digest(key) not in spy.stored()


# -- manage.py clearsessions --------------------------------------------------------------------


def two_sessions() -> tuple[str, str]:
    keys = []
    for item in ("old", "new"):
        store = SessionStore()
        store["cart"] = [item]
        store.save()
        assert store.session_key is not None
        keys.append(store.session_key)
    return keys[0], keys[1]


def test_clearsessions_prunes_idle_files(tmp_path: Path) -> None:
    with override_settings(SATCHEL_SESSION={"driver": "file", "files": str(tmp_path)}):
        old, new = two_sessions()
        idle = time.time() - settings.SESSION_COOKIE_AGE - 60
        os.utime(tmp_path / digest(old), (idle, idle))
        call_command("clearsessions")
        assert sorted(path.name for path in tmp_path.iterdir()) == [digest(new)]
        assert SessionStore(new)["cart"] == ["new"]


def test_clearsessions_prunes_idle_rows(sqlite_url: str, make_table: Any) -> None:
    import sqlalchemy as sa  # noqa: PLC0415 - the database driver's client

    table = make_table(sqlite_url)
    config = {"driver": "database", "connection": sqlite_url, "table": table}
    with override_settings(SATCHEL_SESSION=config):
        old, new = two_sessions()
        engine = sa.create_engine(sqlite_url)
        with engine.begin() as connection:
            connection.execute(
                sa.text(f"UPDATE {table} SET last_activity = :idle WHERE id = :id"),
                {"idle": int(time.time()) - settings.SESSION_COOKIE_AGE - 60, "id": digest(old)},
            )
        engine.dispose()
        call_command("clearsessions")
        assert fetch_row(sqlite_url, table, digest(old)) is None
        assert fetch_row(sqlite_url, table, digest(new)) is not None


class GcRecorder(SpyHandler):
    def __init__(self, lifetime_seconds: int) -> None:
        super().__init__(lifetime_seconds)
        self.lifetimes: list[int] = []

    def gc(self, lifetime: int) -> int:
        self.lifetimes.append(lifetime)
        return super().gc(lifetime)


@pytest.fixture
def gc_recorder() -> Iterator[GcRecorder]:
    handler = GcRecorder(settings.SESSION_COOKIE_AGE)
    with override_settings(SATCHEL_SESSION={"driver": "recorder"}, SESSION_COOKIE_AGE=7200):
        session_manager().extend("recorder", lambda config: handler)
        yield handler


def test_clearsessions_asks_the_driver_for_sessions_idle_past_the_cookie_age(
    gc_recorder: GcRecorder,
) -> None:
    call_command("clearsessions")
    assert gc_recorder.lifetimes == [7200]


def test_aclear_expired_asks_the_driver_too(gc_recorder: GcRecorder) -> None:
    asyncio.run(SessionStore.aclear_expired())
    assert gc_recorder.lifetimes == [7200]


# -- the database driver's metadata -------------------------------------------------------------


def test_the_database_driver_indexes_the_signed_in_user(
    sqlite_url: str, make_table: Any, user: Any
) -> None:
    table = make_table(sqlite_url)
    config = {
        "driver": "database",
        "connection": sqlite_url,
        "table": table,
        "options": {"user_key": "_auth_user_id"},
    }
    with override_settings(SATCHEL_SESSION=config):
        client = Client()
        client.post("/login", {"username": user.username, "password": "secret"})
        key = client.cookies[settings.SESSION_COOKIE_NAME].value
    row = fetch_row(sqlite_url, table, digest(key))
    assert row is not None
    assert row["user_id"] == str(user.pk)


def test_login_costs_a_read_two_writes_and_a_delete(spy: SpyHandler, user: Any) -> None:
    client = Client()
    client.get("/add/apple")
    spy.calls.clear()
    client.post("/login", {"username": user.username, "password": "secret"})
    # The load; cycle_key's write under the new key and delete of the old one;
    # the middleware's save of what login() put in the session.
    assert sorted(spy.methods()) == sorted(["read", "write", "destroy", "write"])


# -- Django's SessionMiddlewareTests, on the engine ----------------------------------------------


def touching_view(status: int) -> Any:
    from django.http import HttpResponse  # noqa: PLC0415

    def view(request: Any) -> Any:
        request.session["hello"] = "world"
        return HttpResponse("Session test", status=status)

    return view


@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_response_saves_nothing(engine: dict[str, Any], status: int) -> None:
    from django.contrib.sessions.middleware import SessionMiddleware  # noqa: PLC0415
    from django.test import RequestFactory  # noqa: PLC0415

    request = RequestFactory().get("/")
    response = SessionMiddleware(touching_view(status))(request)
    assert "hello" not in request.session.load()
    assert settings.SESSION_COOKIE_NAME not in response.cookies


def test_a_flushed_session_deletes_its_cookie(engine: dict[str, Any]) -> None:
    from django.contrib.sessions.middleware import SessionMiddleware  # noqa: PLC0415
    from django.http import HttpResponse  # noqa: PLC0415
    from django.test import RequestFactory  # noqa: PLC0415

    def flushing(request: Any) -> Any:
        request.session.flush()
        return HttpResponse("Session test")

    request = RequestFactory().get("/")
    request.COOKIES[settings.SESSION_COOKIE_NAME] = "abc"
    response = SessionMiddleware(flushing)(request)
    assert str(response.cookies[settings.SESSION_COOKIE_NAME]) == (
        f'Set-Cookie: {settings.SESSION_COOKIE_NAME}=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; '
        f"Max-Age=0; Path=/; SameSite={settings.SESSION_COOKIE_SAMESITE}"
    )
    assert response.headers["Vary"] == "Cookie"

    # Without a session cookie, a flush sets none.
    request = RequestFactory().get("/")
    response = SessionMiddleware(flushing)(request)
    assert response.cookies == {}
    assert response.headers["Vary"] == "Cookie"


def test_a_session_emptied_but_not_flushed_is_still_saved(engine: dict[str, Any]) -> None:
    from django.contrib.sessions.middleware import SessionMiddleware  # noqa: PLC0415
    from django.http import HttpResponse  # noqa: PLC0415
    from django.test import RequestFactory  # noqa: PLC0415

    def setting(request: Any) -> Any:
        request.session["foo"] = "bar"
        return HttpResponse("Session test")

    request = RequestFactory().get("/")
    middleware = SessionMiddleware(setting)
    response = middleware(request)
    assert tuple(request.session.items()) == (("foo", "bar"),)
    assert f"Set-Cookie: {settings.SESSION_COOKIE_NAME}={request.session.session_key}" in str(
        response.cookies
    )
    del request.session["foo"]
    response = middleware.process_response(request, HttpResponse("Session test"))
    assert dict(request.session.values()) == {}
    assert SessionStore(request.session.session_key).exists(request.session.session_key)
    assert dict(SessionStore(request.session.session_key).items()) == {}
    # Empty but not flushed: the cookie is still set.
    assert f"Set-Cookie: {settings.SESSION_COOKIE_NAME}={request.session.session_key}" in str(
        response.cookies
    )
    assert response.headers["Vary"] == "Cookie"
