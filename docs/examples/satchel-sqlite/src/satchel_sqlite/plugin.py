"""The entry point: registers the ``sqlite`` driver with satchel."""

from __future__ import annotations

from satchel import hookimpl
from satchel.toolkit import DriverRegistrar, lazy_factory


@hookimpl
def register_drivers(register: DriverRegistrar) -> None:
    # No async factory: satchel runs the handler in worker threads for ASGI apps.
    register("sqlite", lazy_factory("satchel_sqlite.handler:SqliteSessionHandler.from_config"))
