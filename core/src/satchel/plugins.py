"""Loading plugins from the ``satchel`` entry-point group, lazily and once.

Core's own drivers are listed under the same group (``builtin =
satchel.drivers``), so they are registered exactly as a third-party plugin is.
Every plugin module is registered with one pluggy plugin manager, and its hooks
are called through that manager by :class:`PluginHooks`, one plugin at a time.

A plugin that fails to import, implements a hook satchel does not define,
implements none of satchel's hooks (its ``@satchel.hookimpl`` forgotten) or
whose hook raises is recorded as a :class:`~satchel.registry.PluginFailure`
naming its distribution and entry point; every other plugin stays usable. A
driver name claimed by two plugins is recorded as a conflict in the registry
and is usable by neither; their other drivers are unaffected.
``SATCHEL_DISABLE_PLUGINS`` (a comma separated list of entry-point names or
distribution names) turns plugins off.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from satchel import hookspecs
from satchel.errors import DuplicateDriverError, UnknownDriverError
from satchel.registry import (
    AsyncHandlerFactory,
    DriverRegistrar,
    DriverRegistry,
    DriverSpec,
    HandlerFactory,
    PluginFailure,
)

if TYPE_CHECKING:
    from satchel.commands import CommandRegistrar

ENTRY_POINT_GROUP = "satchel"
DISABLE_ENV = "SATCHEL_DISABLE_PLUGINS"

# The hooks satchel defines, by name: what a plugin module may implement.
HOOK_NAMES = tuple(
    sorted(
        name
        for name, value in vars(hookspecs).items()
        if hasattr(value, f"{hookspecs.hookspec.project_name}_spec")
    )
)

logger = logging.getLogger("satchel.plugins")


@attrs.frozen
class Plugin:
    """One entry point of the ``satchel`` group.

    Attributes:
        name: Its name in the plugin manager, ``distribution:entry point``.
        distribution: The distribution that lists it.
        version: That distribution's version, when known.
        entry_point: The entry point, as ``name = module``.
        disabled: Turned off by ``SATCHEL_DISABLE_PLUGINS`` (and so never imported).
    """

    name: str
    distribution: str
    version: str | None
    entry_point: str
    disabled: bool = False

    def failure(self, error: str, hook: str | None = None) -> PluginFailure:
        """A failure of this plugin; ``error`` is flattened onto one line."""
        one_line = "; ".join(line.strip() for line in error.splitlines() if line.strip())
        return PluginFailure(self.distribution, self.entry_point, one_line, hook)


class PluginHooks:
    """satchel's hooks, called through the plugin manager one plugin at a time.

    Each call goes through a subset of the hook holding one plugin's
    implementation, so whatever the plugin registers is credited to its
    distribution and an exception it raises is its own failure: every other
    plugin's hook still runs.
    """

    def __init__(self, manager: pluggy.PluginManager, plugins: Iterable[Plugin]) -> None:
        self.manager = manager
        self.plugins = list(plugins)

    def register_drivers(
        self, registrar_for: Callable[[Plugin], DriverRegistrar]
    ) -> list[PluginFailure]:
        """Call every plugin's ``register_drivers`` with its own registrar; the failures."""
        return self._call_each(
            "register_drivers", lambda plugin: {"register": registrar_for(plugin)}
        )

    def register_commands(
        self, registrar_for: Callable[[Plugin], CommandRegistrar]
    ) -> list[PluginFailure]:
        """Call every plugin's ``register_commands`` with its own registrar; the failures."""
        return self._call_each(
            "register_commands", lambda plugin: {"commands": registrar_for(plugin)}
        )

    def _call_each(
        self, hook: str, arguments_for: Callable[[Plugin], dict[str, Any]]
    ) -> list[PluginFailure]:
        failures: list[PluginFailure] = []
        caller: pluggy.HookCaller = getattr(self.manager.hook, hook)
        implementers = {impl.plugin_name for impl in caller.get_hookimpls()}
        for plugin in self.plugins:
            if plugin.name not in implementers:
                continue
            others = [
                other
                for name, other in self.manager.list_name_plugin()
                if name != plugin.name and other is not None
            ]
            try:
                self.manager.subset_hook_caller(hook, remove_plugins=others)(
                    **arguments_for(plugin)
                )
            except Exception as exc:
                failures.append(plugin.failure(f"{type(exc).__name__}: {exc}", hook))
        return failures


@attrs.define
class LoadedPlugins:
    """The outcome of loading every plugin.

    Attributes:
        manager: The pluggy plugin manager, with every loaded plugin registered.
        registry: The drivers the plugins registered.
        failures: The plugins that failed to load or to register their drivers.
        plugins: Every entry point of the group, loaded, failed or disabled, in order.
    """

    manager: pluggy.PluginManager
    registry: DriverRegistry
    failures: list[PluginFailure]
    plugins: list[Plugin] = attrs.field(factory=list)

    @property
    def hooks(self) -> PluginHooks:
        """The hooks of the plugins that loaded, to call one plugin at a time."""
        return PluginHooks(
            self.manager,
            [plugin for plugin in self.plugins if self.manager.has_plugin(plugin.name)],
        )

    def driver_spec(self, name: str) -> DriverSpec:
        """The driver registered under ``name``.

        Raises:
            UnknownDriverError: No plugin registered it; the message lists the
                usable drivers and the plugins that failed, which may have been
                the one to provide it.
            DuplicateDriverError: Two plugins claim the name.
        """
        try:
            return self.registry.get(name)
        except UnknownDriverError as exc:
            if not self.failures:
                raise
            raise UnknownDriverError(name, exc.available, self.failures) from None


