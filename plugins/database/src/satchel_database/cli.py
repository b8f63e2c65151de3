"""The database driver's ``satchel`` commands: ``session:table``, ``migrate`` and ``sessions``.

Registering them imports no SQLAlchemy: each command imports what it runs, so
``satchel`` stays quick for every other command.

``satchel gc`` is core's own command; it prunes this driver's table in
batches through ``count_expired``/``gc_batches``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from satchel.commands import CommandError, CommandRegistrar, config_from_args
from satchel_database.options import DIALECT_NAMES, DRIVER_NAME

if TYPE_CHECKING:
    from satchel_database.handler import DatabaseSessionHandler

ID_DIGEST_CHARS = 12
AGENT_COLUMN_CHARS = 60


def register(commands: CommandRegistrar) -> None:
    """Add the commands to the ``satchel`` command."""
    table = commands.add(
        "session:table",
        command_session_table,
        help="write an Alembic migration for the sessions table, or print its DDL with --sql",
        description=(
            "Write an Alembic migration that creates the sessions table into VERSIONS "
            "(your Alembic versions folder), or print the table's DDL with --sql DIALECT."
        ),
        config=True,
    )
    table.add_argument("versions", nargs="?", metavar="VERSIONS", help="Alembic's versions folder")
    table.add_argument(
        "--sql",
        choices=DIALECT_NAMES,
        metavar="DIALECT",
        help=f"print the DDL for one dialect instead ({', '.join(DIALECT_NAMES)})",
    )
    table.add_argument(
        "--down-revision",
        metavar="REV",
        help="the revision the migration follows (default: the folder's single head)",
    )
    table.add_argument(
        "--force",
        action="store_true",
        help="write the migration even if one in VERSIONS already creates the table",
    )

    commands.add(
        "migrate",
        command_migrate,
        help="create the sessions table and its lock table where missing (safe to run again)",
        config=True,
    )

    sessions = commands.add(
        "sessions",
        command_sessions,
        help="list a user's sessions, or end them all with --revoke",
        config=True,
    )
    sessions.add_argument("--user", required=True, metavar="ID", help="the user's id")
    sessions.add_argument("--revoke", action="store_true", help="end every session of the user")


def _handler(args: argparse.Namespace) -> DatabaseSessionHandler:
    """The handler of the config the command was given, which must be the database driver's."""
    config = config_from_args(args)
    if config.driver != DRIVER_NAME:
        # A config for another driver is a config error, as a bad key is: exit code 1.
        raise CommandError(
            f"this command needs driver {DRIVER_NAME!r}; the config's driver is {config.driver!r}"
        )
    from satchel_database.handler import DatabaseSessionHandler  # noqa: PLC0415 - when run

    return DatabaseSessionHandler.from_config(config)


def command_session_table(args: argparse.Namespace) -> int:
    """Print the DDL (``--sql``) or write the Alembic migration into the versions folder."""
    from satchel_database.schema import (  # noqa: PLC0415 - SQLAlchemy only when run
        TableAlreadyMigrated,
        create_ddl,
        locks_table,
        sessions_table,
        write_migration,
    )

    config = config_from_args(args)
    if args.sql:
        try:
            tables = (sessions_table(config.table), locks_table(config.table))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        sys.stdout.write(create_ddl(*tables, dialect_name=args.sql))
        return 0
    if not args.versions:
        raise CommandError(
            "give Alembic's versions folder, or --sql DIALECT to print the DDL", exit_code=2
        )
    try:
        path = write_migration(
            Path(args.versions), config.table, down_revision=args.down_revision, force=args.force
        )
    except TableAlreadyMigrated as exc:
        raise CommandError(
            f"{exc}; not writing a second migration for it (--force writes one anyway)"
        ) from exc
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    print(f"wrote {path}")
    print("apply it with `alembic upgrade head` (or create the table directly: `satchel migrate`)")
    return 0


def command_migrate(args: argparse.Namespace) -> int:
    """Create the sessions table and its lock table where missing; say which were made."""
    handler = _handler(args)
    try:
        created = handler.create_table()
    finally:
        handler.close()
    for table, detail in ((handler.table.name, " with its indexes"), (handler.locks.name, "")):
        print(
            f"created table {table!r}{detail}"
            if table in created
            else f"table {table!r} already exists"
        )
    return 0


def command_sessions(args: argparse.Namespace) -> int:
    """List the user's sessions, or end them all with ``--revoke``."""
    handler = _handler(args)
    try:
        if args.revoke:
            removed = handler.destroy_user_sessions(args.user)
            print(f"revoked {removed} session(s) of user {args.user!r}")
            return 0
        stored = handler.sessions_of_user(args.user)
    finally:
        handler.close()
    if not stored:
        print(f"no sessions of user {args.user!r}")
        return 0
    now = handler.clock()
    print(
        f"{'ID DIGEST':<{ID_DIGEST_CHARS + 1}}  {'IP ADDRESS':<39}  {'LAST ACTIVITY (UTC)':<19}  "
        "STATE    USER AGENT"
    )
    for session in stored:
        when = datetime.fromtimestamp(session.last_activity, timezone.utc)
        expired = session.last_activity < now - handler.lifetime_seconds
        agent = (session.user_agent or "-").replace("\n", " ")
        if len(agent) > AGENT_COLUMN_CHARS:
            agent = agent[: AGENT_COLUMN_CHARS - 1] + "…"
        print(
            f"{session.id[:ID_DIGEST_CHARS]}…  {session.ip_address or '-':<39}  "
            f"{when:%Y-%m-%d %H:%M:%S}  {'expired' if expired else 'active ':<7}  {agent}"
        )
    print(f"{len(stored)} session(s)")
    return 0
