"""The pytest plugin satchel installs (entry point ``pytest11``): markers and fixtures.

Fixtures:
    satchel_required_services: the names in ``SATCHEL_REQUIRE_SERVICES``.
    satchel_drivers_listing: what ``python -m satchel drivers`` printed, run in a
        fresh interpreter as a user would, so a plugin's tests can check it is listed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version

import pytest

from satchel.testing.services import required_services

DRIVERS_COMMAND_TIMEOUT_SECONDS = 60


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs_real_server(name): the test needs the real server, a fake cannot honour it",
    )


@pytest.fixture(scope="session")
def satchel_required_services() -> set[str]:
    """The service names whose absence fails the run instead of skipping."""
    return required_services()


@pytest.fixture(scope="session")
def satchel_drivers_listing() -> subprocess.CompletedProcess[str]:
    """``python -m satchel drivers`` in this interpreter's environment: its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "satchel", "drivers"],
        capture_output=True,
        text=True,
        timeout=DRIVERS_COMMAND_TIMEOUT_SECONDS,
        check=False,
    )


def check_driver_listed(
    listing: subprocess.CompletedProcess[str], driver: str, distribution: str, *, twin: bool
) -> None:
    """Assert that ``satchel drivers`` succeeded, reported no failed plugin, and lists
    ``driver`` as provided by the installed ``distribution`` (with an async twin if ``twin``)."""
    output = listing.stdout + listing.stderr
    assert listing.returncode == 0, output
    lines = listing.stdout.splitlines()
    assert not [line for line in lines if line.startswith("failed:")], output
    expected = (
        rf"{re.escape(driver)}\s+{re.escape(distribution)} {re.escape(version(distribution))}"
    )
    if twin:
        expected += r"\s+\(sync \+ async\)"
    assert [line for line in lines if re.fullmatch(expected, line)], output
