"""Finding or starting the real servers that driver tests talk to.

Each fixture looks for its server in this order: a URL in an environment
variable, else a server binary on PATH started on a free loopback port, else
a skip that says what is missing. ``SATCHEL_REQUIRE_SERVICES`` (e.g.
``redis,memcached,postgres,mysql``) names the servers whose absence fails the
run instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

import pytest

REQUIRE_ENV = "SATCHEL_REQUIRE_SERVICES"


def required_services() -> set[str]:
    """The service names listed in ``SATCHEL_REQUIRE_SERVICES``."""
    raw = os.environ.get(REQUIRE_ENV, "")
    return {name.strip().lower() for name in raw.split(",") if name.strip()}


def service_missing(name: str, reason: str) -> NoReturn:
    """Skip the test, or fail it when ``SATCHEL_REQUIRE_SERVICES`` names ``name``."""
    message = f"{name} is not available: {reason}"
    if name.lower() in required_services():
        pytest.fail(f"{message} (required by {REQUIRE_ENV})", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(port: int, *, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    """Wait until ``host:port`` accepts connections, or raise ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    while not port_open(port, host):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listened on {host}:{port} within {timeout:g} seconds")
        time.sleep(0.05)


@contextmanager
def start_server_process(
    argv: Sequence[str], *, port: int, name: str, timeout: float = 15.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server binary, wait for its port, and stop it afterwards.

    When the binary is not on PATH the test is skipped, or failed when
    ``SATCHEL_REQUIRE_SERVICES`` names ``name``.
    """
    if shutil.which(argv[0]) is None:
        service_missing(name, f"{argv[0]!r} is not on PATH")
    process = subprocess.Popen(  # noqa: S603 - argv comes from the test suite itself
        list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        try:
            wait_for_port(port, timeout=timeout)
        except TimeoutError as exc:
            service_missing(name, f"{argv[0]} did not start: {exc}")
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
