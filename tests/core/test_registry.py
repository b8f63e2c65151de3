"""The driver registry and plugin loading, with fake entry points."""

from __future__ import annotations

import importlib.metadata
import types
import warnings
from collections.abc import Callable
from typing import Any, cast

import attrs
import pytest

from satchel import (
    AsyncSessionHandler,
    DuplicateDriverError,
    SessionConfig,
    SessionHandler,
    SessionManager,
    ThreadedAsyncHandler,
    UnknownDriverError,
    hookimpl,
)
from satchel.drivers import ArraySessionHandler, CookieSessionHandler
from satchel.plugins import installed_plugins, load_plugins
from satchel.registry import DriverRegistrar


@attrs.frozen
class FakeDistribution:
    name: str
    version: str

    @property
    def metadata(self) -> dict[str, str]:
        return {"Name": self.name}


@attrs.frozen
class FakeEntryPoint:
    """Stands in for ``importlib.metadata.EntryPoint``: name, value, dist and load()."""

    name: str
    value: str
    dist: FakeDistribution
    loader: Callable[[], Any]

    def load(self) -> Any:
        return self.loader()


def plugin_module(name: str, *drivers: str) -> types.ModuleType:
    module = types.ModuleType(name)

    @hookimpl
    def register_drivers(register: DriverRegistrar) -> None:
        for driver in drivers:
            register(driver, ArraySessionHandler.from_config)

    module.register_drivers = register_drivers  # type: ignore[attr-defined]
    return module


def entry_point(dist: str, name: str, module: types.ModuleType | Exception) -> FakeEntryPoint:
    def loader() -> Any:
        if isinstance(module, Exception):
            raise module
        return module

    return FakeEntryPoint(
        name, f"{dist.replace('-', '_')}.plugin", FakeDistribution(dist, "1.2.3"), loader
    )


def load(*points: FakeEntryPoint) -> Any:
    return load_plugins(cast("list[importlib.metadata.EntryPoint]", list(points)))


def test_installed_builtins_are_registered_through_the_entry_point() -> None:
    registry = installed_plugins().registry
    for name in ("file", "cookie", "array", "null"):
        assert registry.get(name).distribution == "satchel"


def test_drivers_are_credited_to_their_distribution() -> None:
    loaded = load(entry_point("satchel-mongo", "mongo", plugin_module("m", "mongo")))
    spec = loaded.registry.get("mongo")
    assert (spec.distribution, spec.version) == ("satchel-mongo", "1.2.3")
    assert loaded.failures == []


def test_duplicate_names_are_refused_naming_both_distributions() -> None:
    loaded = load(
        entry_point("satchel-redis", "redis", plugin_module("a", "redis")),
        entry_point("acme-redis", "redis", plugin_module("b", "redis")),
    )
    # A conflict is not a load failure: neither plugin is broken, the name is.
    assert loaded.failures == []
    assert list(loaded.registry.conflicts) == ["redis"]
    with pytest.raises(DuplicateDriverError, match=r"satchel-redis 1\.2\.3.*acme-redis 1\.2\.3"):
        loaded.registry.get("redis")


def test_a_duplicate_name_leaves_every_other_driver_of_both_plugins_usable() -> None:
    loaded = load(
        entry_point("satchel", "builtin", plugin_module("core", "file", "array", "cookie", "null")),
        entry_point("acme-dup", "dup", plugin_module("dup", "file", "acme")),
    )
    registry = loaded.registry
    assert registry.names() == ["acme", "array", "cookie", "null"]
    for name in ("array", "cookie", "null"):
        assert registry.get(name).distribution == "satchel"
    assert registry.get("acme").distribution == "acme-dup"
    with pytest.raises(DuplicateDriverError) as info:
        registry.get("file")
    assert "'file'" in str(info.value)
    assert "satchel 1.2.3" in str(info.value)
    assert "acme-dup 1.2.3" in str(info.value)
    assert loaded.failures == []
    # The other names of both plugins still build handlers through the manager.
    manager = SessionManager(SessionConfig(driver="array"), plugins=loaded)
    session = manager.start(None)
    session.put("a", 1)
    session.save()
    assert manager.start(session.id).get("a") == 1
    with pytest.raises(DuplicateDriverError, match="acme-dup"):
        SessionManager(SessionConfig(driver="file"), plugins=loaded).handler()


