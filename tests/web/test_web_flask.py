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
import satchel.context
from satchel import ConfigError, Session
from satchel.flask import SessionInterface
from satchel.web import BUSY_BODY


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


def test_the_cookie_policy_is_built_once_per_set_of_settings(
    make_manager: ManagerFactory,
) -> None:
    interface = SessionInterface(make_manager())
    app = flask.Flask(__name__)
    first = interface.cookie_policy(app)
    assert interface.cookie_policy(app) is first  # not rebuilt on every request
    app.config["SESSION_COOKIE_PATH"] = "/shop"  # a changed setting is followed
    changed = interface.cookie_policy(app)
    assert changed.path == "/shop"
    assert first.path == "/"
    app.permanent_session_lifetime = timedelta(hours=2)
    assert interface.cookie_policy(app).max_age == 7200


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
    with pytest.raises(ConfigError, match="SESSION_COOKIE_DOMAIN"):
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


def test_a_request_that_never_uses_the_session_leaves_its_flash_data(
    make_manager: ManagerFactory, clock: FakeClock, spy: SpyHandler
) -> None:
    """Flask's SESSION_REFRESH_EACH_REQUEST (on by default) reads the session of a request
    that never uses it, to re-send its cookie and slide its expiry: the flash data stays
    for the request that does use it."""
    app = flask.Flask(__name__)
    app.session_interface = SessionInterface(make_manager(touch_interval=60))

    @app.route("/flash")
    def flash() -> str:
        satchel.session.put("user", "ada")
        satchel.session.flash("status", "saved")
        return "ok"

    @app.route("/status")
    def status() -> str:
        return str(satchel.session.get("status"))

    @app.route("/untouched")
    def untouched() -> str:
        return "ok"

    client = app.test_client()
    client.get("/flash")
    assert client.get("/untouched").headers.get("Set-Cookie") is not None  # as Flask re-sends
    clock.advance(61)
    spy.calls.clear()
    assert client.get("/untouched").headers.get("Set-Cookie") is not None
    assert spy.methods().count("write") == 1  # the refresh, due now
    assert client.get("/status").text == "saved"
    assert client.get("/status").text == "None"  # aged by the request that showed it


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


def session_cookie(response: Any) -> str:
    """``name=value`` of the session cookie a response set, ready for a ``Cookie`` header."""
    header = next(
        value
        for value in response.headers.getlist("Set-Cookie")
        if value.startswith("satchel_session=")
    )
    return str(header.split(";", 1)[0])


def test_flask_session_attributes_new_accessed_and_permanent(make_manager: ManagerFactory) -> None:
    app = flask.Flask(__name__)
    app.session_interface = SessionInterface(make_manager())
    seen: dict[str, bool] = {}

    @app.route("/look")
    def look() -> str:
        # satchel's own binding does not count as a look, unlike Flask's ``flask.session``.
        session = satchel.context.current_session()
        seen["accessed_before"] = session.accessed
        seen["new"] = session.new
        seen["accessed_after_new"] = session.accessed
        flask.session.get("cart")
        seen["accessed"] = session.accessed
        seen["permanent"] = session.permanent
        return "ok"

    @app.route("/put")
    def put() -> str:
        flask.session["cart"] = ["apple"]
        return "ok"

    @app.route("/temporary")
    def temporary() -> str:
        flask.session.permanent = False
        return "ok"

    @app.route("/untouched")
    def untouched() -> str:
        seen["untouched_accessed"] = satchel.context.current_session().accessed
        return "ok"

    client = app.test_client(use_cookies=False)
    client.get("/look")
    # No stored session behind the request: new; the default is permanent
    # (``not expire_on_close``, so the cookie gets the lifetime's Max-Age).
    assert seen == {
        "accessed_before": False,
        "new": True,
        "accessed_after_new": False,
        "accessed": True,
        "permanent": True,
    }
    cookie = session_cookie(client.get("/put"))
    client.get("/look", headers={"Cookie": cookie})
    assert seen["new"] is False  # loaded from the store
    assert seen["permanent"] is True
    # A forged id reaches no stored session: new again.
    client.get("/look", headers={"Cookie": "satchel_session=" + "A" * 40})
    assert seen["new"] is True
    reply = client.get("/temporary", headers={"Cookie": cookie})
    assert "Max-Age" not in reply.headers["Set-Cookie"]
    cookie = session_cookie(reply)
    client.get("/look", headers={"Cookie": cookie})
    assert seen["permanent"] is False  # stored with the session
    reply = client.get("/untouched", headers={"Cookie": cookie})
    assert seen["untouched_accessed"] is False
    assert reply.headers.get("Vary") is None


