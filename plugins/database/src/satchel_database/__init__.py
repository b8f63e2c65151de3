"""satchel-database: server-side sessions in an SQL table (SQLAlchemy 2 Core).

Driver name ``database``; ``config.connection`` is an SQLAlchemy URL and
``config.table`` the table (``sessions``). See :mod:`satchel_database.handler`.
The names below are imported on first use, so importing the package (as its
entry point, :mod:`satchel_database.plugin`, does) loads no SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from satchel.toolkit import lazy_exports

if TYPE_CHECKING:
    from satchel_database.handler import (
        AsyncDatabaseSessionHandler,
        DatabaseSessionHandler,
        ThreadedDatabaseSessionHandler,
        create_async_handler,
        create_handler,
    )
    from satchel_database.options import DatabaseOptions
    from satchel_database.schema import create_ddl, sessions_table, write_migration
    from satchel_database.statements import StoredSession

__all__ = [
    "AsyncDatabaseSessionHandler",
    "DatabaseOptions",
    "DatabaseSessionHandler",
    "StoredSession",
    "ThreadedDatabaseSessionHandler",
    "create_async_handler",
    "create_ddl",
    "create_handler",
    "sessions_table",
    "write_migration",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "AsyncDatabaseSessionHandler": "satchel_database.handler",
        "DatabaseSessionHandler": "satchel_database.handler",
        "ThreadedDatabaseSessionHandler": "satchel_database.handler",
        "create_async_handler": "satchel_database.handler",
        "create_handler": "satchel_database.handler",
        "DatabaseOptions": "satchel_database.options",
        "create_ddl": "satchel_database.schema",
        "sessions_table": "satchel_database.schema",
        "write_migration": "satchel_database.schema",
        "StoredSession": "satchel_database.statements",
    },
)
