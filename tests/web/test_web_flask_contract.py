"""Flask's own session contract, kept by satchel's session interface.

Where the behaviour is Flask's to define, a test runs the same steps against
Flask's built-in ``SecureCookieSessionInterface`` and against satchel's, and
expects the same of both: the app and its tests keep working when the
interface is swapped.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import flask
import pytest
from flask.globals import request_ctx
from flask.sessions import SecureCookieSessionInterface
from flask.sessions import SessionInterface as FlaskInterface
from web_support import SECRET, FakeClock, ManagerFactory, SpyHandler, cookie_attributes

import satchel
from satchel import SessionConfig, SessionManager, context
from satchel.flask import SessionInterface
from satchel.ids import generate_id

KINDS = ("flask", "satchel")  # Flask's own cookie session, then satchel's interface
COOKIE_NAMES = ("session", "satchel_session")  # Flask's default name; satchel's, which it defers to
DRIVERS = ("file", "array", "cookie", "redis", "memcached", "database-sqlite", "database-postgres")


def contract_app(interface: FlaskInterface) -> flask.Flask:
    """An app that uses nothing but Flask's session API, so either interface can serve it."""
    app = flask.Flask(__name__)
    app.testing = True
    app.secret_key = SECRET  # Flask's own signs its cookie with it; satchel needs none
    app.session_interface = interface

    @app.route("/put")
    def put() -> str:
        flask.session[flask.request.args["key"]] = flask.request.args["value"]
        return "ok"

    @app.route("/get")
    def get() -> str:
        return json.dumps(flask.session.get(flask.request.args["key"]))

    @app.route("/pop")
    def pop() -> str:
        return json.dumps(flask.session.pop(flask.request.args["key"], None))

    @app.route("/remember")
    def remember() -> str:
        flask.session.permanent = flask.request.args["permanent"] == "yes"
        flask.session["user"] = "ada"
        return "ok"

    @app.route("/untouched")
    def untouched() -> str:
        return "hello"

    return app


def make_interface(kind: str, make_manager: ManagerFactory, **config: Any) -> FlaskInterface:
    if kind == "flask":
        return SecureCookieSessionInterface()
    return SessionInterface(make_manager(**config))


