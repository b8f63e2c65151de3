"""satchel.testing's server helpers: ports never handed out twice, broken servers fail loudly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from satchel.testing import free_port, start_server_process
from satchel.testing.services import output_tail


def test_free_port_never_hands_out_a_port_twice() -> None:
    # The OS hands the same ephemeral port out again within a few hundred binds;
    # a cluster or pool asks for several ports before any server holds one.
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)


@pytest.mark.parametrize("worker", [0, 1, 2])
def test_free_port_keeps_to_its_xdist_worker_share(
    worker: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No two workers ever hand out the same port, however the OS hands them out.
    monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    assert {(free_port() >> 1) % 3 for _ in range(50)} == {worker}


def test_a_server_that_does_not_start_fails_with_its_output() -> None:
    """A binary that is there but exits at once is a broken setup: a failure, never a skip."""
    port = free_port()
    argv = [sys.executable, "-c", "import sys; print('bad option --frobnicate'); sys.exit(3)"]
    with (
        pytest.raises(pytest.fail.Exception) as caught,
        start_server_process(argv, port=port, name="redis", timeout=2),
    ):
        pass
    message = str(caught.value)
    assert "did not start" in message
    assert "exit code 3" in message
    assert "bad option --frobnicate" in message


def test_a_real_server_refusing_its_config_fails_with_its_complaint() -> None:
    # Without redis-server this is start_server_process's own skip (a failure when required).
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--no-such-directive", "yes"]
    with (
        pytest.raises(pytest.fail.Exception, match="no-such-directive"),
        start_server_process(argv, port=port, name="redis", timeout=5),
    ):
        pass


def test_output_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {n}\n" for n in range(100)))
    assert output_tail(log, lines=3) == "line 97\nline 98\nline 99"
    assert "no output" in output_tail(tmp_path / "missing.log")
