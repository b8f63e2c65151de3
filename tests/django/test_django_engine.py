"""What the satchel engine adds to, or decides beside, Django's session contract.

The config (``SATCHEL_SESSION``), expiry against the store's lifetime, what the
store holds (a digest of the key, tagged JSON, ciphertext under ``encrypt``),
what a hostile or corrupt record gives, and the backend calls each step costs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.sessions.backends.base import UpdateError
from django.core.exceptions import ImproperlyConfigured
from django.test.utils import override_settings
from fixtures.hostile_ids import HOSTILE_IDS
from fixtures.pickle_payloads import pickle_payload
from web_support import FakeClock, SpyHandler

from satchel import SessionManager
from satchel.crypto import generate_secret
from satchel.django import DJANGO_DECIDES, SessionStore, record_key, session_manager

COOKIE_AGE = 60


@pytest.fixture
def short_age() -> Iterator[None]:
    """SESSION_COOKIE_AGE of a minute (before the driver fixtures: a change resets the engine)."""
    with override_settings(SESSION_COOKIE_AGE=COOKIE_AGE):
        yield


@pytest.fixture
def clock(short_age: None, spy: SpyHandler) -> FakeClock:
    """The engine's clock, moved by hand (the spy driver keeps its own, real, time)."""
    fake = FakeClock()
    session_manager().clock = fake
    return fake


def stored_key(session_key: str) -> str:
    return record_key(session_manager(), session_key)


def saved(values: dict[str, Any]) -> SessionStore:
    store = SessionStore()
    store.update(values)
    store.save()
    return store


# -- configuration --------------------------------------------------------------------------


@override_settings(SESSION_COOKIE_AGE=3600, SATCHEL_SESSION={"driver": "array"})
def test_lifetime_follows_session_cookie_age() -> None:
    assert session_manager().config.lifetime_seconds == 3600


@override_settings(SESSION_COOKIE_AGE=3600, SATCHEL_SESSION={"driver": "array", "lifetime": 30})
def test_a_lifetime_shorter_than_the_cookie_age_is_refused() -> None:
    with pytest.raises(
        ImproperlyConfigured, match=r"SATCHEL_SESSION\['lifetime'\].*SESSION_COOKIE_AGE"
    ):
        SessionStore()


@override_settings(SESSION_COOKIE_AGE=3600, SATCHEL_SESSION={"driver": "array", "lifetime": 90})
def test_a_longer_lifetime_is_kept() -> None:
    assert session_manager().config.lifetime_seconds == 5400


def test_a_settings_change_builds_a_new_manager() -> None:
    with override_settings(SATCHEL_SESSION={"driver": "array", "prefix": "one:"}):
        first = session_manager()
        assert session_manager() is first
        with override_settings(SATCHEL_SESSION={"driver": "array", "prefix": "two:"}):
            assert session_manager().config.prefix == "two:"
        assert session_manager().config.prefix == "one:"


@pytest.mark.parametrize("key", sorted(DJANGO_DECIDES))
def test_keys_django_decides_are_refused_with_the_setting_to_use(key: str) -> None:
    value: Any = {"lottery": [1, 100], "same_site": "strict", "cookie": "sid"}.get(key, True)
    with (
        override_settings(SATCHEL_SESSION={"driver": "array", key: value}),
        pytest.raises(ImproperlyConfigured, match=rf"SATCHEL_SESSION\['{key}'\].*decided by"),
    ):
        SessionStore()


def test_an_unknown_key_is_named() -> None:
    with (
        override_settings(SATCHEL_SESSION={"drivr": "file"}),
        pytest.raises(ImproperlyConfigured, match="'drivr'"),
    ):
        SessionStore()


def test_a_bad_value_is_named() -> None:
    with (
        override_settings(SATCHEL_SESSION={"driver": "array", "encrypt": "maybe"}),
        pytest.raises(ImproperlyConfigured, match="'encrypt'"),
    ):
        SessionStore()


def test_the_setting_must_be_a_dict() -> None:
    with (
        override_settings(SATCHEL_SESSION="file"),
        pytest.raises(ImproperlyConfigured, match="must be a dict"),
    ):
        SessionStore()


