"""The database driver's own settings, read from ``SessionConfig.options``."""

from __future__ import annotations

import attrs

from satchel import ConfigError, SessionConfig

DRIVER_NAME = "database"
# The SQL dialects `satchel session:table --sql` prints DDL for.
DIALECT_NAMES = ("mariadb", "mysql", "postgresql", "sqlite")
# The extra of this distribution that installs each asyncio driver (with SQLAlchemy's asyncio support).
ASYNC_EXTRAS = {
    "asyncpg": "asyncpg",
    "psycopg_async": "psycopg-async",
    "aiosqlite": "aiosqlite",
    "aiomysql": "aiomysql",
}
# MySQL's TEXT holds 65,535 bytes: 16,383 characters of four bytes (utf8mb4).
USER_AGENT_MAX_LENGTH = 16383


@attrs.frozen(kw_only=True)
class DatabaseOptions:
    """Settings of the ``database`` driver (``SessionConfig.options``).

    Attributes:
        user_key: The session value whose content goes into the ``user_id``
            column, so ``satchel sessions --user ID`` can find a user's sessions.
        user_agent_max_length: ``User-Agent`` headers are cut to this many
            characters before they are stored (control characters dropped, at most
            16,383, what MySQL's ``TEXT`` holds in four-byte characters).
        gc_batch_size: Rows deleted per statement by ``gc``; each batch is its
            own short transaction, so pruning never holds a long lock.
        connect_timeout: Seconds to wait for a new connection before the
            store counts as down.
        read_timeout: Seconds PyMySQL (MySQL/MariaDB) waits for one answer of
            the server, its greeting on a new connection included, before the
            store counts as down; ``None`` waits as long as it takes. PyMySQL's
            connect timeout covers only the TCP connect, so without this a
            server that accepts connections but never answers hangs every
            request. (libpq's and asyncpg's connect timeouts cover the whole
            connection; PostgreSQL drivers take no read timeout.)
        pool_size: Connections kept open per process (SQLAlchemy's default when unset).
        max_overflow: Extra connections allowed above ``pool_size`` under load.
        pool_timeout: Seconds a request waits for a free pooled connection when all
            ``pool_size + max_overflow`` are in use; past that it fails with
            ``PoolExhausted``, which the web glue answers with 503 and ``Retry-After``.
        pool_recycle: Seconds after which a pooled connection is replaced
            (servers close idle connections; MySQL after 8 hours by default).
        pool_pre_ping: Check a pooled connection before use, so a restarted
            server costs one reconnect rather than one failed request. With
            psycopg the check looks at the connection's socket and pings only
            when that shows the server closed (or wrote to) it, or after the
            connection sat idle; SQLite, a file, needs no check.
        write_retries: Extra attempts of a write the server aborted as a
            deadlock or serialisation failure (concurrent first writes of one id).
    """

    user_key: str = "user_id"
    user_agent_max_length: int = 500
    gc_batch_size: int = 5000
    connect_timeout: float = 10.0
    read_timeout: float | None = 30.0
    pool_size: int | None = None
    max_overflow: int | None = None
    pool_timeout: float = 10.0
    pool_recycle: int | None = 3600
    pool_pre_ping: bool = True
    write_retries: int = 3

    @classmethod
    def from_config(cls, config: SessionConfig) -> DatabaseOptions:
        """The options of ``config``; an unknown or bad one is a ``ConfigError`` naming it."""
        options = config.structure_options(cls, driver=DRIVER_NAME)
        options.check()
        return options

    def check(self) -> None:
        """Refuse values out of range, naming the option (cattrs only checks the types)."""
        for name in ("user_agent_max_length", "gc_batch_size", "connect_timeout"):
            _require(name, getattr(self, name), minimum=0, inclusive=False)
        if self.user_agent_max_length > USER_AGENT_MAX_LENGTH:
            raise ConfigError(
                "options.user_agent_max_length",
                f"must be at most {USER_AGENT_MAX_LENGTH} (what MySQL's TEXT column holds), "
                f"got {self.user_agent_max_length!r}",
            )
        for name in ("read_timeout", "pool_size", "pool_timeout", "pool_recycle"):
            _require(name, getattr(self, name), minimum=0, inclusive=False)
        for name in ("max_overflow", "write_retries"):
            _require(name, getattr(self, name), minimum=0, inclusive=True)


def _require(name: str, value: float | None, *, minimum: float, inclusive: bool) -> None:
    if value is None or value > minimum or (inclusive and value == minimum):
        return
    bound = "not be negative" if inclusive else f"be greater than {minimum:g}"
    raise ConfigError(f"options.{name}", f"must {bound}, got {value!r}")