def session_cookie(response: Any) -> str | None:
    """The ``Set-Cookie`` value of the session cookie (either interface's name), if any."""
    found = [
        header
        for header in response.headers.getlist("Set-Cookie")
        if header.split("=", 1)[0] in COOKIE_NAMES
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


def cookie_pair(header: str) -> str:
    """``name=value`` of a ``Set-Cookie`` value, as a ``Cookie`` request header sends it."""
    return header.split(";", 1)[0]


def varies_on_cookie(response: Any) -> bool:
    return "cookie" in [
        item.strip().lower() for item in response.headers.get("Vary", "").split(",")
    ]


# -- session_transaction ------------------------------------------------------------------------


@pytest.fixture(params=("flask's own", *DRIVERS))
def any_interface(request: pytest.FixtureRequest, tmp_path: Path) -> FlaskInterface:
    """Flask's own interface, then satchel's on each driver (real servers for the plugins)."""
    name = request.param
    if name == "flask's own":
        return SecureCookieSessionInterface()
    settings: dict[str, Any] = {"lottery": (0, 100), "secret_key": SECRET}
    if name in ("file", "array", "cookie"):
        settings.update(driver=name, files=str(tmp_path / "sessions"))
    elif name == "redis":
        settings.update(
            driver="redis",
            connection=request.getfixturevalue("redis_url"),
            prefix=request.getfixturevalue("unique_prefix"),
        )
    elif name == "memcached":
        settings.update(
            driver="memcached",
            connection=request.getfixturevalue("memcached_connection"),
            prefix=request.getfixturevalue("unique_prefix"),
        )
    else:
        url = request.getfixturevalue(name.replace("database-", "") + "_url")
        table = request.getfixturevalue("make_table")(url)
        settings.update(driver="database", connection=url, table=table)
    return SessionInterface(SessionManager(SessionConfig(**settings)))


@pytest.mark.parametrize("with_block", [False, True], ids=["plain", "inside-with-client"])
def test_session_transaction_seeds_the_next_request_and_sees_what_requests_stored(
    any_interface: FlaskInterface, with_block: bool
) -> None:
    client = contract_app(any_interface).test_client()
    with contextlib.ExitStack() as stack:
        if with_block:
            stack.enter_context(client)  # Flask keeps each request's context until the block ends
        with client.session_transaction() as session:
            session["user"] = "ada"
        assert json.loads(client.get("/get", query_string={"key": "user"}).text) == "ada"
        client.get("/put", query_string={"key": "cart", "value": "apple"})
        with client.session_transaction() as session:
            assert session["cart"] == "apple"
            assert session["user"] == "ada"
            session["cart"] = "pear"
        assert json.loads(client.get("/get", query_string={"key": "cart"}).text) == "pear"
        with client.session_transaction() as session:
            del session["cart"]
        assert json.loads(client.get("/get", query_string={"key": "cart"}).text) is None
    with pytest.raises(RuntimeError, match="outside a request"):
        satchel.session.get("user")


def test_session_transaction_under_blocking_opens_the_session_once(
    make_manager: ManagerFactory,
) -> None:
    # Flask's session_transaction opens the session twice in one request context: the
    # second opening must get the first's session, not wait for the lock the first holds.
    manager = make_manager(block_wait_seconds=0)
    client = contract_app(SessionInterface(manager, block=True)).test_client()
    client.get("/put", query_string={"key": "user", "value": "ada"})
    with client.session_transaction() as session:
        assert session["user"] == "ada"
        session["user"] = "grace"
    reply = client.get("/get", query_string={"key": "user"})
    assert reply.status_code == 200  # the transaction left the lock free
    assert json.loads(reply.text) == "grace"


# -- SESSION_COOKIE_SAMESITE and the other cookie settings ----------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("setting", "sent"),
    [(None, None), ("Lax", "Lax"), ("strict", "Strict"), ("None", "None")],
    ids=["unset", "Lax", "strict", "None-string"],
)
def test_samesite_is_what_flask_sends(
    make_manager: ManagerFactory, kind: str, setting: str | None, sent: str | None
) -> None:
    app = contract_app(make_interface(kind, make_manager))
    app.config["SESSION_COOKIE_SAMESITE"] = setting
    reply = app.test_client().get(
        "/put", query_string={"key": "a", "value": "1"}, base_url="https://localhost"
    )
    header = session_cookie(reply)
    assert header is not None
    assert cookie_attributes(header).get("samesite") == sent


@pytest.mark.parametrize("kind", KINDS)
def test_an_invalid_samesite_is_a_value_error_as_in_flask(
    make_manager: ManagerFactory, kind: str
) -> None:
    app = contract_app(make_interface(kind, make_manager))
    app.config["SESSION_COOKIE_SAMESITE"] = "invalid"
    with pytest.raises(ValueError, match=r"SameSite|SESSION_COOKIE_SAMESITE") as raised:
        app.test_client().get("/put", query_string={"key": "a", "value": "1"})
    if kind == "satchel":
        assert "SESSION_COOKIE_SAMESITE" in str(raised.value)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("SESSION_COOKIE_PATH", "/shop;admin"),
        ("SESSION_COOKIE_DOMAIN", "example.com;evil"),
        ("SESSION_COOKIE_NAME", "my session"),
        ("SESSION_COOKIE_SAMESITE", 1),
    ],
)
def test_a_bad_cookie_setting_is_a_value_error_naming_the_flask_setting(
    make_manager: ManagerFactory, setting: str, value: object
) -> None:
    app = contract_app(SessionInterface(make_manager()))
    app.config[setting] = value
    with pytest.raises(ValueError, match=setting):
        app.test_client().get("/put", query_string={"key": "a", "value": "1"})


