"""Flask: ``flask.session`` is a satchel session and the cookie follows Flask's settings."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import flask
import pytest
from flask.sessions import SessionMixin
from web_support import FakeClock, Harness, ManagerFactory, SpyHandler, cookie_attributes

import satchel
from satchel import ConfigError, Session
from satchel.flask import SessionInterface


def flask_client(make_manager: ManagerFactory, **config: Any) -> Harness:
    flask_config = {key: config.pop(key) for key in list(config) if key.isupper()}
    cookie_name = flask_config.get("SESSION_COOKIE_NAME")
    return Harness(
        "flask", make_manager(**config), cookie_name=cookie_name, flask_config=flask_config
    )


def test_flask_session_is_a_satchel_session(make_manager: ManagerFactory) -> None:
    app = flask.Flask(__name__)
    app.session_interface = SessionInterface(make_manager())
    seen: list[object] = []

    @app.route("/")
    def index() -> str:
        seen.append(flask.session._get_current_object())  # type: ignore[attr-defined]
        flask.session["n"] = 1
        return "ok"

    app.test_client().get("/")
    assert isinstance(seen[0], Session)
    assert isinstance(seen[0], SessionMixin)


def test_flask_cookie_settings_are_followed(make_manager: ManagerFactory) -> None:
    client = flask_client(
        make_manager,
        SESSION_COOKIE_NAME="shop",
        SESSION_COOKIE_PATH="/shop",
        SESSION_COOKIE_DOMAIN="example.com",
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=False,
        SESSION_COOKIE_PARTITIONED=True,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=1),
    )
    header = client.get("/put", key="a", value="1").cookie_header("shop")
    assert header is not None
    attributes = cookie_attributes(header)
    assert attributes["path"] == "/shop"
    assert attributes["domain"] == "example.com"
    assert attributes["samesite"] == "Strict"
    assert "secure" in attributes
    assert "httponly" not in attributes
    assert "partitioned" in attributes
    assert attributes["max-age"] == "3600"
    assert json.loads(client.get("/get", key="a").text) == "1"


def test_application_root_is_the_default_path(make_manager: ManagerFactory) -> None:
    client = flask_client(make_manager, APPLICATION_ROOT="/app")
    header = client.get("/put", key="a", value="1").cookie_header("satchel_session")
    assert header is not None
    assert cookie_attributes(header)["path"] == "/app"


def test_flask_defaults_defer_to_the_satchel_config(make_manager: ManagerFactory) -> None:
    client = flask_client(make_manager, cookie="shop_sid", same_site="strict", lifetime=10)
    header = client.get("/put", key="a", value="1").cookie_header("shop_sid")
    assert header is not None
    attributes = cookie_attributes(header)
    assert attributes["samesite"] == "Strict"
    assert attributes["max-age"] == "600"
    assert "httponly" in attributes


def test_a_host_prefixed_flask_cookie_name_with_a_domain_is_refused(
    make_manager: ManagerFactory,
) -> None:
    client = flask_client(
        make_manager, SESSION_COOKIE_NAME="__Host-sid", SESSION_COOKIE_DOMAIN="example.com"
    )
    with pytest.raises(ConfigError, match="domain"):
        client.get("/put", key="a", value="1")


@pytest.mark.parametrize(("refresh", "resent"), [(True, True), (False, False)])
def test_session_refresh_each_request(
    make_manager: ManagerFactory, clock: FakeClock, spy: SpyHandler, refresh: bool, resent: bool
) -> None:
    client = flask_client(make_manager, touch_interval=60, SESSION_REFRESH_EACH_REQUEST=refresh)
    client.get("/put", key="a", value="1")
    clock.advance(61)
    spy.calls.clear()
    reply = client.get("/get", key="a")
    assert spy.methods().count("write") == 1  # the idle expiry slides server-side either way
    assert (reply.cookie_header("satchel_session") is not None) is resent
    # Changed data always sends the cookie.
    assert client.get("/put", key="a", value="2").cookie_header("satchel_session") is not None


def test_nested_changes_are_saved_and_modified_forces_a_write(
    make_manager: ManagerFactory, spy: SpyHandler
) -> None:
    app = flask.Flask(__name__)
    app.session_interface = SessionInterface(make_manager())

    @app.route("/start")
    def start() -> str:
        flask.session["cart"] = {"items": []}
        return "ok"

    @app.route("/append")
    def append() -> str:
        flask.session["cart"]["items"].append("apple")  # no assignment to the session itself
        return "ok"

    @app.route("/force")
    def force() -> str:
        flask.session.modified = True
        return "ok"

    @app.route("/read")
    def read() -> str:
        return json.dumps(flask.session["cart"])

    client = app.test_client()
    client.get("/start")
    client.get("/append")
    assert json.loads(client.get("/read").text) == {"items": ["apple"]}
    spy.calls.clear()
    client.get("/force")
    assert spy.methods().count("write") == 1


def test_looking_at_the_session_adds_vary_even_without_a_cookie(
    make_manager: ManagerFactory,
) -> None:
    app = flask.Flask(__name__)
    app.session_interface = SessionInterface(make_manager())

    @app.route("/")
    def index() -> str:
        return "yes" if "user" in flask.session else "no"

    reply = app.test_client().get("/")
    assert reply.text == "no"
    assert reply.headers.get("Vary") == "Cookie"
    assert reply.headers.get("Set-Cookie") is None


def test_the_session_is_unbound_after_the_request(make_manager: ManagerFactory) -> None:
    app = flask.Flask(__name__)
    app.session_interface = SessionInterface(make_manager())

    @app.route("/")
    def index() -> str:
        return str(satchel.session.get("x", "none"))

    assert app.test_client().get("/").text == "none"
    with pytest.raises(RuntimeError, match="outside a request"):
        satchel.session.get("x")


def test_flask_message_flashing_works_on_the_satchel_session(make_manager: ManagerFactory) -> None:
    app = flask.Flask(__name__)
    app.session_interface = SessionInterface(make_manager())

    @app.route("/flash")
    def flash() -> str:
        flask.flash("Saved", "info")
        return "ok"

    @app.route("/messages")
    def messages() -> str:
        return json.dumps(flask.get_flashed_messages(with_categories=True))

    client = app.test_client()
    client.get("/flash")
    assert json.loads(client.get("/messages").text) == [["info", "Saved"]]
    assert json.loads(client.get("/messages").text) == []