def test_the_duplicating_plugin_loaded_first_spoils_nothing_either() -> None:
    loaded = load(
        entry_point("acme-dup", "dup", plugin_module("dup", "file", "acme")),
        entry_point("satchel", "builtin", plugin_module("core", "file", "array", "null")),
    )
    assert loaded.registry.names() == ["acme", "array", "null"]
    assert list(loaded.registry.conflicts) == ["file"]
    assert loaded.failures == []


def test_a_name_claimed_three_times_names_all_three() -> None:
    loaded = load(
        entry_point("one", "one", plugin_module("one", "x")),
        entry_point("two", "two", plugin_module("two", "x")),
        entry_point("three", "three", plugin_module("three", "x", "y")),
    )
    with pytest.raises(
        DuplicateDriverError, match=r"3 times: by one 1\.2\.3, by two 1\.2\.3 and by three"
    ):
        loaded.registry.get("x")
    assert loaded.registry.get("y").distribution == "three"


def test_an_unknown_name_lists_only_the_usable_drivers() -> None:
    loaded = load(
        entry_point("a", "a", plugin_module("a", "dup", "alpha")),
        entry_point("b", "b", plugin_module("b", "dup")),
    )
    with pytest.raises(UnknownDriverError, match=r"available drivers: alpha$"):
        loaded.registry.get("gamma")


def test_a_plugin_that_fails_to_import_is_reported_and_others_still_work() -> None:
    loaded = load(
        entry_point("broken-driver", "broken", ImportError("No module named 'missing_client'")),
        entry_point("satchel-good", "good", plugin_module("g", "good")),
    )
    (failure,) = loaded.failures
    assert failure.distribution == "broken-driver"
    assert "broken = broken_driver.plugin" in failure.entry_point
    assert "missing_client" in failure.error
    assert "broken-driver" in str(failure)
    assert loaded.registry.get("good").distribution == "satchel-good"


def test_a_plugin_whose_hook_raises_is_reported() -> None:
    module = types.ModuleType("raising")

    @hookimpl
    def register_drivers(register: DriverRegistrar) -> None:
        raise RuntimeError("client library too old")

    module.register_drivers = register_drivers  # type: ignore[attr-defined]
    loaded = load(entry_point("satchel-old", "old", module))
    assert "client library too old" in loaded.failures[0].error


def test_unknown_driver_names_the_driver_and_lists_the_available_ones() -> None:
    loaded = load(entry_point("satchel-x", "x", plugin_module("x", "alpha", "beta")))
    with pytest.raises(UnknownDriverError) as info:
        loaded.registry.get("gamma")
    assert "'gamma'" in str(info.value)
    assert "alpha, beta" in str(info.value)


def test_disabled_distributions_match_however_the_name_is_spelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SATCHEL_DISABLE_PLUGINS", "Acme_Redis")
    loaded = load(
        entry_point("satchel-redis", "redis", plugin_module("a", "redis")),
        entry_point("acme-redis", "acme", plugin_module("b", "redis")),
    )
    assert loaded.registry.conflicts == {}
    assert loaded.registry.get("redis").distribution == "satchel-redis"


def test_disabled_plugins_are_not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SATCHEL_DISABLE_PLUGINS", "acme-redis, other")
    loaded = load(
        entry_point("satchel-redis", "redis", plugin_module("a", "redis")),
        entry_point("acme-redis", "redis", plugin_module("b", "redis")),
    )
    assert loaded.failures == []
    assert loaded.registry.get("redis").distribution == "satchel-redis"


