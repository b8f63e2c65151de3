"""The pluggy hook markers and specifications of satchel's plugin system.

A plugin is a module listed under the ``satchel`` entry-point group that
implements one or more of these hooks with ``@satchel.hookimpl``. A function
named after a hook satchel does not define, or a plugin module that implements
none of them (a forgotten ``@satchel.hookimpl``), makes the plugin fail to
load, with a message naming it and the hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from satchel.commands import CommandRegistrar
    from satchel.registry import DriverRegistrar

hookspec = pluggy.HookspecMarker("satchel")
hookimpl = pluggy.HookimplMarker("satchel")


@hookspec
def register_drivers(register: DriverRegistrar) -> None:
    """Register session drivers by name.

    Call ``register(name, factory, async_factory=None)`` once per driver, where
    ``factory(config)`` returns a :class:`satchel.SessionHandler` and the
    optional ``async_factory(config)`` returns its
    :class:`satchel.AsyncSessionHandler` twin.
    """


@hookspec
def register_commands(commands: CommandRegistrar) -> None:
    """Add sub-commands to the ``satchel`` command.

    Call ``commands.add(name, run, help=..., config=False)`` once per command
    (see :class:`satchel.commands.CommandRegistrar`): ``run(args)`` receives
    the parsed arguments and returns the exit code.
    """
