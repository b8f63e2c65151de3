"""The ``satchel`` command (also ``python -m satchel``).

Core's commands are ``drivers``, ``gc`` and ``key:generate``; plugins add theirs through the
``register_commands`` hook (the database plugin adds ``session:table``,
``migrate`` and ``sessions``). Every command that needs settings takes
``--config PATH`` (a TOML file) and otherwise reads ``SESSION_*`` variables.

Plugin failures are the business of ``satchel drivers``, which lists them;
another command mentions one only when it matters to it: a command or a
driver that is unknown may have been the failed plugin's.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

from satchel.commands import (
    CORE,
    CommandError,
    CommandRegistrar,
    add_config_argument,
    config_from_args,
)
from satchel.crypto import generate_secret
from satchel.errors import SatchelError
from satchel.manager import SessionManager
from satchel.plugins import LoadedPlugins, Plugin, installed_plugins, normalise_distribution
from satchel.registry import PluginFailure


class SatchelArgumentParser(argparse.ArgumentParser):
    """Names the failed plugins when the command asked for is unknown: it may be theirs."""

    plugin_failures: Sequence[PluginFailure] = ()

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        notes = ""
        if message.startswith("argument COMMAND: invalid choice"):
            notes = "".join(
                f"{self.prog}: a plugin that failed may provide it: {failure}\n"
                for failure in self.plugin_failures
            )
        self.exit(2, f"{self.prog}: error: {message}\n{notes}")


class VersionAction(argparse.Action):
    """``--version``: prints the text it was given, line breaks kept, and exits."""

    def __init__(self, option_strings: list[str], version: str, **kwargs: Any) -> None:
        super().__init__(option_strings, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.version = version

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        sys.stdout.write(self.version)
        parser.exit()


def version_text(loaded: LoadedPlugins, failures: Sequence[PluginFailure]) -> str:
    """Core's version, then each plugin distribution's (and whether it failed or is disabled)."""
    lines = [f"satchel {importlib.metadata.version('satchel')}"]
    failed = {normalise_distribution(failure.distribution) for failure in failures}
    listed: dict[str, Plugin] = {}
    for plugin in loaded.plugins:
        listed.setdefault(normalise_distribution(plugin.distribution), plugin)
    listed.pop(normalise_distribution(CORE), None)
    for key, plugin in sorted(listed.items()):
        state = ""
        if plugin.disabled:
            state = "  (disabled by SATCHEL_DISABLE_PLUGINS)"
        elif key in failed:
            state = "  (failed: see `satchel drivers`)"
        lines.append(f"{plugin.distribution} {plugin.version or '(version unknown)'}{state}")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with core's commands and every plugin's."""
    parser = SatchelArgumentParser(prog="satchel", description="Server-side sessions for Python.")
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

    loaded = installed_plugins(log_problems=False)
    failures = [*loaded.failures, *add_plugin_commands(loaded, subparsers)]
    parser.plugin_failures = failures
    parser.set_defaults(plugin_failures=failures)
    parser.add_argument(
        "--version",
        action=VersionAction,
        version=version_text(loaded, failures),
        help="show the versions of satchel and of every plugin, and exit",
    )
    return parser


def add_plugin_commands(
    loaded: LoadedPlugins, subparsers: argparse._SubParsersAction[Any]
) -> list[PluginFailure]:
    """Let each plugin add its commands, one at a time; the plugins that failed.

    A plugin whose command clashes with another's name or whose hook raises
    loses what it had not yet added, and is listed by ``satchel drivers``;
    the ``satchel`` command and every other plugin's commands still work.
    """
    owners = dict.fromkeys(subparsers.choices, CORE)
    return loaded.hooks.register_commands(
        lambda plugin: CommandRegistrar(subparsers, plugin.distribution, owners)
    )


def command_drivers(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print every usable driver with its distribution, then conflicts and failures.

    Exits with 1 when a plugin failed to load or a name is claimed twice.
    """
    out = out or sys.stdout
    loaded = installed_plugins()
    failures: Sequence[PluginFailure] = getattr(args, "plugin_failures", loaded.failures)
    registry = loaded.registry
    specs = [registry.drivers[name] for name in registry.names()]
    width = max((len(spec.name) for spec in specs), default=6)
    print(f"{'DRIVER':<{width}}  PROVIDED BY", file=out)
    for spec in specs:
        twin = "  (sync + async)" if spec.async_factory else ""
        print(f"{spec.name:<{width}}  {spec.provider}{twin}", file=out)
    for name in sorted(registry.conflicts):
        print(f"conflict: {name}: {registry.conflict_message(name)}", file=out)
    for failure in failures:
        print(f"failed: {failure}", file=out)
    return 1 if failures or registry.conflicts else 0


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
        return exc.exit_code if isinstance(exc, CommandError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