def test_manager_resolves_by_name_lazily_so_extend_may_come_after_the_config() -> None:
    manager = SessionManager(SessionConfig(driver="mongo"))
    created: list[SessionConfig] = []

    def factory(config: SessionConfig) -> SessionHandler:
        created.append(config)
        return ArraySessionHandler.from_config(config)

    manager.extend("mongo", factory)
    assert created == []  # nothing is built before first use
    session = manager.start(None)
    session.put("a", 1)
    session.save()
    assert len(created) == 1
    assert manager.start(session.id).get("a") == 1
    assert len(created) == 1  # built once, then reused


def test_manager_with_an_unknown_driver_fails_on_first_use() -> None:
    manager = SessionManager(SessionConfig(driver="nope"))
    with pytest.raises(UnknownDriverError, match=r"'nope'.*array"):
        manager.start(None).put("a", 1)


def test_extend_wins_over_a_plugin_of_the_same_name() -> None:
    manager = SessionManager(SessionConfig(driver="array"))

    class Marked(ArraySessionHandler):
        pass

    manager.extend("array", Marked.from_config)
    assert isinstance(manager.handler(), Marked)


def test_extend_replacing_the_configured_driver_replaces_where_its_sessions_live() -> None:
    manager = SessionManager(
        SessionConfig(driver="custom", secret_key="a-registry-test-secret-0123456789abcdef")
    )
    manager.extend("custom", CookieSessionHandler.from_config)
    session = manager.start(None)
    session.put("a", 1)
    session.save()
    assert manager.stores_in_cookie
    assert session.cookie_value() != session.id  # the sealed payload

    manager.extend("custom", ArraySessionHandler.from_config)
    assert not manager.stores_in_cookie
    session = manager.start(None)
    session.put("a", 1)
    session.save()
    assert session.cookie_value() == session.id


def test_hooks_are_called_through_the_plugin_manager_one_plugin_at_a_time() -> None:
    loaded = load(
        entry_point("one", "one", plugin_module("one", "alpha")),
        entry_point("two", "two", plugin_module("two", "beta")),
    )
    calls: list[tuple[str, list[str]]] = []

    def before(hook: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        calls.append((hook, [impl.plugin_name for impl in impls]))

    undo = loaded.manager.add_hookcall_monitoring(before, lambda *args: None)
    try:
        registered: dict[str, list[str]] = {}

        def registrar_for(plugin: Any) -> DriverRegistrar:
            def register(name: str, factory: Any, async_factory: Any = None) -> None:
                registered.setdefault(plugin.distribution, []).append(name)

            return register

        assert loaded.hooks.register_drivers(registrar_for) == []
    finally:
        undo()
    assert calls == [("register_drivers", ["one:one"]), ("register_drivers", ["two:two"])]
    assert registered == {"one": ["alpha"], "two": ["beta"]}


def module_with(name: str, **functions: Callable[..., None]) -> types.ModuleType:
    module = types.ModuleType(name)
    for attribute, function in functions.items():
        setattr(module, attribute, function)
    return module


def test_a_misspelt_hook_fails_to_load_naming_plugin_and_hook_and_others_still_work() -> None:
    @hookimpl
    def register_driver(register: DriverRegistrar) -> None:
        register("acme", ArraySessionHandler.from_config)

    loaded = load(
        entry_point("acme-typo", "typo", module_with("typo", register_driver=register_driver)),
        entry_point("satchel-good", "good", plugin_module("g", "good")),
    )
    (failure,) = loaded.failures
    assert (failure.distribution, failure.hook) == ("acme-typo", None)
    assert "hook 'register_driver', which satchel does not define" in failure.error
    assert "did you mean 'register_drivers'?" in failure.error
    assert loaded.registry.names() == ["good"]
    # Unregistered whole: nothing of it is left pending in the manager.
    loaded.manager.check_pending()
    assert not loaded.manager.has_plugin("acme-typo:typo")


def test_a_plugin_without_any_marked_hook_fails_to_load() -> None:
    def register_drivers(register: DriverRegistrar) -> None:
        register("acme", ArraySessionHandler.from_config)

    loaded = load(entry_point("acme", "acme", module_with("m", register_drivers=register_drivers)))
    (failure,) = loaded.failures
    assert failure.error == "its function 'register_drivers' is not marked with @satchel.hookimpl"
    assert loaded.registry.names() == []


def test_an_optional_hook_of_another_project_is_no_failure() -> None:
    @hookimpl(optionalhook=True)
    def some_other_hook() -> None:
        pass

    module = plugin_module("m", "acme")
    module.some_other_hook = some_other_hook  # type: ignore[attr-defined]
    loaded = load(entry_point("acme", "acme", module))
    assert loaded.failures == []
    assert loaded.registry.names() == ["acme"]


def test_unknown_driver_names_the_plugins_that_failed() -> None:
    loaded = load(
        entry_point("satchel-redis", "redis", ImportError("No module named 'redis'")),
        entry_point("satchel-x", "x", plugin_module("x", "alpha")),
    )
    manager = SessionManager(SessionConfig(driver="redis"), plugins=loaded)
    with pytest.raises(UnknownDriverError) as info:
        manager.start(None)
    assert str(info.value) == (
        "unknown session driver 'redis'; available drivers: alpha; it may belong to a plugin "
        "that failed: plugin 'redis = satchel_redis.plugin' of distribution 'satchel-redis' "
        "failed to load: ImportError: No module named 'redis'"
    )
    assert [failure.distribution for failure in info.value.failed_plugins] == ["satchel-redis"]


class NotAHandler:
    """Has nothing of the driver contract."""


def test_extend_with_a_factory_returning_no_handler_is_a_type_error_naming_the_driver() -> None:
    manager = SessionManager(SessionConfig(driver="acme"))
    manager.extend("acme", lambda config: NotAHandler())  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError) as info:
        manager.start(None)
    assert str(info.value) == (
        "session driver 'acme' (registered with SessionManager.extend): its factory returned "
        "NotAHandler, not a satchel.SessionHandler"
    )


