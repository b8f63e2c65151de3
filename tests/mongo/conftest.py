"""The mongo driver's tests run on mongomock, or on a real server when
``SATCHEL_TEST_MONGO_URL`` is set (the fixtures are in ``tests/fixtures/mongo_servers.py``).

Tests that a fake cannot honour carry ``@pytest.mark.needs_real_server("mongo")``
and are skipped without a server (failed when ``SATCHEL_REQUIRE_SERVICES``
names ``mongo``).
"""

from __future__ import annotations

import pytest
from fixtures.mongo_servers import NO_SERVER
from fixtures.mongo_support import real_server_url

from satchel.testing import service_missing


@pytest.fixture(autouse=True)
def _needs_real_server(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("needs_real_server")
    if marker is not None and "mongo" in marker.args and real_server_url() is None:
        service_missing("mongo", f"a fake cannot honour this test; {NO_SERVER}")
