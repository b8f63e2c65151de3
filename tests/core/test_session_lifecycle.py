"""The session's load/save cycle: strict ids, expiry, writes, corrupt payloads and storage."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from satchel import (
    AsyncSessionHandler,
    LockTimeout,
    RequestMetadata,
    SaveOutcome,
    SessionConfig,
    SessionManager,
    SessionTooLarge,
)
from satchel.drivers.file import LOCK_PREFIX
from satchel.handler import SupportsLock
from satchel.ids import storage_digest  # these managers have no secret: the plain digest
from satchel.store import Session

NextRequest = Callable[[SessionManager, Session], Session]
MakeManager = Callable[..., SessionManager]
HEX64 = re.compile(r"[0-9a-f]{64}")
SECRET = "a-core-test-secret-0123456789abcdefghij"

# -- strict mode --------------------------------------------------------------------

HOSTILE_IDS = [
    pytest.param("abc", id="short"),
    pytest.param("a" * 39, id="39-chars"),
    pytest.param("a" * 41, id="41-chars"),
    pytest.param("a" * 400, id="long"),
    pytest.param("../x", id="dotdot"),
    pytest.param("../" + "a" * 37, id="dotdot-40"),
    pytest.param("a" * 39 + "\x00", id="nul"),
    pytest.param("a" * 38 + "\r\n", id="crlf"),
    pytest.param("a" * 39 + ";", id="semicolon"),
    pytest.param("a" * 39 + "é", id="non-ascii"),
    pytest.param("a" * 39 + "٣", id="non-ascii-digit"),
    pytest.param("a" * 39 + "-", id="dash"),
    pytest.param(" " + "a" * 39, id="space"),
]


@pytest.mark.parametrize("cookie", [None, ""])
def test_no_cookie_gives_a_new_session(
    recording_manager: SessionManager, recording: Any, cookie: str | None
) -> None:
    session = recording_manager.start(cookie)
    assert len(session.id) == 40
    assert session.new
    assert session.all() == {}
    assert recording.calls == []


@pytest.mark.parametrize("cookie", HOSTILE_IDS)
def test_malformed_id_is_never_adopted_nor_sent_to_the_driver(
    recording_manager: SessionManager, recording: Any, cookie: str
) -> None:
    session = recording_manager.start(cookie)
    assert session.id != cookie
    assert len(session.id) == 40
    assert session.new
    assert recording.calls == []  # no read for a malformed id
    session.put("data", 1)
    assert session.save() is SaveOutcome.WRITTEN
    assert recording.names() == ["write"]
    assert recording.keys_of("write") == [recording_manager.storage_key(session.id)]
    hostile_digest = hashlib.sha256(cookie.encode("utf-8")).hexdigest()
    assert cookie not in recording.store
    assert hostile_digest not in recording.store
    assert session.cookie_value() == session.id
    assert recording_manager.start(session.id).get("data") == 1


@pytest.mark.parametrize("cookie", HOSTILE_IDS)
def test_malformed_id_left_empty_touches_nothing(
    recording_manager: SessionManager, recording: Any, cookie: str
) -> None:
    session = recording_manager.start(cookie)
    assert session.save() is SaveOutcome.EMPTY
    assert recording.calls == []
    assert session.cookie_action() == "delete"  # the browser's bad cookie is cleared


@pytest.mark.parametrize("cookie", HOSTILE_IDS)
def test_malformed_id_with_file_driver_writes_only_the_fresh_digest(
    file_manager: SessionManager, sessions_dir: Path, cookie: str
) -> None:
    session = file_manager.start(cookie)
    session.put("data", 1)
    session.save()
    assert [path.name for path in sessions_dir.iterdir()] == [file_manager.storage_key(session.id)]
    assert not (sessions_dir.parent / "x").exists()


def test_well_formed_unknown_id_gets_a_fresh_id(
    recording_manager: SessionManager, recording: Any
) -> None:
    unknown = "A" * 20 + "b" * 20
    session = recording_manager.start(unknown)
    assert recording.names() == ["read"]
    # The digest, never the id.
    assert recording.keys_of("read") == [recording_manager.storage_key(unknown)]
    assert session.id != unknown
    assert session.new
    session.put("k", "v")
    session.save()
    assert recording.keys_of("write") == [recording_manager.storage_key(session.id)]
    assert recording_manager.storage_key(unknown) not in recording.store


def test_manager_start_adopts_only_an_issued_id(
    manager: SessionManager, next_request: NextRequest
) -> None:
    session = manager.start(None)
    session.put("k", 1)
    issued = session.id
    session = next_request(manager, session)
    assert session.id == issued
    assert not session.new


def test_a_session_made_from_the_cookie_header_reads_its_cookie_on_first_use(
    recording_manager: SessionManager, recording: Any
) -> None:
    first = recording_manager.start(None)
    first.put("cart", ["apple"])
    first.save()
    header = f"theme=dark; {recording_manager.config.cookie}={first.id}; lang=en"
    recording.calls.clear()

    untouched = Session(recording_manager, None, cookie_header=header)
    assert untouched.save() is SaveOutcome.NOT_LOADED
    assert recording.names() == []

    session = Session(recording_manager, None, cookie_header=header)
    assert session.incoming_cookie == first.id  # read from the header before a load
    assert session.get("cart") == ["apple"]
    assert session.id == first.id
    assert recording.keys_of("read") == [recording_manager.storage_key(first.id)]


WELL_FORMED = "a" * 40


@pytest.mark.parametrize(
    ("header", "looked_up"),
    [
        pytest.param("", [], id="empty"),
        pytest.param("theme=dark", [], id="other-cookies-only"),
        pytest.param("satchel_session=../../etc/passwd", [], id="hostile"),
        pytest.param(
            f"satchel_session={WELL_FORMED}; satchel_session=x", [WELL_FORMED], id="first-wins"
        ),
    ],
)
def test_a_cookie_header_without_a_live_session_cookie_gives_a_new_session(
    recording_manager: SessionManager, recording: Any, header: str, looked_up: list[str]
) -> None:
    session = Session(recording_manager, None, cookie_header=header)
    assert session.new
    # Only a well-formed id is ever looked up: the first cookie of the session's name.
    assert recording.keys_of("read") == [recording_manager.storage_key(i) for i in looked_up]


def test_a_session_takes_the_cookie_value_or_the_cookie_header_not_both(
    recording_manager: SessionManager,
) -> None:
    with pytest.raises(TypeError, match="not both"):
        Session(recording_manager, "a" * 40, cookie_header="satchel_session=" + "b" * 40)


# -- expiry -----------------------------------------------------------------------------


def test_idle_expiry_with_fractional_lifetime(
    make_recording_manager: MakeManager, recording: Any, clock: Any
) -> None:
    manager = make_recording_manager(lifetime=0.5)  # 30 seconds
    session = manager.start(None)
    session.put("user", "ada")
    session.save()
    cookie = session.id
    clock.advance(30)
    assert manager.start(cookie).get("user") == "ada"  # exactly the lifetime: still alive
    clock.advance(1)
    expired = manager.start(cookie)
    assert expired.id != cookie  # expired ids are never adopted
    assert expired.all() == {}
    assert recording.store  # the driver still holds it: the decision was core's
    assert expired.save() is SaveOutcome.EMPTY
    assert recording.keys_of("destroy") == [manager.storage_key(cookie)]
    assert expired.cookie_action() == "delete"


def test_activity_keeps_a_session_alive_past_its_idle_lifetime(
    make_recording_manager: MakeManager, clock: Any
) -> None:
    manager = make_recording_manager(lifetime=0.5, touch_interval=10)
    session = manager.start(None)
    session.put("user", "ada")
    session.save()
    for _ in range(10):  # 200 seconds of activity, a request every 20 seconds
        clock.advance(20)
        session = manager.start(session.cookie_value())
        assert session.get("user") == "ada"
        session.save()
    clock.advance(31)
    assert manager.start(session.cookie_value()).all() == {}


def test_activity_keeps_a_short_lived_session_alive_with_default_touch_interval(
    make_recording_manager: MakeManager, clock: Any
) -> None:
    manager = make_recording_manager(lifetime=0.5)
    session = manager.start(None)
    session.put("user", "ada")
    session.save()
    for _ in range(5):
        clock.advance(20)
        session = manager.start(session.cookie_value())
        assert session.get("user") == "ada"
        session.save()


def test_absolute_expiry_ends_an_active_session(
    make_recording_manager: MakeManager, recording: Any, clock: Any
) -> None:
    manager = make_recording_manager(lifetime=2, absolute_lifetime=5, touch_interval=0)
    session = manager.start(None)
    session.put("visits", 0)
    session.save()
    cookie = session.id
    for minute in range(1, 6):  # a request every minute, each one changing the data
        clock.advance(60)
        session = manager.start(cookie)
        assert session.id == cookie, f"ended early at minute {minute}"
        session.increment("visits")
        assert session.save() is SaveOutcome.WRITTEN
    clock.advance(60)  # six minutes since creation
    session = manager.start(cookie)
    assert session.id != cookie
    assert session.all() == {}
    assert manager.storage_key(cookie) in recording.store  # the driver would still have served it


def test_absolute_expiry_with_fractional_minutes(
    make_recording_manager: MakeManager, clock: Any
) -> None:
    manager = make_recording_manager(absolute_lifetime=0.25)  # 15 seconds
    session = manager.start(None)
    session.put("k", 1)
    session.save()
    clock.advance(15)
    assert manager.start(session.id).get("k") == 1
    clock.advance(1)
    assert manager.start(session.id).all() == {}


def test_regenerate_does_not_reset_the_absolute_limit(
    make_recording_manager: MakeManager, clock: Any
) -> None:
    manager = make_recording_manager(absolute_lifetime=1)
    session = manager.start(None)
    session.put("k", 1)
    session.save()
    clock.advance(50)
    session = manager.start(session.id)
    session.regenerate(destroy=True)
    session.save()
    clock.advance(11)
    assert manager.start(session.id).all() == {}


def test_invalidate_starts_a_new_absolute_lifetime(
    make_recording_manager: MakeManager, clock: Any
) -> None:
    # After invalidate() (a logout, say) the session is a new one under a new id:
    # its absolute limit counts from then, not from the old session's creation.
    manager = make_recording_manager(absolute_lifetime=1)
    session = manager.start(None)
    session.put("user", "ada")
    session.save()
    clock.advance(50)
    session = manager.start(session.id)
    session.invalidate()
    session.put("user", "bob")
    session.save()
    clock.advance(50)  # 100 s since the first session began, 50 s since the new one did
    assert manager.start(session.id).get("user") == "bob"
    clock.advance(11)
    assert manager.start(session.id).all() == {}


def test_array_driver_session_expires_by_core(manager: SessionManager, clock: Any) -> None:
    session = manager.start(None)
    session.put("k", 1)
    session.save()
    clock.advance(120 * 60 + 1)
    assert manager.start(session.id).all() == {}


# -- writes -------------------------------------------------------------------------------------


def _cart_with_flash_data(manager: SessionManager) -> Session:
    session = manager.start(None)
    session.put("cart", ["apple"])
    session.flash("status", "added")
    return session


def test_unchanged_session_is_not_rewritten(
    recording_manager: SessionManager, recording: Any, clock: Any
) -> None:
    session = _cart_with_flash_data(recording_manager)
    assert session.save() is SaveOutcome.WRITTEN
    assert recording.count("write") == 1
    clock.advance(5)
    session = recording_manager.start(session.id)  # flash data ages: that is a change
    assert session.save() is SaveOutcome.WRITTEN
    assert recording.count("write") == 2
    clock.advance(5)
    session = recording_manager.start(session.id)
    assert session.get("cart") == ["apple"]
    session.put("cart", ["apple"])  # the same value again is no change
    assert session.all() == {"cart": ["apple"]}
    assert session.save() is SaveOutcome.UNCHANGED
    assert session.cookie_action() is None
    assert recording.count("write") == 2


def test_a_save_that_does_not_age_flash_data_keeps_it_for_the_next_request(
    recording_manager: SessionManager, recording: Any, clock: Any
) -> None:
    session = _cart_with_flash_data(recording_manager)
    session.save()
    clock.advance(5)
    kept = recording_manager.start(session.id)
    assert kept.save(age_flash=False) is SaveOutcome.UNCHANGED
    clock.advance(recording_manager.config.touch_interval)
    kept = recording_manager.start(session.id)
    assert kept.save(age_flash=False) is SaveOutcome.REFRESHED  # the expiry still slides
    assert recording.count("write") == 2
    shown = recording_manager.start(session.id)
    assert shown.get("status") == "added"
    assert shown.save() is SaveOutcome.WRITTEN  # aged out by the request that used it
    assert recording_manager.start(session.id).all() == {"cart": ["apple"]}


def test_nested_mutation_is_detected(recording_manager: SessionManager, recording: Any) -> None:
    session = recording_manager.start(None)
    session.put("cart", ["apple"])
    session.put("user", {"prefs": {"theme": "dark"}})
    session.save()
    session = recording_manager.start(session.id)
    session.get("cart").append("pear")
    assert session.save() is SaveOutcome.WRITTEN
    assert recording.count("write") == 2
    session = recording_manager.start(session.id)
    assert session.get("cart") == ["apple", "pear"]
    session.get("user.prefs")["theme"] = "light"
    assert session.modified
    assert session.save() is SaveOutcome.WRITTEN
    assert recording_manager.start(session.id).get("user.prefs.theme") == "light"


def test_nested_mutation_through_item_access_is_detected(
    recording_manager: SessionManager, recording: Any
) -> None:
    # Starlette's and Flask's habit: session["cart"].append(...), never get().
    session = recording_manager.start(None)
    session["cart"] = ["apple"]
    session["user"] = {"prefs": {"theme": "dark"}}
    session.save()
    session = recording_manager.start(session.id)
    session["cart"].append("pear")
    session["user"]["prefs"]["theme"] = "light"
    assert session.save() is SaveOutcome.WRITTEN
    assert recording.count("write") == 2
    session = recording_manager.start(session.id)
    assert session["cart"] == ["apple", "pear"]
    assert session["user"] == {"prefs": {"theme": "light"}}


def test_nested_mutation_to_an_unsupported_value_fails_at_save_naming_the_key(
    recording_manager: SessionManager, recording: Any
) -> None:
    session = recording_manager.start(None)
    session.put("cart", [])
    session.get("cart").append(object())
    with pytest.raises(TypeError, match="cart"):
        session.save()
    assert recording.count("write") == 0


def test_refresh_after_touch_interval(
    make_recording_manager: MakeManager, recording: Any, clock: Any
) -> None:
    manager = make_recording_manager(touch_interval=60)
    session = manager.start(None)
    session.put("k", 1)
    session.save()
    clock.advance(59)
    session = manager.start(session.id)
    session.get("k")
    assert session.save() is SaveOutcome.UNCHANGED
    assert recording.count("write") == 1
    clock.advance(1)
    session = manager.start(session.id)
    session.get("k")
    assert session.save() is SaveOutcome.REFRESHED
    assert session.cookie_action() == "set"
    assert recording.count("write") == 2
    written = json.loads(recording.store[manager.storage_key(session.id)])
    assert written["meta"]["last_activity"] == clock.now
    session = manager.start(session.id)
    assert session.save() is SaveOutcome.UNCHANGED  # not again until another interval
    assert recording.count("write") == 2


def test_refresh_slides_idle_expiry(make_recording_manager: MakeManager, clock: Any) -> None:
    manager = make_recording_manager(lifetime=2, touch_interval=60)
    session = manager.start(None)
    session.put("k", 1)
    session.save()
    clock.advance(100)
    session = manager.start(session.id)
    assert session.save() is SaveOutcome.REFRESHED
    clock.advance(100)  # 200 s since creation, 100 s since the refresh
    assert manager.start(session.id).get("k") == 1


def test_untouched_lazy_session_makes_no_driver_call(
    recording_manager: SessionManager, recording: Any
) -> None:
    session = recording_manager.start(None)
    session.put("k", 1)
    session.save()
    recording.calls.clear()
    lazy = recording_manager.lazy(session.id)
    assert not lazy.loaded
    assert lazy.save() is SaveOutcome.NOT_LOADED
    assert lazy.cookie_action() is None
    assert recording.calls == []
    lazy = recording_manager.lazy(None)
    assert lazy.save() is SaveOutcome.NOT_LOADED
    assert recording.calls == []


def test_lazy_session_loads_on_first_use(recording_manager: SessionManager, recording: Any) -> None:
    session = recording_manager.start(None)
    session.put("k", 1)
    session.save()
    recording.calls.clear()
    lazy = recording_manager.lazy(session.id)
    assert recording.calls == []
    assert lazy.get("k") == 1
    assert recording.names() == ["read"]


def test_a_prefetched_session_is_read_once_and_counts_as_unused_until_used(
    recording_manager: SessionManager, recording: Any, clock: Any
) -> None:
    session = recording_manager.start(None)
    session.put("k", 1)
    session.flash("note", "hi")
    session.save()
    recording.calls.clear()
    clock.advance(recording_manager.config.touch_interval + 1)  # a refresh is due

    async def scenario() -> None:
        untouched = recording_manager.lazy(session.id)
        await untouched.aprefetch()
        await untouched.aprefetch()
        assert not untouched.loaded
        # Never used: no flash data aged, no refresh, nothing to send.
        assert await untouched.asave() is SaveOutcome.NOT_LOADED
        assert untouched.cookie_action() is None
        used = recording_manager.lazy(session.id)
        await used.aprefetch()
        assert used.get("note") == "hi"  # decoded from the record read above
        await used.aload()
        assert await used.asave() is SaveOutcome.WRITTEN  # the flash data aged out

    asyncio.run(scenario())
    # One read per prefetch, then the save's own: this driver has no write_existing.
    assert recording.names() == ["read", "read", "read", "write"]
    assert "note" not in recording_manager.start(session.id).all()


def test_new_session_left_empty_writes_nothing(
    recording_manager: SessionManager, recording: Any
) -> None:
    session = recording_manager.start(None)
    session.get("anything")
    session.put("temp", 1)
    session.forget("temp")
    assert session.save() is SaveOutcome.EMPTY
    assert session.cookie_action() is None
    assert recording.calls == []


def test_session_emptied_is_removed(recording_manager: SessionManager, recording: Any) -> None:
    session = recording_manager.start(None)
    session.put("k", 1)
    session.save()
    session = recording_manager.start(session.id)
    session.forget("k")
    assert session.save() is SaveOutcome.EMPTY
    assert session.cookie_action() == "delete"
    assert recording.store == {}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(object(), id="object"),
        pytest.param(lambda: 1, id="lambda"),
        pytest.param(Path("/tmp"), id="path"),
        pytest.param(1j, id="complex"),
        pytest.param(type, id="class"),
    ],
)
def test_put_unsupported_value_raises_type_error_naming_the_key(
    manager: SessionManager, value: Any
) -> None:
    session = manager.start(None)
    with pytest.raises(TypeError, match="'basket'"):
        session.put("basket", value)
    with pytest.raises(TypeError, match="basket"):
        session.put({"ok": 1, "basket": value})
    with pytest.raises(TypeError, match=r"basket\.inner"):
        session.put("basket", {"inner": value})
    with pytest.raises(TypeError, match="basket"):
        session.put("basket", [1, [value]])
    with pytest.raises(TypeError, match="basket"):
        session.push("basket", value)
    assert "basket" not in session


CODE_RAN: list[str] = []


def _evil(marker: str) -> str:
    CODE_RAN.append(marker)
    return marker


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (_evil, ("pwned",))


def _payload(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "v": 1,
        "data": {"k": 1},
        "meta": {
            "created": 1_800_000_000.0,
            "last_activity": 1_800_000_000.0,
            "flash": {"new": [], "old": []},
            "token": None,
        },
    }
    document.update(overrides)
    return document


CORRUPT_PAYLOADS = [
    pytest.param("garbage", id="garbage"),
    pytest.param("{", id="truncated-json"),
    pytest.param("[1, 2, 3]", id="json-list"),
    pytest.param('"a string"', id="json-string"),
    pytest.param("null", id="json-null"),
    pytest.param('{"a": 1}', id="foreign-object"),
    pytest.param(json.dumps(_payload(v=99)), id="future-version"),
    pytest.param(json.dumps(_payload(v="1")), id="version-string"),
    pytest.param(json.dumps(_payload(data=[1])), id="data-not-object"),
    pytest.param(json.dumps(_payload(meta={})), id="meta-empty"),
    pytest.param(json.dumps(_payload(data={"k": {"__t": "pickle", "v": "x"}})), id="unknown-tag"),
    pytest.param(json.dumps(_payload(data={"k": {"__t": "uuid", "v": "nope"}})), id="bad-uuid"),
    pytest.param(json.dumps(_payload(data={"k": {"__t": "timedelta", "v": []}})), id="bad-td"),
    pytest.param(json.dumps(_payload(data={"k": {"__t": "set", "v": [[1]]}})), id="unhashable"),
    pytest.param(
        json.dumps(_payload(meta={"created": 10**400, "last_activity": 1})), id="huge-created"
    ),
    pytest.param(pickle.dumps(_Evil(), protocol=0).decode("latin-1"), id="pickle-0"),
    pytest.param(pickle.dumps(_Evil()).decode("latin-1"), id="pickle-latest"),
    pytest.param("[" * 100_000, id="deep-nesting"),
]


@pytest.mark.parametrize("stored", CORRUPT_PAYLOADS)
def test_corrupt_stored_payload_gives_an_empty_session(
    recording_manager: SessionManager,
    recording: Any,
    caplog: pytest.LogCaptureFixture,
    stored: str,
) -> None:
    cookie = "Q" * 40
    recording.store[recording_manager.storage_key(cookie)] = stored
    with caplog.at_level(logging.WARNING, logger="satchel"):
        session = recording_manager.start(cookie)
    assert session.all() == {}
    assert session.id != cookie
    assert CODE_RAN == []
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings, "a corrupt payload must be logged"
    assert cookie not in caplog.text  # the log never carries the id
    session.put("fresh", 1)
    session.save()
    assert recording_manager.start(session.id).all() == {"fresh": 1}


def test_pickle_payload_through_the_file_driver_runs_nothing(
    file_manager: SessionManager, sessions_dir: Path
) -> None:
    cookie = "P" * 40
    sessions_dir.mkdir(mode=0o700)
    (sessions_dir / file_manager.storage_key(cookie)).write_bytes(pickle.dumps(_Evil()))
    session = file_manager.start(cookie)
    assert session.all() == {}
    assert session.id != cookie
    assert CODE_RAN == []


def test_encrypted_payload_tampered_gives_an_empty_session(
    make_recording_manager: MakeManager, recording: Any, caplog: pytest.LogCaptureFixture
) -> None:
    manager = make_recording_manager(encrypt=True, secret_key=SECRET)
    session = manager.start(None)
    session.put("secret", "plain-text-marker")
    session.save()
    key = manager.storage_key(session.id)
    stored = recording.store[key]
    assert "plain-text-marker" not in stored
    assert manager.start(session.id).get("secret") == "plain-text-marker"
    recording.store[key] = stored[:-2] + ("A" if stored[-2] != "A" else "B") + stored[-1]
    with caplog.at_level(logging.WARNING, logger="satchel"):
        tampered = manager.start(session.id)
    assert tampered.all() == {}
    assert tampered.id != session.id
    assert caplog.records


def test_encrypted_payload_is_bound_to_its_session(
    make_recording_manager: MakeManager, recording: Any
) -> None:
    manager = make_recording_manager(encrypt=True, secret_key=SECRET)
    first = manager.start(None)
    first.put("owner", "first")
    first.save()
    second = manager.start(None)
    second.put("owner", "second")
    second.save()
    # Swap the stored records: a payload moved to another key must not decrypt.
    key1, key2 = manager.storage_key(first.id), manager.storage_key(second.id)
    recording.store[key1], recording.store[key2] = recording.store[key2], recording.store[key1]
    assert manager.start(first.id).all() == {}
    assert manager.start(second.id).all() == {}


# -- storage ---------------------------------------------------------------------------------


def test_file_driver_stores_digests_never_the_id(
    file_manager: SessionManager, sessions_dir: Path, next_request: NextRequest
) -> None:
    ids = []
    for user in ("ada", "bob", "eve"):
        session = file_manager.start(None)
        session.put("user", user)
        session.token()
        session.flash("status", "welcome")
        session = next_request(file_manager, session)
        ids.append(session.id)
        session.save()
    files = sorted(path.name for path in sessions_dir.iterdir())
    names = [name for name in files if not name.startswith(LOCK_PREFIX)]
    assert names == sorted(file_manager.storage_key(session_id) for session_id in ids)
    # Any lock record the driver keeps is named by a stored session's digest too.
    assert {name.removeprefix(LOCK_PREFIX) for name in files} <= set(names)
    for name in names:
        assert HEX64.fullmatch(name)
        assert name == hashlib.sha256(name_to_id(file_manager, ids, name).encode()).hexdigest()
        text = (sessions_dir / name).read_text("utf-8")
        for session_id in ids:
            assert session_id not in text
            assert session_id not in name


def name_to_id(manager: SessionManager, ids: list[str], name: str) -> str:
    return next(session_id for session_id in ids if manager.storage_key(session_id) == name)


def test_recording_driver_never_sees_the_id(
    recording_manager: SessionManager, recording: Any, next_request: NextRequest
) -> None:
    session = recording_manager.start(None)
    session.put("k", 1)
    ids = [session.id]
    session = next_request(recording_manager, session)
    session.regenerate(destroy=True)
    ids.append(session.id)
    session.put("k", 2)
    session = next_request(recording_manager, session)
    session.invalidate()
    ids.append(session.id)
    session.put("k", 3)
    session.save()
    assert recording.count("write") == 3
    assert recording.count("destroy") == 2
    seen = [str(arg) for _, args in recording.calls for arg in args]
    for session_id in ids:
        assert all(session_id not in text for text in seen)
    for name, args in recording.calls:
        if name in ("read", "write", "destroy"):
            assert HEX64.fullmatch(args[0])


def test_file_driver_round_trip_and_expiry(
    file_manager: SessionManager, clock: Any, next_request: NextRequest
) -> None:
    session = file_manager.start(None)
    session.put("user", {"name": "ada"})
    session = next_request(file_manager, session)
    assert session.get("user.name") == "ada"
    clock.advance(120 * 60 + 1)  # the file is fresh on disk: the expiry is core's
    assert file_manager.start(session.id).all() == {}


def test_config_defaults_used_by_these_tests() -> None:
    config = SessionConfig(driver="array")
    assert config.touch_interval == 60
    assert config.lifetime_seconds == 7200


def test_async_start_and_save(recording_manager: SessionManager, recording: Any) -> None:
    async def scenario() -> None:
        session = await recording_manager.astart(None)
        session.put("k", [1])
        assert await session.asave() is SaveOutcome.WRITTEN
        again = await recording_manager.astart(session.cookie_value())
        assert again.get("k") == [1]
        assert await again.asave() is SaveOutcome.UNCHANGED
        lazy = recording_manager.lazy(session.cookie_value())
        assert await lazy.asave() is SaveOutcome.NOT_LOADED
        hostile = await recording_manager.astart("../" + "a" * 37)
        assert hostile.all() == {}

    asyncio.run(scenario())
    assert recording.names() == ["write", "read"]


def test_manager_takes_its_clock_as_the_second_argument(clock: Any) -> None:
    # DESIGN: SessionManager(config, clock=None); plugins stay keyword-only.
    clock.advance(30)
    manager = SessionManager(SessionConfig(driver="array"), clock)
    session = manager.start(None)
    session.put("k", 1)
    assert session.created_at == clock.now
    with pytest.raises(TypeError):
        SessionManager(SessionConfig(driver="array"), clock, None)  # type: ignore[call-arg]


# -- merge_on_save under the request's own lock (block = true) -------------------------------


def blocking_merging_manager(clock: Any) -> SessionManager:
    # A short wait: the deadlock this guards against ended in LockTimeout after it.
    config = SessionConfig(driver="array", block=True, merge_on_save=True, block_wait_seconds=0.2)
    return SessionManager(config, clock)


def test_merge_on_save_does_not_retake_the_lock_its_request_holds(clock: Any) -> None:
    manager = blocking_merging_manager(clock)
    cookie = seed(manager, {"counter": 0})
    with manager.lock(cookie):
        session = manager.start(cookie)
        session.increment("counter")
        assert session.save() is SaveOutcome.WRITTEN
    assert manager.start(cookie).get("counter") == 1
    # Once the request's lock is released, a merging save takes the lock itself again.
    late = manager.start(cookie)
    late.increment("counter")
    handler = manager.handler()
    assert isinstance(handler, SupportsLock)
    with (
        handler.lock(manager.storage_key(cookie), lock_seconds=5, wait_seconds=0),
        pytest.raises(LockTimeout),
    ):
        late.save()
    assert late.save() is SaveOutcome.WRITTEN
    assert manager.start(cookie).get("counter") == 2


def test_async_merge_on_save_does_not_retake_the_lock_its_request_holds(clock: Any) -> None:
    manager = blocking_merging_manager(clock)
    cookie = seed(manager, {"counter": 0})

    async def request() -> SaveOutcome:
        async with manager.alock(cookie):
            session = await manager.astart(cookie)
            session.increment("counter")
            return await session.asave()

    assert asyncio.run(request()) is SaveOutcome.WRITTEN
    assert manager.start(cookie).get("counter") == 1


def test_a_lock_held_by_another_manager_is_not_this_requests(clock: Any) -> None:
    manager = blocking_merging_manager(clock)
    other = blocking_merging_manager(clock)
    cookie = seed(manager, {"counter": 0})
    with other.lock(cookie):  # the same id in another store: its lock is not ours
        assert not manager.holds_lock(manager.storage_key(cookie))
        assert other.holds_lock(other.storage_key(cookie))
    assert not other.holds_lock(other.storage_key(cookie))


def seed(manager: SessionManager, values: dict[str, Any]) -> str:
    session = manager.start(None)
    session.put(values)
    session.save()
    return session.cookie_value()


# -- a session moved to a new id after another request ended it ---------------------------


def test_invalidate_then_login_writes_even_after_another_logout(
    recording_manager: SessionManager, recording: Any
) -> None:
    # invalidate() starts a new session: it owes nothing to the record another request ended.
    cookie = seed(recording_manager, {"user_id": 42})
    slow = recording_manager.start(cookie)
    quick = recording_manager.start(cookie)
    quick.invalidate()
    quick.save()
    slow.invalidate()
    slow.put("user_id", 7)
    assert slow.save() is SaveOutcome.WRITTEN
    assert recording_manager.start(slow.cookie_value()).all() == {"user_id": 7}


def test_regenerate_checks_the_old_record_once_and_never_writes_it(
    recording_manager: SessionManager, recording: Any
) -> None:
    cookie = seed(recording_manager, {"user_id": 42})
    session = recording_manager.start(cookie)
    session.regenerate()
    recording.calls.clear()
    assert session.save() is SaveOutcome.WRITTEN
    old_key = recording_manager.storage_key(cookie)
    new_key = recording_manager.storage_key(session.id)
    assert recording.calls[0] == ("read", (old_key,))
    assert recording.keys_of("write") == [new_key]  # the old (maybe fixated) id gets nothing


# -- encrypt: no session value reaches a driver in plaintext ------------------------------------


@pytest.mark.parametrize("encrypt", [True, False])
def test_encrypt_hands_drivers_no_session_values(
    clock: Any, metadata_recording: Any, encrypt: bool
) -> None:
    store = metadata_recording
    manager = SessionManager(
        SessionConfig(driver="recording", encrypt=encrypt, secret_key=SECRET), clock
    )
    manager.extend("recording", lambda _config: store)
    metadata = RequestMetadata(ip_address="203.0.113.9", user_agent="probe/1")

    async def async_save() -> None:
        session = await manager.astart(cookie, metadata=metadata)
        session.put("cart", ["pear"])
        await session.asave()

    session = manager.start(None, metadata=metadata)
    session.put({"user_id": 42, "secret": "plaintext-marker"})
    assert session.save() is SaveOutcome.WRITTEN
    cookie = session.cookie_value()
    asyncio.run(async_save())
    assert len(store.metadata) == 2
    for seen in store.metadata:
        assert (seen.ip_address, seen.user_agent) == ("203.0.113.9", "probe/1")
        if encrypt:
            assert seen.values == {}
        else:
            assert seen.values["user_id"] == 42
    stored = "".join(store.store.values())
    assert ("plaintext-marker" in stored) is not encrypt


# -- max_payload_bytes: a save larger than the limit is an error, never a silent loss ----------

SMALL_LIMIT = 2000


def stored_size(recording: Any, session: Session) -> int:
    """The bytes the driver was handed for ``session``, as UTF-8."""
    return len(recording.store[storage_digest(session.id, None)].encode("utf-8"))


def test_the_default_limit_refuses_a_ten_megabyte_session(
    recording_manager: SessionManager, recording: Any
) -> None:
    session = recording_manager.start(None)
    session.put("blob", "x" * (10 * 1024 * 1024))
    with pytest.raises(SessionTooLarge) as caught:
        session.save()
    assert (caught.value.limit, caught.value.limit_name) == (256 * 1024, "max_payload_bytes")
    assert caught.value.size > 10 * 1024 * 1024
    message = str(caught.value)
    assert "max_payload_bytes" in message
    assert str(caught.value.size) in message
    assert str(256 * 1024) in message
    assert recording.count("write") == 0


@pytest.mark.parametrize("text", ["x", "é"], ids=["ascii", "two-byte-utf8"])
def test_a_payload_of_exactly_the_limit_is_written_and_one_byte_more_is_not(
    make_recording_manager: MakeManager, recording: Any, text: str
) -> None:
    measure = make_recording_manager(max_payload_bytes=None).start(None)
    measure.put("blob", text * 500)
    measure.save()
    limit = stored_size(recording, measure)  # UTF-8 bytes: "é" counts twice
    manager = make_recording_manager(max_payload_bytes=limit)
    fits = manager.start(None)
    fits.put("blob", text * 500)
    assert fits.save() is SaveOutcome.WRITTEN
    assert stored_size(recording, fits) == limit
    over = manager.start(None)
    over.put("blob", text * 501)
    with pytest.raises(SessionTooLarge) as caught:
        over.save()
    assert caught.value.size == limit + len(text.encode("utf-8"))
    assert storage_digest(over.id, None) not in recording.store


def test_an_oversized_change_keeps_the_stored_session(
    make_recording_manager: MakeManager, recording: Any
) -> None:
    manager = make_recording_manager(max_payload_bytes=SMALL_LIMIT)
    session = manager.start(None)
    session.put("cart", ["apple"])
    session.save()
    before = dict(recording.store)
    session = manager.start(session.id)
    session.put("blob", "x" * SMALL_LIMIT)
    with pytest.raises(SessionTooLarge):
        session.save()
    assert recording.store == before
    assert manager.start(session.id).all() == {"cart": ["apple"]}


def test_the_limit_counts_what_the_driver_stores_encrypted(
    make_recording_manager: MakeManager, recording: Any
) -> None:
    plain = make_recording_manager(max_payload_bytes=None).start(None)
    plain.put("blob", "x" * 1000)
    plain.save()
    plaintext_size = stored_size(recording, plain)
    manager = make_recording_manager(
        encrypt=True, secret_key=SECRET, max_payload_bytes=plaintext_size
    )
    session = manager.start(None)
    session.put("blob", "x" * 1000)  # fits as plaintext, not once encrypted and encoded
    with pytest.raises(SessionTooLarge) as caught:
        session.save()
    assert caught.value.size > plaintext_size


def test_a_refresh_of_a_session_stored_under_a_larger_limit_is_not_refused(
    make_recording_manager: MakeManager, recording: Any, clock: Any
) -> None:
    # Lowering the limit must not turn every read-only request of a larger session into
    # an error: the refresh rewrites what the store already holds. A change is refused.
    big = make_recording_manager(max_payload_bytes=None).start(None)
    big.put("blob", "x" * (2 * SMALL_LIMIT))
    big.save()
    manager = make_recording_manager(max_payload_bytes=SMALL_LIMIT, touch_interval=60)
    clock.advance(61)
    reader = manager.start(big.id)
    assert len(reader.get("blob")) == 2 * SMALL_LIMIT
    assert reader.save() is SaveOutcome.REFRESHED
    writer = manager.start(big.id)
    writer.put("more", 1)
    with pytest.raises(SessionTooLarge):
        writer.save()


def test_the_cookie_driver_is_held_to_both_limits() -> None:
    config: dict[str, Any] = {"driver": "cookie", "secret_key": SECRET}
    small = SessionManager(SessionConfig(max_payload_bytes=SMALL_LIMIT, **config)).start(None)
    small.put("blob", "x" * SMALL_LIMIT)
    with pytest.raises(SessionTooLarge) as caught:
        small.save()
    assert (caught.value.limit, caught.value.limit_name) == (SMALL_LIMIT, "max_payload_bytes")
    default = SessionManager(SessionConfig(**config)).start(None)
    default.put("blob", "x" * 5000)
    with pytest.raises(SessionTooLarge) as caught:
        default.save()
    assert (caught.value.limit, caught.value.limit_name) == (4096, "cookie")
    assert "browsers" in str(caught.value)


class EventLoopTwin(AsyncSessionHandler):
    """An async twin whose calls never wait (``runs_on_event_loop``); it records being awaited."""

    runs_on_event_loop = True

    def __init__(self, store: Any) -> None:
        self.store = store
        self.awaited: list[str] = []

    async def read(self, session_id: str) -> str:
        self.awaited.append("read")
        return str(self.store.read(session_id))

    async def write(self, session_id: str, data: str) -> bool:
        self.awaited.append("write")
        return bool(self.store.write(session_id, data))

    async def destroy(self, session_id: str) -> bool:
        self.awaited.append("destroy")
        return bool(self.store.destroy(session_id))

    async def gc(self, lifetime: int) -> int:
        return 0


def test_a_twin_that_runs_on_the_event_loop_is_called_without_coroutines(
    clock: Any, recording: Any
) -> None:
    twin = EventLoopTwin(recording)
    manager = SessionManager(SessionConfig(driver="local", lottery=(0, 1)), clock)
    manager.extend("local", lambda _config: recording, lambda _config: twin)

    async def scenario() -> None:
        session = await manager.astart(None)
        session.put("k", 1)
        assert await session.asave() is SaveOutcome.WRITTEN
        again = await manager.astart(session.cookie_value())
        assert again.get("k") == 1
        again.forget("k")
        assert await again.asave() is SaveOutcome.EMPTY

    asyncio.run(scenario())
    assert twin.awaited == []
    assert recording.names() == ["write", "read", "destroy"]