def test_a_bad_application_root_is_named_when_it_gives_the_path(
    make_manager: ManagerFactory,
) -> None:
    interface = SessionInterface(make_manager())
    app = contract_app(interface)
    app.config["APPLICATION_ROOT"] = "/shop;admin"
    with pytest.raises(ValueError, match="APPLICATION_ROOT"):
        interface.cookie_policy(app)


def test_a_satchel_samesite_other_than_the_default_still_applies(
    make_manager: ManagerFactory,
) -> None:
    # SESSION_COOKIE_SAMESITE left at Flask's None: a SameSite chosen in the config wins.
    app = contract_app(SessionInterface(make_manager(same_site="strict")))
    header = session_cookie(app.test_client().get("/put", query_string={"key": "a", "value": "1"}))
    assert header is not None
    assert cookie_attributes(header)["samesite"] == "Strict"


# -- SESSION_REFRESH_EACH_REQUEST -----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("refresh", [True, False], ids=["refresh", "no-refresh"])
def test_refresh_each_request_resends_a_permanent_sessions_cookie_as_flask_does(
    make_manager: ManagerFactory, spy: SpyHandler, kind: str, refresh: bool
) -> None:
    app = contract_app(make_interface(kind, make_manager))
    app.config["SESSION_REFRESH_EACH_REQUEST"] = refresh
    client = app.test_client(use_cookies=False)
    first = session_cookie(client.get("/remember", query_string={"permanent": "yes"}))
    assert first is not None
    spy.calls.clear()
    # The view never reads the session.
    reply = client.get("/untouched", headers={"Cookie": cookie_pair(first)})
    header = session_cookie(reply)
    assert (header is not None) is refresh
    assert varies_on_cookie(reply) is refresh
    if header is not None:
        attributes = cookie_attributes(header)
        assert "expires" in attributes
        if kind == "satchel":
            assert cookie_pair(header) == cookie_pair(first)  # the same session, re-sent
            assert attributes["max-age"] == "7200"
    if kind == "satchel":
        # On, one read learns whether the cookie names a live permanent session;
        # off, an untouched request costs nothing. Neither writes.
        assert spy.methods() == (["read"] if refresh else [])
    # A view that only reads the session: the same.
    reply = client.get("/get", query_string={"key": "user"}, headers={"Cookie": cookie_pair(first)})
    assert json.loads(reply.text) == "ada"
    assert (session_cookie(reply) is not None) is refresh


@pytest.mark.parametrize("kind", KINDS)
def test_a_browser_session_cookie_is_not_refreshed(make_manager: ManagerFactory, kind: str) -> None:
    app = contract_app(make_interface(kind, make_manager))
    client = app.test_client(use_cookies=False)
    first = session_cookie(client.get("/remember", query_string={"permanent": "no"}))
    assert first is not None
    reply = client.get("/untouched", headers={"Cookie": cookie_pair(first)})
    assert session_cookie(reply) is None
    assert not varies_on_cookie(reply)


@pytest.mark.parametrize("kind", KINDS)
def test_a_cookie_naming_no_live_session_is_not_refreshed(
    make_manager: ManagerFactory, kind: str
) -> None:
    app = contract_app(make_interface(kind, make_manager))
    name = "session" if kind == "flask" else "satchel_session"
    client = app.test_client(use_cookies=False)
    reply = client.get("/untouched", headers={"Cookie": f"{name}={generate_id()}"})
    assert session_cookie(reply) is None


def test_a_session_ended_or_expired_elsewhere_is_never_refreshed(
    make_manager: ManagerFactory, spy: SpyHandler, clock: FakeClock
) -> None:
    manager = make_manager()
    app = contract_app(SessionInterface(manager))
    client = app.test_client(use_cookies=False)
    for end in ("logged out elsewhere", "expired"):
        first = session_cookie(client.get("/remember", query_string={"permanent": "yes"}))
        assert first is not None
        if end == "expired":
            clock.advance(7201)
        else:
            spy.destroy(manager.storage_key(cookie_pair(first).split("=", 1)[1]))
        spy.calls.clear()
        reply = client.get("/untouched", headers={"Cookie": cookie_pair(first)})
        assert session_cookie(reply) is None, end
        assert not varies_on_cookie(reply), end
        assert spy.methods() == ["read"], end  # nothing created, written or deleted


