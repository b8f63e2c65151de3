"""Real memcached servers for the satchel-memcached tests.

``memcached_connection`` is, in this order: ``SATCHEL_TEST_MEMCACHED``
(``host:port[,host:port…]``), else a ``memcached`` started on a free loopback
port for the run, else a skip (a failure when ``SATCHEL_REQUIRE_SERVICES``
names ``memcached``). The pool and outage tests always start their own
``memcached`` processes, so they can stop them. Servers started here allow
4 MB items: the conformance suite stores payloads of one and two megabytes,
more than memcached's default 1 MB item limit.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
from pymemcache.client.base import Client

from satchel.testing import free_port, service_missing, start_server_process

CONNECTION_ENV = "SATCHEL_TEST_MEMCACHED"
MIN_ITEM_SIZE = 3 * 1024 * 1024  # the suite's 2 MB payload, with room for the key
ServerStarter = Callable[[int], AbstractContextManager[subprocess.Popen[bytes]]]


def memcached_argv(port: int) -> list[str]:
    """argv for a throwaway memcached on ``port``: loopback only, TCP only, 4 MB items."""
    argv = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64", "-I", "4m"]
    if getattr(os, "geteuid", lambda: -1)() == 0:
        argv += ["-u", "root"]  # memcached refuses to run as root unless told to
    return argv


def _need_memcached() -> None:
    if shutil.which("memcached") is None:
        service_missing("memcached", "'memcached' is not on PATH (apt-get install -y memcached)")


def _item_size_max(connection: str) -> int:
    host, _, port = connection.split(",", maxsplit=1)[0].strip().rpartition(":")
    client = Client((host, int(port)), connect_timeout=3, timeout=3)
    try:
        settings = client.stats("settings")
    finally:
        client.close()
    return int(settings.get(b"item_size_max", 0))


@pytest.fixture(scope="session")
def memcached_connection() -> Iterator[str]:
    """The ``connection`` of the memcached the conformance suite runs on.

    The suite stores payloads of one and two megabytes, so a server from
    ``SATCHEL_TEST_MEMCACHED`` with a smaller item limit (memcached's default
    is 1 MB) is passed over for one started here with ``-I 4m``.
    """
    connection = os.environ.get(CONNECTION_ENV)
    if connection:
        try:
            item_limit = _item_size_max(connection)
        except Exception as exc:  # any failure means: not usable
            service_missing("memcached", f"{CONNECTION_ENV}={connection!r} does not answer: {exc}")
        if item_limit >= MIN_ITEM_SIZE:
            yield connection
            return
        if shutil.which("memcached") is None:
            service_missing(
                "memcached",
                f"{CONNECTION_ENV}={connection!r} allows items of {item_limit} bytes; the "
                "suite needs 3 MB or more (start it with -I 4m)",
            )
    _need_memcached()
    port = free_port()
    with start_server_process(memcached_argv(port), port=port, name="memcached"):
        yield f"127.0.0.1:{port}"


@pytest.fixture
def start_memcached() -> ServerStarter:
    """Start a memcached on ``port`` (a context manager that stops it)."""
    _need_memcached()

    def start(port: int) -> AbstractContextManager[subprocess.Popen[bytes]]:
        return start_server_process(memcached_argv(port), port=port, name="memcached")

    return start


@pytest.fixture(scope="session")
def memcached_pool() -> Iterator[list[int]]:
    """Three memcached processes on free loopback ports; yields their ports."""
    _need_memcached()
    ports = [free_port() for _ in range(3)]
    with contextlib.ExitStack() as stack:
        for port in ports:
            stack.enter_context(
                start_server_process(memcached_argv(port), port=port, name="memcached")
            )
        yield ports


@pytest.fixture(scope="session")
def run_prefix() -> str:
    """A key prefix of this test run, so it never meets other data on a shared server."""
    return f"satchel-test:{secrets.token_hex(6)}:"


@pytest.fixture
def unique_prefix(run_prefix: str) -> str:
    """A prefix of one test, inside the run's."""
    return f"{run_prefix}{secrets.token_hex(4)}:"
