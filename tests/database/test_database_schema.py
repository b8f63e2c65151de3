"""The tables as the databases report them, made by ``satchel migrate`` and by the
Alembic migration ``satchel session:table`` writes, on SQLite, PostgreSQL and MariaDB.

The sessions table (Laravel's): ``id`` string primary key; ``user_id`` nullable, indexed;
``ip_address`` string(45) nullable; ``user_agent`` text nullable; ``payload``
text NOT NULL (``LONGTEXT`` on MySQL/MariaDB); ``last_activity`` integer
indexed. Read back with ``sqlalchemy.inspect``, not from our own DDL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from fixtures.database_support import (
    alembic_project,
    drop_alembic_version_table,
    drop_table,
    sync_url,
)
from sqlalchemy.dialects import mysql

from satchel.cli import main

# name: (kind, length, nullable)
SESSIONS_COLUMNS: dict[str, tuple[str, int | None, bool]] = {
    "id": ("string", 255, False),
    "user_id": ("string", 255, True),
    "ip_address": ("string", 45, True),
    "user_agent": ("text", None, True),
    "payload": ("text", None, False),
    "last_activity": ("integer", None, False),
}
LOCKS_COLUMNS: dict[str, tuple[str, int | None, bool]] = {
    "id": ("string", 255, False),
    "token": ("string", 64, False),
    "expires_at": ("bigint", None, False),
}


def kind_of(column_type: Any) -> tuple[str, int | None]:
    """What a reflected type is, whatever the dialect calls it."""
    # Before String, which both are; MySQL's LONGTEXT is a String but no Text.
    if isinstance(column_type, (sa.Text, mysql.LONGTEXT)):
        return "text", None
    if isinstance(column_type, sa.String):
        return "string", column_type.length
    if isinstance(column_type, sa.BigInteger):
        return "bigint", None
    if isinstance(column_type, sa.Integer) and not isinstance(column_type, sa.SmallInteger):
        return "integer", None
    return type(column_type).__name__, None


def table_shape(inspector: Any, table: str) -> dict[str, tuple[str, int | None, bool]]:
    return {
        column["name"]: (*kind_of(column["type"]), column["nullable"])
        for column in inspector.get_columns(table)
    }


def write_config(path: Path, url: str, table: str) -> Path:
    path.write_text(
        f'driver = "database"\nconnection = "{url}"\ntable = "{table}"\n', encoding="utf-8"
    )
    return path


@pytest.fixture(params=["satchel migrate", "alembic"])
def made_table(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str, table_name: str
) -> Iterator[str]:
    """The test's table, made by ``satchel migrate`` or by the written Alembic migration."""
    config_file = write_config(tmp_path / "session.toml", database_url, table_name)
    alembic_config = None
    try:
        if request.param == "satchel migrate":
            assert main(["migrate", "--config", str(config_file)]) == 0
        else:
            alembic_config, versions = alembic_project(tmp_path / "migrations", database_url)
            assert main(["session:table", "--config", str(config_file), str(versions)]) == 0
            command.upgrade(alembic_config, "head")
        yield table_name
    finally:
        drop_table(database_url, table_name)
        if alembic_config is not None:
            drop_alembic_version_table(alembic_config, database_url)


@pytest.fixture
def inspector(database_url: str) -> Iterator[Any]:
    engine = sa.create_engine(sync_url(database_url), poolclass=sa.pool.NullPool)
    try:
        yield sa.inspect(engine)
    finally:
        engine.dispose()


def test_the_sessions_table_has_laravels_columns(
    made_table: str, inspector: Any, database_url: str
) -> None:
    assert table_shape(inspector, made_table) == SESSIONS_COLUMNS
    payload = next(c for c in inspector.get_columns(made_table) if c["name"] == "payload")
    is_mysql = sa.make_url(database_url).get_backend_name() in ("mysql", "mariadb")
    # Plain TEXT stops at 64 KiB on MySQL/MariaDB.
    assert (type(payload["type"]).__name__ == "LONGTEXT") == is_mysql


def test_the_sessions_table_has_its_key_and_indexes(made_table: str, inspector: Any) -> None:
    assert inspector.get_pk_constraint(made_table)["constrained_columns"] == ["id"]
    indexes = {
        (index["name"], tuple(index["column_names"]), bool(index["unique"]))
        for index in inspector.get_indexes(made_table)
    }
    assert indexes == {
        (f"ix_{made_table}_user_id", ("user_id",), False),
        (f"ix_{made_table}_last_activity", ("last_activity",), False),
    }


def test_the_lock_table_beside_it(made_table: str, inspector: Any) -> None:
    locks = f"{made_table}_locks"
    assert table_shape(inspector, locks) == LOCKS_COLUMNS
    assert inspector.get_pk_constraint(locks)["constrained_columns"] == ["id"]
    assert inspector.get_indexes(locks) == []
