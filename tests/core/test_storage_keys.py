"""The key a session is stored under: keyed by ``secret_key``, so apps sharing a store stay apart.

``SessionManager.storage_key`` is HMAC-SHA256 of the id under a key that HKDF
derives from the secret (not the AES key), or the plain SHA-256 of the id
without a secret. A session stored under a ``secret_key_fallbacks`` key's
digest is read on a miss and moved to the current key at its next save.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from satchel import SaveOutcome, SessionConfig, SessionHandler, SessionManager
from satchel.ids import generate_id

APP_A = "application-a-secret-0123456789abcdefghij"
APP_B = "application-b-secret-0123456789abcdefghij"
OLD = "the-old-secret-key-0123456789abcdefghij"
OLDER = "the-older-secret-key-0123456789abcdefghij"
NEW = "the-new-secret-key-0123456789abcdefghij"


def expected_key(secret: str, session_id: str) -> str:
    """The storage key as documented, computed here without satchel's code."""
    digest_key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"satchel",
        info=b"satchel storage-key hmac-sha256 v1",
    ).derive(secret.encode("utf-8"))
    return hmac.new(digest_key, session_id.encode("ascii"), hashlib.sha256).hexdigest()


def on_store(store: SessionHandler, **config: Any) -> SessionManager:
    """A manager whose driver is ``store``: several managers on one store are several apps."""
    manager = SessionManager(SessionConfig(**{"driver": "shared", "lottery": (0, 1), **config}))
    manager.extend("shared", lambda _config: store)
    return manager


def rotated_from_old(store: SessionHandler) -> tuple[str, SessionManager]:
    """A session logged in under ``OLD``, and an app whose key rotated to ``NEW`` (``OLD`` kept)."""
    cookie = logged_in(on_store(store, secret_key=OLD))
    return cookie, on_store(store, secret_key=NEW, secret_key_fallbacks=[OLD])


def logged_in(manager: SessionManager, user: str = "alice") -> str:
    session = manager.start(None)
    session.put("user", user)
    session.save()
    return session.id


def test_the_storage_key_is_an_hmac_of_the_id_under_a_key_derived_from_the_secret() -> None:
    session_id = generate_id()
    keyed = SessionManager(SessionConfig(secret_key=APP_A)).storage_key(session_id)
    assert keyed == expected_key(APP_A, session_id)
    assert len(keyed) == 64
    assert keyed == keyed.lower()
    int(keyed, 16)
    unkeyed = SessionManager(SessionConfig()).storage_key(session_id)
    assert unkeyed == hashlib.sha256(session_id.encode()).hexdigest()
    assert len({keyed, unkeyed, expected_key(APP_B, session_id)}) == 3


def test_apps_with_different_secrets_never_read_each_others_sessions(
    recording: Any,
) -> None:
    app_a, app_b = on_store(recording, secret_key=APP_A), on_store(recording, secret_key=APP_B)
    cookie = logged_in(app_a)
    stolen = app_b.start(cookie)
    assert stolen.all() == {}
    assert stolen.id != cookie
    stolen.put("user", "mallory")
    stolen.save()
    assert app_a.start(cookie).get("user") == "alice"  # A's session untouched
    assert set(recording.store) == {app_a.storage_key(cookie), app_b.storage_key(stolen.id)}
    # Sharing is on purpose: the same secret (and the same store) reads the same session.
    assert on_store(recording, secret_key=APP_A).start(cookie).get("user") == "alice"


def test_fallback_keys_are_read_only_when_the_current_key_holds_nothing(
    recording: Any,
) -> None:
    rotated = on_store(recording, secret_key=NEW, secret_key_fallbacks=[OLD, OLDER])
    current = logged_in(rotated)
    recording.calls.clear()
    assert rotated.start(current).get("user") == "alice"
    assert recording.keys_of("read") == [rotated.storage_key(current)]  # one read, as ever
    unknown = generate_id()
    recording.calls.clear()
    assert rotated.start(unknown).all() == {}
    assert recording.keys_of("read") == [
        expected_key(NEW, unknown),
        expected_key(OLD, unknown),
        expected_key(OLDER, unknown),
    ]
    assert rotated.fallback_storage_keys(unknown) == recording.keys_of("read")[1:]


