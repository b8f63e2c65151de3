"""The ``satchel`` command (also ``python -m satchel``).

Core's commands are ``drivers``, ``gc`` and ``key:generate``; plugins add theirs through the
``register_commands`` hook (the database plugin adds ``session:table``,
``migrate`` and ``sessions``). Every command that needs settings takes
``--config PATH`` (a TOML file) and otherwise reads ``SESSION_*`` variables.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from satchel.config import SessionConfig
from satchel.crypto import generate_secret
from satchel.errors import SatchelError
from satchel.manager import SessionManager
from satchel.plugins import installed_plugins


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """Give a command the ``--config PATH`` option; read it back with :func:`config_from_args`."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="a TOML file of session settings (default: the SESSION_* environment variables)",
    )


def config_from_args(args: argparse.Namespace) -> SessionConfig:
    """The config named by ``--config``, or the one from ``SESSION_*`` variables."""
    path = getattr(args, "config", None)
    return SessionConfig.from_toml(path) if path else SessionConfig.from_env()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with core's commands and every plugin's."""
    parser = argparse.ArgumentParser(prog="satchel", description="Server-side sessions for Python.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")

    drivers = subparsers.add_parser(
        "drivers", help="list the registered drivers and failed plugins"
    )
    drivers.set_defaults(func=command_drivers)

    gc = subparsers.add_parser("gc", help="remove expired sessions from the configured store")
    add_config_argument(gc)
    gc.set_defaults(func=command_gc)

    key_generate = subparsers.add_parser(
        "key:generate", help="print a fresh random secret_key (32 random bytes, URL-safe base64)"
    )
    key_generate.set_defaults(func=command_key_generate)

    add_plugin_commands(subparsers)
    return parser


def add_plugin_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Let each plugin add its commands, one at a time.

    A plugin whose command clashes with another's name (argparse refuses it)
    or whose hook raises loses its own commands only, with a line on stderr
    naming it; the ``satchel`` command and every other plugin's still work.
    """
    for impl in installed_plugins().manager.hook.register_commands.get_hookimpls():
        try:
            impl.function(subparsers=subparsers)
        except Exception as exc:
            print(
                f"satchel: the commands of plugin {impl.plugin_name!r} were not added: "
                f"{type(exc).__name__}: {exc}",
                file=sys.stderr,
            )


def command_drivers(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print every usable driver with its distribution, then conflicts and failures.

    Exits with 1 when a plugin failed to load or a name is claimed twice.
    """
    out = out or sys.stdout
    loaded = installed_plugins()
    registry = loaded.registry
    specs = [registry.drivers[name] for name in registry.names()]
    width = max((len(spec.name) for spec in specs), default=6)
    print(f"{'DRIVER':<{width}}  PROVIDED BY", file=out)
    for spec in specs:
        twin = "  (sync + async)" if spec.async_factory else ""
        print(f"{spec.name:<{width}}  {spec.provider}{twin}", file=out)
    for name in sorted(registry.conflicts):
        print(f"conflict: {name}: {registry.conflict_message(name)}", file=out)
    for failure in loaded.failures:
        print(f"failed: {failure}", file=out)
    return 1 if loaded.failures or registry.conflicts else 0


def command_gc(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Remove the sessions idle for longer than the lifetime; print how many."""
    return run_gc(SessionManager(config_from_args(args)), out or sys.stdout)


def command_key_generate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print a fresh ``secret_key``, for ``SESSION_SECRET_KEY`` or a config file."""
    print(generate_secret(), file=out or sys.stdout)
    return 0


def run_gc(manager: SessionManager, out: TextIO) -> int:
    """Collect ``manager``'s garbage, with a progress bar when ``out`` is a terminal."""
    progress = GcProgressBar(out) if out.isatty() else None
    try:
        removed = manager.collect_garbage(progress=progress)
    finally:
        if progress is not None:
            progress.finish()  # also when a batch fails, so the error starts a fresh line
    print(f"removed {removed} expired session(s) from driver {manager.config.driver!r}", file=out)
    return 0


class GcProgressBar:
    """Redraws one terminal line per batch (``\\r``), ended by :meth:`finish`.

    Only for a terminal: in a log or a pipe the carriage returns would glue
    every redraw and the final count onto one line.
    """

    WIDTH = 30

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        if total == 0:
            return  # nothing expired: no bar to draw
        if total is None:
            line = f"removed {done} so far"
        else:
            filled = int(self.WIDTH * min(done, total) / total)
            line = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total}"
        print(f"\r{line}", end="", file=self.out)
        self.out.flush()
        self.drawn = True

    def finish(self) -> None:
        """End the bar's line, so what follows starts on a line of its own."""
        if self.drawn:
            print(file=self.out)
            self.drawn = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``satchel`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args))
    except SatchelError as exc:
        print(f"satchel: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
