"""Loading plugins from the ``satchel`` entry-point group, lazily and once.

Core's own drivers are listed under the same group (``builtin =
satchel.drivers``), so they are registered exactly as a third-party plugin is.
A plugin that fails to import is recorded with its distribution and entry
point; every other driver stays usable. A driver name claimed by two plugins is
recorded as a conflict in the registry and is usable by neither; their other
drivers are unaffected. ``SATCHEL_DISABLE_PLUGINS`` (a comma
separated list of entry-point names or distribution names) turns plugins off.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import re
import threading
from collections.abc import Iterable

import attrs
import pluggy

from satchel import hookspecs
from satchel.errors import DuplicateDriverError
from satchel.registry import (
    AsyncHandlerFactory,
    DriverRegistry,
    DriverSpec,
    HandlerFactory,
    PluginFailure,
)

ENTRY_POINT_GROUP = "satchel"
DISABLE_ENV = "SATCHEL_DISABLE_PLUGINS"

logger = logging.getLogger("satchel.plugins")


@attrs.define
class LoadedPlugins:
    """The outcome of loading every plugin.

    Attributes:
        manager: The pluggy plugin manager, with every loaded plugin registered.
        registry: The drivers the plugins registered.
        failures: The plugins that failed to load or to register.
    """

    manager: pluggy.PluginManager
    registry: DriverRegistry
    failures: list[PluginFailure]


def disabled_plugins() -> set[str]:
    """The entry-point or distribution names listed in ``SATCHEL_DISABLE_PLUGINS``."""
    raw = os.environ.get(DISABLE_ENV, "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def _normalise_distribution(name: str) -> str:
    # PEP 503: "acme_dup", "Acme.Dup" and "acme-dup" are one distribution.
    return re.sub(r"[-_.]+", "-", name).lower()


def _distribution_of(entry_point: importlib.metadata.EntryPoint) -> tuple[str, str | None]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return "<unknown distribution>", None
    return str(dist.metadata["Name"]), str(dist.version)


def load_plugins(
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> LoadedPlugins:
    """Import every plugin of the group, register its hooks and collect its drivers.

    ``entry_points`` replaces the installed ones (the tests hand in fakes).
    """
    manager = pluggy.PluginManager("satchel")
    manager.add_hookspecs(hookspecs)
    registry = DriverRegistry()
    failures: list[PluginFailure] = []
    disabled = disabled_plugins()
    disabled_distributions = {_normalise_distribution(name) for name in disabled}
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    sources: dict[str, tuple[str, str | None, str]] = {}
    for entry_point in entry_points:
        distribution, version = _distribution_of(entry_point)
        if (
            entry_point.name in disabled
            or _normalise_distribution(distribution) in disabled_distributions
        ):
            continue
        label = f"{entry_point.name} = {entry_point.value}"
        try:
            module = entry_point.load()
            if manager.is_registered(module):
                continue
            plugin_name = f"{distribution}:{entry_point.name}"
            manager.register(module, name=plugin_name)
        except Exception as exc:
            _record(failures, PluginFailure(distribution, label, f"{type(exc).__name__}: {exc}"))
            continue
        sources[plugin_name] = (distribution, version, label)
    collect_drivers(manager, registry, failures, sources)
    return LoadedPlugins(manager, registry, failures)


def collect_drivers(
    manager: pluggy.PluginManager,
    registry: DriverRegistry,
    failures: list[PluginFailure],
    sources: dict[str, tuple[str, str | None, str]],
) -> None:
    """Call each plugin's ``register_drivers`` hook, crediting the drivers to its distribution."""
    # One hook implementation at a time, so every driver is credited to the
    # distribution that registered it and one broken plugin spoils nothing else.
    for impl in manager.hook.register_drivers.get_hookimpls():
        distribution, version, label = sources.get(
            impl.plugin_name, (impl.plugin_name, None, impl.plugin_name)
        )

        def register(
            name: str,
            factory: HandlerFactory,
            async_factory: AsyncHandlerFactory | None = None,
            *,
            _distribution: str = distribution,
            _version: str | None = version,
        ) -> None:
            try:
                registry.add(DriverSpec(name, factory, async_factory, _distribution, _version))
            except DuplicateDriverError as exc:
                # Raising into the plugin would skip its other registrations; the
                # registry keeps the conflict, so the name itself stays unusable.
                logger.warning("%s", exc)

        try:
            impl.function(register=register)
        except Exception as exc:
            _record(failures, PluginFailure(distribution, label, f"{type(exc).__name__}: {exc}"))


def _record(failures: list[PluginFailure], failure: PluginFailure) -> None:
    logger.warning("%s", failure)
    failures.append(failure)


_lock = threading.Lock()


@functools.cache
def _installed() -> LoadedPlugins:
    return load_plugins()


def installed_plugins() -> LoadedPlugins:
    """The installed plugins, loaded on first call and kept for the process."""
    with _lock:
        return _installed()


def reset_plugins() -> None:
    """Forget the loaded plugins so the next call loads them again (for tests)."""
    with _lock:
        _installed.cache_clear()
