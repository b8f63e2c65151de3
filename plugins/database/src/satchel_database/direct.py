"""The per-request statements, run straight on a pooled DBAPI connection.

A session read or write is one statement. Through SQLAlchemy's ``Connection``
each one costs its transaction bookkeeping and result wrapping (several times
the statement itself on SQLite); here the statement is compiled once per
dialect and sent on a connection checked out of the engine's own pool, so
``pool_size``, ``pool_timeout`` (``PoolExhausted``), ``pool_recycle`` and
``pool_pre_ping`` all still apply.

Where the DBAPI switches to autocommit without a round trip (the standard
library's sqlite3, psycopg), the statement runs in autocommit: one round trip,
atomic on its own, as it was inside its own transaction. Elsewhere (PyMySQL)
a write is followed by ``COMMIT``, as before.

Errors come out as SQLAlchemy's ``DBAPIError`` (so the store's error
translation and retry checks see what they always saw), and a connection the
server dropped is invalidated. While anything listens to the engine's
statement events (tracing, the benchmarks' statement counter) the statement
goes through ``Connection`` instead, so every listener still sees it.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


class _Autocommit(Protocol):
    """Turns a DBAPI connection's autocommit on for one statement, and back.

    ``on`` returns what ``off`` restores, or ``_NOT_SWITCHED`` when it left the
    connection as it was (the statement then commits).
    """

    def on(self, connection: Any) -> object: ...
    def off(self, connection: Any, previous: object) -> None: ...


class _SqliteAutocommit:
    """sqlite3: ``isolation_level = None`` is autocommit (a local setting)."""

    def on(self, connection: Any) -> object:
        if getattr(connection, "autocommit", _LEGACY) != _LEGACY:
            return _NOT_SWITCHED  # Python 3.12's own transaction control, set by the user
        previous = connection.isolation_level
        connection.isolation_level = None
        return previous

    def off(self, connection: Any, previous: object) -> None:
        connection.isolation_level = previous


class _PsycopgAutocommit:
    """psycopg (3 and 2): the ``autocommit`` attribute, set without a round trip."""

    def on(self, connection: Any) -> object:
        previous: object = connection.autocommit
        connection.autocommit = True
        return previous

    def off(self, connection: Any, previous: object) -> None:
        connection.autocommit = previous


_LEGACY = getattr(sqlite3, "LEGACY_TRANSACTION_CONTROL", -1)
_NOT_SWITCHED = object()
_AUTOCOMMIT: dict[str, _Autocommit] = {
    "pysqlite": _SqliteAutocommit(),
    "psycopg": _PsycopgAutocommit(),
    "psycopg2": _PsycopgAutocommit(),
}


class _Rendered:
    """One statement's SQL text for a dialect, and how to pass it its parameters."""

    __slots__ = ("_pick", "sql")

    def __init__(self, sql: str, positional_names: tuple[str, ...] | None) -> None:
        self.sql = sql
        self._pick: Callable[[Mapping[str, Any]], Any] | None = None
        if positional_names is not None:
            pick = operator.itemgetter(*positional_names)
            if len(positional_names) > 1:
                self._pick = pick
            else:  # itemgetter of one name gives the value, of none a TypeError
                self._pick = lambda values: tuple(values[name] for name in positional_names)

    def parameters(self, values: Mapping[str, Any]) -> Any:
        """A tuple in the placeholders' order, or (named placeholders) ``values`` itself."""
        return values if self._pick is None else self._pick(values)


