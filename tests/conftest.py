"""Fixtures shared by every test folder."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def satchel_loggers_enabled() -> None:
    """Undo ``logging.config.fileConfig`` (Alembic's env.py calls it) disabling satchel's loggers.

    Tests that read satchel's warnings with ``caplog`` would otherwise pass or
    fail depending on which tests ran before them.
    """
    for name in ("satchel", *logging.root.manager.loggerDict):
        if name.startswith("satchel"):
            logging.getLogger(name).disabled = False
