"""The redis fixtures are honest: a setup that breaks after the binaries were found fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.redis_servers import LOG_FILES, server_logs, wait_until

from satchel.testing import free_port


def test_a_wait_that_never_ends_is_a_failure_with_the_servers_logs(tmp_path: Path) -> None:
    port = free_port()
    LOG_FILES[port] = tmp_path / "redis.log"
    LOG_FILES[port].write_text("# Cluster state changed: fail\n")
    try:
        with pytest.raises(pytest.fail.Exception) as caught:
            wait_until(lambda: False, 0.2, "the cluster reaching state ok", [port])
    finally:
        del LOG_FILES[port]
    message = str(caught.value)
    assert "the cluster reaching state ok did not happen" in message
    assert "Cluster state changed: fail" in message


def test_server_logs_name_each_server(tmp_path: Path) -> None:
    first, second = free_port(), free_port()
    for port in (first, second):
        LOG_FILES[port] = tmp_path / f"{port}.log"
        LOG_FILES[port].write_text(f"log of {port}\n")
    try:
        text = server_logs(first, second)
    finally:
        del LOG_FILES[first], LOG_FILES[second]
    assert f"127.0.0.1:{first}" in text
    assert f"log of {second}" in text
