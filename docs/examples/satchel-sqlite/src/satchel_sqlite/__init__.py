"""satchel-sqlite: sessions in one SQLite file, an example of a third-party satchel driver.

Installed, it registers the driver ``sqlite`` through the ``satchel`` entry-point
group (:mod:`satchel_sqlite.plugin`)::

    SessionManager(SessionConfig(driver="sqlite", connection="sessions.sqlite3"))
"""

from satchel_sqlite.handler import SqliteSessionHandler
from satchel_sqlite.options import SqliteOptions

__all__ = ["SqliteOptions", "SqliteSessionHandler"]