def test_refresh_on_the_cookie_driver_resends_the_cookie_it_got(
    make_manager: ManagerFactory,
) -> None:
    app = contract_app(SessionInterface(make_manager(driver="cookie")))
    client = app.test_client(use_cookies=False)
    first = session_cookie(client.get("/remember", query_string={"permanent": "yes"}))
    assert first is not None
    header = session_cookie(client.get("/untouched", headers={"Cookie": cookie_pair(first)}))
    assert header is not None
    assert cookie_pair(header) == cookie_pair(first)


# -- modified and accessed outlive the save ----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_modified_and_accessed_still_say_what_the_request_did(
    make_manager: ManagerFactory, kind: str
) -> None:
    app = contract_app(make_interface(kind, make_manager))
    seen: dict[str, tuple[bool, bool]] = {}

    def flags() -> tuple[bool, bool]:
        # The context's own session object: flask.session would mark it accessed.
        session = request_ctx._session
        return bool(session.modified), bool(session.accessed)

    @app.after_request
    def before_the_save(response: flask.Response) -> flask.Response:
        seen["after_request"] = flags()
        return response

    @app.teardown_request
    def after_the_save(exc: BaseException | None) -> None:
        seen["teardown_request"] = flags()

    client = app.test_client()

    def observe(path: str, expected: tuple[bool, bool], **query: str) -> None:
        with client:
            client.get(path, query_string=query)
            after_the_request = flags()  # test code, after the save
        assert seen["after_request"] == expected, path  # before the save
        assert seen["teardown_request"][0] == after_the_request[0] == expected[0], path
        if kind == "satchel":
            assert seen["teardown_request"] == after_the_request == expected, path
        # Flask's own marks an untouched session accessed while saving it (it reads
        # session.permanent): only satchel's "accessed" is checked after the save.

    client.get("/put", query_string={"key": "user", "value": "ada"})
    observe("/put", (True, True), key="cart", value="apple")
    observe("/get", (False, True), key="user")
    observe("/untouched", (False, False))
    client.get("/pop", query_string={"key": "user"})
    observe("/pop", (True, True), key="cart")  # the last key: the session ends empty


# -- satchel.session follows Flask's request context ------------------------------------------------


def test_the_helper_reaches_the_session_while_a_stream_with_context_body_streams(
    make_manager: ManagerFactory,
) -> None:
    app = contract_app(SessionInterface(make_manager()))

    @app.route("/stream")
    def stream() -> flask.Response:
        flask.session["name"] = "Ada"

        def body() -> Any:
            yield "hello "
            yield str(satchel.session.get("name"))
            yield " " + str(flask.session.get("name"))

        return flask.Response(flask.stream_with_context(body()))

    client = app.test_client()
    assert client.get("/stream").text == "hello Ada Ada"
    with pytest.raises(RuntimeError, match="outside a request"):
        satchel.session.get("name")


def test_the_helper_follows_a_copied_request_context_into_a_thread(
    make_manager: ManagerFactory,
) -> None:
    app = contract_app(SessionInterface(make_manager()))

    @app.route("/thread")
    def in_a_thread() -> str:
        flask.session["name"] = "Ada"
        work: Callable[[], str] = flask.copy_current_request_context(
            lambda: str(satchel.session.get("name"))
        )
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(work).result()

    assert app.test_client().get("/thread").text == "Ada"


def test_the_helper_lives_as_long_as_flasks_request_context(make_manager: ManagerFactory) -> None:
    app = contract_app(SessionInterface(make_manager()))
    client = app.test_client()
    with client:
        client.get("/put", query_string={"key": "a", "value": "1"})
        # Flask keeps the request context inside the block, and flask.session with it.
        assert context.current_session() is request_ctx._session
        assert satchel.session.get("a") == "1"
    with pytest.raises(RuntimeError, match="outside a request"):
        satchel.session.get("a")
    assert not context.has_session()