def test_the_cookie_driver_is_refused() -> None:
    with (
        override_settings(SATCHEL_SESSION={"driver": "cookie", "secret_key": generate_secret()}),
        pytest.raises(ImproperlyConfigured, match="signed_cookies"),
    ):
        SessionStore()


def test_an_unknown_driver_names_the_available_ones() -> None:
    with override_settings(SATCHEL_SESSION={"driver": "nosuch"}):
        store = SessionStore()
        store["a"] = 1
        with pytest.raises(LookupError, match=r"'nosuch'.*available drivers"):
            store.save()


# -- expiry against the store's lifetime ------------------------------------------------------


@pytest.mark.parametrize(
    "expiry",
    [
        COOKIE_AGE + 1,
        dt.timedelta(seconds=COOKIE_AGE + 1),
        "in the future",
    ],
)
def test_an_expiry_longer_than_the_lifetime_is_refused(
    short_age: None, spy: SpyHandler, expiry: Any
) -> None:
    if expiry == "in the future":
        expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=COOKIE_AGE + 5)
    store = SessionStore()
    store.set_expiry(30)
    with pytest.raises(ValueError, match=r"longer than the session store keeps.*raise lifetime"):
        store.set_expiry(expiry)
    assert store.get("_session_expiry") == 30  # nothing changed
    with pytest.raises(ValueError, match="longer than the session store keeps"):
        asyncio.run(store.aset_expiry(expiry))
    assert store.get("_session_expiry") == 30


@override_settings(SESSION_COOKIE_AGE=COOKIE_AGE)
def test_an_expiry_past_the_cookie_age_lasts_when_the_lifetime_allows(tmp_path: Path) -> None:
    with override_settings(
        SATCHEL_SESSION={"driver": "file", "lifetime": 10, "files": str(tmp_path)}
    ):
        clock = FakeClock()
        session_manager().clock = clock
        store = SessionStore()
        store["remember"] = True
        store.set_expiry(300)  # "remember me": five minutes, past SESSION_COOKIE_AGE
        store.save()
        clock.advance(COOKIE_AGE * 2)
        assert SessionStore(store.session_key).get("remember") is True
        clock.advance(300)
        assert SessionStore(store.session_key).get("remember") is None


def test_a_session_expires_cookie_age_after_its_last_write(
    clock: FakeClock, spy: SpyHandler
) -> None:
    key = saved({"a": 1}).session_key
    clock.advance(COOKIE_AGE - 1)
    assert SessionStore(key).get("a") == 1
    clock.advance(2)
    expired = SessionStore(key)
    assert expired.get("a") is None
    assert expired.session_key is None
    # The record is removed when it is found expired.
    assert stored_key(key) not in spy.stored()


def test_a_write_restarts_the_expiry(clock: FakeClock, spy: SpyHandler) -> None:
    store = saved({"a": 1})
    clock.advance(COOKIE_AGE - 1)
    again = SessionStore(store.session_key)
    again["a"] = 2
    again.save()
    clock.advance(COOKIE_AGE - 1)
    assert SessionStore(store.session_key).get("a") == 2


def test_seconds_of_set_expiry_count_from_the_last_write(clock: FakeClock, spy: SpyHandler) -> None:
    store = SessionStore()
    store["a"] = 1
    store.set_expiry(10)
    store.save()
    clock.advance(9)
    assert SessionStore(store.session_key).get("a") == 1
    clock.advance(2)
    assert SessionStore(store.session_key).get("a") is None


def test_a_datetime_of_set_expiry_is_a_fixed_moment(clock: FakeClock, spy: SpyHandler) -> None:
    store = SessionStore()
    store["a"] = 1
    store.set_expiry(dt.datetime.fromtimestamp(clock.now + 30, tz=dt.timezone.utc))
    store.save()
    clock.advance(29)
    again = SessionStore(store.session_key)
    assert again.get("a") == 1
    again["b"] = 2
    again.save()  # a write does not move a fixed moment
    clock.advance(2)
    assert SessionStore(store.session_key).get("a") is None


@pytest.fixture
def naive_times() -> Iterator[None]:
    with override_settings(USE_TZ=False):
        yield


