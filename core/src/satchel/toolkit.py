"""Everything a driver needs from core, in one documented module.

A driver distribution imports from ``satchel`` (the top-level exports),
``satchel.toolkit``, ``satchel.hookspecs``, ``satchel.commands`` and, in its
tests, ``satchel.testing`` — nothing else of core. The built-in plugins keep
that rule too (a test checks their imports), so a third-party driver can do
everything they do. The reference, with examples, is ``docs/writing-drivers.md``.

Registration
    :data:`DriverRegistrar`, :data:`HandlerFactory`, :data:`AsyncHandlerFactory`
    (the ``register_drivers`` hook's types), :class:`CommandRegistrar` (the
    ``register_commands`` hook's), :func:`lazy_factory` (a factory that imports
    its handler on first use, so a plugin module stays light) and
    :func:`lazy_exports` (the same for the names a package exports),
    :func:`require_modules` (a plugin whose client library is missing fails to
    load, naming what to install).
Handlers
    :class:`ThreadedAsyncHandler` and :func:`threaded_twin` (a sync handler as
    an async twin, run in worker threads), :func:`structure_options` (the
    ``options`` mapping into an attrs class; a bad option is a ``ConfigError``
    naming it), :func:`decode_payload` (what a client read, as the payload
    string).
Errors and addresses
    :class:`StoreErrors` (a client's errors into ``SessionBackendError`` or
    ``PoolExhausted`` naming the driver and address), :func:`describe_error`,
    :func:`redact_url`, :func:`parse_hosts` and :func:`format_hosts`
    (``host:port[,host:port…]`` lists).
Locks and pools
    :class:`TokenLock` and :class:`AsyncTokenLock` (session locks with tokens
    and expiry), :func:`new_lock_token`, :func:`wait_for_lock`,
    :func:`await_lock`; :class:`ConnectionSlots` and
    :class:`AsyncConnectionSlots` (bounded waits for a pooled connection).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from satchel.commands import CommandRegistrar
from satchel.config import SessionConfig
from satchel.errors import ConfigError, PoolExhausted, SessionBackendError
from satchel.handler import AsyncSessionHandler, SessionHandler
from satchel.locking import (
    AsyncTokenLock,
    TokenLock,
    await_lock,
    new_lock_token,
    wait_for_lock,
)
from satchel.pooling import AsyncConnectionSlots, ConnectionSlots
from satchel.registry import AsyncHandlerFactory, DriverRegistrar, HandlerFactory
from satchel.threaded import ThreadedAsyncHandler

__all__ = [
    "AsyncConnectionSlots",
    "AsyncHandlerFactory",
    "AsyncTokenLock",
    "CommandRegistrar",
    "ConnectionSlots",
    "DriverRegistrar",
    "HandlerFactory",
    "StoreErrors",
    "ThreadedAsyncHandler",
    "TokenLock",
    "await_lock",
    "decode_payload",
    "describe_error",
    "format_hosts",
    "lazy_exports",
    "lazy_factory",
    "new_lock_token",
    "parse_hosts",
    "redact_url",
    "require_modules",
    "structure_options",
    "threaded_twin",
    "wait_for_lock",
]

T = TypeVar("T")

MAX_ERROR_TEXT = 300  # characters of a client's error message kept in ours


# --- registration ---------------------------------------------------------------------------


def lazy_factory(target: str) -> Callable[[SessionConfig], Any]:
    """A driver factory that imports ``target`` the first time it is called.

    ``target`` is written as an entry point is, ``"package.module:attribute"``
    (the attribute may be dotted: ``"acme.handler:AcmeHandler.from_config"``),
    and names a callable taking the config. Registering lazy factories keeps
    the plugin module light: resolving the ``file`` driver then imports no
    other driver's client library::

        @satchel.hookimpl
        def register_drivers(register: DriverRegistrar) -> None:
            register("acme", lazy_factory("acme_sessions.handler:AcmeSessionHandler.from_config"))
    """
    module_name, separator, attribute = target.partition(":")
    if not separator or not module_name or not attribute:
        raise ValueError(f"expected 'package.module:attribute', got {target!r}")
    resolved: list[Callable[[SessionConfig], Any]] = []

    def factory(config: SessionConfig) -> Any:
        if not resolved:
            found: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                found = getattr(found, part)
            resolved.append(found)
        return resolved[0](config)

    factory.__qualname__ = factory.__name__ = f"lazy_factory({target!r})"
    return factory


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each exported name from its module on first use.

    The entry point's module lives in the plugin's package, so importing it
    runs the package's ``__init__`` first: with this, that stays light too,
    while ``from acme_sessions import AcmeSessionHandler`` keeps working::

        __getattr__ = lazy_exports(__name__, {"AcmeSessionHandler": "acme_sessions.handler"})

    ``exports`` maps each name to the module that defines it.
    """

    def __getattr__(name: str) -> Any:  # becomes the package's own __getattr__
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__