@pytest.mark.parametrize("encrypt", [False, True])
@pytest.mark.parametrize("written_under", [OLD, OLDER])
def test_a_session_found_under_a_fallback_moves_to_the_current_key_at_its_next_save(
    recording: Any, encrypt: bool, written_under: str
) -> None:
    before = on_store(recording, secret_key=written_under, encrypt=encrypt)
    cookie = logged_in(before)
    rotated = on_store(
        recording, secret_key=NEW, secret_key_fallbacks=[OLD, OLDER], encrypt=encrypt
    )
    session = rotated.start(cookie)
    assert session.get("user") == "alice"
    assert session.id == cookie  # the same cookie: nobody notices the rotation
    assert not session.new
    recording.calls.clear()
    assert session.save() is SaveOutcome.WRITTEN  # moved even though nothing changed
    old_key, new_key = expected_key(written_under, cookie), expected_key(NEW, cookie)
    assert recording.keys_of("destroy") == [old_key]
    assert recording.keys_of("write") == [new_key]
    assert set(recording.store) == {new_key}
    # Moved for good: the new key alone reads it, and a second save does not move it again.
    settled = on_store(recording, secret_key=NEW, encrypt=encrypt)
    assert settled.start(cookie).get("user") == "alice"
    recording.calls.clear()
    again = rotated.start(cookie)
    again.get("user")
    assert again.save() is SaveOutcome.UNCHANGED
    assert recording.names() == ["read"]


def test_the_async_load_reads_the_fallbacks_too(recording: Any) -> None:
    cookie, rotated = rotated_from_old(recording)

    async def request() -> None:
        session = await rotated.astart(cookie)
        assert session.get("user") == "alice"
        assert await session.asave() is SaveOutcome.WRITTEN

    asyncio.run(request())
    assert set(recording.store) == {expected_key(NEW, cookie)}


def test_a_session_ended_while_it_was_moving_is_not_brought_back(
    recording: Any,
) -> None:
    cookie, rotated = rotated_from_old(recording)
    slow = rotated.start(cookie)
    slow.put("cart", ["apple"])
    logout = rotated.start(cookie)  # another request of the same user logs out meanwhile
    logout.invalidate()
    logout.save()
    assert slow.save() is SaveOutcome.ENDED
    assert recording.store == {}


def test_regenerating_a_session_found_under_a_fallback_leaves_nothing_under_the_old_key(
    recording: Any,
) -> None:
    cookie, rotated = rotated_from_old(recording)
    session = rotated.start(cookie)
    session.regenerate()
    session.save()
    assert set(recording.store) == {expected_key(NEW, session.id)}
    assert rotated.start(session.id).get("user") == "alice"
    assert rotated.start(cookie).all() == {}


def test_changing_the_secret_without_a_fallback_ends_every_session(
    recording: Any,
) -> None:
    cookie = logged_in(on_store(recording, secret_key=OLD))
    assert on_store(recording, secret_key=NEW).start(cookie).all() == {}


@pytest.mark.parametrize("driver", ["file", "shared"])
def test_a_shared_store_without_a_secret_logs_one_warning_per_app(
    driver: str, recording: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="satchel")
    folder = str(tmp_path / "sessions")
    apps = [on_store(recording, driver=driver, files=folder) for _ in range(2)]
    for app in apps:
        for _ in range(3):
            logged_in(app)
        asyncio.run(app.astart(None))
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per application, however many requests
    message = warnings[0].getMessage()
    assert f"driver {driver!r}" in message
    assert "share its sessions" in message
    assert "secret_key" in message
    assert "satchel key:generate" in message
    assert "prefix, table or files folder" in message


@pytest.mark.parametrize(
    "config",
    [
        {"driver": "file", "secret_key": APP_A},
        {"driver": "cookie", "secret_key": APP_A},
        {"driver": "array"},
        {"driver": "null"},
    ],
    ids=["file-with-a-secret", "cookie", "array", "null"],
)
def test_no_warning_where_no_other_app_can_read_the_sessions(
    config: dict[str, Any], tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="satchel")
    manager = SessionManager(SessionConfig(files=str(tmp_path / "sessions"), **config))
    logged_in(manager)
    asyncio.run(manager.astart(None))
    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []
