"""Checks one installed distribution from inside a fresh virtual environment.

Run by ``nox -s wheels`` with the environment's own Python, where only core's
wheel, one plugin's wheel and the extra under test are installed (no pytest,
no workspace). It exits non-zero with a message on the first broken promise:

* ``satchel drivers`` exits 0 and lists DRIVER from DISTRIBUTION;
* with ``--connection``: a session round trip (start, put, save, start again,
  read back, invalidate) through the sync driver;
* with ``--async-connection``: the same through the async twin;
* with ``--missing-extra EXTRA``: building the async twin for
  ``--async-connection`` is a ``ConfigError`` naming ``satchel-…[EXTRA]``;
* with ``--unreachable``: a session used on that connection fails with a
  ``SessionBackendError`` naming the driver (no server is needed to be listed).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from satchel import ConfigError, SessionBackendError, SessionConfig, SessionManager

SECRET = secrets.token_urlsafe(32)


def fail(message: str) -> None:
    sys.exit(f"check_install: {message}")


def check_listed(driver: str, distribution: str) -> None:
    command = shutil.which("satchel", path=str(Path(sys.executable).parent))
    if command is None:
        fail("the satchel command is not installed")
    listing = subprocess.run(
        [str(command), "drivers"], capture_output=True, text=True, check=False, timeout=120
    )
    print(listing.stdout + listing.stderr, end="")
    if listing.returncode != 0:
        fail(f"`satchel drivers` exited {listing.returncode}")
    if not re.search(rf"^{re.escape(driver)}\s+{re.escape(distribution)} ", listing.stdout, re.M):
        fail(f"`satchel drivers` does not list {driver} from {distribution}")


def config(driver: str, connection: str, **extra: Any) -> SessionConfig:
    # A prefix and a table of this run only: the servers are shared.
    name = f"wheel_{secrets.token_hex(4)}"
    return SessionConfig(
        driver=driver,
        connection=connection,
        prefix=f"{name}:",
        table=name,
        secret_key=SECRET,
        lottery=(0, 100),
        **extra,
    )


def prepare(manager: SessionManager) -> None:
    create_table = getattr(manager.handler(), "create_table", None)
    if create_table is not None:
        create_table()  # the database driver: what `satchel migrate` does


def tear_down(manager: SessionManager) -> None:
    handler = manager.handler()
    drop_table = getattr(handler, "drop_table", None)
    if drop_table is not None:
        drop_table()
    handler.close()


def sync_round_trip(driver: str, connection: str) -> None:
    manager = SessionManager(config(driver, connection))
    prepare(manager)
    try:
        session = manager.start(None)
        session.put("cart", ["apple"])
        session.save()
        again = manager.start(session.cookie_value())
        if again.get("cart") != ["apple"]:
            fail(f"{driver}: the session did not come back ({again.all()!r})")
        again.invalidate()
        again.save()
        if manager.start(session.cookie_value()).get("cart") is not None:
            fail(f"{driver}: an invalidated session came back")
    finally:
        tear_down(manager)
    print(f"{driver}: sync round trip on {connection.rpartition('@')[2]}")


def async_round_trip(driver: str, connection: str) -> None:
    manager = SessionManager(config(driver, connection))

    async def main() -> None:
        twin = manager.async_handler()
        create_table = getattr(twin, "create_table", None)
        if create_table is not None:
            await create_table()
        try:
            session = await manager.astart(None)
            session.put("cart", ["pear"])
            await session.asave()
            again = await manager.astart(session.cookie_value())
            if again.get("cart") != ["pear"]:
                fail(f"{driver}: the session did not come back through the async twin")
        finally:
            drop_table = getattr(twin, "drop_table", None)
            if drop_table is not None:
                await drop_table()
            await twin.close()

    asyncio.run(main())
    print(f"{driver}: async round trip ({type(manager.async_handler()).__name__})")


def check_missing_extra(driver: str, connection: str, distribution: str, extra: str) -> None:
    manager = SessionManager(config(driver, connection))
    try:
        manager.async_handler()
    except ConfigError as error:
        if f"{distribution}[{extra}]" not in str(error):
            fail(f"the error does not name the extra {extra}: {error}")
        print(f"{driver}: without [{extra}], the async twin says: {error}")
        return
    fail(f"{driver}: the async twin was built without the extra [{extra}]")


def check_unreachable(driver: str, connection: str) -> None:
    manager = SessionManager(config(driver, connection, options={"timeout": 0.5}))
    session = manager.start(None)
    session.put("cart", ["apple"])
    try:
        session.save()
    except SessionBackendError as error:
        if error.driver != driver:
            fail(f"the error names driver {error.driver!r}, not {driver!r}")
        print(f"{driver}: without a server: {error}")
        return
    fail(f"{driver}: a save without a server did not fail")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--driver", required=True)
    parser.add_argument("--distribution", required=True)
    parser.add_argument("--connection")
    parser.add_argument("--async-connection")
    parser.add_argument("--missing-extra")
    parser.add_argument("--unreachable")
    args = parser.parse_args()
    check_listed(args.driver, args.distribution)
    if args.connection:
        sync_round_trip(args.driver, args.connection)
    if args.async_connection and args.missing_extra:
        check_missing_extra(
            args.driver, args.async_connection, args.distribution, args.missing_extra
        )
    elif args.async_connection:
        async_round_trip(args.driver, args.async_connection)
    if args.unreachable:
        check_unreachable(args.driver, args.unreachable)


if __name__ == "__main__":
    main()