def require_modules(*modules: str, install: str) -> None:
    """Raise ``ImportError`` unless every top-level module in ``modules`` is installed.

    Call it at the top of the plugin module with the client libraries its
    handlers import lazily: a missing one then makes the plugin fail to load,
    and ``satchel drivers`` reports it with the distribution and ``install``
    (what to run, e.g. ``pip install "acme-sessions"``). Nothing is imported.
    """
    missing = [name for name in modules if _not_installed(name)]
    if missing:
        names = ", ".join(repr(name) for name in missing)
        raise ImportError(
            f"the Python module{'s' if len(missing) > 1 else ''} {names} "
            f"{'are' if len(missing) > 1 else 'is'} not installed; install it with: {install}",
            name=missing[0],
        )


def _not_installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is None  # None: an import of it is known to fail
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


# --- handlers -------------------------------------------------------------------------------


def threaded_twin(factory: Callable[[SessionConfig], SessionHandler]) -> AsyncHandlerFactory:
    """The async factory that runs ``factory``'s sync handler in worker threads.

    For a client library with no asyncio form; :class:`ThreadedAsyncHandler`
    carries over the optional capabilities (``lock``, ``write_existing``, ...). Core
    does the same for a driver registered without an async factory.
    """

    def async_factory(config: SessionConfig) -> AsyncSessionHandler:
        return ThreadedAsyncHandler(factory(config))

    return async_factory


def structure_options(config: SessionConfig, options_class: type[T], *, driver: str) -> T:
    """``config.options`` as an instance of the attrs class ``options_class``.

    An unknown option, a value of the wrong type or one a field's validator
    refuses (attrs' own validators included) is a :class:`satchel.ConfigError`
    whose key names the option (``options.timeout``) and whose message names
    ``driver``. The same as :meth:`satchel.SessionConfig.structure_options`.
    """
    return config.structure_options(options_class, driver=driver)


