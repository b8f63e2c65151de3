"""What reaches the sessions table, and what comes out of it when an attacker wrote it.

* A pickle ``__reduce__`` payload inserted with raw SQL into the payload
  column is read as no session: a fresh empty one, no code run, no exception.
* With ``encrypt = true`` neither the payload column nor ``user_id`` holds
  the session's values in plaintext.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from fixtures.database_support import fetch_row, sync_url
from fixtures.pickle_payloads import pickle_payload

from satchel import RequestMetadata, SessionConfig, SessionManager

SECRET = "a-test-secret-of-at-least-thirty-two-characters"
MARKER = "marker-8c1f27e5-in-the-session"

# Every stored form each database accepts in a text column: PostgreSQL refuses
# NUL characters in text and bytes in a text column; MariaDB refuses bytes that
# are not UTF-8 in a utf8mb4 column (strict mode); SQLite takes anything.
FORMS = {
    "sqlite": ("text", "latin-1", "bytes"),
    "postgresql": ("text",),
    "mysql": ("text", "latin-1"),
}
CASES = [(backend, form) for backend, forms in FORMS.items() for form in forms]


@pytest.mark.parametrize(("backend", "form"), CASES, ids=[f"{b}-{f}" for b, f in CASES])
def test_a_pickle_written_into_the_payload_column_runs_no_code(
    backend: str,
    form: str,
    request: pytest.FixtureRequest,
    make_table: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = str(request.getfixturevalue(f"{'postgres' if backend == 'postgresql' else backend}_url"))
    table = make_table(url)
    sentinel = tmp_path / "sentinel"
    payload = pickle_payload(sentinel, form)
    manager = SessionManager(
        SessionConfig(driver="database", connection=url, table=table, lottery=(0, 1))
    )
    session = manager.start(None)
    session.put("cart", ["apple"])
    session.save()
    engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    f"UPDATE {table} SET payload = :payload, last_activity = :now WHERE id = :id"
                ),
                {
                    "payload": payload,
                    "now": int(time.time()),
                    "id": manager.storage_key(session.id),
                },
            )
    finally:
        engine.dispose()
    row = fetch_row(url, table, manager.storage_key(session.id))
    assert row is not None
    assert row["payload"] == payload  # the pickle is stored, exactly as written

    reloaded = manager.start(session.id)
    assert reloaded.all() == {}
    assert not sentinel.exists()
    assert session.id not in caplog.text
    reloaded.put("cart", ["pear"])
    reloaded.save()  # the fresh session works as any other
    assert manager.start(reloaded.id).get("cart") == ["pear"]
    manager.handler().close()


def save_user_session(url: str, table: str, **config: object) -> tuple[SessionManager, str]:
    """Save a session of user 42 holding the marker through a manager; the manager and id."""
    manager = SessionManager(
        SessionConfig.from_dict(
            {"driver": "database", "connection": url, "table": table, "lottery": [0, 1], **config}
        )
    )
    session = manager.start(None, metadata=RequestMetadata("198.51.100.7", "Agent/1.0"))
    session.put("user_id", 42)
    session.put("note", MARKER)
    session.save()
    return manager, session.id


def test_with_encrypt_the_table_holds_no_session_value_in_plaintext(
    database_url: str, make_table: Callable[..., str]
) -> None:
    """Core hands an encrypting store no values as metadata, so ``user_id`` stays NULL;
    ``satchel sessions --user`` then cannot find the user's sessions (documented)."""
    table = make_table(database_url)
    manager, session_id = save_user_session(database_url, table, encrypt=True, secret_key=SECRET)
    row = fetch_row(database_url, table, manager.storage_key(session_id))
    assert row is not None
    assert row["user_id"] is None
    assert MARKER not in str(row["payload"])
    assert manager.handler().sessions_of_user("42") == []
    reloaded = manager.start(session_id)
    assert (reloaded.get("user_id"), reloaded.get("note")) == (42, MARKER)
    manager.handler().close()


def test_without_encrypt_the_user_id_column_is_filled(
    database_url: str, make_table: Callable[..., str]
) -> None:
    """The control: the same session unencrypted fills ``user_id`` and shows the marker."""
    table = make_table(database_url)
    manager, session_id = save_user_session(database_url, table)
    row = fetch_row(database_url, table, manager.storage_key(session_id))
    assert row is not None
    assert row["user_id"] == "42"
    assert MARKER in str(row["payload"])
    assert [stored.id for stored in manager.handler().sessions_of_user("42")] == [
        manager.storage_key(session_id)
    ]
    manager.handler().close()
