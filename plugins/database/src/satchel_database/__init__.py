"""satchel-database: server-side sessions in an SQL table (SQLAlchemy 2 Core).

Driver name ``database``; ``config.connection`` is an SQLAlchemy URL and
``config.table`` the table (``sessions``). See :mod:`satchel_database.handler`.
"""

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
