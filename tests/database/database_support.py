"""Helpers shared by the database driver's tests (a unique module name: tests of
every distribution run in one pytest process)."""

from __future__ import annotations

import sqlalchemy as sa

from satchel_database.schema import locks_table, sessions_table

ASYNC_DRIVERS = {
    "postgresql": "asyncpg",
    "mysql": "aiomysql",
    "mariadb": "aiomysql",
    "sqlite": "aiosqlite",
}
SYNC_DRIVERS = {
    "postgresql": "psycopg",
    "mysql": "pymysql",
    "mariadb": "pymysql",
    "sqlite": "pysqlite",
}


def sync_url(url: str) -> str:
    """The same database through the sync driver the tests use."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    return parsed.set(drivername=f"{backend}+{SYNC_DRIVERS[backend]}").render_as_string(
        hide_password=False
    )


def async_url(url: str) -> str:
    """The same database through its asyncio driver."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    return parsed.set(drivername=f"{backend}+{ASYNC_DRIVERS[backend]}").render_as_string(
        hide_password=False
    )


def drop_table(url: str, name: str) -> None:
    engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
    try:
        locks_table(name).drop(engine, checkfirst=True)
        sessions_table(name).drop(engine, checkfirst=True)
    finally:
        engine.dispose()


def fetch_row(url: str, table: str, session_id: str) -> dict[str, object] | None:
    """The raw row of ``session_id``, read around the handler."""
    engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            row = (
                connection.execute(
                    sa.select(sessions_table(table)).where(sa.column("id") == session_id)
                )
                .mappings()
                .one_or_none()
            )
        return dict(row) if row is not None else None
    finally:
        engine.dispose()
