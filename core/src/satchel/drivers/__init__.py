"""The built-in drivers, registered through the ``satchel`` entry point like any plugin."""

from __future__ import annotations

from satchel.drivers.array import ArraySessionHandler
from satchel.drivers.cookie import CookieSessionHandler
from satchel.drivers.file import FileSessionHandler
from satchel.drivers.null import NullSessionHandler
from satchel.hookspecs import hookimpl
from satchel.registry import DriverRegistrar

__all__ = [
    "ArraySessionHandler",
    "CookieSessionHandler",
    "FileSessionHandler",
    "NullSessionHandler",
    "register_drivers",
]


@hookimpl
def register_drivers(register: DriverRegistrar) -> None:
    register("file", FileSessionHandler.from_config)
    register("cookie", CookieSessionHandler.from_config)
    register("array", ArraySessionHandler.from_config)
    register("null", NullSessionHandler.from_config)
