"""The entry point of satchel-database: registers the ``database`` driver and its commands.

Listed under ``[project.entry-points.satchel]``. It imports no SQLAlchemy: the
factories import the handlers on first use and the commands import what they
run, so an application on another driver never loads it. A missing SQLAlchemy
makes the plugin fail to load, and ``satchel drivers`` says so with the
distribution's name. The asyncio engine is imported only when an async twin is
built for an async URL; without the extra that brings it, that is an error
naming the extra.
"""

from __future__ import annotations

from satchel import hookimpl
from satchel.toolkit import CommandRegistrar, DriverRegistrar, lazy_factory, require_modules
from satchel_database import cli

require_modules("sqlalchemy", install='pip install "satchel-database"')


@hookimpl
def register_drivers(register: DriverRegistrar) -> None:
    register(
        "database",
        lazy_factory("satchel_database.handler:create_handler"),
        async_factory=lazy_factory("satchel_database.handler:create_async_handler"),
    )


@hookimpl
def register_commands(commands: CommandRegistrar) -> None:
    cli.register(commands)
