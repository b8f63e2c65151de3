"""What a plugin adds ``satchel`` sub-commands with: the registrar and its helpers.

A plugin implements the ``register_commands`` hook, which receives a
:class:`CommandRegistrar`::

    @satchel.hookimpl
    def register_commands(commands: CommandRegistrar) -> None:
        prune = commands.add("acme:prune", command_prune, help="…", config=True)
        prune.add_argument("--dry-run", action="store_true")

Each command is a function of the parsed arguments returning the exit code;
:func:`config_from_args` gives it the settings (``--config PATH`` or the
``SESSION_*`` variables), and a :class:`CommandError` it raises is printed as
one line, ``satchel: error: …``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from satchel.config import SessionConfig
from satchel.errors import SatchelError

Command = Callable[[argparse.Namespace], int]
"""A command: gets the parsed arguments, returns the exit code."""

CORE = "satchel"  # the owner of core's own commands, in clash messages


class CommandError(SatchelError):
    """A command failed in a way its user can fix.

    ``satchel`` prints the message as one line on stderr (``satchel: error:
    …``) and exits with :attr:`exit_code`: 1 by default, 2 for a usage error.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        self.exit_code = exit_code
        super().__init__(message)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """Give a command the ``--config PATH`` option; read it back with :func:`config_from_args`."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="a TOML file of session settings (default: the SESSION_* environment variables)",
    )


def config_from_args(args: argparse.Namespace) -> SessionConfig:
    """The config named by ``--config``, or else the one from ``SESSION_*`` variables.

    A file that cannot be read raises :class:`CommandError`; a file that is
    not valid TOML, or a bad key, raises :class:`satchel.ConfigError`.
    """
    path = getattr(args, "config", None)
    if not path:
        return SessionConfig.from_env()
    try:
        return SessionConfig.from_toml(path)
    except OSError as exc:
        raise CommandError(f"cannot read the config file {path}: {exc.strerror or exc}") from exc


class CommandRegistrar:
    """Adds one plugin's commands to ``satchel``; handed to the ``register_commands`` hook.

    Built by the ``satchel`` command itself, one per plugin.
    """

    def __init__(
        self,
        subparsers: argparse._SubParsersAction[Any],
        owner: str,
        owners: dict[str, str],
    ) -> None:
        self._subparsers = subparsers
        self._owner = owner
        # Every command name taken so far, by whom: shared by the registrars of one parser.
        self._owners = owners

    def add(
        self,
        name: str,
        run: Command,
        *,
        help: str,
        description: str | None = None,
        config: bool = False,
    ) -> argparse.ArgumentParser:
        """Add the command ``name``, which calls ``run(args)`` and exits with what it returns.

        Args:
            name: The command's name; prefix it with your driver's (``acme:prune``)
                unless it is as general as ``migrate``.
            run: The command.
            help: One line for ``satchel --help``.
            description: The command's own ``--help`` text (default: ``help``).
            config: Give the command ``--config PATH`` (read it with :func:`config_from_args`).

        Returns:
            The command's parser, to add its own arguments to.

        Raises:
            ValueError: ``name`` is another command's, naming whose.
        """
        taken_by = self._owners.get(name)
        if taken_by is not None:
            raise ValueError(f"command {name!r} is already provided by {taken_by}")
        parser: argparse.ArgumentParser = self._subparsers.add_parser(
            name, help=help, description=description or help
        )
        self._owners[name] = self._owner
        if config:
            add_config_argument(parser)
        parser.set_defaults(func=run)
        return parser
