"""The pytest plugin satchel installs (entry point ``pytest11``): markers and fixtures.

Fixtures:
    satchel_required_services: the names in ``SATCHEL_REQUIRE_SERVICES``.
"""

from __future__ import annotations

import pytest

from satchel.testing.services import required_services


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs_real_server(name): the test needs the real server, a fake cannot honour it",
    )


@pytest.fixture(scope="session")
def satchel_required_services() -> set[str]:
    """The service names whose absence fails the run instead of skipping."""
    return required_services()
