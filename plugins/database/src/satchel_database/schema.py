"""The sessions table, its DDL per dialect, and the Alembic migration that creates it.

The table is Laravel's: ``id`` string primary key, ``user_id`` nullable and
indexed, ``ip_address`` string(45), ``user_agent`` text, ``payload`` text and
``last_activity`` integer (Unix seconds) indexed. On MySQL/MariaDB the payload
is ``LONGTEXT`` (as Laravel's ``longText``): plain ``TEXT`` stops at 64 KiB.

Session blocking (``block = true``) keeps its locks in a second, small table,
``<table>_locks``: ``id``, the holder's random ``token`` and ``expires_at``
(Unix milliseconds), so a holder that died never blocks for longer than its
``lock_seconds``.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, registry
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from satchel_database.options import DIALECT_NAMES

LOCKS_SUFFIX = "_locks"
TOKEN_LENGTH = 64
ID_LENGTH = 255  # Laravel's string(); core stores a 64-character SHA-256 hex digest
USER_ID_LENGTH = 255  # text, so integer and UUID user ids both fit
IP_ADDRESS_LENGTH = 45  # the longest textual IPv6 address (IPv4-mapped)

DIALECTS: dict[str, Dialect] = {
    "postgresql": registry.load("postgresql")(),
    "mysql": registry.load("mysql")(),
    "mariadb": registry.load("mysql")(is_mariadb=True),
    "sqlite": registry.load("sqlite")(),
}
assert sorted(DIALECTS) == sorted(DIALECT_NAMES)

MAX_TABLE_NAME = 63  # PostgreSQL's identifier limit
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_table_name(name: str) -> str:
    """``name`` if it is a plain identifier; table names end up in DDL and file names."""
    if not _TABLE_NAME.fullmatch(name) or len(name) > MAX_TABLE_NAME:
        raise ValueError(
            f"table name {name!r} must be letters, digits and underscores, "
            f"not starting with a digit, at most {MAX_TABLE_NAME} characters"
        )
    return name


def payload_type() -> sa.types.TypeEngine[str]:
    """``TEXT``, widened to ``LONGTEXT`` on MySQL and MariaDB."""
    return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def sessions_table(name: str = "sessions", metadata: sa.MetaData | None = None) -> sa.Table:
    """The sessions table named ``name``, in ``metadata`` (a fresh one by default)."""
    check_table_name(name)
    if len(name) > MAX_TABLE_NAME - len(LOCKS_SUFFIX):
        raise ValueError(
            f"table name {name!r} is too long: at most {MAX_TABLE_NAME - len(LOCKS_SUFFIX)} "
            f"characters, so its lock table {name + LOCKS_SUFFIX!r} fits in {MAX_TABLE_NAME}"
        )
    return sa.Table(
        name,
        metadata if metadata is not None else sa.MetaData(),
        sa.Column("id", sa.String(ID_LENGTH), primary_key=True),
        sa.Column("user_id", sa.String(USER_ID_LENGTH), nullable=True, index=True),
        sa.Column("ip_address", sa.String(IP_ADDRESS_LENGTH), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("payload", payload_type(), nullable=False),
        sa.Column("last_activity", sa.Integer(), nullable=False, index=True),
        # utf8mb4, so every Unicode payload round-trips on MySQL/MariaDB.
        mysql_charset="utf8mb4",
        mysql_engine="InnoDB",
    )


def locks_table_name(table: str) -> str:
    """The name of the lock table beside the sessions table ``table``."""
    return check_table_name(f"{table}{LOCKS_SUFFIX}")


def locks_table(sessions: str = "sessions", metadata: sa.MetaData | None = None) -> sa.Table:
    """The lock table for the sessions table named ``sessions``."""
    return sa.Table(
        locks_table_name(sessions),
        metadata if metadata is not None else sa.MetaData(),
        sa.Column("id", sa.String(ID_LENGTH), primary_key=True),
        sa.Column("token", sa.String(TOKEN_LENGTH), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        mysql_charset="utf8mb4",
        mysql_engine="InnoDB",
    )


def create_missing_tables(connection: sa.Connection, *tables: sa.Table) -> list[str]:
    """Create each of ``tables`` (with its indexes) that the database lacks; the names created."""
    inspector = sa.inspect(connection)
    missing = [table for table in tables if not inspector.has_table(table.name, table.schema)]
    for table in missing:
        table.create(connection, checkfirst=True)
    return [table.name for table in missing]


def create_ddl(*tables: sa.Table, dialect_name: str) -> str:
    """The ``CREATE TABLE`` and ``CREATE INDEX`` statements of ``tables`` for one dialect."""
    try:
        dialect = DIALECTS[dialect_name]
    except KeyError:
        raise ValueError(
            f"unknown SQL dialect {dialect_name!r}; choose one of {', '.join(DIALECTS)}"
        ) from None
    compiled: list[str] = []
    for table in tables:
        compiled.append(str(CreateTable(table).compile(dialect=dialect)))
        for index in sorted(table.indexes, key=lambda index: str(index.name)):
            compiled.append(str(CreateIndex(index).compile(dialect=dialect)))
    statements = [
        "\n".join(line.rstrip() for line in text.strip().splitlines()) for text in compiled
    ]
    return "\n\n".join(f"{statement};" for statement in statements) + "\n"


MIGRATION_TEMPLATE = '''\
"""Create the {table} table (and {locks} for session blocking) for satchel's database driver.