def test_a_naive_datetime_is_read_in_djangos_time_zone(naive_times: None, spy: SpyHandler) -> None:
    store = SessionStore()
    store["a"] = 1
    store.set_expiry(dt.timedelta(seconds=30))  # USE_TZ = False: a naive local time
    assert "+" not in store["_session_expiry"]
    store.save()
    assert SessionStore(store.session_key).get("a") == 1
    store.set_expiry(dt.timedelta(seconds=-1))
    store.save()
    assert SessionStore(store.session_key).get("a") is None


def test_a_zero_expiry_lasts_the_cookie_age_on_the_server(
    clock: FakeClock, spy: SpyHandler
) -> None:
    store = SessionStore()
    store["a"] = 1
    store.set_expiry(0)
    store.save()
    clock.advance(COOKIE_AGE - 1)
    assert SessionStore(store.session_key).get("a") == 1
    clock.advance(2)
    assert SessionStore(store.session_key).get("a") is None


# -- what the store holds ------------------------------------------------------------------


def test_the_store_holds_a_digest_of_the_key_never_the_key(engine: dict[str, Any]) -> None:
    store = saved({"cart": ["apple"]})
    key = store.session_key
    assert key is not None
    digest = hashlib.sha256(key.encode("ascii")).hexdigest()
    handler = session_manager().handler()
    assert handler.read(digest) != ""
    assert handler.read(key) == ""


def test_the_file_driver_names_files_by_digest(tmp_path: Path) -> None:
    with override_settings(SATCHEL_SESSION={"driver": "file", "files": str(tmp_path)}):
        store = saved({"cart": ["apple"]})
    key = store.session_key
    assert key is not None
    names = [path.name for path in tmp_path.iterdir()]
    assert names == [hashlib.sha256(key.encode("ascii")).hexdigest()]
    assert key not in (tmp_path / names[0]).read_text()


def test_values_beyond_json_come_back_equal(engine: dict[str, Any]) -> None:
    values = {
        "when": dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "tags": {"a", "b"},
        "pair": (1, "x"),
        "raw": b"\x00\xff",
    }
    store = saved(values)
    assert dict(SessionStore(store.session_key).items()) == values


def test_a_value_that_cannot_be_stored_names_its_key(spy: SpyHandler) -> None:
    store = SessionStore()
    store["handle"] = object()
    with pytest.raises(TypeError, match="'handle'"):
        store.save()
    assert spy.stored() == {}


def test_encrypt_uses_djangos_secret_key_by_default(tmp_path: Path) -> None:
    config = {"driver": "file", "files": str(tmp_path), "encrypt": True}
    with override_settings(SATCHEL_SESSION=config):
        store = saved({"card": "4111-1111"})
        assert SessionStore(store.session_key)["card"] == "4111-1111"
    (record,) = tmp_path.iterdir()
    assert "4111" not in record.read_text()
    assert "card" not in record.read_text()
    with override_settings(
        SATCHEL_SESSION=config, SECRET_KEY="another-secret-key-0123456789abcdef"
    ):
        assert SessionStore(store.session_key).get("card") is None


def test_a_record_under_a_fallback_key_is_rewritten_under_the_current_one(
    tmp_path: Path,
) -> None:
    config = {"driver": "file", "files": str(tmp_path), "encrypt": True}
    old, new = "the-old-secret-key-0123456789abcdef", "the-new-secret-key-0123456789abcdef"
    with override_settings(SATCHEL_SESSION=config, SECRET_KEY=old):
        key = saved({"a": 1}).session_key
    with override_settings(SATCHEL_SESSION=config, SECRET_KEY=new, SECRET_KEY_FALLBACKS=[old]):
        store = SessionStore(key)
        assert store["a"] == 1
        assert store.modified is True  # so the middleware saves it again
        store.save()
    with override_settings(SATCHEL_SESSION=config, SECRET_KEY=new):
        assert SessionStore(key)["a"] == 1


def test_a_session_moving_to_the_current_key_is_not_brought_back_after_a_logout(
    tmp_path: Path,
) -> None:
    config = {"driver": "file", "files": str(tmp_path), "encrypt": True}
    old, new = "the-old-secret-key-0123456789abcdef", "the-new-secret-key-0123456789abcdef"
    with override_settings(SATCHEL_SESSION=config, SECRET_KEY=old):
        key = saved({"a": 1}).session_key
    with override_settings(SATCHEL_SESSION=config, SECRET_KEY=new, SECRET_KEY_FALLBACKS=[old]):
        store = SessionStore(key)
        assert store["a"] == 1
        SessionStore(key).delete()  # logged out by another request meanwhile
        with pytest.raises(UpdateError):
            store.save()
        assert not SessionStore().exists(key)