def test_expire_on_close_makes_flask_sessions_temporary_by_default(
    make_manager: ManagerFactory,
) -> None:
    app = flask.Flask(__name__)
    app.session_interface = SessionInterface(make_manager(expire_on_close=True))

    @app.route("/")
    def index() -> str:
        flask.session["a"] = 1
        return str(flask.session.permanent)

    reply = app.test_client().get("/")
    assert reply.text == "False"
    assert "Max-Age" not in reply.headers["Set-Cookie"]


def test_a_same_session_request_while_a_response_streams_is_not_refused(
    make_manager: ManagerFactory,
) -> None:
    app = flask.Flask(__name__)
    app.session_interface = SessionInterface(make_manager(block_wait_seconds=0), block=True)

    @app.route("/count")
    def count() -> str:
        return str(flask.session.increment("count"))

    @app.route("/stream")
    def stream() -> flask.Response:
        flask.session["streaming"] = True

        def chunks() -> Any:
            yield "count "
            yield str(flask.session.get("count"))  # the request context lives on mid-stream

        return flask.Response(flask.stream_with_context(chunks()))

    client = app.test_client(use_cookies=False)
    cookie = session_cookie(client.get("/count"))
    streaming = client.get("/stream", headers={"Cookie": cookie}, buffered=False)
    body = iter(streaming.response)
    assert next(body) == b"count "
    reply = client.get("/count", headers={"Cookie": cookie})  # mid-stream, same session
    assert reply.status_code == 200
    assert reply.text == "2"
    assert b"".join(body) == b"1"
    streaming.close()


def test_a_busy_request_gets_503_even_when_a_before_request_hook_answers(
    make_manager: ManagerFactory, spy: SpyHandler
) -> None:
    manager = make_manager(block_wait_seconds=0, block_lock_seconds=5)
    app = flask.Flask(__name__)
    app.session_interface = SessionInterface(manager, block=True)
    seen: list[object] = []
    views: list[str] = []

    @app.before_request
    def gate() -> str | None:
        seen.append(flask.session.get("user"))
        return "the hook's own page" if flask.request.path == "/gated" else None

    @app.route("/login")
    def login() -> str:
        flask.session["user"] = "ada"
        return "ok"

    @app.route("/view")
    def view() -> str:
        views.append(flask.request.path)
        return "the view"

    client = app.test_client(use_cookies=False)
    cookie = session_cookie(client.get("/login"))
    value = cookie.split("=", 1)[1]
    for path in ("/gated", "/view"):
        spy.calls.clear()
        seen.clear()
        with manager.lock(value, block=True):
            reply = client.get(path, headers={"Cookie": cookie})
        assert reply.status_code == 503, path
        assert reply.headers["Retry-After"] == "5"
        assert reply.headers["Cache-Control"] == "no-store"
        assert "Set-Cookie" not in reply.headers
        assert reply.data == BUSY_BODY
        # The hook ran, but never read the locked session: it saw an empty one.
        assert seen == [None]
        assert "read" not in spy.methods()
    assert views == []
    # Free again: the hook sees the session and answers.
    seen.clear()
    reply = client.get("/gated", headers={"Cookie": cookie})
    assert reply.text == "the hook's own page"
    assert seen == ["ada"]
