"""A pickle ``__reduce__`` payload written straight into a session document runs no code:
the session starts fresh and empty, without an exception."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fixtures.pickle_payloads import pickle_payload

from satchel import SessionConfig, SessionManager


@pytest.mark.parametrize("form", ["text", "latin-1", "bytes"])
def test_a_pickle_written_into_a_document_runs_no_code(
    form: str,
    sync_factory: Any,
    mongo_config: dict[str, Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sentinel = tmp_path / "sentinel"
    payload = pickle_payload(sentinel, form)
    config = SessionConfig.from_dict({**mongo_config, "lottery": [0, 1]})
    handler = sync_factory(config)
    manager = SessionManager(config)
    manager.extend("mongo", lambda _config: handler)
    session = manager.start(None)
    session.put("cart", ["apple"])
    session.save()
    now = datetime.now(timezone.utc)
    key = manager.storage_key(session.id)
    handler.collection.replace_one(
        {"_id": key},
        {"payload": payload, "last_activity": now, "expires_at": now + timedelta(hours=1)},
    )
    assert handler.collection.find_one({"_id": key})["payload"] == payload

    reloaded = manager.start(session.id)
    assert reloaded.all() == {}
    assert not sentinel.exists()
    assert session.id not in caplog.text
    reloaded.put("cart", ["pear"])
    reloaded.save()
    assert manager.start(reloaded.id).get("cart") == ["pear"]
    handler.close()


def test_a_payload_that_is_not_text_reads_as_no_session(
    sync_factory: Any, mongo_config: dict[str, Any]
) -> None:
    handler = sync_factory(SessionConfig.from_dict(mongo_config))
    now = datetime.now(timezone.utc)
    for payload in (b"\x80\x05binary", 12, {"nested": "document"}, None):
        handler.collection.replace_one(
            {"_id": "odd"},
            {"payload": payload, "last_activity": now, "expires_at": now + timedelta(hours=1)},
            upsert=True,
        )
        assert handler.read("odd") == ""
    handler.close()
