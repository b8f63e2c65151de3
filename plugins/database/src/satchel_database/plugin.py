"""The entry point of satchel-database: registers the ``database`` driver and its commands.

Listed under ``[project.entry-points.satchel]`` in the distribution's
``pyproject.toml``; a missing SQLAlchemy therefore shows up in ``satchel
drivers`` as a failed plugin of satchel-database.
"""

from __future__ import annotations

from satchel import hookimpl
from satchel.commands import CommandRegistrar
from satchel.registry import DriverRegistrar
from satchel_database import cli
from satchel_database.handler import create_async_handler, create_handler


@hookimpl
def register_drivers(register: DriverRegistrar) -> None:
    register("database", create_handler, async_factory=create_async_handler)


@hookimpl
def register_commands(commands: CommandRegistrar) -> None:
    cli.register(commands)