def decode_payload(value: object) -> str:
    """What a client read, as the payload string core wrote: ``""`` for no session.

    ``None`` (nothing stored) and anything that is not text core could have
    written (bytes that are not UTF-8, a number) read as ``""``: core then
    starts a fresh session, as it does for an unknown id.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return ""
    return ""


# --- errors and addresses -------------------------------------------------------------------


def describe_error(exc: BaseException, *, hide: Iterable[str] = ()) -> str:
    """``"TypeName: first line of the message"``, short, with each text in ``hide`` masked.

    Pass the password (or any secret the client may echo) in ``hide``.
    """
    text = str(exc).strip()
    line = text.splitlines()[0].strip()[:MAX_ERROR_TEXT] if text else ""
    for secret in hide:
        if secret:
            line = line.replace(secret, "***")
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


class StoreErrors:
    """Turns a client library's errors into satchel's, naming the driver and its address.

    ``with errors:`` (or ``with errors.action("GET"):``, which puts "GET
    failed: " before the message) re-raises an instance of ``kinds`` as
    :class:`satchel.SessionBackendError` — or as :class:`satchel.PoolExhausted`
    when ``busy(exc)`` says every pooled connection stayed in use, which the
    web glue answers with 503 and ``Retry-After`` — chained to the original.
    Anything else propagates as it is: it is a bug, not a store failure. On a
    hot path, catch ``errors.kinds`` yourself and raise ``errors.error(exc)``.

    Args:
        driver: The driver's name.
        address: Where the store is, never with a password (:func:`redact_url`).
        kinds: The exception classes that mean the store failed.
        busy: Whether an error means the pool ran out (default: never).
        describe: The message for an error (default: :func:`describe_error`).
    """

    def __init__(
        self,
        driver: str,
        address: str,
        kinds: tuple[type[BaseException], ...],
        *,
        busy: Callable[[BaseException], bool] | None = None,
        describe: Callable[[BaseException], str] = describe_error,
    ) -> None:
        self.driver = driver
        self.address = address
        self.kinds = kinds
        self._busy = busy
        self._describe = describe

    def error(self, exc: BaseException, action: str | None = None) -> SessionBackendError:
        """The satchel error for the client's ``exc`` (raise it ``from exc``)."""
        message = self._describe(exc)
        if action is not None:
            message = f"{action} failed: {message}"
        if self._busy is not None and self._busy(exc):
            return PoolExhausted(self.driver, self.address, message)
        return SessionBackendError(self.driver, self.address, message)

    def action(self, action: str) -> _Translating:
        """A context manager like ``with errors:`` whose messages start with "ACTION failed: "."""
        return _Translating(self, action)

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._reraise(exc, None)

    def _reraise(self, exc: BaseException | None, action: str | None) -> None:
        if exc is not None and isinstance(exc, self.kinds):
            raise self.error(exc, action) from exc


class _Translating:
    def __init__(self, errors: StoreErrors, action: str) -> None:
        self._errors = errors
        self._action = action

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: Any) -> None:
        self._errors._reraise(exc_info[1], self._action)


def redact_url(url: str) -> str:
    """``url`` without its user, password, query and fragment, for messages and logs.

    ``redis://app:secret@cache:6379/0?ssl_password=x`` gives
    ``redis://cache:6379/0``. Text that is no URL is returned as the part
    after its last ``@``.
    """
    if "://" not in url:
        return url.rpartition("@")[2]
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{hosts}{parts.path}"


def parse_hosts(
    text: str, *, default_port: int, key: str = "connection"
) -> tuple[tuple[str, int], ...]:
    """``(host, port)`` pairs from ``host[:port][,host[:port]…]``.

    A host is a name, an IPv4 address, ``[IPv6]`` (with ``:port`` after the
    bracket) or a bare IPv6 address (which then takes ``default_port``). An
    empty list, a host with spaces or URL characters, or a bad port is a
    :class:`satchel.ConfigError` on ``key``.
    """
    hosts: list[tuple[str, int]] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            if rest and not rest.startswith(":"):
                raise ConfigError(key, f"not a host:port: {item!r}")
            port_text = rest[1:]
        elif item.count(":") == 1:
            host, _, port_text = item.partition(":")
        else:  # a name, or a bare IPv6 address (more than one colon)
            host, port_text = item, ""
        if not host or any(char.isspace() or char in "/@?#[]" for char in host):
            raise ConfigError(key, f"not a host:port: {item!r}")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ConfigError(key, f"bad port in {item!r}") from None
        if not 0 < port < 65536:
            raise ConfigError(key, f"port out of range in {item!r}")
        hosts.append((host, port))
    if not hosts:
        raise ConfigError(key, "expected host:port or a comma-separated list of them")
    return tuple(hosts)


def format_hosts(hosts: Iterable[tuple[str, int]]) -> str:
    """``host:port,…`` for messages, IPv6 addresses in brackets: the inverse of :func:`parse_hosts`."""
    return ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in hosts)