def test_an_async_load_finds_a_session_under_a_fallback_key(tmp_path: Path) -> None:
    config = {"driver": "file", "files": str(tmp_path), "encrypt": True}
    old, new = "the-old-secret-key-0123456789abcdef", "the-new-secret-key-0123456789abcdef"
    with override_settings(SATCHEL_SESSION=config, SECRET_KEY=old):
        key = saved({"a": 1}).session_key
    with override_settings(SATCHEL_SESSION=config, SECRET_KEY=new, SECRET_KEY_FALLBACKS=[old]):
        store = SessionStore(key)
        assert asyncio.run(store.aget("a")) == 1
        asyncio.run(store.asave())
    with override_settings(SATCHEL_SESSION=config, SECRET_KEY=new):
        assert asyncio.run(SessionStore(key).aget("a")) == 1


@pytest.mark.parametrize("planted", ["not json", '{"v": 99, "data": {}, "meta": {}}', "[1, 2]"])
def test_a_corrupt_record_reads_as_a_fresh_session(
    engine: dict[str, Any], planted: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = saved({"a": 1})
    key = store.session_key
    assert key is not None
    session_manager().handler().write(stored_key(key), planted)
    with caplog.at_level(logging.WARNING, logger="django.security.SuspiciousSession"):
        reread = SessionStore(key)
        assert dict(reread.items()) == {}
    assert reread.session_key is None
    assert any("Session data corrupted" in r.getMessage() for r in caplog.records)
    assert key not in caplog.text  # the key is named by a digest, never itself
    reread.delete(key)


def test_a_planted_pickle_never_runs(engine: dict[str, Any], tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    store = saved({"a": 1})
    key = store.session_key
    assert key is not None
    planted = pickle_payload(sentinel, "text")
    assert isinstance(planted, str)
    session_manager().handler().write(stored_key(key), planted)
    assert dict(SessionStore(key).items()) == {}
    assert not sentinel.exists()
    store.delete()


@pytest.mark.parametrize(
    "hostile",
    [*HOSTILE_IDS, "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", "a" * 41, "abcdefgh/"],
)
def test_a_hostile_key_never_reaches_the_driver(spy: SpyHandler, hostile: str) -> None:
    store = SessionStore(hostile)
    assert store.session_key is None
    assert store.exists(hostile) is False
    store.delete(hostile)
    assert dict(store.items()) == {}
    assert spy.methods() == []


# -- backend calls ------------------------------------------------------------------------------


def test_a_new_session_costs_one_write(spy: SpyHandler) -> None:
    saved({"a": 1})
    assert spy.methods() == ["write"]


def test_reading_costs_one_read(spy: SpyHandler) -> None:
    key = saved({"a": 1}).session_key
    spy.calls.clear()
    assert SessionStore(key)["a"] == 1
    assert spy.methods() == ["read"]


def test_a_change_costs_one_read_and_one_conditional_write(spy: SpyHandler) -> None:
    key = saved({"a": 1}).session_key
    spy.calls.clear()
    store = SessionStore(key)
    store["a"] = 2
    store.save()
    assert spy.methods() == ["read", "write"]  # the write is write_existing


def test_a_store_never_used_costs_nothing(spy: SpyHandler) -> None:
    key = saved({"a": 1}).session_key
    spy.calls.clear()
    SessionStore(key)
    assert spy.methods() == []


def test_async_calls_match(spy: SpyHandler) -> None:
    async def main() -> None:
        store = SessionStore()
        await store.aset("a", 1)
        await store.asave()
        assert spy.methods() == ["write"]
        spy.calls.clear()
        again = SessionStore(store.session_key)
        await again.aset("a", 2)
        await again.asave()
        assert spy.methods() == ["read", "write"]

    asyncio.run(main())


def test_a_manager_is_shared_by_every_store(spy: SpyHandler) -> None:
    assert isinstance(session_manager(), SessionManager)
    assert SessionStore()._manager is SessionStore()._manager