def test_an_async_factory_returning_a_sync_handler_is_a_type_error_naming_the_driver() -> None:
    manager = SessionManager(SessionConfig(driver="acme"))
    manager.extend("acme", ArraySessionHandler.from_config, ArraySessionHandler.from_config)  # type: ignore[arg-type]
    with pytest.raises(TypeError) as info:
        manager.async_handler()
    assert str(info.value) == (
        "session driver 'acme' (registered with SessionManager.extend): its async_factory "
        "returned ArraySessionHandler, not a satchel.AsyncSessionHandler"
    )


def test_an_async_def_factory_is_a_type_error_that_says_so() -> None:
    async def factory(config: SessionConfig) -> AsyncSessionHandler:
        return ThreadedAsyncHandler(ArraySessionHandler.from_config(config))

    manager = SessionManager(SessionConfig(driver="acme"))
    manager.extend("acme", ArraySessionHandler.from_config, factory)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the coroutine is closed, never left un-awaited
        with pytest.raises(TypeError, match=r"returned coroutine, .*a plain function"):
            manager.async_handler()


def test_a_plugin_factory_returning_no_handler_names_the_driver_and_its_distribution() -> None:
    module = types.ModuleType("bad")

    @hookimpl
    def register_drivers(register: DriverRegistrar) -> None:
        register("acme", lambda config: NotAHandler())  # type: ignore[arg-type,return-value]

    module.register_drivers = register_drivers  # type: ignore[attr-defined]
    loaded = load(entry_point("acme-sessions", "acme", module))
    manager = SessionManager(SessionConfig(driver="acme"), plugins=loaded)
    with pytest.raises(
        TypeError,
        match=r"^session driver 'acme' \(registered by acme-sessions 1\.2\.3\): its factory returned NotAHandler",
    ):
        manager.handler()
