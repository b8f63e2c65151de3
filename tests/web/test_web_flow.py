"""The request flow, the same through Starlette, FastAPI, Flask and plain WSGI."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import NoReturn

import pytest
from web_support import (
    FakeClock,
    Harness,
    HarnessFactory,
    ManagerFactory,
    Reply,
    SpyHandler,
    cookie_attributes,
)
from werkzeug.http import http_date

import satchel.flask
from satchel import (
    ConfigError,
    LockTimeout,
    PoolExhausted,
    SessionBackendError,
    SessionBusy,
    SessionManager,
    lifecycle,
)
from satchel.ids import generate_id
from satchel.web import BUSY_BODY


def test_round_trip(harness: HarnessFactory) -> None:
    client = harness()
    reply = client.get("/put", key="cartItems", value="apple")
    assert reply.status == 200
    assert client.cookie is not None
    client.get("/push", key="list", value="a")
    client.get("/push", key="list", value="b")
    assert json.loads(client.get("/get", key="cartItems").text) == "apple"
    assert json.loads(client.get("/get", key="list").text) == ["a", "b"]


def test_the_global_helper_is_the_request_session(harness: HarnessFactory) -> None:
    client = harness()
    client.get("/put", key="name", value="Ada")
    assert json.loads(client.get("/helper", key="name").text) == "Ada"


def test_a_request_that_never_touches_the_session_costs_nothing(
    harness: HarnessFactory, spy: SpyHandler
) -> None:
    client = harness()
    reply = client.get("/untouched")
    assert reply.text == "hello"
    assert reply.set_cookies() == []
    assert reply.header("vary") is None
    assert spy.calls == []


def test_reading_an_empty_session_creates_nothing(harness: HarnessFactory, spy: SpyHandler) -> None:
    client = harness()
    reply = client.get("/get", key="anything")
    assert json.loads(reply.text) is None
    assert reply.set_cookies() == []
    assert "write" not in spy.methods()
    assert spy.stored() == {}
    # It looked at the session, so a cache must key on the cookie.
    assert reply.header("vary") == "Cookie"


def test_untouched_request_with_a_cookie_keeps_the_cookie(
    harness: HarnessFactory, spy: SpyHandler
) -> None:
    # Flask's SESSION_REFRESH_EACH_REQUEST (on by default) re-sends a permanent session's
    # cookie on every request, as Flask does (test_web_flask); off, Flask is as lazy as WSGI.
    client = harness(options={"flask_config": {"SESSION_REFRESH_EACH_REQUEST": False}})
    client.get("/put", key="a", value="1")
    spy.calls.clear()
    reply = client.get("/untouched")
    assert reply.set_cookies() == []
    assert "write" not in spy.methods()
    if client.is_asgi:
        # ASGI loads before the handler when a cookie is sent (a sync get cannot await).
        assert spy.methods() == ["read"]
    else:
        assert spy.calls == []  # WSGI and Flask load lazily


@pytest.mark.parametrize("driver", ["array", "cookie", "spy"])
def test_a_request_that_never_uses_its_session_never_reads_its_cookie(
    harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch, driver: str
) -> None:
    client = harness(driver=driver)
    client.get("/put", key="a", value="1")
    reads: list[str | None] = []
    real_read = lifecycle.read_cookie

    def counted(header: str | None, name: str) -> str | None:
        reads.append(header)
        return real_read(header, name)

    monkeypatch.setattr(lifecycle, "read_cookie", counted)
    monkeypatch.setattr(satchel.flask, "read_cookie", counted)
    assert client.get("/untouched").text == "hello"
    # Flask's interface reads the cookie as it opens the session. ASGI loads a driver that
    # may wait for I/O (the spy) before the app runs, which takes the cookie.
    eager = client.framework == "flask" or (client.is_asgi and driver == "spy")
    assert len(reads) == (1 if eager else 0)
    reads.clear()
    assert json.loads(client.get("/get", key="a").text) == "1"
    assert reads == [f"{client.cookie_name}={client.cookie}"]


def test_flash_lasts_one_more_request(harness: HarnessFactory) -> None:
    client = harness()
    client.get("/flash", value="Item added")
    assert json.loads(client.get("/get", key="status").text) == "Item added"
    assert json.loads(client.get("/get", key="status").text) is None


def test_login_regenerates_the_id_and_kills_the_old_one(harness: HarnessFactory) -> None:
    client = harness()
    client.get("/put", key="cartItems", value="apple")
    before = client.cookie
    reply = client.get("/login")
    after = client.cookie
    assert reply.cookie_header(client.cookie_name) is not None
    assert after is not None
    assert after != before
    assert json.loads(client.get("/get", key="cartItems").text) == "apple"
    assert json.loads(client.get("/get", key="user").text) == "alice"
    # Replaying the old cookie reaches nothing.
    client.cookie = before
    assert json.loads(client.get("/get", key="cartItems").text) is None


def test_logout_deletes_the_record_and_the_cookie_with_its_path_and_domain(
    harness: HarnessFactory, spy: SpyHandler
) -> None:
    client = harness(path="/", domain="shop.example")
    client.get("/put", key="user", value="alice")
    old = client.cookie
    assert old is not None
    reply = client.get("/logout")
    header = reply.cookie_header(client.cookie_name)
    assert header is not None
    attributes = cookie_attributes(header)
    assert header.startswith(f"{client.cookie_name}=;")
    assert attributes["max-age"] == "0"
    assert attributes["path"] == "/"
    assert attributes["domain"] == "shop.example"
    assert client.cookie is None
    assert client.manager.storage_key(old) not in spy.stored()
    client.cookie = old
    assert json.loads(client.get("/get", key="user").text) is None


@pytest.mark.parametrize(
    "cookie",
    [
        generate_id(),  # well formed, never issued
        "..%2f..%2fetc%2fpasswd",
        "",
        "short",
        "x" * 8192,
        "a;b",
        "\u00e9t\u00e9" * 10,
        "\x00\x7f",
        "Zm9v" * 300,
    ],
    ids=[
        "unknown",
        "traversal",
        "empty",
        "short",
        "8kb",
        "semicolon",
        "non-ascii",
        "control",
        "base64",
    ],
)
def test_forged_or_garbage_cookies_give_a_fresh_session(
    harness: HarnessFactory, spy: SpyHandler, cookie: str
) -> None:
    client = harness()
    header = f"{client.cookie_name}={cookie}".encode().decode("latin-1")
    reply = client.get("/put", key="k", value="v", headers={"Cookie": header})
    assert reply.status == 200
    assert client.cookie is not None
    assert client.cookie != cookie
    # Nothing but the fresh session was stored, and never under the forged id.
    assert list(spy.stored()) == [client.manager.storage_key(client.cookie)]
    assert json.loads(client.get("/get", key="k").text) == "v"


def test_default_cookie_attributes(harness: HarnessFactory, clock: FakeClock) -> None:
    client = harness()
    header = client.get("/put", key="a", value="1").cookie_header(client.cookie_name)
    assert header is not None
    attributes = cookie_attributes(header)
    assert attributes["path"] == "/"
    assert "httponly" in attributes
    if client.framework == "flask":
        # Flask's SESSION_COOKIE_SAMESITE defaults to None: no SameSite, as Flask sends.
        assert "samesite" not in attributes
    else:
        assert attributes["samesite"] == "Lax"
    assert "domain" not in attributes
    assert "secure" not in attributes  # plain http: a Secure cookie would never come back
    lifetime = client.manager.config.lifetime_seconds
    assert attributes["max-age"] == str(lifetime)
    assert attributes["expires"] == http_date(clock.now + lifetime)  # werkzeug's format


def test_secure_follows_https_when_unset(harness: HarnessFactory) -> None:
    client = harness()
    header = client.get("/put", key="a", value="1", https=True).cookie_header(client.cookie_name)
    assert header is not None
    assert "secure" in cookie_attributes(header)


def test_configured_cookie_attributes(harness: HarnessFactory) -> None:
    client = harness(
        cookie="shop_sid",
        path="/",
        domain="example.com",
        secure=True,
        same_site="strict",
        partitioned=True,
        lifetime=30,
    )
    header = client.get("/put", key="a", value="1").cookie_header("shop_sid")
    assert header is not None
    attributes = cookie_attributes(header)
    assert attributes["domain"] == "example.com"
    assert "secure" in attributes
    assert attributes["samesite"] == "Strict"
    assert "partitioned" in attributes
    assert attributes["max-age"] == "1800"


def test_host_prefixed_cookie_is_always_secure_path_root_without_domain(
    harness: HarnessFactory,
) -> None:
    client = harness(cookie="__Host-sid")
    header = client.get("/put", key="a", value="1").cookie_header("__Host-sid")
    assert header is not None
    attributes = cookie_attributes(header)
    assert "secure" in attributes
    assert attributes["path"] == "/"
    assert "domain" not in attributes
    assert json.loads(client.get("/get", key="a").text) == "1"


def test_host_prefix_with_a_domain_is_refused_when_configured(harness: HarnessFactory) -> None:
    with pytest.raises(ConfigError, match="domain"):
        harness(cookie="__Host-sid", domain="example.com")


def test_expire_on_close_sends_a_browser_session_cookie(harness: HarnessFactory) -> None:
    client = harness(expire_on_close=True)
    header = client.get("/put", key="a", value="1").cookie_header(client.cookie_name)
    assert header is not None
    attributes = cookie_attributes(header)
    assert "max-age" not in attributes
    assert "expires" not in attributes


def test_a_temporary_session_has_no_max_age(harness: HarnessFactory) -> None:
    client = harness()
    header = client.get("/temporary").cookie_header(client.cookie_name)
    assert header is not None
    assert "max-age" not in cookie_attributes(header)


def test_max_age_never_outlasts_the_absolute_lifetime(
    harness: HarnessFactory, clock: FakeClock
) -> None:
    client = harness(lifetime=100, absolute_lifetime=90, touch_interval=0)
    client.get("/put", key="a", value="1")
    clock.advance(80 * 60)  # 10 minutes of the absolute lifetime left
    header = client.get("/put", key="a", value="2").cookie_header(client.cookie_name)
    assert header is not None
    assert cookie_attributes(header)["max-age"] == "600"


def test_set_cookie_responses_are_private_and_vary_on_cookie(harness: HarnessFactory) -> None:
    client = harness()
    reply = client.get("/put", key="a", value="1")
    assert reply.cookie_header(client.cookie_name) is not None
    assert reply.header("vary") is not None
    assert "cookie" in reply.header("vary").lower()  # type: ignore[union-attr]
    assert reply.header("cache-control") == "private"


def test_an_unchanged_session_is_not_rewritten_until_the_touch_interval(
    harness: HarnessFactory, spy: SpyHandler, clock: FakeClock
) -> None:
    # Flask's SESSION_REFRESH_EACH_REQUEST on would re-send it every time (test_web_flask).
    client = harness(
        touch_interval=60, options={"flask_config": {"SESSION_REFRESH_EACH_REQUEST": False}}
    )
    client.get("/put", key="a", value="1")
    spy.calls.clear()
    reply = client.get("/get", key="a")
    assert reply.set_cookies() == []
    assert "write" not in spy.methods()
    clock.advance(61)
    reply = client.get("/get", key="a")
    # Refreshed: rewritten so the idle expiry slides, and the cookie's Max-Age with it
    # (Flask with SESSION_REFRESH_EACH_REQUEST off re-sends it only for changed data).
    assert spy.methods().count("write") == 1
    assert (reply.cookie_header(client.cookie_name) is not None) is (client.framework != "flask")


def test_idle_expiry_gives_a_fresh_session(harness: HarnessFactory, clock: FakeClock) -> None:
    client = harness(lifetime=1)
    client.get("/put", key="a", value="1")
    clock.advance(61)
    assert json.loads(client.get("/get", key="a").text) is None


def test_streaming_response_carries_the_cookie(harness: HarnessFactory) -> None:
    client = harness()
    reply = client.get("/stream")
    assert reply.text == 'first "yes"'
    assert reply.cookie_header(client.cookie_name) is not None
    assert json.loads(client.get("/get", key="streamed").text) == "yes"


def test_gc_lottery_runs_only_for_a_loaded_session(
    harness: HarnessFactory, spy: SpyHandler
) -> None:
    client = harness(lottery=(1, 1))
    client.get("/untouched")
    assert "gc" not in spy.methods()
    client.get("/put", key="a", value="1")
    assert spy.methods().count("gc") == 1


def test_gc_lottery_can_lose(harness: HarnessFactory, spy: SpyHandler) -> None:
    client = harness(lottery=(0, 1))
    client.get("/put", key="a", value="1")
    assert "gc" not in spy.methods()


def test_request_metadata_reaches_the_driver_without_trusting_forwarding_headers(
    harness: HarnessFactory, spy: SpyHandler
) -> None:
    client = harness()
    client.get(
        "/put",
        key="a",
        value="1",
        headers={"User-Agent": "satchel-test/1.0", "X-Forwarded-For": "198.51.100.1"},
    )
    assert len(spy.metadata) == 1
    metadata = spy.metadata[0]
    assert metadata.ip_address == "203.0.113.7"
    assert metadata.user_agent == "satchel-test/1.0"
    assert metadata.values == {"a": "1"}


@pytest.mark.parametrize("driver", ["null", "cookie"])
def test_block_with_a_driver_that_cannot_lock_fails_at_start_up(
    framework: str, make_manager: ManagerFactory, driver: str
) -> None:
    manager = make_manager(driver=driver)

    def start_app() -> None:
        client = Harness(framework, manager, block=True)
        client.get("/untouched")  # FastAPI builds its middleware stack on the first request

    with pytest.raises(ConfigError, match=f"driver '{driver}' offers no lock"):
        start_app()


def test_a_request_waiting_too_long_for_the_lock_gets_503(
    harness: HarnessFactory,
) -> None:
    client = harness(block_wait_seconds=0, block_lock_seconds=5, options={"block": True})
    client.get("/put", key="a", value="1")
    cookie = client.cookie
    manager: SessionManager = client.manager
    with manager.lock(cookie, block=True):
        reply = client.get("/get", key="a")
    assert reply.status == 503
    assert reply.header("retry-after") == "5"
    assert reply.set_cookies() == []
    # Released, the session is as it was.
    assert json.loads(client.get("/get", key="a").text) == "1"


def test_block_holds_the_lock_during_the_request(harness: HarnessFactory, spy: SpyHandler) -> None:
    client = harness(block=True, block_wait_seconds=0)
    client.get("/put", key="a", value="1")
    held: list[bool] = []
    original = spy.read

    def read_while_checking(session_id: str) -> str:
        # Inside the request the lock is taken: another holder would time out.
        try:
            with spy.lock(session_id, lock_seconds=1, wait_seconds=0):
                held.append(False)
        except LockTimeout:
            held.append(True)
        return original(session_id)

    spy.read = read_while_checking  # type: ignore[method-assign]
    client.get("/get", key="a")
    assert held == [True]


@pytest.mark.parametrize("path", ["/put", "/stream"])
def test_a_save_that_times_out_on_the_merge_lock_gets_503(
    harness: HarnessFactory, spy: SpyHandler, path: str
) -> None:
    client = harness(merge_on_save=True, block_wait_seconds=0.05, block_lock_seconds=5)
    client.get("/put", key="a", value="1")
    cookie = client.cookie
    assert cookie is not None
    # Another request is merging into this session and holds its lock.
    with spy.lock(client.manager.storage_key(cookie), lock_seconds=5, wait_seconds=0):
        reply = client.get(path, key="a", value="2")
    assert reply.status == 503
    assert reply.header("retry-after") == "5"
    assert reply.header("cache-control") == "no-store"
    assert reply.set_cookies() == []
    assert reply.text == BUSY_BODY.decode()  # the app's body, streamed or not, is not sent
    # Nothing was saved; once the lock is free the session works as before.
    assert json.loads(client.get("/get", key="a").text) == "1"
    assert json.loads(client.get("/get", key="streamed").text) is None
    assert client.get("/put", key="a", value="3").status == 200
    assert json.loads(client.get("/get", key="a").text) == "3"


def _pool_exhausted(*args: object, **kwargs: object) -> NoReturn:
    raise PoolExhausted("spy", "spy://pool", "no connection came free within 0.1 seconds")


def _assert_busy(reply: Reply) -> None:
    assert reply.status == 503
    assert reply.header("retry-after") == "5"
    assert reply.header("cache-control") == "no-store"
    assert reply.set_cookies() == []
    assert reply.text == BUSY_BODY.decode()


@pytest.mark.parametrize("method", ["read", "write_existing", "lock"])
def test_a_store_out_of_connections_gets_503_never_a_500(
    harness: HarnessFactory, spy: SpyHandler, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """A pool that stayed exhausted for its whole timeout (``PoolExhausted``) at load, at
    save or at the lock is answered as a lock timeout is: 503, Retry-After, nothing saved."""
    client = harness(block=method == "lock", block_lock_seconds=5)
    client.get("/put", key="a", value="1")
    with monkeypatch.context() as patch:
        patch.setattr(spy, method, _pool_exhausted)
        _assert_busy(client.get("/put", key="a", value="2"))
    assert json.loads(client.get("/get", key="a").text) == "1"
    assert client.get("/put", key="a", value="3").status == 200
    assert json.loads(client.get("/get", key="a").text) == "3"


def test_the_busy_errors_are_one_family() -> None:
    """``SessionBusy`` is what the glue answers with 503: a lock timeout or an exhausted
    pool; the pool's is also a backend error naming the driver and its address."""
    assert issubclass(LockTimeout, SessionBusy)
    error = PoolExhausted("redis", "redis://127.0.0.1:6379/0", "no connection came free")
    assert isinstance(error, SessionBusy)
    assert isinstance(error, SessionBackendError)
    assert "'redis'" in str(error)
    assert "redis://127.0.0.1:6379/0" in str(error)


def test_a_lock_release_the_busy_store_cannot_make_still_serves_the_request(
    harness: HarnessFactory,
    spy: SpyHandler,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The save went through; the lock, left behind, expires by itself."""
    client = harness(block=True, block_lock_seconds=5)
    client.get("/put", key="a", value="1")
    real_lock = spy.lock

    @contextlib.contextmanager
    def lock_whose_release_finds_the_pool_exhausted(
        session_id: str, **timing: float
    ) -> Iterator[None]:
        with real_lock(session_id, **timing):
            yield
        _pool_exhausted()

    monkeypatch.setattr(spy, "lock", lock_whose_release_finds_the_pool_exhausted)
    reply = client.get("/put", key="a", value="2")
    assert reply.status == 200
    assert "expires by itself" in caplog.text
    monkeypatch.undo()
    assert json.loads(client.get("/get", key="a").text) == "2"
