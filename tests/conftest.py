"""Fixtures shared by every test folder.

The real servers the plugin tests and ``tests/reliability`` talk to are found
or started by the modules in ``tests/fixtures``, loaded here as plugins
(pytest puts ``tests/`` on ``sys.path`` for this conftest).
"""

from __future__ import annotations

import logging
import secrets

import pytest

pytest_plugins = [
    "fixtures.redis_servers",
    "fixtures.memcached_servers",
    "fixtures.database_servers",
    "fixtures.mongo_servers",
]


@pytest.fixture(autouse=True)
def satchel_loggers_enabled() -> None:
    """Undo ``logging.config.fileConfig`` (Alembic's env.py calls it) disabling satchel's loggers.

    Tests that read satchel's warnings with ``caplog`` would otherwise pass or
    fail depending on which tests ran before them.
    """
    for name in ("satchel", *logging.root.manager.loggerDict):
        if name.startswith("satchel"):
            logging.getLogger(name).disabled = False


@pytest.fixture(scope="session")
def run_prefix() -> str:
    """A key prefix of this test run, so it never meets other data on a shared server."""
    return f"satchel-test:{secrets.token_hex(6)}:"


@pytest.fixture
def unique_prefix(run_prefix: str) -> str:
    """A prefix of one test, inside the run's."""
    return f"{run_prefix}{secrets.token_hex(4)}:"