class DirectStatements:
    """Runs one statement on a pooled connection of ``engine``, outside ``Connection``."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect: Dialect = engine.dialect
        self.autocommit = _AUTOCOMMIT.get(self.dialect.driver)
        self._rendered: dict[tuple[sa.Executable, tuple[str, ...]], _Rendered | None] = {}

    def instrumented(self) -> bool:
        """True while something listens to the engine's statement events."""
        dispatch = self.engine.dispatch
        return bool(
            dispatch.before_cursor_execute
            or dispatch.after_cursor_execute
            or dispatch.before_execute
            or dispatch.after_execute
            or dispatch.commit
        )

    def scalar(self, statement: sa.Executable, values: Mapping[str, Any]) -> object:
        """The first column of the first row (``None`` when no row matches)."""
        return self._run(statement, values, (), write=False)

    def rowcount(
        self, statement: sa.Executable, values: Mapping[str, Any], columns: tuple[str, ...]
    ) -> int:
        """Run a write (``columns``: the ones it sets from ``values``); the rows it matched."""
        count = self._run(statement, values, columns, write=True)
        assert isinstance(count, int)
        return count

    def _run(
        self,
        statement: sa.Executable,
        values: Mapping[str, Any],
        columns: tuple[str, ...],
        *,
        write: bool,
    ) -> object:
        if self.instrumented():
            return self._through_connection(statement, values, write=write)
        dbapi_error = self.dialect.loaded_dbapi.Error
        try:
            pooled = self.engine.raw_connection()
        except dbapi_error as exc:
            raise self._wrapped(exc, None, invalidated=False) from exc
        try:
            rendered = self._render(statement, columns)
        except BaseException:
            pooled.close()
            raise
        if rendered is None:
            pooled.close()
            return self._through_connection(statement, values, write=write)
        dbapi_connection = pooled.dbapi_connection
        cursor: Any = None
        previous: object = _NOT_SWITCHED
        invalidated = False
        try:
            if self.autocommit is not None:
                previous = self.autocommit.on(dbapi_connection)
            cursor = pooled.cursor()
            cursor.execute(rendered.sql, rendered.parameters(values))
            if not write:
                row = cursor.fetchone()
                return None if row is None else row[0]
            count: int = cursor.rowcount
            if previous is _NOT_SWITCHED:
                pooled.commit()
            return count
        except dbapi_error as exc:
            invalidated = bool(self.dialect.is_disconnect(exc, dbapi_connection, cursor))
            if invalidated:
                pooled.invalidate(exc)
            raise self._wrapped(exc, rendered.sql, invalidated=invalidated) from exc
        finally:
            if not invalidated:
                if cursor is not None:
                    cursor.close()
                if previous is not _NOT_SWITCHED and self.autocommit is not None:
                    try:
                        self.autocommit.off(dbapi_connection, previous)
                    except dbapi_error as exc:
                        pooled.invalidate(exc)  # a connection in an unknown state is not reused
            pooled.close()

    def _through_connection(
        self, statement: sa.Executable, values: Mapping[str, Any], *, write: bool
    ) -> object:
        """The same statement through ``Connection``, seen by the engine's event listeners."""
        with self.engine.connect() as connection:
            if self.autocommit is not None:
                connection.execution_options(isolation_level="AUTOCOMMIT")  # this connection's
            result = connection.execute(statement, dict(values))
            if not write:
                return result.scalar()
            count = result.rowcount
            if self.autocommit is None:
                connection.commit()
            return count

    def _render(self, statement: sa.Executable, columns: tuple[str, ...]) -> _Rendered | None:
        """The statement's SQL for this dialect, compiled once (after the first connection,
        which tells the dialect the server's version); ``None`` when a parameter needs
        SQLAlchemy's own conversion."""
        key = (statement, columns)
        if key in self._rendered:
            return self._rendered[key]
        if not isinstance(statement, ClauseElement):
            return None
        compiled = statement.compile(dialect=self.dialect, column_keys=list(columns) or None)
        if not isinstance(compiled, SQLCompiler):
            return None
        binds = list(compiled.binds.values())
        plain = (
            not compiled.literal_execute_params
            and not compiled.post_compile_params
            and all(
                bind.type.dialect_impl(self.dialect).bind_processor(self.dialect) is None
                for bind in binds
            )
        )
        rendered: _Rendered | None = None
        if plain:
            names = tuple(compiled.positiontup or ()) if self.dialect.positional else None
            rendered = _Rendered(str(compiled), names)
        self._rendered[key] = rendered
        return rendered

    def _wrapped(self, exc: Exception, sql: str | None, *, invalidated: bool) -> DBAPIError:
        """The DBAPI error as SQLAlchemy raises it (``OperationalError``, ``IntegrityError``...)."""
        wrapped = DBAPIError.instance(
            sql,
            None,  # never the values: a session's payload is not for logs
            exc,
            self.dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=invalidated,
            dialect=self.dialect,
        )
        assert isinstance(wrapped, DBAPIError)
        return wrapped
