"""The pluggy hook markers and specifications of satchel's plugin system.

A plugin is a module listed under the ``satchel`` entry-point group that
implements one or more of these hooks with ``@satchel.hookimpl``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse

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
def register_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add sub-commands to the ``satchel`` command.

    Each command's parser must set ``func`` with ``set_defaults(func=...)``;
    the function receives the parsed namespace and returns an exit code.
    """
