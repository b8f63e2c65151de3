"""Hostile session ids and stored payloads against the session manager and the built-in drivers."""

from __future__ import annotations

import base64
import pickle
import secrets
import string
from pathlib import Path

import pytest
from fixtures.base64_spellings import other_spellings
from fixtures.hostile_ids import HOSTILE_IDS
from fixtures.pickle_payloads import exploit_pickle
from recording_store import recording_manager

from satchel import SessionConfig, SessionManager


@pytest.mark.parametrize("hostile", HOSTILE_IDS, ids=range(len(HOSTILE_IDS)))
def test_a_hostile_id_gives_a_fresh_session_and_never_reaches_the_driver(hostile: str) -> None:
    manager, handler = recording_manager()
    session = manager.start(hostile)
    assert handler.calls == []  # not even a read
    session.put("probe", 1)
    session.save()
    assert session.id != hostile
    assert not hostile or hostile not in session.cookie_value()
    assert handler.calls == [("write", manager.storage_key(session.id))]
    assert manager.storage_key(session.id) != hostile


@pytest.mark.parametrize("hostile", HOSTILE_IDS, ids=range(len(HOSTILE_IDS)))
def test_a_hostile_id_never_makes_a_file_outside_the_folder(tmp_path: Path, hostile: str) -> None:
    folder = tmp_path / "sessions"
    manager = SessionManager(SessionConfig(driver="file", files=str(folder)))
    session = manager.start(hostile)
    session.put("probe", 1)
    session.save()
    names = [path.name for path in folder.iterdir()]
    assert names == [manager.storage_key(session.id)]
    assert [path.name for path in tmp_path.iterdir()] == ["sessions"]


def test_ten_thousand_unknown_ids_create_no_records() -> None:
    manager, handler = recording_manager()
    alphabet = string.ascii_letters + string.digits
    for _ in range(10_000):
        unknown = "".join(secrets.choice(alphabet) for _ in range(40))
        session = manager.lazy(unknown)
        session.get("anything")  # the application looks, but stores nothing
        session.save()
    assert handler._entries == {}
    assert {method for method, _ in handler.calls} == {"read"}  # looked up, never written


@pytest.mark.parametrize("encoding", ["raw", "base64", "json-string"])
def test_a_pickle_payload_in_the_store_runs_no_code(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, encoding: str
) -> None:
    sentinel = tmp_path / "sentinel"
    blob = exploit_pickle(sentinel, pickle.HIGHEST_PROTOCOL)  # proven to run code on a control
    text = {
        "raw": blob.decode("latin-1"),
        "base64": base64.b64encode(blob).decode(),
        "json-string": '{"v":1,"data":{"x":{"__t":"bytes","v":"'
        + base64.b64encode(blob).decode()
        + '"}}}',
    }[encoding]
    folder = tmp_path / "sessions"
    manager = SessionManager(SessionConfig(driver="file", files=str(folder)))
    session = manager.start(None)
    session.put("a", 1)
    session.save()
    (folder / manager.storage_key(session.id)).write_text(text, encoding="utf-8")
    reloaded = manager.start(session.id)
    assert reloaded.all() == {}
    assert not sentinel.exists()
    assert "corrupt" in caplog.text
    assert session.id not in caplog.text


def test_another_spelling_of_an_encrypted_stored_payload_is_an_empty_session(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored ciphertext is decoded by the same canonical-only rule as a cookie: its
    last base64 character with other spare bits (the same bytes) is refused."""
    secret = "a-test-secret-for-stored-payloads-0123456789"
    folder = tmp_path / "sessions"
    manager = SessionManager(
        SessionConfig(driver="file", files=str(folder), encrypt=True, secret_key=secret)
    )
    refused: dict[int, int] = {}
    size = 0
    while set(refused) != {0, 2, 3}:  # stored payloads of every length mod 4
        size += 1
        assert size < 100
        session = manager.start(None)
        session.put("note", "n" * size)
        session.save()
        path = folder / manager.storage_key(session.id)
        stored = path.read_text("ascii")
        spellings = other_spellings(stored)
        for spelling in spellings:
            path.write_text(spelling, encoding="ascii")
            caplog.clear()
            assert manager.start(session.id).all() == {}
            assert "failed to decrypt" in caplog.text
        path.write_text(stored, encoding="ascii")
        assert manager.start(session.id).get("note") == "n" * size
        refused[len(stored) % 4] = len(spellings)
    assert refused == {0: 0, 2: 15, 3: 3}