Revision ID: {revision}
Revises: {down_revision_text}
Create Date: {created}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = {revision!r}
down_revision = {down_revision!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        {table!r},
        sa.Column("id", sa.String({id_length}), primary_key=True),
        sa.Column("user_id", sa.String({user_id_length}), nullable=True),
        sa.Column("ip_address", sa.String({ip_length}), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        # LONGTEXT on MySQL/MariaDB: TEXT stops at 64 KiB there.
        sa.Column(
            "payload",
            sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.Column("last_activity", sa.Integer(), nullable=False),
        mysql_charset="utf8mb4",
        mysql_engine="InnoDB",
    )
    op.create_index({user_index!r}, {table!r}, ["user_id"])
    op.create_index({activity_index!r}, {table!r}, ["last_activity"])
    # Session blocking (block = true): one row per held lock, with its holder and expiry.
    op.create_table(
        {locks!r},
        sa.Column("id", sa.String({id_length}), primary_key=True),
        sa.Column("token", sa.String({token_length}), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        mysql_charset="utf8mb4",
        mysql_engine="InnoDB",
    )


def downgrade() -> None:
    op.drop_table({locks!r})
    op.drop_index({activity_index!r}, table_name={table!r})
    op.drop_index({user_index!r}, table_name={table!r})
    op.drop_table({table!r})
'''

_REVISION_LINE = re.compile(r"^revision\s*(?::\s*[^=]+)?=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_REVISION_LINE = re.compile(r"^down_revision\s*(?::\s*[^=]+)?=\s*(.+)$", re.MULTILINE)
_QUOTED = re.compile(r"['\"]([^'\"]+)['\"]")


def find_heads(versions: Path) -> list[str]:
    """The head revisions of the Alembic migrations in ``versions``, read from the files.

    Reading the ``revision``/``down_revision`` lines is enough to chain a new
    migration; alembic need not be installed for that.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in versions.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        match = _REVISION_LINE.search(text)
        if match is None:
            continue
        revisions.add(match.group(1))
        down = _DOWN_REVISION_LINE.search(text)
        if down is not None:
            parents.update(_QUOTED.findall(down.group(1)))
    return sorted(revisions - parents)


class TableAlreadyMigrated(ValueError):
    """A migration in the versions folder already creates the table.

    Attributes:
        table: The table's name.
        path: The migration that creates it.
    """

    def __init__(self, table: str, path: Path) -> None:
        self.table = table
        self.path = path
        super().__init__(f"{path} already creates table {table!r}")


def migrations_creating(versions: Path, table: str) -> list[Path]:
    """The migrations in ``versions`` that create ``table`` (``op.create_table("table", …)``)."""
    creates = re.compile(
        rf"""\bcreate_table\(\s*(?:table_name\s*=\s*)?['"]{re.escape(table)}['"]"""
    )
    return sorted(
        path for path in versions.glob("*.py") if creates.search(path.read_text(encoding="utf-8"))
    )


def write_migration(
    versions: Path,
    table: str,
    *,
    down_revision: str | None = None,
    detect_head: bool = True,
    force: bool = False,
    now: datetime | None = None,
) -> Path:
    """Write an Alembic migration creating ``table`` and its lock table into ``versions``.

    Unless ``down_revision`` is given, the new migration follows the folder's
    single head; a folder with several heads is an error (name one). A
    migration in the folder that already creates either table raises
    :class:`TableAlreadyMigrated`, unless ``force``: upgrading would fail on
    the second ``CREATE TABLE``.
    """
    sessions_table(table)  # validates the name, lock table included
    if not versions.is_dir():
        raise FileNotFoundError(f"{versions} is not a folder (give Alembic's versions folder)")
    if not force:
        for name in (table, locks_table_name(table)):
            existing = migrations_creating(versions, name)
            if existing:
                raise TableAlreadyMigrated(name, existing[0])
    if down_revision is None and detect_head:
        heads = find_heads(versions)
        if len(heads) > 1:
            raise ValueError(
                f"{versions} has several heads ({', '.join(heads)}); choose one with --down-revision"
            )
        down_revision = heads[0] if heads else None
    revision = secrets.token_hex(6)  # alembic's own ids are 12 hex digits as well
    created = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = MIGRATION_TEMPLATE.format(
        table=table,
        locks=locks_table_name(table),
        token_length=TOKEN_LENGTH,
        revision=revision,
        down_revision=down_revision,
        down_revision_text=down_revision or "",
        created=created,
        id_length=ID_LENGTH,
        user_id_length=USER_ID_LENGTH,
        ip_length=IP_ADDRESS_LENGTH,
        user_index=f"ix_{table}_user_id",
        activity_index=f"ix_{table}_last_activity",
    )
    path = versions / f"{revision}_create_{table}_table.py"
    path.write_text(text, encoding="utf-8")
    return path
