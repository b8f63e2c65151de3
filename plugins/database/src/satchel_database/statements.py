"""The SQL the database driver runs, built once per table and dialect.

Shared by the sync handler and its asyncio twin, so both run exactly the same
statements. Every value is a bound parameter; nothing from a request is ever
spliced into SQL text.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql.dml import Delete

from satchel import RequestMetadata
from satchel_database.options import DatabaseOptions
from satchel_database.schema import IP_ADDRESS_LENGTH, USER_ID_LENGTH

PAYLOAD_COLUMNS = ("payload", "last_activity")
METADATA_COLUMNS = ("user_id", "ip_address", "user_agent")

# What no text column keeps: control characters (C0, DEL, C1: PostgreSQL refuses
# NUL, and the rest would reach a terminal through `satchel sessions`) and
# surrogates (no UTF-8 encoding exists for them: every DBAPI refuses to send one).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# An int of more digits than this cannot fit user_id (its sign included), and
# str() of a huge one would raise (Python's limit on int-to-text conversion).
_USER_ID_INT_LIMIT = 10 ** (USER_ID_LENGTH - 1)


@attrs.frozen
class StoredSession:
    """One row of the sessions table, as ``satchel sessions`` lists it.

    Attributes:
        id: The stored id (the SHA-256 digest of the cookie's id, never the id itself).
        user_id: The user the session belongs to, if the application stored one.
        ip_address: The client address of the last write that carried request metadata.
        user_agent: The ``User-Agent`` of that write.
        last_activity: Unix seconds of the last write.
    """

    id: str
    user_id: str | None
    ip_address: str | None
    user_agent: str | None
    last_activity: int


def cleaned_text(value: str, max_length: int) -> str | None:
    """Free text (the user agent) as every dialect stores it: control characters
    dropped, surrogates replaced by U+FFFD, cut to ``max_length`` characters;
    ``None`` when nothing is left."""
    if not (value.isascii() and value.isprintable()):  # the common case costs two scans
        value = _SURROGATE.sub("\ufffd", _CONTROL.sub("", value))
    return value[:max_length].strip() or None


def exact_text(value: str, max_length: int) -> str | None:
    """An identifier (a user id, an address) stored exactly or not at all: ``None`` when
    it is empty, longer than ``max_length`` or holds a character no column keeps.

    Cleaning or cutting an identifier would make it name someone else.
    """
    if not 0 < len(value) <= max_length or _UNSTORABLE.search(value):
        return None
    return value


def user_id_of(values: Mapping[str, Any], user_key: str) -> str | None:
    """The ``user_id`` column's value: the session value ``user_key``, as text, if it
    is a string, an integer or a UUID that fits the column exactly."""
    value = values.get(user_key)
    if isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID)):
        return None
    if isinstance(value, int) and not -_USER_ID_INT_LIMIT < value < _USER_ID_INT_LIMIT:
        return None
    return exact_text(str(value), USER_ID_LENGTH)


def metadata_columns(metadata: RequestMetadata, options: DatabaseOptions) -> dict[str, Any]:
    """The ``user_id``, ``ip_address`` and ``user_agent`` columns for one write.

    Whatever bytes a client sent (a NUL or escape in ``User-Agent``, 100 KB of
    it) and whatever the application put under ``user_key``, every dialect
    stores the result: text is cleaned and cut, identifiers kept exact or left out.
    """
    ip_address = metadata.ip_address
    user_agent = metadata.user_agent
    return {
        "user_id": user_id_of(metadata.values, options.user_key),
        "ip_address": (
            None if ip_address is None else exact_text(ip_address.strip(), IP_ADDRESS_LENGTH)
        ),
        "user_agent": (
            None if user_agent is None else cleaned_text(user_agent, options.user_agent_max_length)
        ),
    }


class SessionStatements:
    """Statement builders for one sessions table (and its lock table) on one dialect.

    The statements every request runs (``read``, ``upsert``, ``update_live``,
    ``destroy``) are built once with bound parameters, so SQLAlchemy compiles
    each of them once.
    """

    def __init__(
        self, table: sa.Table, locks: sa.Table, dialect_name: str, gc_batch_size: int
    ) -> None:
        self.table = table
        self.locks = locks
        self.dialect_name = dialect_name
        self.gc_batch_size = gc_batch_size
        self._upserts: dict[tuple[str, tuple[str, ...]], sa.Executable | None] = {}

    @property
    def is_mysql(self) -> bool:
        return self.dialect_name in ("mysql", "mariadb")

    @functools.cached_property
    def read(self) -> sa.Select[Any]:
        """The payload of ``:key`` unless it has been idle since before ``:cutoff``."""
        columns = self.table.c
        return sa.select(columns.payload).where(
            columns.id == sa.bindparam("key"), columns.last_activity >= sa.bindparam("cutoff")
        )

    def upsert(self, update: Sequence[str]) -> sa.Executable | None:
        """One statement that inserts a row (its columns: the parameters it is run
        with) or, when ``id`` exists, updates the ``update`` columns; built once.

        ``None`` on a dialect without a native upsert; the handler then updates
        and inserts in turn.
        """
        key = (self.dialect_name, tuple(update))
        if key not in self._upserts:
            self._upserts[key] = self._native_upsert(update)
        return self._upserts[key]

    def _native_upsert(self, update: Sequence[str]) -> sa.Executable | None:
        table = self.table
        if self.dialect_name == "postgresql":
            pg_statement = postgresql.insert(table)
            return pg_statement.on_conflict_do_update(
                index_elements=[table.c.id],
                set_={name: pg_statement.excluded[name] for name in update},
            )
        if self.dialect_name == "sqlite":
            lite_statement = sqlite.insert(table)
            return lite_statement.on_conflict_do_update(
                index_elements=[table.c.id],
                set_={name: lite_statement.excluded[name] for name in update},
            )
        if self.is_mysql:
            my_statement = mysql.insert(table)
            return my_statement.on_duplicate_key_update(
                {name: my_statement.inserted[name] for name in update}
            )
        return None

    def update(self, session_id: str, values: Mapping[str, Any]) -> sa.Update:
        """The fallback upsert's first half: update the row if it is there."""
        return sa.update(self.table).where(self.table.c.id == session_id).values(**values)

    @functools.cached_property
    def update_live(self) -> sa.Update:
        """Update the row of ``:key`` only while it lives (active since ``:cutoff``); the
        columns set are the other parameters it is run with.

        ``write_existing``: a destroyed or idle row matches nothing, so a late
        save can never bring an ended session back.
        """
        columns = self.table.c
        return sa.update(self.table).where(
            columns.id == sa.bindparam("key"), columns.last_activity >= sa.bindparam("cutoff")
        )

    def insert(self, values: Mapping[str, Any]) -> sa.Insert:
        """The fallback upsert's second half: insert a new row."""
        return sa.insert(self.table).values(**values)

    @functools.cached_property
    def destroy(self) -> Delete:
        """Delete the row of ``:key``."""
        return sa.delete(self.table).where(self.table.c.id == sa.bindparam("key"))

    def count_expired(self, cutoff: int) -> sa.Select[Any]:
        return (
            sa.select(sa.func.count())
            .select_from(self.table)
            .where(self.table.c.last_activity < cutoff)
        )

    def gc_batch(self, cutoff: int) -> Delete:
        """Delete at most ``gc_batch_size`` rows idle since before ``cutoff``, found by index.

        The oldest rows go first, found through the ``last_activity`` index,
        and each is deleted through the primary key, so a batch costs the same
        however large the table is.
        """
        columns = self.table.c
        if self.is_mysql:
            # MySQL refuses LIMIT inside an IN subquery but has DELETE ... LIMIT.
            return (
                sa.delete(self.table)
                .where(columns.last_activity < cutoff)
                .with_dialect_options(mysql_limit=self.gc_batch_size)
            )
        batch = (
            sa.select(columns.id)
            .where(columns.last_activity < cutoff)
            .order_by(columns.last_activity)
            .limit(self.gc_batch_size)
        )
        if self.dialect_name == "postgresql":
            # id = ANY(ARRAY(...)): with IN (...) PostgreSQL estimates that most
            # of the table matches and scans all of it for every batch.
            matches = columns.id == sa.any_(sa.func.array(batch.scalar_subquery()))
        else:
            matches = columns.id.in_(batch)
        # The outer condition is checked again on a row refreshed since the
        # subquery looked, so a session written meanwhile is kept.
        return sa.delete(self.table).where(matches, columns.last_activity < cutoff)

    def sessions_of_user(self, user_id: str) -> sa.Select[Any]:
        columns = self.table.c
        return (
            sa.select(
                columns.id,
                columns.user_id,
                columns.ip_address,
                columns.user_agent,
                columns.last_activity,
            )
            .where(columns.user_id == user_id)
            .order_by(columns.last_activity.desc())
        )

    def destroy_user_sessions(self, user_id: str) -> Delete:
        return sa.delete(self.table).where(self.table.c.user_id == user_id)

    def claim_lock(
        self, session_id: str, token: str, expires_at: int, now: int
    ) -> sa.Executable | None:
        """Insert the lock, or take it over only if it expired by ``now`` (milliseconds).

        Whether it worked is read back with :meth:`lock_holder` in the same
        transaction. ``None`` on a dialect without a native upsert.
        """
        locks = self.locks
        values = {"id": session_id, "token": token, "expires_at": expires_at}
        if self.dialect_name == "postgresql":
            pg_statement = postgresql.insert(locks).values(**values)
            return pg_statement.on_conflict_do_update(
                index_elements=[locks.c.id],
                set_={
                    "token": pg_statement.excluded.token,
                    "expires_at": pg_statement.excluded.expires_at,
                },
                where=locks.c.expires_at <= now,
            )
        if self.dialect_name == "sqlite":
            lite_statement = sqlite.insert(locks).values(**values)
            return lite_statement.on_conflict_do_update(
                index_elements=[locks.c.id],
                set_={
                    "token": lite_statement.excluded.token,
                    "expires_at": lite_statement.excluded.expires_at,
                },
                where=locks.c.expires_at <= now,
            )
        if self.is_mysql:
            my_statement = mysql.insert(locks).values(**values)
            expired = locks.c.expires_at <= now
            # MySQL applies these in order: token first, while expires_at is still the old one.
            claim: sa.Executable = my_statement.on_duplicate_key_update(
                [
                    ("token", sa.case((expired, my_statement.inserted.token), else_=locks.c.token)),
                    (
                        "expires_at",
                        sa.case(
                            (expired, my_statement.inserted.expires_at), else_=locks.c.expires_at
                        ),
                    ),
                ]
            )
            return claim
        return None

    def insert_lock(self, session_id: str, token: str, expires_at: int) -> sa.Insert:
        return sa.insert(self.locks).values(id=session_id, token=token, expires_at=expires_at)

    def take_over_lock(self, session_id: str, token: str, expires_at: int, now: int) -> sa.Update:
        locks = self.locks
        return (
            sa.update(locks)
            .where(locks.c.id == session_id, locks.c.expires_at <= now)
            .values(token=token, expires_at=expires_at)
        )

    def lock_holder(self, session_id: str) -> sa.Select[Any]:
        return sa.select(self.locks.c.token).where(self.locks.c.id == session_id)

    def expired_locks(self, now: int) -> Delete:
        """Delete every lock that expired by ``now`` (milliseconds).

        A holder that ended without releasing its lock (a crash, a killed
        worker) leaves its row behind, and only a later lock of the same
        session would take it over. An expired lock is free for anyone to take,
        so removing it changes nothing for a waiter.
        """
        return sa.delete(self.locks).where(self.locks.c.expires_at <= now)

    def release_lock(self, session_id: str, token: str) -> Delete:
        """Delete the lock only if ``token`` still holds it."""
        locks = self.locks
        return sa.delete(locks).where(locks.c.id == session_id, locks.c.token == token)


def stored_session(row: sa.Row[Any]) -> StoredSession:
    """A :class:`StoredSession` from a row of :meth:`SessionStatements.sessions_of_user`."""
    return StoredSession(
        id=row.id,
        user_id=row.user_id,
        ip_address=row.ip_address,
        user_agent=row.user_agent,
        last_activity=int(row.last_activity),
    )