def disabled_plugins() -> set[str]:
    """The entry-point or distribution names listed in ``SATCHEL_DISABLE_PLUGINS``."""
    raw = os.environ.get(DISABLE_ENV, "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def normalise_distribution(name: str) -> str:
    """A distribution's name as PEP 503 compares it (``Acme_Dup`` is ``acme-dup``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _plugin_of(entry_point: importlib.metadata.EntryPoint, disabled: set[str]) -> Plugin:
    """The plugin of ``entry_point``; ``disabled`` holds entry-point and normalised distribution names."""
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        distribution, version = "<unknown distribution>", None
    else:
        distribution, version = str(dist.metadata["Name"]), str(dist.version)
    return Plugin(
        name=f"{distribution}:{entry_point.name}",
        distribution=distribution,
        version=version,
        entry_point=f"{entry_point.name} = {entry_point.value}",
        disabled=(entry_point.name in disabled or normalise_distribution(distribution) in disabled),
    )


def load_plugins(
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> LoadedPlugins:
    """Import every plugin of the group, register its hooks and collect its drivers.

    ``entry_points`` replaces the installed ones (the tests hand in fakes).
    Nothing is logged: :func:`installed_plugins` reports what went wrong.
    """
    manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
    manager.add_hookspecs(hookspecs)
    registry = DriverRegistry()
    failures: list[PluginFailure] = []
    plugins: list[Plugin] = []
    disabled = disabled_plugins()
    disabled |= {normalise_distribution(name) for name in disabled}
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for entry_point in entry_points:
        plugin = _plugin_of(entry_point, disabled)
        plugins.append(plugin)
        if plugin.disabled:
            continue
        try:
            module = entry_point.load()
            if manager.is_registered(module):
                continue  # the same module listed twice
            manager.register(module, name=plugin.name)
        except Exception as exc:
            failures.append(plugin.failure(f"{type(exc).__name__}: {exc}"))
            continue
        problem = _hook_problem(manager, module)
        if problem is not None:
            manager.unregister(module)
            failures.append(plugin.failure(problem))
    loaded = LoadedPlugins(manager, registry, failures, plugins)
    failures.extend(loaded.hooks.register_drivers(lambda plugin: _registrar(registry, plugin)))
    return loaded


def _hook_problem(manager: pluggy.PluginManager, module: object) -> str | None:
    """Why the just registered ``module`` is no working plugin, or ``None`` when it is one.

    A misspelt hook name and a forgotten ``@satchel.hookimpl`` would otherwise
    both be silent: the driver would just be unknown.
    """
    try:
        manager.check_pending()
    except pluggy.PluginValidationError:
        unknown = sorted(
            caller.name
            for caller in manager.get_hookcallers(module) or []
            if not caller.has_spec()
            and any(
                impl.plugin is module and not impl.optionalhook for impl in caller.get_hookimpls()
            )
        )
        return (
            "; ".join(
                f"it implements hook {name!r}, which satchel does not define{_did_you_mean(name)}"
                for name in unknown
            )
            + f" (satchel's hooks: {', '.join(HOOK_NAMES)})"
        )
    implemented = {caller.name for caller in manager.get_hookcallers(module) or []}
    unmarked = [
        name
        for name in HOOK_NAMES
        if name not in implemented and callable(getattr(module, name, None))
    ]
    if unmarked:
        return "; ".join(
            f"its function {name!r} is not marked with @satchel.hookimpl" for name in unmarked
        )
    if not implemented:
        lookalikes = [
            f"{name!r}{_did_you_mean(name)}"
            for name, value in sorted(getattr(module, "__dict__", {}).items())
            if inspect.isfunction(value) and _did_you_mean(name)
        ]
        hint = f"; its function {', '.join(lookalikes)}" if lookalikes else ""
        return (
            f"it implements none of satchel's hooks ({', '.join(HOOK_NAMES)}): "
            f"each must be a function of that name marked with @satchel.hookimpl{hint}"
        )
    return None


def _did_you_mean(name: str) -> str:
    import difflib  # noqa: PLC0415 - needed only for a plugin with a mistake, not at start-up

    close = difflib.get_close_matches(name, HOOK_NAMES, n=1)
    return f" (did you mean {close[0]!r}?)" if close and close[0] != name else ""


def _registrar(registry: DriverRegistry, plugin: Plugin) -> DriverRegistrar:
    """The ``register`` callable for ``plugin``: credits each driver to its distribution."""

    def register(
        name: str, factory: HandlerFactory, async_factory: AsyncHandlerFactory | None = None
    ) -> None:
        # Raising into the plugin would skip its other registrations; the
        # registry keeps the conflict, so the name itself stays unusable.
        with contextlib.suppress(DuplicateDriverError):
            registry.add(
                DriverSpec(name, factory, async_factory, plugin.distribution, plugin.version)
            )

    return register


_lock = threading.Lock()
_installed: LoadedPlugins | None = None


def installed_plugins(*, log_problems: bool = True) -> LoadedPlugins:
    """The installed plugins, loaded on first call and kept for the process.

    The first call logs each failed plugin and each driver name claimed twice,
    once, as a warning on the ``satchel.plugins`` logger, unless
    ``log_problems`` is false (the ``satchel`` command reports them itself).
    """
    global _installed  # noqa: PLW0603 - one load per process, shared by every manager
    with _lock:
        if _installed is None:
            _installed = load_plugins()
            if log_problems:
                for failure in _installed.failures:
                    logger.warning("%s", failure)
                for name in sorted(_installed.registry.conflicts):
                    logger.warning("%s", _installed.registry.conflict_message(name))
        return _installed


def reset_plugins() -> None:
    """Forget the loaded plugins so the next call loads them again (for tests)."""
    global _installed  # noqa: PLW0603
    with _lock:
        _installed = None
