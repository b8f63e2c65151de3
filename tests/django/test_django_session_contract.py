"""Django's session contract, as its own ``SessionTestsMixin`` checks its backends.

Ported from Django's ``tests/sessions_tests/tests.py`` (the mixin every
backend of Django's runs), sync and async, and run against the satchel
engine on the file, Redis and database (SQLite, PostgreSQL) drivers. Where
the mixin checks Django's signed encoding, the port checks the engine's own
``encode``/``decode`` (satchel's tagged JSON) against the same promises.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.test.utils import override_settings
from django.utils import timezone

from satchel.django import SessionStore

backend = SessionStore


def run_async(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop, as Django's test runner does."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))  # type: ignore[arg-type]

    return run


@pytest.fixture
def session(engine: dict[str, Any]) -> Iterator[SessionStore]:
    store = backend()
    yield store
    # As the mixin's cleanup: never leave a session behind.
    store.delete()


def test_new_session(session: SessionStore) -> None:
    assert session.modified is False
    assert session.accessed is False


def test_get_empty(session: SessionStore) -> None:
    assert session.get("cat") is None


@run_async
async def test_get_empty_async(session: SessionStore) -> None:
    assert await session.aget("cat") is None


def test_store(session: SessionStore) -> None:
    session["cat"] = "dog"
    assert session.modified is True
    assert session.pop("cat") == "dog"


@run_async
async def test_store_async(session: SessionStore) -> None:
    await session.aset("cat", "dog")
    assert session.modified is True
    assert await session.apop("cat") == "dog"


def test_pop(session: SessionStore) -> None:
    session["some key"] = "exists"
    # Django's test resets the flags on the test case (a slip); here on the session.
    session.accessed = False
    session.modified = False
    assert session.pop("some key") == "exists"
    assert session.accessed is True
    assert session.modified is True
    assert session.get("some key") is None


@run_async
async def test_pop_async(session: SessionStore) -> None:
    await session.aset("some key", "exists")
    session.accessed = False
    session.modified = False
    assert await session.apop("some key") == "exists"
    assert session.accessed is True
    assert session.modified is True
    assert await session.aget("some key") is None


def test_pop_default(session: SessionStore) -> None:
    assert session.pop("some key", "does not exist") == "does not exist"
    assert session.accessed is True
    assert session.modified is False


@run_async
async def test_pop_default_async(session: SessionStore) -> None:
    assert await session.apop("some key", "does not exist") == "does not exist"
    assert session.accessed is True
    assert session.modified is False


def test_pop_default_named_argument(session: SessionStore) -> None:
    assert session.pop("some key", default="does not exist") == "does not exist"
    assert session.accessed is True
    assert session.modified is False


@run_async
async def test_pop_default_named_argument_async(session: SessionStore) -> None:
    assert await session.apop("some key", default="does not exist") == "does not exist"
    assert session.accessed is True
    assert session.modified is False


def test_pop_no_default_keyerror_raised(session: SessionStore) -> None:
    with pytest.raises(KeyError):
        session.pop("some key")


@run_async
async def test_pop_no_default_keyerror_raised_async(session: SessionStore) -> None:
    with pytest.raises(KeyError):
        await session.apop("some key")


def test_setdefault(session: SessionStore) -> None:
    assert session.setdefault("foo", "bar") == "bar"
    assert session.setdefault("foo", "baz") == "bar"
    assert session.accessed is True
    assert session.modified is True


@run_async
async def test_setdefault_async(session: SessionStore) -> None:
    assert await session.asetdefault("foo", "bar") == "bar"
    assert await session.asetdefault("foo", "baz") == "bar"
    assert session.accessed is True
    assert session.modified is True


def test_update(session: SessionStore) -> None:
    session.update({"update key": 1})
    assert session.accessed is True
    assert session.modified is True
    assert session.get("update key", None) == 1


@run_async
async def test_update_async(session: SessionStore) -> None:
    await session.aupdate({"update key": 1})
    assert session.accessed is True
    assert session.modified is True
    assert await session.aget("update key", None) == 1


def test_has_key(session: SessionStore) -> None:
    session["some key"] = 1
    session.modified = False
    session.accessed = False
    assert "some key" in session
    assert session.accessed is True
    assert session.modified is False


@run_async
async def test_has_key_async(session: SessionStore) -> None:
    await session.aset("some key", 1)
    session.modified = False
    session.accessed = False
    assert await session.ahas_key("some key") is True
    assert session.accessed is True
    assert session.modified is False


def test_values(session: SessionStore) -> None:
    assert list(session.values()) == []
    assert session.accessed is True
    session["some key"] = 1
    session.modified = False
    session.accessed = False
    assert list(session.values()) == [1]
    assert session.accessed is True
    assert session.modified is False


@run_async
async def test_values_async(session: SessionStore) -> None:
    assert list(await session.avalues()) == []
    assert session.accessed is True
    await session.aset("some key", 1)
    session.modified = False
    session.accessed = False
    assert list(await session.avalues()) == [1]
    assert session.accessed is True
    assert session.modified is False


def test_keys(session: SessionStore) -> None:
    session["x"] = 1
    session.modified = False
    session.accessed = False
    assert list(session.keys()) == ["x"]
    assert session.accessed is True
    assert session.modified is False


@run_async
async def test_keys_async(session: SessionStore) -> None:
    await session.aset("x", 1)
    session.modified = False
    session.accessed = False
    assert list(await session.akeys()) == ["x"]
    assert session.accessed is True
    assert session.modified is False


def test_items(session: SessionStore) -> None:
    session["x"] = 1
    session.modified = False
    session.accessed = False
    assert list(session.items()) == [("x", 1)]
    assert session.accessed is True
    assert session.modified is False


@run_async
async def test_items_async(session: SessionStore) -> None:
    await session.aset("x", 1)
    session.modified = False
    session.accessed = False
    assert list(await session.aitems()) == [("x", 1)]
    assert session.accessed is True
    assert session.modified is False


def test_clear(session: SessionStore) -> None:
    session["x"] = 1
    session.modified = False
    session.accessed = False
    assert list(session.items()) == [("x", 1)]
    session.clear()
    assert list(session.items()) == []
    assert session.accessed is True
    assert session.modified is True


def test_save(session: SessionStore) -> None:
    session.save()
    assert session.exists(session.session_key) is True


@run_async
async def test_save_async(session: SessionStore) -> None:
    await session.asave()
    assert await session.aexists(session.session_key) is True


def test_delete(session: SessionStore) -> None:
    session.save()
    session.delete(session.session_key)
    assert session.exists(session.session_key) is False


@run_async
async def test_delete_async(session: SessionStore) -> None:
    await session.asave()
    await session.adelete(session.session_key)
    assert await session.aexists(session.session_key) is False


def test_flush(session: SessionStore) -> None:
    session["foo"] = "bar"
    session.save()
    prev_key = session.session_key
    session.flush()
    assert session.exists(prev_key) is False
    assert session.session_key != prev_key
    assert session.session_key is None
    assert session.modified is True
    assert session.accessed is True


@run_async
async def test_flush_async(session: SessionStore) -> None:
    await session.aset("foo", "bar")
    await session.asave()
    prev_key = session.session_key
    await session.aflush()
    assert await session.aexists(prev_key) is False
    assert session.session_key != prev_key
    assert session.session_key is None
    assert session.modified is True
    assert session.accessed is True


def test_cycle(session: SessionStore) -> None:
    session["a"], session["b"] = "c", "d"
    session.save()
    prev_key = session.session_key
    prev_data = list(session.items())
    session.cycle_key()
    assert session.exists(prev_key) is False
    assert session.session_key != prev_key
    assert list(session.items()) == prev_data
    # The data is stored under the new key, not only held in memory.
    assert dict(backend(session.session_key).items()) == dict(prev_data)


@run_async
async def test_cycle_async(session: SessionStore) -> None:
    await session.aset("a", "c")
    await session.aset("b", "d")
    await session.asave()
    prev_key = session.session_key
    prev_data = list(await session.aitems())
    await session.acycle_key()
    assert await session.aexists(prev_key) is False
    assert session.session_key != prev_key
    assert list(await session.aitems()) == prev_data
    assert dict(await backend(session.session_key).aitems()) == dict(prev_data)


def test_cycle_with_no_session_cache(session: SessionStore) -> None:
    session["a"], session["b"] = "c", "d"
    session.save()
    prev_data = list(session.items())
    reloaded = backend(session.session_key)
    assert hasattr(reloaded, "_session_cache") is False
    reloaded.cycle_key()
    assert sorted(reloaded.items()) == sorted(prev_data)
    reloaded.delete()


@run_async
async def test_cycle_with_no_session_cache_async(session: SessionStore) -> None:
    await session.aset("a", "c")
    await session.aset("b", "d")
    await session.asave()
    prev_data = list(await session.aitems())
    reloaded = backend(session.session_key)
    assert hasattr(reloaded, "_session_cache") is False
    await reloaded.acycle_key()
    assert sorted(await reloaded.aitems()) == sorted(prev_data)
    await reloaded.adelete()


def test_save_doesnt_clear_data(session: SessionStore) -> None:
    session["a"] = "b"
    session.save()
    assert session["a"] == "b"


@run_async
async def test_save_doesnt_clear_data_async(session: SessionStore) -> None:
    await session.aset("a", "b")
    await session.asave()
    assert await session.aget("a") == "b"


def test_invalid_key(engine: dict[str, Any]) -> None:
    # Submitting an invalid session key (by guessing, or one the store has
    # removed) results in a new key being generated.
    invalid = backend("1")
    try:
        invalid.save()
        assert invalid.session_key != "1"
        assert invalid.get("cat") is None
        invalid.delete()
    finally:
        invalid.delete("1")


@run_async
async def test_invalid_key_async(engine: dict[str, Any]) -> None:
    invalid = backend("1")
    try:
        await invalid.asave()
        assert invalid.session_key != "1"
        assert await invalid.aget("cat") is None
        await invalid.adelete()
    finally:
        await invalid.adelete("1")


def test_session_key_empty_string_invalid(session: SessionStore) -> None:
    """Falsey values (such as an empty string) are rejected."""
    session._session_key = ""
    assert session.session_key is None


def test_session_key_too_short_invalid(session: SessionStore) -> None:
    """Strings shorter than 8 characters are rejected."""
    session._session_key = "1234567"
    assert session.session_key is None


def test_session_key_valid_string_saved(session: SessionStore) -> None:
    """Strings of length 8 and up are accepted and stored."""
    session._session_key = "12345678"
    assert session.session_key == "12345678"


def test_session_key_is_read_only(session: SessionStore) -> None:
    with pytest.raises(AttributeError):
        session.session_key = session._get_new_session_key()  # type: ignore[misc]


def test_default_expiry(session: SessionStore) -> None:
    # A normal session has a max age equal to settings.
    assert session.get_expiry_age() == settings.SESSION_COOKIE_AGE
    # So does a custom session with an idle expiration time of 0 (but it'll
    # expire at browser close).
    session.set_expiry(0)
    assert session.get_expiry_age() == settings.SESSION_COOKIE_AGE


@run_async
async def test_default_expiry_async(session: SessionStore) -> None:
    assert await session.aget_expiry_age() == settings.SESSION_COOKIE_AGE
    await session.aset_expiry(0)
    assert await session.aget_expiry_age() == settings.SESSION_COOKIE_AGE


def test_custom_expiry_seconds(session: SessionStore) -> None:
    modification = timezone.now()
    session.set_expiry(10)
    date = session.get_expiry_date(modification=modification)
    assert date == modification + timedelta(seconds=10)
    assert session.get_expiry_age(modification=modification) == 10


@run_async
async def test_custom_expiry_seconds_async(session: SessionStore) -> None:
    modification = timezone.now()
    await session.aset_expiry(10)
    date = await session.aget_expiry_date(modification=modification)
    assert date == modification + timedelta(seconds=10)
    assert await session.aget_expiry_age(modification=modification) == 10


def test_custom_expiry_timedelta(session: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    modification = timezone.now()
    # set_expiry calls timezone.now on this path.
    monkeypatch.setattr(timezone, "now", lambda: modification)
    session.set_expiry(timedelta(seconds=10))
    monkeypatch.undo()
    date = session.get_expiry_date(modification=modification)
    assert date == modification + timedelta(seconds=10)
    assert session.get_expiry_age(modification=modification) == 10


@run_async
async def test_custom_expiry_timedelta_async(
    session: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    modification = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: modification)
    await session.aset_expiry(timedelta(seconds=10))
    monkeypatch.undo()
    date = await session.aget_expiry_date(modification=modification)
    assert date == modification + timedelta(seconds=10)
    assert await session.aget_expiry_age(modification=modification) == 10


def test_custom_expiry_datetime(session: SessionStore) -> None:
    modification = timezone.now()
    session.set_expiry(modification + timedelta(seconds=10))
    date = session.get_expiry_date(modification=modification)
    assert date == modification + timedelta(seconds=10)
    assert session.get_expiry_age(modification=modification) == 10


@run_async
async def test_custom_expiry_datetime_async(session: SessionStore) -> None:
    modification = timezone.now()
    await session.aset_expiry(modification + timedelta(seconds=10))
    date = await session.aget_expiry_date(modification=modification)
    assert date == modification + timedelta(seconds=10)
    assert await session.aget_expiry_age(modification=modification) == 10


def test_custom_expiry_reset(session: SessionStore) -> None:
    session.set_expiry(None)
    session.set_expiry(10)
    session.set_expiry(None)
    assert session.get_expiry_age() == settings.SESSION_COOKIE_AGE


@run_async
async def test_custom_expiry_reset_async(session: SessionStore) -> None:
    await session.aset_expiry(None)
    await session.aset_expiry(10)
    await session.aset_expiry(None)
    assert await session.aget_expiry_age() == settings.SESSION_COOKIE_AGE


def test_get_expire_at_browser_close(session: SessionStore) -> None:
    with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=False):
        session.set_expiry(10)
        assert session.get_expire_at_browser_close() is False
        session.set_expiry(0)
        assert session.get_expire_at_browser_close() is True
        session.set_expiry(None)
        assert session.get_expire_at_browser_close() is False
    with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=True):
        session.set_expiry(10)
        assert session.get_expire_at_browser_close() is False
        session.set_expiry(0)
        assert session.get_expire_at_browser_close() is True
        session.set_expiry(None)
        assert session.get_expire_at_browser_close() is True


@run_async
async def test_get_expire_at_browser_close_async(session: SessionStore) -> None:
    with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=False):
        await session.aset_expiry(10)
        assert await session.aget_expire_at_browser_close() is False
        await session.aset_expiry(0)
        assert await session.aget_expire_at_browser_close() is True
        await session.aset_expiry(None)
        assert await session.aget_expire_at_browser_close() is False
    with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=True):
        await session.aset_expiry(10)
        assert await session.aget_expire_at_browser_close() is False
        await session.aset_expiry(0)
        assert await session.aget_expire_at_browser_close() is True
        await session.aset_expiry(None)
        assert await session.aget_expire_at_browser_close() is True


def test_decode(session: SessionStore) -> None:
    # What the engine encodes, it decodes.
    data = {"a test key": "a test value"}
    assert session.decode(session.encode(data)) == data


@pytest.mark.parametrize(
    "encoded",
    [base64.b64encode(b"flaskdj:alkdjf").decode("ascii"), "bad:encoded:value"],
)
def test_decode_failure_logged_to_security(
    session: SessionStore, encoded: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="django.security.SuspiciousSession"):
        assert session.decode(encoded) == {}
    # The failed decode is logged where Django logs its own.
    records = [r for r in caplog.records if r.name == "django.security.SuspiciousSession"]
    assert len(records) == 1
    assert "Session data corrupted" in records[0].getMessage()


def test_decode_serializer_exception(session: SessionStore) -> None:
    # Well-formed JSON around a value that does not decode (an unknown type tag).
    encoded = '{"v":1,"data":{"x":{"__t":"pickle","v":"gASVAAAA"}},"meta":{"created":0,"last_activity":0}}'
    assert session.decode(encoded) == {}


def test_actual_expiry(session: SessionStore) -> None:
    old_session_key = None
    new_session_key = None
    try:
        session["foo"] = "bar"
        session.set_expiry(-timedelta(seconds=10))
        session.save()
        old_session_key = session.session_key
        # With an expiry date in the past, the session expires instantly.
        new_session = backend(session.session_key)
        new_session_key = new_session.session_key
        assert "foo" not in new_session
    finally:
        session.delete(old_session_key)
        session.delete(new_session_key)


@run_async
async def test_actual_expiry_async(session: SessionStore) -> None:
    old_session_key = None
    new_session_key = None
    try:
        await session.aset("foo", "bar")
        await session.aset_expiry(-timedelta(seconds=10))
        await session.asave()
        old_session_key = session.session_key
        new_session = backend(session.session_key)
        new_session_key = new_session.session_key
        assert await new_session.ahas_key("foo") is False
    finally:
        await session.adelete(old_session_key)
        await session.adelete(new_session_key)


def test_session_load_does_not_create_record(engine: dict[str, Any]) -> None:
    """Loading an unknown session key does not create a session record (a DoS otherwise)."""
    unknown = backend("someunknownkey")
    unknown.load()
    assert unknown.session_key is None
    assert unknown.exists(unknown.session_key) is False
    # The provided unknown key was cycled, not reused.
    assert unknown.session_key != "someunknownkey"
    assert unknown.exists("someunknownkey") is False


@run_async
async def test_session_load_does_not_create_record_async(engine: dict[str, Any]) -> None:
    unknown = backend("someunknownkey")
    await unknown.aload()
    assert unknown.session_key is None
    assert await unknown.aexists(unknown.session_key) is False
    assert unknown.session_key != "someunknownkey"
    assert await unknown.aexists("someunknownkey") is False


def test_session_save_does_not_resurrect_session_logged_out_in_other_context(
    engine: dict[str, Any],
) -> None:
    """Sessions are not resurrected by a concurrent request."""
    s1 = backend()
    s1["test_data"] = "value1"
    s1.save(must_create=True)
    # Logout in another context.
    s2 = backend(s1.session_key)
    s2.delete()
    # Modify the session in the first context.
    s1["test_data"] = "value2"
    with pytest.raises(UpdateError):
        # The session is deleted: an error, not a resurrected session.
        s1.save()
    assert s1.load() == {}
    assert backend().exists(s2.session_key) is False


@run_async
async def test_session_asave_does_not_resurrect_session_logged_out_in_other_context(
    engine: dict[str, Any],
) -> None:
    s1 = backend()
    await s1.aset("test_data", "value1")
    await s1.asave(must_create=True)
    s2 = backend(s1.session_key)
    await s2.adelete()
    await s1.aset("test_data", "value2")
    with pytest.raises(UpdateError):
        await s1.asave()
    assert await s1.aload() == {}
    assert await backend().aexists(s2.session_key) is False


def test_save_must_create_refuses_an_existing_key(session: SessionStore) -> None:
    session["a"] = 1
    session.save()
    other = backend(session.session_key)
    other["a"] = 2
    with pytest.raises(CreateError):
        other.save(must_create=True)
    assert backend(session.session_key)["a"] == 1


@run_async
async def test_asave_must_create_refuses_an_existing_key(session: SessionStore) -> None:
    await session.aset("a", 1)
    await session.asave()
    other = backend(session.session_key)
    await other.aset("a", 2)
    with pytest.raises(CreateError):
        await other.asave(must_create=True)
    assert await backend(session.session_key).aget("a") == 1


def test_create_writes_an_empty_record_under_a_new_key(session: SessionStore) -> None:
    session.create()
    assert session.session_key is not None
    assert len(session.session_key) == 32
    assert session.exists(session.session_key) is True
    assert session.modified is True
    assert dict(backend(session.session_key).items()) == {}


@run_async
async def test_acreate_writes_an_empty_record_under_a_new_key(session: SessionStore) -> None:
    await session.acreate()
    assert session.session_key is not None
    assert await session.aexists(session.session_key) is True
    assert dict(await backend(session.session_key).aitems()) == {}


def test_clear_expired_runs_without_error(session: SessionStore) -> None:
    session["kept"] = True
    session.save()
    backend.clear_expired()
    assert backend(session.session_key)["kept"] is True


@run_async
async def test_aclear_expired_runs_without_error(session: SessionStore) -> None:
    await session.aset("kept", True)
    await session.asave()
    await backend.aclear_expired()
    assert await backend(session.session_key).aget("kept") is True


def test_test_cookie(session: SessionStore) -> None:
    assert session.has_key(session.TEST_COOKIE_NAME) is False
    session.set_test_cookie()
    assert session.test_cookie_worked() is True
    session.delete_test_cookie()
    assert session.has_key(session.TEST_COOKIE_NAME) is False


@run_async
async def test_atest_cookie(session: SessionStore) -> None:
    assert await session.ahas_key(session.TEST_COOKIE_NAME) is False
    await session.aset_test_cookie()
    assert await session.atest_cookie_worked() is True
    await session.adelete_test_cookie()
    assert await session.ahas_key(session.TEST_COOKIE_NAME) is False


def test_is_empty(session: SessionStore) -> None:
    assert session.is_empty() is True
    session["x"] = 1
    assert session.is_empty() is False
