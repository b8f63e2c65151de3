"""satchel-database without its extras: the plugin loads, the sync driver works, and an
async twin whose extra is missing is an error naming the extra, at first use only.

SQLAlchemy 2.1 no longer installs greenlet, which its asyncio engine needs; an
import of greenlet is made to fail here (``sys.modules["greenlet"] = None``),
in a fresh interpreter, as on a machine where only ``satchel-database`` was
installed. ``nox -s wheels`` checks the same from the built wheels.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.command import run_python


def test_without_greenlet_the_plugin_is_listed(tmp_path: Path) -> None:
    result = run_python(
        "from satchel.cli import main\nsys.exit(main(['drivers']))", tmp_path, blocked=("greenlet",)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "database   satchel-database" in result.stdout
    assert "failed" not in result.stdout + result.stderr


def test_without_greenlet_the_sync_driver_round_trips(tmp_path: Path) -> None:
    result = run_python(
        """
        from satchel import SessionConfig, SessionManager
        config = SessionConfig(driver="database", connection="sqlite:///sessions.db")
        manager = SessionManager(config)
        manager.handler().create_table()
        session = manager.start(None)
        session.put("cart", ["apple"])
        session.save()
        assert manager.start(session.cookie_value()).get("cart") == ["apple"]
        print("round trip")
        """,
        tmp_path,
        blocked=("greenlet",),
    )
    assert result.stdout.strip() == "round trip", result.stderr


@pytest.mark.parametrize(
    ("url", "blocked", "extra"),
    [
        ("sqlite+aiosqlite:///sessions.db", ["greenlet"], "aiosqlite"),
        ("postgresql+asyncpg://postgres@127.0.0.1/test", ["greenlet"], "asyncpg"),
        ("postgresql+asyncpg://postgres@127.0.0.1/test", ["asyncpg"], "asyncpg"),
        ("postgresql+psycopg_async://postgres@127.0.0.1/test", ["greenlet"], "psycopg-async"),
        ("mysql+aiomysql://root@127.0.0.1/test", ["aiomysql"], "aiomysql"),
    ],
)
def test_an_async_twin_whose_extra_is_missing_names_the_extra_at_first_use(
    tmp_path: Path, url: str, blocked: list[str], extra: str
) -> None:
    result = run_python(
        f"""
        from satchel import ConfigError, SessionConfig, SessionManager
        manager = SessionManager(SessionConfig(driver="database", connection={url!r}))
        try:
            manager.async_handler()
        except ConfigError as error:
            print(error.key)
            print(error)
        """,
        tmp_path,
        blocked=tuple(blocked),
    )
    key, message = result.stdout.splitlines()
    assert key == "connection", result.stderr
    assert f'install them with: pip install "satchel-database[{extra}]"' in message
